package faultproxy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
)

// Kind is a kind of fault.
type Kind string

// The faults a proxy injects.
const (
	// Unavailable answers 503 Service Unavailable, without Retry-After; the
	// request does not reach the API server.
	Unavailable Kind = "unavailable"
	// TooManyRequests answers 429 with Retry-After, as API Priority and
	// Fairness does; the request does not reach the API server.
	TooManyRequests Kind = "throttled"
	// Timeout holds the request for Options.Hold (or until the client gives
	// up) and then drops it unanswered; it does not reach the API server.
	Timeout Kind = "timeout"
	// Conflict answers 409 Conflict to an update, patch or delete, as when
	// another writer got there first; the request does not reach the API server.
	Conflict Kind = "conflict"
	// LostResponse forwards the request, lets the API server act on it, and
	// drops the answer: the client cannot tell whether its write took effect.
	// Never a watch's.
	LostResponse Kind = "lost-response"
)

// Kinds is every kind of fault.
var Kinds = []Kind{Unavailable, TooManyRequests, Timeout, Conflict, LostResponse}

// applies reports whether a fault of kind k makes sense for req.
func (k Kind) applies(req Request) bool {
	switch k {
	case Conflict:
		return req.Verb == "update" || req.Verb == "patch" || req.Verb == "delete"
	case LostResponse:
		return req.Verb != "watch"
	}
	return true
}

// Options configure a proxy.
type Options struct {
	// Rate is the share of requests failed, from 0 (none, the default) to 1.
	Rate float64
	// Kinds are the faults drawn from, each as likely as the others among
	// those that apply to a request. Defaults to Kinds.
	Kinds []Kind
	// Hold is how long a Timeout holds its request. Defaults to 2 seconds.
	Hold time.Duration
	// RetryAfter is the Retry-After of a 429, in seconds. Defaults to 1.
	RetryAfter int
	// Spare, if set, names requests that are never failed.
	Spare func(Request) bool
	// Seed seeds the draws; 0 picks one at random.
	Seed uint64
	// Tally counts the faults; several proxies may share one. Defaults to a
	// tally of the proxy's own.
	Tally *Tally
}

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	opts   Options
	target *url.URL
	rp     *httputil.ReverseProxy
	srv    *http.Server
	ln     net.Listener

	mu   sync.Mutex
	rand *rand.Rand
}

// New starts a proxy on loopback to upstream's API server, forwarding with
// upstream's credentials, and returns it with a config that reaches the API
// server through it. That config trusts the proxy's certificate and carries
// no credentials: the proxy adds upstream's.
func New(upstream *rest.Config, opts Options) (*Proxy, *rest.Config, error) {
	if opts.Rate < 0 || opts.Rate > 1 {
		return nil, nil, fmt.Errorf("faultproxy: rate %v is not between 0 and 1", opts.Rate)
	}
	if len(opts.Kinds) == 0 {
		opts.Kinds = Kinds
	}
	if opts.Hold == 0 {
		opts.Hold = 2 * time.Second
	}
	if opts.RetryAfter == 0 {
		opts.RetryAfter = 1
	}
	if opts.Tally == nil {
		opts.Tally = &Tally{}
	}
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	target, err := url.Parse(upstream.Host)
	if err != nil {
		return nil, nil, fmt.Errorf("faultproxy: upstream host: %w", err)
	}
	if target.Scheme == "" {
		target.Scheme = "https"
	}
	rt, err := rest.TransportFor(upstream)
	if err != nil {
		return nil, nil, fmt.Errorf("faultproxy: upstream transport: %w", err)
	}
	cert, caPEM, err := selfSigned()
	if err != nil {
		return nil, nil, fmt.Errorf("faultproxy: certificate: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	p := &Proxy{opts: opts, target: target, ln: ln, rand: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	quiet := log.New(io.Discard, "", 0)
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			// The proxy's user is the only identity that goes upstream.
			r.Out.Header.Del("Authorization")
			for h := range r.Out.Header {
				if strings.HasPrefix(h, "Impersonate-") {
					r.Out.Header.Del(h)
				}
			}
		},
		Transport:     rt,
		FlushInterval: -1, // watches: every event as it comes
		ErrorLog:      quiet,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) {
				return // the client went away
			}
			writeStatus(w, http.StatusBadGateway, "InternalError", fmt.Sprintf("faultproxy: upstream: %v", err), 0)
		},
	}
	p.srv = &http.Server{
		Handler:           p,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12},
		ErrorLog:          quiet,
		ReadHeaderTimeout: 30 * time.Second,
	}
	go func() { _ = p.srv.ServeTLS(ln, "", "") }()

	proxied := &rest.Config{
		Host:            "https://" + ln.Addr().String(),
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM, ServerName: "127.0.0.1"},
		QPS:             upstream.QPS,
		Burst:           upstream.Burst,
		UserAgent:       upstream.UserAgent,
		Timeout:         upstream.Timeout,
	}
	return p, proxied, nil
}

