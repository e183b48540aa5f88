package replica

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/internal/transport"
)

// NewResolver returns the resolver a replica sends to other modules with,
// reading through r and bounding each look-up by timeout.
func NewResolver(r client.Reader, namespace string, timeout time.Duration) transport.Resolver {
	return resolver{c: r, ns: namespace, timeout: timeout}
}

// stuckReader is a reader stuck as a REST mapper's discovery is when the API
// server hangs: it heeds no context.
type stuckReader struct {
	client.Reader
	release chan struct{}
	running atomic.Int32
	most    atomic.Int32
}

func (s *stuckReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	n := s.running.Add(1)
	defer s.running.Add(-1)
	for m := s.most.Load(); n > m && !s.most.CompareAndSwap(m, n); m = s.most.Load() {
	}
	<-s.release
	return context.DeadlineExceeded
}

// TestStuckLookUpsAreCapped: look-ups that outlive their bound keep running
// until the API server answers, but no more than lookUps' slots of them at
// once; every caller still returns at its bound.
func TestStuckLookUpsAreCapped(t *testing.T) {
	s := &stuckReader{release: make(chan struct{})}
	r := resolver{c: s, ns: "ns", timeout: 20 * time.Millisecond}
	var (
		wg   sync.WaitGroup
		slow atomic.Int32
	)
	for range 4 * cap(lookUps) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			if got := r.Replicas(context.Background(), "other"); len(got) != 0 {
				t.Errorf("replicas %v from a stuck reader", got)
			}
			if time.Since(start) > 5*time.Second {
				slow.Add(1)
			}
		}()
	}
	waited := make(chan struct{})
	go func() {
		wg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Error("look-ups still blocked 10 s past their 20 ms bound")
	}
	close(s.release)
	<-waited // the reader answers: every look-up ends
	if n := slow.Load(); n > 0 {
		t.Errorf("%d of %d look-ups returned more than 5 s after their 20 ms bound", n, 4*cap(lookUps))
	}
	if most := s.most.Load(); most == 0 || most > int32(cap(lookUps)) {
		t.Errorf("%d look-ups stuck at once, want 1 to %d", most, cap(lookUps))
	}
	for deadline := time.Now().Add(5 * time.Second); len(lookUps) > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // polling the slots
	}
	if n := len(lookUps); n > 0 {
		t.Errorf("%d slots still taken after the reader answered", n)
	}
}
