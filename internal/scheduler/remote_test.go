package scheduler

import (
	"context"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/module"
)

// TestRemoteTargetsAreLookedUpOncePerWiring: messages along an edge to
// another module's node look the node up once, not once a message, until the
// edge is wired again (which the target node's changes cause).
func TestRemoteTargetsAreLookedUpOncePerWiring(t *testing.T) {
	var lookups atomic.Int32
	remote := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "far"}, Spec: v1alpha1.TinyNodeSpec{Module: "other", Component: "x"}}
	tr := &recordingTransport{}
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{&relay{destroyed: &atomic.Int32{}}},
		Leader: leader.Always, Transport: tr,
		Lookup: func(name string) (*v1alpha1.TinyNode, bool) {
			lookups.Add(1)
			return remote, name == "far"
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	node := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "a", UID: "u"}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "relay",
		Edges: []v1alpha1.TinyNodeEdge{{ID: "e", Port: "out", To: "far.in"}}}}
	if p := s.Update(context.Background(), node); len(p) > 0 {
		t.Fatal(p)
	}
	afterWiring := lookups.Load()
	for range 5 {
		if res := s.Handle(context.Background(), Msg{To: "a.in", Data: Greeting{Who: "x"}}); res != nil {
			t.Fatal(res)
		}
	}
	if n := lookups.Load() - afterWiring; n != 1 {
		t.Errorf("%d look-ups for 5 messages, want 1", n)
	}
	if len(tr.msgs) != 5 || tr.msgs[0].To != "far.in" {
		t.Fatalf("sent %+v", tr.msgs)
	}
	// The target moved to another module: the source is
	// reconciled again, its edges wired again, and the next message looks
	// the node up afresh.
	remote = &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "far"}, Spec: v1alpha1.TinyNodeSpec{Module: "third", Component: "x"}}
	if p := s.Update(context.Background(), node.DeepCopy()); len(p) > 0 {
		t.Fatal(p)
	}
	if res := s.Handle(context.Background(), Msg{To: "a.in", Data: Greeting{Who: "x"}}); res != nil {
		t.Fatal(res)
	}
	if got := tr.modules[len(tr.modules)-1]; got != "third" {
		t.Errorf("sent to module %s after the target moved, want third", got)
	}
}