// Addr is the proxy's address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Tally is where the proxy counts.
func (p *Proxy) Tally() *Tally { return p.opts.Tally }

// Close stops the proxy and drops its connections; held requests end.
func (p *Proxy) Close() { _ = p.srv.Close() }

// draw decides whether req fails, and how.
func (p *Proxy) draw(req Request) (Kind, bool) {
	if p.opts.Rate == 0 || p.opts.Spare != nil && p.opts.Spare(req) {
		return "", false
	}
	var kinds []Kind
	for _, k := range p.opts.Kinds {
		if k.applies(req) {
			kinds = append(kinds, k)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(kinds) == 0 || p.rand.Float64() >= p.opts.Rate {
		return "", false
	}
	return kinds[p.rand.IntN(len(kinds))], true
}

// ServeHTTP forwards r, or fails it.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := Classify(r)
	kind, fail := p.draw(req)
	p.opts.Tally.request(req, kind, fail)
	if !fail {
		p.rp.ServeHTTP(w, r)
		return
	}
	msg := fmt.Sprintf("faultproxy: injected %s on %s %s", kind, req.Verb, req.Target())
	switch kind {
	case Unavailable:
		writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", msg, 0)
	case TooManyRequests:
		w.Header().Set("Retry-After", strconv.Itoa(p.opts.RetryAfter))
		writeStatus(w, http.StatusTooManyRequests, "TooManyRequests", msg, p.opts.RetryAfter)
	case Conflict:
		writeStatus(w, http.StatusConflict, "Conflict", msg+": the object has been modified; please apply your changes to the latest version and try again", 0)
	case Timeout:
		t := time.NewTimer(p.opts.Hold)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
		panic(http.ErrAbortHandler) // resets the stream (HTTP/2) or closes the connection
	case LostResponse:
		p.rp.ServeHTTP(&discard{header: http.Header{}}, r)
		panic(http.ErrAbortHandler)
	}
}

// writeStatus answers with a metav1.Status, as the API server does.
func writeStatus(w http.ResponseWriter, code int, reason, message string, retryAfter int) {
	status := map[string]any{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": message, "reason": reason, "code": code,
	}
	if retryAfter > 0 {
		status["details"] = map[string]any{"retryAfterSeconds": retryAfter}
	}
	body, _ := json.Marshal(status)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// discard is a ResponseWriter that drops the answer.
type discard struct{ header http.Header }

func (d *discard) Header() http.Header         { return d.header }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Flush()                      {}

// Fault is a kind of fault on one verb of one target.
type Fault struct {
	Kind Kind
	// Verb and Target are the failed request's (see Request).
	Verb, Target string
}

// Tally counts requests and the faults injected into them.
type Tally struct {
	mu       sync.Mutex
	requests map[string]int // by verb
	faults   map[Fault]int
}

func (t *Tally) request(req Request, kind Kind, failed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.requests == nil {
		t.requests, t.faults = map[string]int{}, map[Fault]int{}
	}
	t.requests[req.Verb]++
	if failed {
		t.faults[Fault{Kind: kind, Verb: req.Verb, Target: req.Target()}]++
	}
}

// Faults returns the faults injected so far.
func (t *Tally) Faults() map[Fault]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[Fault]int, len(t.faults))
	for k, v := range t.faults {
		out[k] = v
	}
	return out
}

// Requests returns the requests seen so far, by verb.
func (t *Tally) Requests() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int, len(t.requests))
	for k, v := range t.requests {
		out[k] = v
	}
	return out
}

// Summary is the tally in one line: requests, then faults by kind and by
// kind and verb.
func (t *Tally) Summary() string {
	requests, total := t.Requests(), 0
	for _, n := range requests {
		total += n
	}
	byKind, byKindVerb := map[string]int{}, map[string]int{}
	faults := 0
	for f, n := range t.Faults() {
		byKind[string(f.Kind)] += n
		byKindVerb[string(f.Kind)+" "+f.Verb] += n
		faults += n
	}
	return fmt.Sprintf("%d requests, %d failed; by kind %s; by kind and verb %s", total, faults, sorted(byKind), sorted(byKindVerb))
}

func sorted(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := "{"
	for i, k := range keys {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%s: %d", k, m[k])
	}
	return out + "}"
}
