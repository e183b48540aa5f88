package scheduler

import (
	"context"
	"errors"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
)

// TestEdgesFollowTheirTargetsInstance: an edge keeps the instance it found
// only while the scheduler's instances stay as they were; a node removed,
// or made again, is seen by the next message.
func TestEdgesFollowTheirTargetsInstance(t *testing.T) {
	first := &keeper{}
	s, out := keeperFlow(t, first)
	send := func() any { return out(context.Background(), "out", Greeting{}) }
	if r := send(); r != nil {
		t.Fatal(r)
	}
	old := s.instance("k")
	s.Remove("k")
	if r := send(); !errors.Is(asError(r), ErrNoNode) {
		t.Fatalf("after the node's removal: %v, want ErrNoNode", r)
	}
	s.Update(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "k"},
		Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "keeper"}})
	if s.instance("k") == old {
		t.Fatal("the node's new instance is the old one")
	}
	if r := send(); r != nil {
		t.Fatal(r)
	}
	if e := s.instance("e").edges["out"][0]; s.target(e) != s.instance("k") {
		t.Error("the edge keeps the instance it found before the node was made again")
	}
	// keeper's Instance returns itself: both instances record in first.
	if len(first.got) != 2 {
		t.Errorf("handled %d messages, want 2", len(first.got))
	}
}

func asError(r any) error {
	err, _ := r.(error)
	return err
}
