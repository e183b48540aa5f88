// Package httpserver serves HTTP on every replica and turns each request
// into a message on its request port; what the flow returns is the reply.
// The leader makes the port reachable from outside through the _client port:
// a Service for the module's pods and an Ingress for the hostnames.
package httpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/pkg/utils"
)

// ComponentName is how TinyNodes name this component.
const ComponentName = "http-server"

// RequestPort is where each request leaves as a message.
const RequestPort = "request"

// PortOffsetEnv, if set on a replica, is added to every http-server's port
// there: for local runs, where several replicas share one machine.
const PortOffsetEnv = "TINYMOD_HTTP_PORT_OFFSET"

// Settings of a server.
type Settings struct {
	Port         int      `json:"port" jsonschema:"title=Port,description=Port every replica listens on,minimum=1,maximum=65535,default=8080"`
	Hostnames    []string `json:"hostnames,omitempty" jsonschema:"title=Hostnames,description=Hostnames the leader routes to the port with an Ingress (none: a Service only)"`
	Timeout      string   `json:"timeout,omitempty" jsonschema:"title=Timeout,description=How long the flow has to answer a request before a 504,default=30s"`
	MaxBodyBytes int64    `json:"maxBodyBytes,omitempty" jsonschema:"title=Max body bytes,description=Larger request bodies get a 413,default=1048576"`
}

