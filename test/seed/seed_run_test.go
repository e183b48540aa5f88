package seed_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/module/moduletest"
)

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.buf.String() }

// Scaffolding that makes each sample a whole component.

type signalNode struct{ Signal }

func (*signalNode) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "seed-signal"} }
func (*signalNode) Instance() module.Component    { return &signalNode{} }
func (*signalNode) Ports() []module.Port {
	return []module.Port{{Name: v1alpha1.ControlPort, Configuration: Control{}}, {Name: OutPort, Source: true}}
}

type tickerNode struct{ Ticker }

func (*tickerNode) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "seed-ticker"} }
func (*tickerNode) Instance() module.Component    { return &tickerNode{} }
func (*tickerNode) Ports() []module.Port {
	return []module.Port{{Name: v1alpha1.SettingsPort, Configuration: TickerSettings{Delay: 5}},
		{Name: v1alpha1.ControlPort, Configuration: Control{}}, {Name: OutPort, Source: true}}
}

// Handle stores settings, which the ticker sample leaves to the reader, then
// hands everything to the sample.
func (t *tickerNode) Handle(ctx context.Context, handler module.Handler, port string, msg any) any {
	if port == v1alpha1.SettingsPort {
		t.mu.Lock()
		t.settings = msg.(TickerSettings)
		t.mu.Unlock()
		return nil
	}
	return t.Ticker.Handle(ctx, handler, port, msg)
}

// componentNode runs one of the Component samples as its Handle.
type componentNode struct {
	*Component
	name   string
	handle func(c *Component, ctx context.Context, output module.Handler, port string, msg any) any
}

func (n *componentNode) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: n.name} }
func (n *componentNode) Instance() module.Component {
	return &componentNode{Component: &Component{}, name: n.name, handle: n.handle}
}
func (n *componentNode) Ports() []module.Port {
	return []module.Port{{Name: v1alpha1.SettingsPort, Configuration: Settings{}}, {Name: "input"}}
}
func (n *componentNode) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	return n.handle(n.Component, ctx, output, port, msg)
}

func sample(name string, h func(*Component, context.Context, module.Handler, string, any) any) *componentNode {
	return &componentNode{Component: &Component{}, name: name, handle: h}
}

func TestSignalSample(t *testing.T) {
	f := moduletest.New(t, &signalNode{})
	f.Add("s", "seed-signal", nil, map[string]string{OutPort: "sink.in"})
	f.Leader.Stop()
	f.Send("s._control", map[string]any{"send": true, "context": "x"})
	if len(f.Sink.Got()) != 0 {
		t.Fatal("the sample acted on a reader")
	}
	f.Leader.Start()
	if res := f.Send("s._control", map[string]any{"send": true, "context": "x"}); res != "ok" {
		t.Fatalf("send: %v", res)
	}
	if got := f.Sink.Got(); len(got) != 1 || got[0] != "x" {
		t.Fatalf("out got %v", got)
	}
	if res := f.Send("s._control", map[string]any{"reset": true}); res != nil {
		t.Errorf("reset returned %v, want ctx.Err() of a live context", res)
	}
}

func TestTickerSample(t *testing.T) {
	f := moduletest.New(t, &tickerNode{})
	f.Add("t", "seed-ticker", nil, map[string]string{OutPort: "sink.in"})
	done := make(chan any, 1)
	go func() { done <- f.Send("t._control", map[string]any{"start": true}) }()
	moduletest.Eventually(t, 5*time.Second, func() bool { return len(f.Sink.Got()) >= 3 }, "the sample ticks on the leader")
	// Losing leadership ends the emit loop: the control context ends with the term.
	f.Leader.Stop()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the emit loop outlived leadership")
	}
}

func TestFailoverSample(t *testing.T) {
	f := moduletest.New(t, sample("seed-failover", (*Component).HandleFailover))
	before := leaderWork.Load()
	f.Add("c", "seed-failover", nil, nil)
	if leaderWork.Load() != before+1 {
		t.Fatalf("onBecameLeader ran %d times on the leader's first reconcile", leaderWork.Load()-before)
	}
	f.Leader.Stop()
	moduletest.Eventually(t, 5*time.Second, func() bool {
		return strings.Contains(logBuf.String(), "lost leadership, stopping leader-only work")
	}, "onLostLeadership on losing the lease")
	f.Leader.Start()
	moduletest.Eventually(t, 5*time.Second, func() bool { return leaderWork.Load() == before+2 }, "taking over again")
}

func TestBestPracticeLoopSeesLoss(t *testing.T) {
	f := moduletest.New(t, sample("seed-loop", func(c *Component, ctx context.Context, out module.Handler, port string, msg any) any {
		if port != v1alpha1.ControlPort {
			return nil
		}
		return c.HandleGoodLoop(ctx, out, port, msg)
	}))
	f.Add("l", "seed-loop", nil, nil)
	f.Send("l._control", map[string]any{})
	moduletest.Eventually(t, 5*time.Second, func() bool { return work.Load() > 5 }, "the loop works on the leader")
	f.Leader.Stop()
	time.Sleep(20 * time.Millisecond) // the loop's next check sees the loss
	n := work.Load()
	time.Sleep(50 * time.Millisecond)
	if after := work.Load(); after > n+1 {
		t.Errorf("the loop did %d more units of work after leadership was lost", after-n)
	}
}

func TestBestPracticeIdempotentUpdate(t *testing.T) {
	f := moduletest.New(t, sample("seed-idem", func(c *Component, ctx context.Context, out module.Handler, port string, msg any) any {
		if port != "input" {
			return nil
		}
		return c.HandleIdempotent(ctx, out, port, msg)
	}))
	f.Add("i", "seed-idem", nil, nil)
	before := inits.Load()
	f.Send("i.input", 1)
	f.Send("i.input", 2)
	if got := inits.Load() - before; got != 1 {
		t.Errorf("initialized %d times", got)
	}
	if f.Status.Metadata("i", "initialized") != "true" {
		t.Error("metadata not written")
	}
}

func TestBasicAndGracefulPatterns(t *testing.T) {
	f := moduletest.New(t,
		sample("seed-basic", (*Component).HandleBasic),
		sample("seed-graceful", (*Component).HandleGraceful),
		sample("seed-checking", (*Component).HandleChecking))
	f.Add("b", "seed-basic", map[string]any{"Delay": 3}, nil)
	f.Add("g", "seed-graceful", nil, nil)
	f.Add("k", "seed-checking", nil, nil)
	in, ctl := inputs.Load(), controls.Load()
	f.Send("b.input", "m")
	f.Send("g.input", "m")
	f.Send("b._control", map[string]any{})
	f.Leader.Stop()
	f.Send("b._control", map[string]any{})
	f.Send("b.input", "m")
	if got := inputs.Load() - in; got != 3 {
		t.Errorf("inputs handled %d times, want 3 (leader and reader alike)", got)
	}
	if got := controls.Load() - ctl; got != 1 {
		t.Errorf("control handled %d times, want 1 (the leader's)", got)
	}
}
