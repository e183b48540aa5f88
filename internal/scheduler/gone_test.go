package scheduler

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
)

// destroyedStart blocks in its first settings until released, and records
// whether a message reached Handle after Destroy.
type destroyedStart struct {
	entered   chan struct{}
	release   chan struct{}
	once      sync.Once
	destroyed atomic.Bool
	lateIn    atomic.Int32 // messages on "in" handled after Destroy
	in        atomic.Int32
}

func (s *destroyedStart) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "slow"} }
func (s *destroyedStart) Instance() module.Component    { return s }
func (s *destroyedStart) Ports() []module.Port {
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Configuration: RelaySettings{}},
		{Name: "in", Configuration: Greeting{}},
	}
}
func (s *destroyedStart) Destroy() { s.destroyed.Store(true) }
func (s *destroyedStart) Handle(ctx context.Context, _ module.Handler, port string, _ any) any {
	switch port {
	case v1alpha1.SettingsPort:
		s.once.Do(func() { close(s.entered) })
		<-s.release
	case "in":
		s.in.Add(1)
		if s.destroyed.Load() {
			s.lateIn.Add(1)
		}
	}
	return nil
}

func waitingInAwaitStart() bool {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return strings.Contains(string(buf[:n]), "(*instance).awaitStart")
}

// TestWaitingMessageNotHandedToDestroyedInstance: a message that waits for
// its node's first settings (awaitStart) when the node is deleted fails with
// ErrNoNode; it is never handed to the component just destroyed.
func TestWaitingMessageNotHandedToDestroyedInstance(t *testing.T) {
	c := &destroyedStart{entered: make(chan struct{}), release: make(chan struct{})}
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{c}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	node := &v1alpha1.TinyNode{
		ObjectMeta: metav1.ObjectMeta{Name: "n", Namespace: "ns", UID: "u"},
		Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "slow", Ports: []v1alpha1.TinyNodePortConfig{
			{Port: v1alpha1.SettingsPort, Configuration: raw(t, map[string]any{"prefix": "p"})},
		}},
	}
	updated := make(chan struct{})
	go func() { s.Update(context.Background(), node); close(updated) }()
	defer func() { close(c.release); <-updated }()
	<-c.entered

	handled := make(chan any, 1)
	go func() { handled <- s.Handle(context.Background(), Msg{To: "n.in", Data: Greeting{Who: "early"}}) }()
	deadline := time.Now().Add(3 * time.Second)
	for !waitingInAwaitStart() {
		if time.Now().After(deadline) {
			t.Fatal("the message never waited for the node's start")
		}
		time.Sleep(2 * time.Millisecond)
	}

	s.Remove("n") // the node is deleted while its first settings still run
	if !c.destroyed.Load() {
		t.Fatal("Remove did not Destroy the component")
	}
	var res any
	select {
	case res = <-handled:
	case <-time.After(StartWait + 2*time.Second):
		t.Fatal("the message never came back")
	}
	if n := c.lateIn.Load(); n > 0 {
		t.Errorf("a message that waited for the start was handed to the Destroyed component (result %v)", res)
	}
}
