package scheduler

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
)

// slowStart blocks in its first settings until released, and records the
// order of what it is handed. With loop set, its settings send on out, which
// an edge leads back to its own in.
type slowStart struct {
	mu      sync.Mutex
	seen    []string
	entered chan struct{} // closed when the settings arrive
	release chan struct{}
	loop    bool
}

func (s *slowStart) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "slow"} }
func (s *slowStart) Instance() module.Component    { return s }
func (s *slowStart) Ports() []module.Port {
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Configuration: RelaySettings{}},
		{Name: "in", Configuration: Greeting{}},
		{Name: "out", Source: true, Configuration: Greeting{}},
	}
}
func (s *slowStart) Handle(ctx context.Context, output module.Handler, port string, _ any) any {
	s.mu.Lock()
	s.seen = append(s.seen, port)
	s.mu.Unlock()
	if port == v1alpha1.SettingsPort {
		close(s.entered)
		if s.loop {
			return output(ctx, "out", Greeting{Who: "self"})
		}
		<-s.release
	}
	return nil
}

func (s *slowStart) order() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

func slowNode(t *testing.T, edges ...v1alpha1.TinyNodeEdge) *v1alpha1.TinyNode {
	return &v1alpha1.TinyNode{
		ObjectMeta: metav1.ObjectMeta{Name: "n", Namespace: "ns", UID: "u"},
		Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "slow", Edges: edges, Ports: []v1alpha1.TinyNodePortConfig{
			{Port: v1alpha1.SettingsPort, Configuration: raw(t, map[string]any{"prefix": "p"})},
		}},
	}
}

// TestMessagesWaitForTheNodesStart: a message that reaches a node while its
// first settings are still being delivered (an edge racing the node's first
// reconcile) is handled after the settings and _reconcile, not before.
func TestMessagesWaitForTheNodesStart(t *testing.T) {
	c := &slowStart{entered: make(chan struct{}), release: make(chan struct{})}
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{c}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)

	node := slowNode(t)
	updated := make(chan []Problem, 1)
	go func() { updated <- s.Update(context.Background(), node) }()
	<-c.entered

	handled := make(chan any, 1)
	go func() { handled <- s.Handle(context.Background(), Msg{To: "n.in", Data: Greeting{Who: "early"}}) }()
	select {
	case res := <-handled:
		t.Fatalf("the message was handled (%v) while the node's settings were still arriving: %v", res, c.order())
	case <-time.After(200 * time.Millisecond):
	}
	close(c.release)
	if p := <-updated; len(p) > 0 {
		t.Fatal(p)
	}
	select {
	case res := <-handled:
		if res != nil {
			t.Fatalf("result %v", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the message was never handled")
	}
	if got, want := c.order(), []string{v1alpha1.SettingsPort, v1alpha1.ReconcilePort, "in"}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}

// TestWhatAStartingNodeSendsItselfDoesNotWait: a node whose first settings
// send along an edge back to itself is not held up by its own start.
func TestWhatAStartingNodeSendsItselfDoesNotWait(t *testing.T) {
	c := &slowStart{entered: make(chan struct{}), loop: true}
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{c}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)

	node := slowNode(t, wire("self", "out", "n.in"))
	updated := make(chan []Problem, 1)
	go func() { updated <- s.Update(context.Background(), node) }()
	select {
	case p := <-updated:
		if len(p) > 0 {
			t.Fatal(p)
		}
	case <-time.After(StartWait / 2):
		t.Fatalf("the first update waited on itself: %v", c.order())
	}
	if got, want := c.order(), []string{v1alpha1.SettingsPort, "in", v1alpha1.ReconcilePort}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}