// Request is one HTTP request, as the flow receives it.
type Request struct {
	Method     string            `json:"method"`
	Path       string            `json:"path"`
	Query      string            `json:"query,omitempty"`
	Host       string            `json:"host,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
	Body       string            `json:"body,omitempty"`
	RemoteAddr string            `json:"remoteAddr,omitempty"`
}

// Response is what the flow returns to answer: status (default 200),
// headers and body. A flow that returns something else is answered 200 with
// it as JSON; one that returns nothing, 204.
type Response struct {
	Status  int               `json:"status,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body,omitempty"`
}

// Component is the HTTP server.
type Component struct {
	// PortOffset is added to the settings' port on this replica; Standard
	// takes it from $TINYMOD_HTTP_PORT_OFFSET.
	PortOffset int

	mu       sync.Mutex
	settings Settings
	rm       module.ResourceManager
	srv      *http.Server
	addr     string
	base     context.Context
	output   module.Handler
	// exposedIn is the system context (one per leadership term) in which
	// exposed was last exposed.
	exposedIn context.Context
	exposed   Settings
}

// New returns a server whose port offset comes from $TINYMOD_HTTP_PORT_OFFSET.
func New() *Component {
	off, _ := strconv.Atoi(os.Getenv(PortOffsetEnv))
	return &Component{PortOffset: off}
}

// GetInfo describes the component.
func (c *Component) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: ComponentName, Description: "Serves HTTP through the flow",
		Info: "Every replica listens and sends each request on request; the flow's result is the reply. The leader exposes the port with a Service and, for hostnames, an Ingress.", Tags: []string{"SDK", "HTTP"}}
}

// Instance returns a new server.
func (c *Component) Instance() module.Component {
	return &Component{PortOffset: c.PortOffset, settings: defaults(Settings{})}
}

func defaults(s Settings) Settings {
	if s.Port == 0 {
		s.Port = 8080
	}
	if s.Timeout == "" {
		s.Timeout = "30s"
	}
	if s.MaxBodyBytes == 0 {
		s.MaxBodyBytes = 1 << 20
	}
	return s
}

// Ports: client, settings and request.
func (c *Component) Ports() []module.Port {
	c.mu.Lock()
	defer c.mu.Unlock()
	return []module.Port{
		{Name: v1alpha1.ClientPort},
		{Name: v1alpha1.SettingsPort, Label: "Settings", Configuration: c.settings},
		{Name: RequestPort, Label: "Request", Source: true, Position: module.Right, Configuration: Request{}},
	}
}

// Addr is where this replica listens, once it does.
func (c *Component) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// Handle listens on settings, on every replica, and exposes on the leader.
func (c *Component) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.ClientPort:
		c.mu.Lock()
		c.rm, _ = msg.(module.ResourceManager)
		c.mu.Unlock()
	case v1alpha1.SettingsPort:
		s := defaults(msg.(Settings))
		if _, err := time.ParseDuration(s.Timeout); err != nil {
			return module.Permanent(fmt.Errorf("timeout %q: %w", s.Timeout, err))
		}
		if err := c.listen(ctx, output, s); err != nil {
			return err
		}
		_ = c.expose(ctx) // logged; the next _reconcile tries again
		return nil
	case v1alpha1.ReconcilePort:
		return c.expose(ctx)
	}
	return nil
}

// expose has the leader make the port reachable; elsewhere it does nothing.
// Once done for a term and settings, _reconcile (every change to the node)
// does not read and compare the Service and Ingress again; a new term does.
func (c *Component) expose(ctx context.Context) error {
	c.mu.Lock()
	rm, s := c.rm, c.settings
	done := c.exposedIn == ctx && c.exposed.Port == s.Port && slices.Equal(c.exposed.Hostnames, s.Hostnames)
	c.mu.Unlock()
	if rm == nil || done || !utils.IsLeader(ctx) {
		return nil
	}
	if err := rm.ExposePort(ctx, s.Port, s.Hostnames...); err != nil {
		if errors.Is(err, module.ErrNotLeader) {
			return nil // leadership ended since the check: the next leader exposes
		}
		module.Log(ctx).Error(err, "expose", "port", s.Port)
		return err
	}
	c.mu.Lock()
	c.exposedIn, c.exposed = ctx, s
	c.mu.Unlock()
	return nil
}

// listen (re)starts the server when the port changed.
func (c *Component) listen(ctx context.Context, output module.Handler, s Settings) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.settings
	c.settings, c.output = s, output
	if c.base == nil {
		// Requests outlive a leadership term: the instance's context, not the term's.
		c.base = context.WithoutCancel(ctx)
	}
	if c.srv != nil && old.Port == s.Port {
		return nil
	}
	if c.srv != nil {
		c.shutdownLocked()
	}
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", s.Port+c.PortOffset))
	if err != nil {
		return fmt.Errorf("listen on port %d: %w", s.Port+c.PortOffset, err)
	}
	c.srv = &http.Server{Handler: http.HandlerFunc(c.serve), ReadHeaderTimeout: 10 * time.Second}
	c.addr = ln.Addr().String()
	go func(srv *http.Server) { _ = srv.Serve(ln) }(c.srv)
	module.Log(ctx).Info("http-server listening", "addr", c.addr)
	return nil
}

// Destroy drains: requests in flight get up to 10 s to finish.
func (c *Component) Destroy() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shutdownLocked()
}

func (c *Component) shutdownLocked() {
	if c.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = c.srv.Shutdown(ctx)
	c.srv, c.addr = nil, ""
}

func (c *Component) serve(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	s, base, output := c.settings, c.base, c.output
	c.mu.Unlock()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("request body over %d bytes", s.MaxBodyBytes), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading the request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	req := Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Host: r.Host, Body: string(body), RemoteAddr: r.RemoteAddr, Headers: map[string]string{}}
	for k := range r.Header {
		req.Headers[k] = r.Header.Get(k)
	}
	timeout, _ := time.ParseDuration(s.Timeout)
	// A caller that traces (W3C traceparent) has the flow's spans as its
	// children; with tracing off the propagator reads nothing.
	base = otel.GetTextMapPropagator().Extract(base, propagation.HeaderCarrier(r.Header))
	ctx, cancel := context.WithTimeout(base, timeout)
	defer cancel()
	stop := context.AfterFunc(r.Context(), cancel) // the client went away
	defer stop()
	done := make(chan any, 1)
	go func() { done <- output(ctx, RequestPort, req) }()
	var res any
	select {
	case res = <-done:
	case <-ctx.Done():
		if r.Context().Err() == nil {
			http.Error(w, fmt.Sprintf("the flow did not answer within %s", s.Timeout), http.StatusGatewayTimeout)
		}
		return
	}
	if err, ok := res.(error); ok {
		if errors.Is(err, context.DeadlineExceeded) {
			http.Error(w, fmt.Sprintf("the flow did not answer within %s", s.Timeout), http.StatusGatewayTimeout)
			return
		}
		http.Error(w, "the flow failed: "+err.Error(), http.StatusBadGateway)
		return
	}
	reply(w, res)
}

// reply writes the flow's result.
func reply(w http.ResponseWriter, res any) {
	if res == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	raw, err := json.Marshal(res)
	if err != nil {
		http.Error(w, "the flow's answer is not JSON: "+err.Error(), http.StatusBadGateway)
		return
	}
	var r Response
	if json.Unmarshal(raw, &r) == nil && (r.Status != 0 || r.Body != "" || r.Headers != nil) {
		for k, v := range r.Headers {
			w.Header().Set(k, v)
		}
		if r.Status == 0 {
			r.Status = http.StatusOK
		}
		w.WriteHeader(r.Status)
		_, _ = io.WriteString(w, r.Body)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(raw)
}
