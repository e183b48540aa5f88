package components_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tinymod/tinymod/components/delay"
	"github.com/tinymod/tinymod/components/router"
	"github.com/tinymod/tinymod/components/signal"
	"github.com/tinymod/tinymod/components/ticker"
	"github.com/tinymod/tinymod/module/moduletest"
)

func TestSignalSendOnLeaderOnly(t *testing.T) {
	f := moduletest.New(t, &signal.Component{})
	f.Add("s", "signal", map[string]any{"context": map[string]any{"who": "ann"}}, map[string]string{"out": "sink.in"})

	f.Leader.Stop()
	if res := f.Send("s._control", map[string]any{"send": true}); res != nil {
		t.Errorf("reader acted: %v", res)
	}
	if got := f.Sink.Got(); len(got) != 0 {
		t.Fatalf("a reader sent %v", got)
	}

	f.Leader.Start()
	if res := f.Send("s._control", map[string]any{"send": true}); res != "ok" {
		t.Fatalf("send: %v", res)
	}
	got := f.Sink.Got()
	if len(got) != 1 || got[0].(map[string]any)["who"] != "ann" {
		t.Fatalf("sink got %v, want the settings' context once", got)
	}
	if f.Status.Metadata("s", signal.RunningKey) != "false" {
		t.Errorf("running after the flow returned: %q", f.Status.Metadata("s", signal.RunningKey))
	}
	// A send's own context overrides the settings'.
	f.Send("s._control", map[string]any{"send": true, "context": "mine"})
	if got := f.Sink.Got(); len(got) != 2 || got[1] != "mine" {
		t.Errorf("override: %v", got)
	}
}

