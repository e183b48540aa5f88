// Package ui serves the page of `tinymod ui`: the flows of a namespace
// drawn live, with buttons that press signals, forms that edit nodes, which
// replica leads each module and the messages of debug nodes. The page and
// its assets are embedded; its state is pushed to it as server-sent events
// fed by watches; every change it makes is a normal API write with the
// credentials the server was given.
package ui

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/internal/replica"
)

// DefaultListen is where the page is served unless told otherwise.
const DefaultListen = "127.0.0.1:8090"

// TokenHeader carries the session's token on every request that changes
// something.
const TokenHeader = "X-Tinymod-Token"

// Options configure a Server.
type Options struct {
	// Config reaches the API server with the user's own credentials: every
	// change the page makes is written with them, so RBAC applies.
	Config *rest.Config
	// Namespace whose flows are shown.
	Namespace string
	// Listen is the address to serve on. Defaults to DefaultListen.
	Listen string
	// Expose allows an address other than loopback; the page then says that
	// it is exposed.
	Expose bool
	// Assets is the page. Defaults to the embedded build.
	Assets fs.FS
	// Replicas, if set, lists replicas the caller runs (tinymod dev): their
	// liveness is the process's, which a Lease learns only when it expires.
	Replicas func() []Replica
	// Interval is how often replicas' metrics, health and debug messages are
	// read. Defaults to 1 s.
	Interval time.Duration
	Log      logr.Logger
}

// Replica is a replica known to the caller.
type Replica struct {
	Module, Identity string
	// MetricsAddr is "host:port" of its metrics server.
	MetricsAddr string
	// Alive: its process runs.
	Alive bool
}

// Server serves the page.
type Server struct {
	opts  Options
	token string
	c     client.Client
	hub   *hub
	w     *watcher
	ln    net.Listener
	// snapshots holds a token for each snapshot being read.
	snapshots chan struct{}
	ran       atomic.Bool
}

// New checks the options, listens, and returns the server; Run serves.
func New(opts Options) (*Server, error) {
	if opts.Config == nil {
		return nil, errors.New("ui: no API server configuration")
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Assets == nil {
		opts.Assets = Assets()
	}
	if opts.Log.GetSink() == nil {
		opts.Log = logr.Discard()
	}
	host, _, err := net.SplitHostPort(opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("ui: --listen %q: %w", opts.Listen, err)
	}
	if !isLoopback(host) && !opts.Expose {
		return nil, fmt.Errorf("ui: %s is not a loopback address: the page can change flows with your credentials; pass --expose to serve it there anyway", opts.Listen)
	}
	// Changes are bounded by changeTimeout; so is every call of the client
	// that makes them, discovery too, which does not heed a context.
	writes := rest.CopyConfig(opts.Config)
	if writes.Timeout == 0 {
		writes.Timeout = changeTimeout
	}
	c, err := client.New(writes, client.Options{Scheme: replica.Scheme()})
	if err != nil {
		return nil, fmt.Errorf("ui: %w", err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	h := newHub()
	w, err := newWatcher(opts, h)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("ui: %w", err)
	}
	return &Server{opts: opts, token: hex.EncodeToString(b), c: c, hub: h, w: w, ln: ln, snapshots: make(chan struct{}, maxSnapshots)}, nil
}

// URL is the page's address.
func (s *Server) URL() string {
	addr := s.ln.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() || addr.IP.IsLoopback() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, fmt.Sprint(addr.Port)) + "/"
}

// Run watches and serves until ctx ends (it then returns nil), or until
// watching or serving fails. It returns once all it started has ended:
// requests, watches, the reading of replicas, and the listener is closed.
// A Server runs once.
func (s *Server) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("ui: a Server runs once; make another with New")
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		// Requests end with Run, even one waiting for the watches to sync.
		BaseContext: func(net.Listener) context.Context { return ctx }}
	watchErr := make(chan error, 1)
	serveErr := make(chan error, 1)
	go func() { watchErr <- s.w.run(ctx) }()
	go func() { serveErr <- srv.Serve(s.ln) }()
	var err error
	watching, serving := true, true
	select {
	case <-ctx.Done():
	case err = <-watchErr:
		watching = false
	case err = <-serveErr:
		serving = false
	}
	cancel()
	s.hub.closeAll() // event streams never end by themselves
	shutdown, stop := context.WithTimeout(context.Background(), 2*time.Second)
	defer stop()
	if srv.Shutdown(shutdown) != nil {
		_ = srv.Close()
	}
	if serving {
		<-serveErr
	}
	if watching {
		if e := <-watchErr; err == nil {
			err = e
		}
	}
	if errors.Is(err, http.ErrServerClosed) || parent.Err() != nil {
		return nil
	}
	return err
}

// Handler is the page, its assets and its API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.Handle("GET /assets/", http.FileServerFS(s.opts.Assets))
	mux.HandleFunc("GET /api/events", s.events)
	mux.HandleFunc("GET /api/state", s.state)
	s.routes(mux)
	return s.guard(mux)
}

// guard refuses requests whose Host is not this server's (a page of
// another site that resolves its name to loopback), and changes without
// the session's token or from another origin.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.opts.Expose && !loopbackHost(r.Host) {
			writeError(w, http.StatusForbidden, "Forbidden", "this page answers only to a loopback host name")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			// Host names are case-insensitive; browsers send them in lower case.
			if origin := r.Header.Get("Origin"); origin != "" && !strings.EqualFold(origin, "http://"+r.Host) && !strings.EqualFold(origin, "https://"+r.Host) {
				writeError(w, http.StatusForbidden, "Forbidden", "cross-origin request refused")
				return
			}
			if got := r.Header.Get(TokenHeader); subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
				writeError(w, http.StatusForbidden, "Forbidden", "missing or wrong session token; reload the page")
				return
			}
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// index serves the page with the session's token and whether it is exposed.
func (s *Server) index(w http.ResponseWriter, _ *http.Request) {
	page, err := fs.ReadFile(s.opts.Assets, "index.html")
	if err != nil {
		http.Error(w, "the page is not built: "+err.Error(), http.StatusInternalServerError)
		return
	}
	meta := fmt.Sprintf(`<meta name="tinymod-token" content="%s"><meta name="tinymod-exposed" content="%t">`, s.token, s.opts.Expose)
	html := strings.Replace(string(page), "<!--tinymod-meta-->", meta, 1)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'")
	_, _ = w.Write([]byte(html))
}

func isLoopback(host string) bool {
	// Host names are case-insensitive, and "localhost." is the same name.
	if host = strings.TrimSuffix(strings.ToLower(host), "."); host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackHost reports whether a request's Host names loopback.
func loopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	return isLoopback(strings.Trim(host, "[]"))
}
