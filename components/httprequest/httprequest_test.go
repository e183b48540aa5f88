package httprequest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/components/httprequest"
	"github.com/tinymod/tinymod/components/transform"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/module/moduletest"
)

// seen is what the test server received.
type seen struct {
	mu   sync.Mutex
	reqs []*http.Request
	body []string
}

func (s *seen) add(r *http.Request, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, r)
	s.body = append(s.body, body)
}

func (s *seen) last(t *testing.T) (*http.Request, string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		t.Fatal("the server got no request")
	}
	return s.reqs[len(s.reqs)-1], s.body[len(s.body)-1]
}

func (s *seen) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

// server answers with handler and records every request.
func server(t *testing.T, handler http.HandlerFunc) (*httptest.Server, *seen) {
	t.Helper()
	s := &seen{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.add(r.Clone(context.Background()), string(body))
		handler(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, s
}

func flow(t *testing.T, settings any) *moduletest.Flow {
	t.Helper()
	f := moduletest.New(t, &httprequest.Component{}, &transform.Component{})
	f.Add("h", httprequest.ComponentName, settings, map[string]string{"out": "sink.in"})
	return f
}

func TestGetJSON(t *testing.T) {
	srv, got := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Add("X-Many", "a")
		w.Header().Add("X-Many", "b")
		io.WriteString(w, `{"hello":"world","n":2}`)
	})
	f := flow(t, map[string]any{"url": srv.URL + "/things?x=1", "headers": map[string]string{"Authorization": "Bearer t"}})
	res := f.Send("h.request", nil)
	resp, ok := res.(httprequest.Response)
	if !ok {
		t.Fatalf("result %#v, want a Response", res)
	}
	if resp.Status != 200 || resp.Body != `{"hello":"world","n":2}` || resp.Headers["X-Many"] != "a, b" {
		t.Errorf("response %+v", resp)
	}
	if m, ok := resp.JSON.(map[string]any); !ok || m["hello"] != "world" || m["n"] != 2.0 {
		t.Errorf("json %#v", resp.JSON)
	}
	r, body := got.last(t)
	if r.Method != "GET" || r.URL.Path != "/things" || r.URL.RawQuery != "x=1" || r.Header.Get("Authorization") != "Bearer t" || body != "" {
		t.Errorf("the server got %s %s %v %q", r.Method, r.URL, r.Header, body)
	}
	if sink := f.Sink.Got(); len(sink) != 1 || sink[0].(httprequest.Response).Status != 200 {
		t.Errorf("out carried %#v", sink)
	}
}

