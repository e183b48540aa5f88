package scheduler

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/module"
)

// counter is the cheapest possible sink: it counts.
type counter struct{ n atomic.Int64 }

func (c *counter) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "counter"} }
func (c *counter) Instance() module.Component    { return &counter{} }
func (c *counter) Ports() []module.Port {
	return []module.Port{{Name: "in", Configuration: Greeting{}}}
}
func (c *counter) Handle(_ context.Context, _ module.Handler, port string, msg any) any {
	if port == "in" {
		c.n.Add(1)
	}
	return nil
}

// emitter has an output port to send from.
type emitter struct{}

func (emitter) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "emitter"} }
func (emitter) Instance() module.Component    { return emitter{} }
func (emitter) Ports() []module.Port {
	return []module.Port{{Name: "out", Source: true, Configuration: Greeting{}}}
}
func (emitter) Handle(context.Context, module.Handler, string, any) any { return nil }

// benchFlow wires an emitter to n counters, with mapping on every edge or none,
// and returns the emitter's output handler.
func benchFlow(b *testing.B, n int, mapping map[string]any) module.Handler {
	return benchFlowTraced(b, n, mapping, nil)
}

// benchFlowTraced is benchFlow with a tracer provider.
func benchFlowTraced(b *testing.B, n int, mapping map[string]any, tp trace.TracerProvider) module.Handler {
	b.Helper()
	s, err := New(Options{
		Module:     module.Info{Name: "m"},
		Components: []module.Component{emitter{}, &counter{}},
		Leader:     leader.Always,
		Metrics:    prometheus.NewRegistry(),
		Tracing:    tp,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Stop)
	var edges []v1alpha1.TinyNodeEdge
	for i := range n {
		name := fmt.Sprintf("c%d", i)
		var ports []v1alpha1.TinyNodePortConfig
		if mapping != nil {
			ports = []v1alpha1.TinyNodePortConfig{{Port: "in", From: "e.out", Configuration: raw(b, mapping)}}
		}
		s.Update(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "counter", Ports: ports}})
		edges = append(edges, v1alpha1.TinyNodeEdge{ID: name, Port: "out", To: name + ".in"})
	}
	if p := s.Update(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "e"},
		Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "emitter", Edges: edges}}); len(p) > 0 {
		b.Fatal(p)
	}
	return s.instance("e").output
}

var benchMsg = Greeting{Who: "ann", Count: 3, Note: "n"}

// discard is a span exporter that drops every span.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkHop is one message across one edge. direct-call is the baseline: the
// receiving component's Handle called by hand.
func BenchmarkHop(b *testing.B) {
	ctx := context.Background()
	b.Run("direct-call", func(b *testing.B) {
		c := &counter{}
		var h module.Handler = func(context.Context, string, any) any { return nil }
		b.ReportAllocs()
		for b.Loop() {
			if r := c.Handle(ctx, h, "in", benchMsg); r != nil {
				b.Fatal(r)
			}
		}
	})
	b.Run("scheduler", func(b *testing.B) {
		out := benchFlow(b, 1, nil)
		b.ReportAllocs()
		for b.Loop() {
			if r := out(ctx, "out", benchMsg); r != nil {
				b.Fatal(r)
			}
		}
	})
	b.Run("scheduler-from-a-handle", func(b *testing.B) {
		// As a component sends: with the context its Handle was given.
		out := benchFlow(b, 1, nil)
		hctx := instanceContext(b, out)
		b.ReportAllocs()
		for b.Loop() {
			if r := out(hctx, "out", benchMsg); r != nil {
				b.Fatal(r)
			}
		}
	})
	b.Run("scheduler-traced", func(b *testing.B) {
		// Tracing on: every span sampled, recorded and handed to a batcher
		// whose exporter drops it.
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}))
		b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		out := benchFlowTraced(b, 1, nil, tp)
		b.ReportAllocs()
		for b.Loop() {
			if r := out(ctx, "out", benchMsg); r != nil {
				b.Fatal(r)
			}
		}
	})
	b.Run("scheduler-mapping-3-fields", func(b *testing.B) {
		out := benchFlow(b, 1, map[string]any{"who": "{{$.who}}", "count": "{{$.count + 1}}", "note": "hi {{$.who}}"})
		b.ReportAllocs()
		for b.Loop() {
			if r := out(ctx, "out", benchMsg); r != nil {
				b.Fatal(r)
			}
		}
	})
}

// BenchmarkFanOut is one message sent along 10 edges at once.
func BenchmarkFanOut(b *testing.B) {
	ctx := context.Background()
	b.Run("direct-call-10", func(b *testing.B) {
		cs := make([]*counter, 10)
		for i := range cs {
			cs[i] = &counter{}
		}
		b.ReportAllocs()
		for b.Loop() {
			for _, c := range cs {
				c.Handle(ctx, nil, "in", benchMsg)
			}
		}
	})
	b.Run("scheduler-10-edges", func(b *testing.B) {
		out := benchFlow(b, 10, nil)
		b.ReportAllocs()
		for b.Loop() {
			if r := out(ctx, "out", benchMsg); r != nil {
				b.Fatal(r)
			}
		}
	})
}

// instanceContext is the context a component's Handle gets on a system port.
func instanceContext(b *testing.B, _ module.Handler) context.Context {
	b.Helper()
	return leader.NewContext(context.Background(), leader.Always, "node e")
}