func TestSignalResetCancelsARunningFlow(t *testing.T) {
	f := moduletest.New(t, &signal.Component{})
	f.Sink.Block = true
	f.Add("s", "signal", nil, map[string]string{"out": "sink.in"})
	done := make(chan any, 1)
	go func() { done <- f.Send("s._control", map[string]any{"send": true}) }()
	moduletest.Eventually(t, 5*time.Second, func() bool { return f.Status.Metadata("s", signal.RunningKey) == "true" }, "running=true in metadata")
	if res := f.Send("s._control", map[string]any{"reset": true}); res != nil {
		t.Fatalf("reset: %v", res)
	}
	select {
	case res := <-done:
		if err, ok := res.(error); !ok || !errors.Is(err, context.Canceled) {
			t.Errorf("the flow ended with %v, want context.Canceled", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reset did not cancel the flow")
	}
	if f.Status.Metadata("s", signal.RunningKey) != "false" {
		t.Errorf("running after reset: %q", f.Status.Metadata("s", signal.RunningKey))
	}
}

func TestTickerLeaderOnlyAndStopsOnLoss(t *testing.T) {
	f := moduletest.New(t, &ticker.Component{})
	f.Add("t", "ticker", map[string]any{"delay": 5, "context": "tick"}, map[string]string{"out": "sink.in"})

	f.Leader.Stop()
	f.Send("t._control", map[string]any{"start": true})
	if len(f.Sink.Got()) != 0 || f.Status.Writes() != 0 {
		t.Fatal("a reader started the ticker")
	}

	f.Leader.Start()
	go f.Send("t._control", map[string]any{"start": true})
	moduletest.Eventually(t, 5*time.Second, func() bool { return len(f.Sink.Got()) >= 3 }, "3 ticks")
	if f.Status.Metadata("t", ticker.RunningKey) != "true" {
		t.Error("running not recorded")
	}
	f.Leader.Stop()
	time.Sleep(50 * time.Millisecond) // the loop sees the lost term
	n := len(f.Sink.Got())
	time.Sleep(100 * time.Millisecond)
	if after := len(f.Sink.Got()); after != n {
		t.Errorf("%d ticks after leadership was lost", after-n)
	}
}

func TestTickerNewLeaderResumes(t *testing.T) {
	f := moduletest.New(t, &ticker.Component{})
	f.Add("t", "ticker", map[string]any{"delay": 5}, map[string]string{"out": "sink.in"})
	go f.Send("t._control", map[string]any{"start": true})
	moduletest.Eventually(t, 5*time.Second, func() bool { return len(f.Sink.Got()) >= 1 }, "a tick")
	f.Leader.Stop()
	time.Sleep(50 * time.Millisecond)
	n := len(f.Sink.Got())
	// A new term: the runtime delivers _reconcile with the node, whose
	// metadata says the ticker is started.
	f.Leader.Start()
	moduletest.Eventually(t, 5*time.Second, func() bool { return len(f.Sink.Got()) > n+2 }, "ticks resumed")
}

func TestTickerStaleStopNeverStarts(t *testing.T) {
	f := moduletest.New(t, &ticker.Component{})
	f.Add("t", "ticker", map[string]any{"delay": 5}, map[string]string{"out": "sink.in"})
	f.Send("t._control", map[string]any{"stop": true})
	f.Send("t._control", map[string]any{})
	time.Sleep(50 * time.Millisecond)
	if len(f.Sink.Got()) != 0 || f.Status.Metadata("t", ticker.RunningKey) == "true" {
		t.Errorf("a stop or an empty control started the ticker")
	}
}

func TestRouter(t *testing.T) {
	f := moduletest.New(t, &router.Component{})
	f.Add("r", "router", map[string]any{"routes": []map[string]any{
		{"port": "big", "condition": "$.n > 10"},
		{"port": "small", "condition": "$.n <= 10"},
	}, "default": true}, map[string]string{"big": "sink.in"})
	if res := f.Send("r.in", map[string]any{"n": 42}); res != "ok" {
		t.Fatalf("big: %v", res)
	}
	if res := f.Send("r.in", map[string]any{"n": 1}); res != nil {
		t.Errorf("small has no edge; got %v", res)
	}
	if got := f.Sink.Got(); len(got) != 1 {
		t.Errorf("sink got %v", got)
	}
	for _, bad := range []map[string]any{
		{"routes": []map[string]any{{"port": "x", "condition": "$.n >"}}},
		{"routes": []map[string]any{{"port": "a.b", "condition": "true"}}},
		{"routes": []map[string]any{{"port": "x", "condition": "true"}, {"port": "x", "condition": "false"}}},
	} {
		p := f.Problems("bad", "router", bad)
		if len(p) != 1 || p[0].Reason != moduletest.ReasonSettingsRejected {
			t.Errorf("%v: problems %+v", bad, p)
		}
	}
	// A condition that is not a boolean fails the message clearly.
	f.Add("r2", "router", map[string]any{"routes": []map[string]any{{"port": "x", "condition": "$.n"}}}, nil)
	if res, ok := f.Send("r2.in", map[string]any{"n": 1}).(error); !ok || !strings.Contains(res.Error(), "not a boolean") {
		t.Errorf("non-boolean condition: %v", res)
	}
}

func TestDelay(t *testing.T) {
	f := moduletest.New(t, &delay.Component{})
	f.Add("d", "delay", map[string]any{"duration": "30ms"}, map[string]string{"out": "sink.in"})
	start := time.Now()
	if res := f.Send("d.in", "x"); res != "ok" {
		t.Fatalf("delay: %v", res)
	}
	if took := time.Since(start); took < 30*time.Millisecond {
		t.Errorf("passed on after %s, want ≥ 30ms", took)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if res := f.SendContext(ctx, "d.in", "y"); !errors.Is(res.(error), context.Canceled) {
		t.Errorf("cancelled: %v", res)
	}
	if p := f.Problems("bad", "delay", map[string]any{"duration": "soon"}); len(p) != 1 || p[0].Reason != moduletest.ReasonSettingsRejected {
		t.Errorf("bad duration: %+v", p)
	}
}
