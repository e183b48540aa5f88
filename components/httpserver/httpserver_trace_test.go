package httpserver_test

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tinymod/tinymod/components/httpserver"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/module/moduletest"
)

// TestRequestCarriesTheCallersTrace: a request with a W3C traceparent
// reaches the flow in a context of that trace, so the flow's spans are the
// caller's children.
func TestRequestCarriesTheCallersTrace(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })

	rec := &recorder{}
	f := moduletest.New(t, &httpserver.Component{}, rec)
	f.Add("rec", "recorder", nil, nil)
	port := freePort(t)
	f.Add("web", httpserver.ComponentName, map[string]any{"port": port, "timeout": "5s"}, map[string]string{httpserver.RequestPort: "rec.in"})

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, err := http.NewRequest(http.MethodGet, "http://"+net.JoinHostPort("127.0.0.1", strconv.Itoa(port))+"/traced", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	var resp *http.Response
	moduletest.Eventually(t, 5*time.Second, func() bool {
		resp, err = http.DefaultClient.Do(req)
		return err == nil
	}, "the server answers")
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("status %d", resp.StatusCode)
	}
	got := rec.contexts()
	if len(got) != 1 {
		t.Fatalf("the recorder got %d messages", len(got))
	}
	sc := trace.SpanContextFromContext(got[0])
	if sc.TraceID().String() != traceID || !sc.IsRemote() {
		t.Errorf("the flow's context has trace %s (remote %v), want the caller's %s", sc.TraceID(), sc.IsRemote(), traceID)
	}

	// Without a traceparent the flow's context carries no trace.
	plain, _ := http.NewRequest(http.MethodGet, req.URL.String(), nil)
	resp, err = http.DefaultClient.Do(plain)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := rec.contexts(); len(got) != 2 || trace.SpanContextFromContext(got[1]).IsValid() {
		t.Errorf("a request without traceparent: %d messages, last trace %v", len(got), trace.SpanContextFromContext(got[len(got)-1]).TraceID())
	}
}

// recorder keeps the context of every message on in.
type recorder struct {
	mu   sync.Mutex
	ctxs []context.Context
}

func (r *recorder) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "recorder"} }
func (r *recorder) Instance() module.Component    { return r }
func (r *recorder) Ports() []module.Port          { return []module.Port{{Name: "in"}} }
func (r *recorder) Handle(ctx context.Context, _ module.Handler, port string, _ any) any {
	if port == "in" {
		r.mu.Lock()
		r.ctxs = append(r.ctxs, ctx)
		r.mu.Unlock()
	}
	return nil
}

func (r *recorder) contexts() []context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]context.Context(nil), r.ctxs...)
}

// freePort is a TCP port nothing listens on, as far as the kernel knows.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
