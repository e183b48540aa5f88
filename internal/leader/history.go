package leader

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// History records every version of a Lease as a watch delivers it, with the
// CLOCK_MONOTONIC time it arrived: the outside view that CheckClaims holds a
// journal against. The watch resumes from the last version it saw whenever it
// ends (the API server restarting, say), so no version is missed while etcd
// keeps them; a version etcd no longer has is counted in Gaps.
type History struct {
	mu      sync.Mutex
	records []LeaseRecord
	lastRV  string
	gaps    int
}

// WatchHistory records the Lease's history until ctx ends, starting with its
// version now (or its absence).
func WatchHistory(ctx context.Context, cs kubernetes.Interface, namespace, name string) (*History, error) {
	h := &History{}
	if err := h.list(ctx, cs, namespace, name); err != nil {
		return nil, fmt.Errorf("lease history: %w", err)
	}
	go func() {
		for ctx.Err() == nil {
			if h.follow(ctx, cs, namespace, name) {
				// The version to resume from is gone: start again from now.
				h.mu.Lock()
				h.gaps++
				h.mu.Unlock()
				for ctx.Err() == nil && h.list(ctx, cs, namespace, name) != nil {
					pause(ctx, time.Second)
				}
			}
			pause(ctx, 200*time.Millisecond)
		}
	}()
	return h, nil
}

func (h *History) list(ctx context.Context, cs kubernetes.Interface, namespace, name string) error {
	list, err := cs.CoordinationV1().Leases(namespace).List(ctx, metav1.ListOptions{FieldSelector: nameSelector(name)})
	if err != nil {
		return err
	}
	for i := range list.Items {
		h.add(&list.Items[i])
	}
	h.mu.Lock()
	h.lastRV = list.ResourceVersion
	h.mu.Unlock()
	return nil
}

func nameSelector(name string) string {
	return fields.OneTermEqualSelector("metadata.name", name).String()
}

// follow watches from the last version seen until the watch ends, and
// reports whether it ended because that version is gone.
func (h *History) follow(ctx context.Context, cs kubernetes.Interface, namespace, name string) (gone bool) {
	leases := cs.CoordinationV1().Leases(namespace)
	h.mu.Lock()
	rv := h.lastRV
	h.mu.Unlock()
	w, err := watchtools.NewRetryWatcherWithContext(ctx, rv, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = nameSelector(name)
			return leases.Watch(ctx, o)
		},
	})
	if err != nil {
		return false
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case ev, ok := <-w.ResultChan():
			if !ok {
				return false
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				h.add(ev.Object.(*coordinationv1.Lease))
			case watch.Deleted:
				l := ev.Object.(*coordinationv1.Lease)
				h.mu.Lock()
				h.records = append(h.records, LeaseRecord{Seen: int64(MonotonicNow())})
				h.lastRV = l.ResourceVersion
				h.mu.Unlock()
			case watch.Error:
				if apierrors.IsGone(apierrors.FromObject(ev.Object)) || apierrors.IsResourceExpired(apierrors.FromObject(ev.Object)) {
					return true
				}
			}
		}
	}
}

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
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
	h.lastRV = l.ResourceVersion
	h.mu.Unlock()
}

// Records returns the history so far.
func (h *History) Records() []LeaseRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]LeaseRecord(nil), h.records...)
}

// Gaps counts the times the watch could not resume where it stopped, so
// versions may be missing.
func (h *History) Gaps() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gaps
}
