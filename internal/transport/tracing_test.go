package transport_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
)

// TestTraceCrossesModules: a press on alpha's src goes to beta's far and
// back to alpha's back: three nodes, two modules, two gRPC hops, one trace
// whose spans are each the child of the one that sent the message.
func TestTraceCrossesModules(t *testing.T) {
	e := controlplanetest.Start(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	v := &env{t: t, e: e, ns: e.Namespace(t), ctx: controlplanetest.Context(t, 3*time.Minute), tracing: tp}
	v.start("alpha", "alpha-0")
	v.start("beta", "beta-0")
	v.node("back", "alpha", "echo")
	v.node("far", "beta", "echo", edge("far-back", "out", "back.in"))
	v.node("src", "alpha", "caller", edge("src-far", "out", "far.in"))

	if got := v.ask("src", Ask{Who: "ann"}); len(got) != 1 || got[0] != "beta-0>alpha-0" {
		t.Fatalf("answers %v", got)
	}
	var src, far, back sdktrace.ReadOnlySpan
	controlplanetest.Eventually(t, 10*time.Second, func() error {
		src, far, back = nil, nil, nil
		for _, s := range rec.Ended() {
			switch s.Name() {
			case "src._control":
				src = s
			case "far.in":
				far = s
			case "back.in":
				back = s
			}
		}
		if src == nil || far == nil || back == nil {
			return fmt.Errorf("spans: src %v, far %v, back %v", src != nil, far != nil, back != nil)
		}
		return nil
	})
	if far.SpanContext().TraceID() != src.SpanContext().TraceID() || back.SpanContext().TraceID() != src.SpanContext().TraceID() {
		t.Errorf("traces: src %s, far %s, back %s", src.SpanContext().TraceID(), far.SpanContext().TraceID(), back.SpanContext().TraceID())
	}
	if far.Parent().SpanID() != src.SpanContext().SpanID() || !far.Parent().IsRemote() {
		t.Errorf("far's parent %v (remote %v), want src's span %v", far.Parent().SpanID(), far.Parent().IsRemote(), src.SpanContext().SpanID())
	}
	if back.Parent().SpanID() != far.SpanContext().SpanID() || !back.Parent().IsRemote() {
		t.Errorf("back's parent %v, want far's span %v", back.Parent().SpanID(), far.SpanContext().SpanID())
	}
}
