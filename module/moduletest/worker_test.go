package moduletest_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/module/moduletest"
)

// gated writes metadata on "in"; armed, its _reconcile that carries that
// metadata blocks until released (it holds the Flow's status worker).
type gated struct {
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gated) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "gated"} }
func (g *gated) Instance() module.Component    { return g }
func (g *gated) Ports() []module.Port          { return []module.Port{{Name: "in"}} }
func (g *gated) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case "in":
		return output(ctx, v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) { n.Status.Metadata["g"] = "1" })
	case v1alpha1.ReconcilePort:
		if n := msg.(*v1alpha1.TinyNode); n.Status.Metadata["g"] == "1" && g.armed.Load() {
			g.once.Do(func() { close(g.entered) })
			<-g.release
		}
	}
	return nil
}

type WSettings struct {
	V int `json:"v"`
}

// versioned records its settings, and writes metadata on "in".
type versioned struct {
	mu       sync.Mutex
	v        int
	sawWrite atomic.Bool // a _reconcile carrying its own write arrived
}

func (w *versioned) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "versioned"} }
func (w *versioned) Instance() module.Component    { return w }
func (w *versioned) Ports() []module.Port {
	return []module.Port{{Name: v1alpha1.SettingsPort, Configuration: WSettings{}}, {Name: "in"}}
}
func (w *versioned) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.SettingsPort:
		w.mu.Lock()
		w.v = msg.(WSettings).V
		w.mu.Unlock()
	case "in":
		return output(ctx, v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) { n.Status.Metadata["w"] = "1" })
	case v1alpha1.ReconcilePort:
		if msg.(*v1alpha1.TinyNode).Status.Metadata["w"] == "1" {
			w.sawWrite.Store(true)
		}
	}
	return nil
}

func (w *versioned) settings() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.v
}

// TestStatusWorkerDoesNotRollBackSettings: a status written before the test
// changed a node's settings (Apply) reaches the node with its new settings,
// not the ones it had at the write.
func TestStatusWorkerDoesNotRollBackSettings(t *testing.T) {
	g := &gated{entered: make(chan struct{}), release: make(chan struct{})}
	w := &versioned{}
	f := moduletest.New(t, g, w)
	f.Add("g", "gated", nil, nil)
	f.Add("w", "versioned", WSettings{V: 1}, nil)

	g.armed.Store(true)
	f.Send("g.in", nil) // the worker takes g's write and blocks in its _reconcile
	released := false
	defer func() {
		if !released {
			close(g.release)
		}
	}()
	select {
	case <-g.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the status worker never delivered g's write")
	}
	f.Send("w.in", nil)                                         // w writes status: queued with spec v=1
	f.Apply(moduletest.Node("w", "versioned", WSettings{V: 2})) // the test moves w on
	if got := w.settings(); got != 2 {
		t.Fatalf("settings %d after Apply, want 2", got)
	}
	close(g.release)
	released = true
	moduletest.Eventually(t, 5*time.Second, w.sawWrite.Load, "w's own write came back on _reconcile")
	if got := w.settings(); got != 2 {
		t.Errorf("settings %d after the status worker ran, want 2: the worker rolled the node back to an older spec", got)
	}
}

// TestStatusWorkerDoesNotReviveRemovedNodes: a status written before the
// test removed a node does not bring the node back.
func TestStatusWorkerDoesNotReviveRemovedNodes(t *testing.T) {
	g := &gated{entered: make(chan struct{}), release: make(chan struct{})}
	w := &versioned{}
	f := moduletest.New(t, g, w)
	f.Add("g", "gated", nil, nil)
	f.Add("w", "versioned", WSettings{V: 1}, nil)

	g.armed.Store(true)
	f.Send("g.in", nil)
	released := false
	defer func() {
		if !released {
			close(g.release)
		}
	}()
	select {
	case <-g.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the status worker never delivered g's write")
	}
	f.Send("w.in", nil)
	f.Remove("w")
	if f.Ports("w") != nil {
		t.Fatal("w still runs after Remove")
	}
	close(g.release)
	released = true
	// A correct worker never brings w back: wait a bounded while for the bug.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if f.Ports("w") != nil {
			t.Fatal("the status worker revived node w after Remove")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