func TestRequestOverridesSettings(t *testing.T) {
	srv, got := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"not":"decoded"}`)
	})
	f := flow(t, map[string]any{"method": "put", "url": "http://127.0.0.1:1/never", "headers": map[string]string{"X-A": "settings", "x-b": "settings"}, "body": "default body"})
	res := f.Send("h.request", map[string]any{"method": "post", "url": srv.URL + "/p", "headers": map[string]string{"X-B": "request", "host": "virtual.example"}, "body": map[string]any{"k": []int{1, 2}}})
	resp, ok := res.(httprequest.Response)
	if !ok || resp.Status != http.StatusCreated || resp.JSON != nil {
		t.Fatalf("result %#v: want 201 with no json (text/plain)", res)
	}
	r, body := got.last(t)
	if r.Method != "POST" || r.URL.Path != "/p" || r.Header.Get("X-A") != "settings" || r.Header.Get("X-B") != "request" || r.Host != "virtual.example" {
		t.Errorf("the server got %s %s %v", r.Method, r.URL, r.Header)
	}
	if body != `{"k":[1,2]}` || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("a JSON body went as %q (%s)", body, r.Header.Get("Content-Type"))
	}
	// A string body goes as it is, the settings' when the request has none.
	f.Send("h.request", map[string]any{"url": srv.URL})
	if r, body := got.last(t); body != "default body" || r.Method != "PUT" || r.Header.Get("Content-Type") != "" {
		t.Errorf("the settings' body: %s %q %q", r.Method, body, r.Header.Get("Content-Type"))
	}
}

func TestStatusErrors(t *testing.T) {
	status := atomic.Int32{}
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
		io.WriteString(w, "  because "+strings.Repeat("x", 2000))
	})
	f := flow(t, map[string]any{"url": srv.URL})
	for _, tc := range []struct {
		status    int
		permanent bool
	}{{404, true}, {400, true}, {409, true}, {429, false}, {500, false}, {503, false}} {
		status.Store(int32(tc.status))
		err, ok := f.Send("h.request", nil).(error)
		if !ok {
			t.Fatalf("%d: no error", tc.status)
		}
		if module.IsPermanent(err) != tc.permanent {
			t.Errorf("%d: permanent %v, want %v: %v", tc.status, module.IsPermanent(err), tc.permanent, err)
		}
		var se *httprequest.StatusError
		if !errors.As(err, &se) || se.Status != tc.status {
			t.Errorf("%d: %v is not a StatusError with the status", tc.status, err)
		}
		if msg := err.Error(); !strings.Contains(msg, http.StatusText(tc.status)) || !strings.Contains(msg, "because xxx") || len(msg) > 1200 {
			t.Errorf("%d: the error says %d bytes: %.200s", tc.status, len(msg), msg)
		}
	}
	if n := len(f.Sink.Got()); n != 0 {
		t.Errorf("%d failed responses went on out", n)
	}
}

// TestEdgeRetryPolicy: 503s are retried by the edge's policy; a 404 is not.
func TestEdgeRetryPolicy(t *testing.T) {
	var fails atomic.Int32
	fails.Store(2)
	srv, got := server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		if fails.Add(-1) >= 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "done")
	})
	f := flow(t, map[string]any{"url": srv.URL})
	n := moduletest.Node("front", transform.ComponentName, map[string]any{"mapping": map[string]any{"url": "{{$.url}}"}})
	n.Spec.Edges = []v1alpha1.TinyNodeEdge{{ID: "front-h", Port: "out", To: "h.request", Retry: &v1alpha1.RetryPolicy{Attempts: 4, Backoff: "5ms"}}}
	if p := f.Apply(n); len(p) != 0 {
		t.Fatal(p)
	}
	res := f.Send("front.in", map[string]any{"url": srv.URL + "/ok"})
	if resp, ok := res.(httprequest.Response); !ok || resp.Body != "done" {
		t.Fatalf("after two 503s: %#v", res)
	}
	if c := got.count(); c != 3 {
		t.Errorf("%d requests, want 3 (two 503s retried)", c)
	}
	if err, ok := f.Send("front.in", map[string]any{"url": srv.URL + "/missing"}).(error); !ok || !module.IsPermanent(err) {
		t.Errorf("404: %v", err)
	}
	if c := got.count(); c != 4 {
		t.Errorf("%d requests, want 4: a 404 is not retried", c)
	}
}

func TestTraceContext(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	srv, got := server(t, func(w http.ResponseWriter, r *http.Request) {})
	f := flow(t, map[string]any{"url": srv.URL})
	ctx, span := tp.Tracer("test").Start(context.Background(), "message")
	defer span.End()
	if _, ok := f.SendContext(ctx, "h.request", nil).(httprequest.Response); !ok {
		t.Fatal("no response")
	}
	r, _ := got.last(t)
	tpHeader := r.Header.Get("Traceparent")
	want := span.SpanContext().TraceID().String()
	if !strings.Contains(tpHeader, want) {
		t.Errorf("traceparent %q, want trace %s", tpHeader, want)
	}
	// Without a span there is nothing to propagate.
	f.Send("h.request", nil)
	if r, _ := got.last(t); r.Header.Get("Traceparent") != "" {
		t.Errorf("traceparent %q without a span", r.Header.Get("Traceparent"))
	}
}

func TestBoundedResponseBody(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("y", 2048))
	})
	f := flow(t, map[string]any{"url": srv.URL, "maxBodyBytes": 1024})
	err, ok := f.Send("h.request", nil).(error)
	if !ok || !module.IsPermanent(err) || !strings.Contains(err.Error(), "over maxBodyBytes (1024 bytes)") {
		t.Errorf("a 2 KiB body with maxBodyBytes 1024: %v", err)
	}
	f.Add("h2", httprequest.ComponentName, map[string]any{"url": srv.URL, "maxBodyBytes": 2048}, nil)
	if resp, ok := f.Send("h2.request", nil).(httprequest.Response); !ok || len(resp.Body) != 2048 {
		t.Errorf("exactly maxBodyBytes: %#v", resp)
	}
}

func TestHugeRequestBody(t *testing.T) {
	srv, got := server(t, func(w http.ResponseWriter, r *http.Request) {})
	f := flow(t, map[string]any{"url": srv.URL, "method": "POST"})
	big := strings.Repeat("z", 3<<20)
	if _, ok := f.Send("h.request", map[string]any{"body": big}).(httprequest.Response); !ok {
		t.Fatal("a 3 MiB body failed")
	}
	if _, body := got.last(t); len(body) != len(big) {
		t.Errorf("the server got %d bytes", len(body))
	}
}

func TestSlowRemote(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	f := flow(t, map[string]any{"url": srv.URL, "timeout": "50ms"})
	start := time.Now()
	err, ok := f.Send("h.request", nil).(error)
	if !ok || module.IsPermanent(err) || !strings.Contains(err.Error(), "no response within 50ms") {
		t.Errorf("a slow remote: %v (want a transient error)", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the timeout took %s", took)
	}
	// A request's own timeout wins.
	start = time.Now()
	if err, ok := f.Send("h.request", map[string]any{"timeout": "10ms"}).(error); !ok || !strings.Contains(err.Error(), "no response within 10ms") {
		t.Errorf("the request's timeout: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the timeout took %s", took)
	}
}

func TestCancelledMessage(t *testing.T) {
	arrived := make(chan struct{}, 1)
	left := make(chan struct{}, 1)
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
		left <- struct{}{}
	})
	f := flow(t, map[string]any{"url": srv.URL, "timeout": "1m"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan any, 1)
	go func() { done <- f.SendContext(ctx, "h.request", nil) }()
	<-arrived
	cancel()
	select {
	case res := <-done:
		if err, ok := res.(error); !ok || !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled: %v, want context.Canceled", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request outlived its message")
	}
	select {
	case <-left:
	case <-time.After(5 * time.Second):
		t.Error("the server's request was not cancelled")
	}
	// Already cancelled: no request at all.
	if err, ok := f.SendContext(ctx, "h.request", nil).(error); !ok || !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled context: %v", err)
	}
}

func TestTransportErrorIsTransient(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	f := flow(t, map[string]any{"url": url})
	err, ok := f.Send("h.request", nil).(error)
	if !ok || module.IsPermanent(err) || !strings.Contains(err.Error(), "GET "+url) {
		t.Errorf("connection refused: %v (want a transient error naming the request)", err)
	}
}

func TestBadInput(t *testing.T) {
	srv, got := server(t, func(w http.ResponseWriter, r *http.Request) {})
	f := flow(t, nil)
	for _, tc := range []struct {
		msg  any
		want string
	}{
		{nil, "no url"},
		{map[string]any{}, "no url"},
		{map[string]any{"url": "ftp://example.com/x"}, "want an absolute http or https URL"},
		{map[string]any{"url": "/relative"}, "want an absolute http or https URL"},
		{map[string]any{"url": "http://[::1"}, "url"},
		{map[string]any{"url": srv.URL, "method": "GE T"}, "not an HTTP method"},
		{map[string]any{"url": srv.URL, "headers": map[string]string{"X-Evil": "a\r\nInjected: yes"}}, "line break"},
		{map[string]any{"url": srv.URL, "headers": map[string]string{"Bad Name": "v"}}, "not an HTTP header name"},
		{map[string]any{"url": srv.URL, "timeout": "soon"}, "timeout"},
		{map[string]any{"url": srv.URL, "timeout": "-1s"}, "timeout"},
		{"a string", "message for h.request"},
		{[]any{1, 2}, "message for h.request"},
		{map[string]any{"url": 42}, "message for h.request"},
	} {
		err, ok := f.Send("h.request", tc.msg).(error)
		if !ok || !module.IsPermanent(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%#v: %v, want a permanent error with %q", tc.msg, err, tc.want)
		}
	}
	if n := got.count(); n != 0 {
		t.Errorf("bad input made %d requests", n)
	}
	for _, bad := range []map[string]any{
		{"url": "ftp://x"},
		{"timeout": "soon"},
		{"method": "G T"},
		{"maxBodyBytes": -1},
		{"headers": map[string]string{"A": "b\nc"}},
	} {
		// The schema refuses what it can (a negative maxBodyBytes), the component the rest.
		if p := f.Problems("bad", httprequest.ComponentName, bad); len(p) != 1 || p[0].Reason != moduletest.ReasonSettingsRejected && p[0].Reason != moduletest.ReasonInvalidSettings {
			t.Errorf("settings %v: %+v", bad, p)
		}
	}
}

func TestDownstreamErrorIsTheResult(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {})
	f := moduletest.New(t, &httprequest.Component{}, &transform.Component{})
	// The transform fails on what arrives: a string times two.
	f.Add("t", transform.ComponentName, map[string]any{"mapping": "{{$.body * 2}}"}, nil)
	f.Add("h", httprequest.ComponentName, map[string]any{"url": srv.URL}, map[string]string{"out": "t.in"})
	if err, ok := f.Send("h.request", nil).(error); !ok || !strings.Contains(err.Error(), "$.body * 2") {
		t.Errorf("a failing receiver: %v", err)
	}
}

func TestPortSchemas(t *testing.T) {
	f := flow(t, nil)
	want := map[string]string{v1alpha1.SettingsPort: "Max body bytes", httprequest.RequestPort: "Timeout", httprequest.OutPort: "Status"}
	for _, p := range f.Ports("h") {
		if w, ok := want[p.Name]; ok {
			if p.Schema == nil || !strings.Contains(string(p.Schema.Raw), w) {
				t.Errorf("port %s: schema without %q", p.Name, w)
			}
			delete(want, p.Name)
			if p.Name == httprequest.OutPort && p.Position != module.Right || p.Name == httprequest.RequestPort && p.Position != module.Left {
				t.Errorf("port %s drawn %s", p.Name, p.Position)
			}
		}
	}
	if len(want) != 0 {
		t.Errorf("ports missing: %v", want)
	}
	var s map[string]any
	for _, p := range f.Ports("h") {
		if p.Name == v1alpha1.SettingsPort {
			_ = json.Unmarshal(p.Schema.Raw, &s)
		}
	}
	if d, _ := s["default"].(map[string]any); d["method"] != "GET" || d["timeout"] != "30s" {
		t.Errorf("published settings default %v", s["default"])
	}
}
