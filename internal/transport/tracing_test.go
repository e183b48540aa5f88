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

	// Until beta's replica is reachable an ask fails: ask until one goes
	// through, then follow that trace from its last span back.
	controlplanetest.Eventually(t, 60*time.Second, func() error {
		if got := v.ask("src", Ask{Who: "ann"}); len(got) != 1 || got[0] != "beta-0>alpha-0" {
			return fmt.Errorf("answers %v", got)
		}
		return nil
	})
	var src, far, back sdktrace.ReadOnlySpan
	controlplanetest.Eventually(t, 10*time.Second, func() error {
		src, far, back = nil, nil, nil
		ended := rec.Ended()
		for _, s := range ended {
			if s.Name() == "back.in" {
				back = s
			}
		}
		for _, s := range ended {
			if back != nil && s.Name() == "far.in" && s.SpanContext().SpanID() == back.Parent().SpanID() {
				far = s
			}
		}
		for _, s := range ended {
			if far != nil && s.Name() == "src._control" && s.SpanContext().SpanID() == far.Parent().SpanID() {
				src = s
			}
		}
		if src == nil || far == nil || back == nil {
			return fmt.Errorf("a chain of spans back.in -> far.in -> src._control: back %v, far %v, src %v", back != nil, far != nil, src != nil)
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
