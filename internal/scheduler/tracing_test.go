package scheduler

import (
	"context"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
)

// tracedFixture is newFixture with a tracer that records every span.
func tracedFixture(t *testing.T) (*fixture, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	f := &fixture{t: t, nodes: map[string]*v1alpha1.TinyNode{}}
	s, err := New(Options{
		Module:     module.Info{Name: "m"},
		Components: []module.Component{&relay{destroyed: &atomic.Int32{}}, &sink{}},
		Leader:     leaderIf(true),
		Lookup:     func(name string) (*v1alpha1.TinyNode, bool) { n, ok := f.nodes[name]; return n, ok },
		Tracing:    tp,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	f.s = s
	return f, rec
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]string {
	out := map[attribute.Key]string{}
	for _, kv := range s.Attributes() {
		out[kv.Key] = kv.Value.Emit()
	}
	return out
}

// TestDeliveriesAreSpans: each delivery along a → b → c is a span, the
// child of the one that sent it, with its node, port, edge and result; a
// failure is the span's error; the runtime's own messages make none.
func TestDeliveriesAreSpans(t *testing.T) {
	f, rec := tracedFixture(t)
	f.mustAdd("c", "sink", nil)
	f.mustAdd("b", "relay", []v1alpha1.TinyNodeEdge{wire("bc", "out", "c.in")})
	f.mustAdd("a", "relay", []v1alpha1.TinyNodeEdge{wire("ab", "out", "b.in")})
	if len(rec.Ended()) != 0 {
		t.Fatalf("settings and _reconcile made spans: %d", len(rec.Ended()))
	}
	if res := f.s.Handle(context.Background(), Msg{To: "a.in", Data: Greeting{Who: "ann"}}); res == nil {
		t.Fatal("no result")
	}
	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.Name()] = s
	}
	a, b, c := spans["a.in"], spans["b.in"], spans["c.in"]
	if a == nil || b == nil || c == nil || len(spans) != 3 {
		t.Fatalf("spans: %v", spans)
	}
	if a.Parent().IsValid() || b.Parent().SpanID() != a.SpanContext().SpanID() || c.Parent().SpanID() != b.SpanContext().SpanID() {
		t.Errorf("parents: a %v, b %v (a is %v), c %v (b is %v)", a.Parent(), b.Parent().SpanID(), a.SpanContext().SpanID(), c.Parent().SpanID(), b.SpanContext().SpanID())
	}
	if a.SpanContext().TraceID() != c.SpanContext().TraceID() {
		t.Error("one message, two traces")
	}
	want := map[attribute.Key]string{AttrModule: "m", AttrNode: "c", AttrComponent: "sink", AttrPort: "in", AttrEdge: "bc", AttrFrom: "b.out", AttrResult: "ok"}
	for k, v := range want {
		if got := attrs(c)[k]; got != v {
			t.Errorf("c's %s = %q, want %q", k, got, v)
		}
	}

	rec.Reset()
	f.s.Handle(context.Background(), Msg{To: "a.in", Data: Greeting{Who: "fail"}})
	for _, s := range rec.Ended() {
		if s.Status().Code != codes.Error || attrs(s)[AttrResult] != "error" {
			t.Errorf("%s of a failed delivery: status %v, result %q", s.Name(), s.Status(), attrs(s)[AttrResult])
		}
	}
}
