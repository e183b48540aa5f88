package leader

import (
	"context"
	"fmt"
	"sync"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// History records every version of a Lease as a watch delivers it, with the
// CLOCK_MONOTONIC time it arrived: the outside view that CheckClaims holds a
// journal against. The watch resumes from the last version it saw when the
// API server goes away, so no version is missed while etcd keeps them.
type History struct {
	mu      sync.Mutex
	records []LeaseRecord
	done    chan struct{}
}

// WatchHistory records the Lease's history until ctx ends, starting with its
// version now (or its absence).
func WatchHistory(ctx context.Context, cs kubernetes.Interface, namespace, name string) (*History, error) {
	leases := cs.CoordinationV1().Leases(namespace)
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	list, err := leases.List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("lease history: %w", err)
	}
	h := &History{done: make(chan struct{})}
	for i := range list.Items {
		h.add(&list.Items[i])
	}
	w, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return leases.Watch(ctx, o)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("lease history: %w", err)
	}
	go func() {
		defer close(h.done)
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.ResultChan():
				if !ok {
					return
				}
				switch ev.Type {
				case watch.Added, watch.Modified:
					h.add(ev.Object.(*coordinationv1.Lease))
				case watch.Deleted:
					h.mu.Lock()
					h.records = append(h.records, LeaseRecord{Seen: int64(MonotonicNow())})
					h.mu.Unlock()
				}
			}
		}
	}()
	return h, nil
}

func (h *History) add(l *coordinationv1.Lease) {
	r := LeaseRecord{Seen: int64(MonotonicNow())}
	if l.Spec.HolderIdentity != nil {
		r.Holder = *l.Spec.HolderIdentity
	}
	if l.Spec.LeaseTransitions != nil {
		r.Transitions = *l.Spec.LeaseTransitions
	}
	h.mu.Lock()
	h.records = append(h.records, r)
	h.mu.Unlock()
}

// Records returns the history so far.
func (h *History) Records() []LeaseRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]LeaseRecord(nil), h.records...)
}

// Done is closed once the watch has stopped.
func (h *History) Done() <-chan struct{} { return h.done }
