package scheduler

import (
	"context"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
)

// generations records the generation of every node its _reconcile gets.
type generations struct {
	mu   *sync.Mutex
	seen *[]int64
}

func (g generations) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "gens"} }
func (g generations) Instance() module.Component    { return g }
func (g generations) Ports() []module.Port          { return nil }
func (g generations) Handle(_ context.Context, _ module.Handler, port string, msg any) any {
	if n, ok := msg.(*v1alpha1.TinyNode); ok && port == v1alpha1.ReconcilePort {
		g.mu.Lock()
		*g.seen = append(*g.seen, n.Generation)
		g.mu.Unlock()
	}
	return nil
}

// TestLeadershipChangeNeverGoesBackInTime: the _reconcile a leadership
// change delivers never carries an older node than one an update already
// delivered.
func TestLeadershipChangeNeverGoesBackInTime(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []int64
	)
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{generations{mu: &mu, seen: &seen}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	node := func(gen int64) *v1alpha1.TinyNode {
		return &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "n", UID: "u", Generation: gen}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "gens"}}
	}
	s.Update(context.Background(), node(1))
	for gen := int64(2); gen < 400; gen++ {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); s.LeadershipChanged() }()
		s.Update(context.Background(), node(gen))
		wg.Wait()
	}
	// The last leadership change's delivery may still be under way.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n >= 797 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 797 {
		t.Errorf("%d deliveries of _reconcile, want 399 updates' and 398 leadership changes'", len(seen))
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] {
			t.Fatalf("_reconcile went back from generation %d to %d (deliveries %d and %d of %d)", seen[i-1], seen[i], i-1, i, len(seen))
		}
	}
}
