package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/metrics"
	"github.com/tinymod/tinymod/internal/scheduler"
)

// Signal delivery defaults.
const (
	// DefaultAcceptanceWindow is how long a handler may run before its signal
	// counts as delivered while it keeps running.
	DefaultAcceptanceWindow = time.Second
	// DefaultFailedTTL is how long a failed signal is kept.
	DefaultFailedTTL = time.Hour
)

// ConditionDelivered is the condition a failed signal carries.
const ConditionDelivered = "Delivered"

// LeaderStatus is leadership with terms, as the elector provides it.
type LeaderStatus interface {
	leader.Status
	leader.Terms
}

// TinySignalReconciler delivers signals on the leader: to the target node's
// port through the scheduler, one at a time per node in creation order, then
// deletes them; failures are retried with bounded backoff and end as
// phase Failed, kept for FailedTTL.
type TinySignalReconciler struct {
	// Client reads from the cache and writes.
	Client client.Client
	// Reader reads without the cache, after a write conflict.
	Reader client.Reader
	// Scheduler runs the target nodes.
	Scheduler *scheduler.Scheduler
	// Leader gates everything: readers do nothing with signals.
	Leader LeaderStatus
	// Recorder records Events for failed signals; nil records none.
	Recorder events.EventRecorder
	// Namespace of the module.
	Namespace string
	// AcceptanceWindow defaults to DefaultAcceptanceWindow.
	AcceptanceWindow time.Duration
	// FailedTTL defaults to DefaultFailedTTL.
	FailedTTL time.Duration
	// Metrics registers tinymod_signals_total; nil registers none.
	Metrics prometheus.Registerer

	retry   retryPolicy
	resync  chan event.GenericEvent
	counter *prometheus.CounterVec

	mu      sync.Mutex
	workers map[string]bool         // nodes with a delivery worker running
	done    map[types.UID]time.Time // signals finished here, hidden from a lagging cache
}

// SetupWithManager registers the reconciler.
func (r *TinySignalReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.AcceptanceWindow == 0 {
		r.AcceptanceWindow = DefaultAcceptanceWindow
	}
	if r.FailedTTL == 0 {
		r.FailedTTL = DefaultFailedTTL
	}
	r.retry = defaultRetry
	r.resync = make(chan event.GenericEvent, 4096)
	r.workers = map[string]bool{}
	r.done = map[types.UID]time.Time{}
	r.counter = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tinymod_signals_total", Help: "Signals processed by the leader, by result: delivered, retried or failed.",
	}, []string{"result"})
	var err error
	if r.counter, err = metrics.Register(r.Metrics, r.counter); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("tinysignal").
		For(&v1alpha1.TinySignal{}).
		WatchesRawSource(source.Channel(r.resync, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2, SkipNameValidation: ptr(true)}).
		Complete(r)
}

// Resync queues every signal again: a new leader picks up pending ones.
func (r *TinySignalReconciler) Resync(ctx context.Context) {
	var list v1alpha1.TinySignalList
	if err := r.Client.List(ctx, &list, client.InNamespace(r.Namespace)); err != nil {
		return
	}
	for i := range list.Items {
		select {
		case r.resync <- event.GenericEvent{Object: &list.Items[i]}:
		case <-ctx.Done():
			return
		}
	}
}

// Reconcile starts the delivery worker of the signal's node, or deletes a
// failed signal whose time is up. Readers return at once.
func (r *TinySignalReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	term, leading := r.Leader.Term()
	if !leading {
		return ctrl.Result{}, nil
	}
	sig := &v1alpha1.TinySignal{}
	if err := r.Client.Get(ctx, req.NamespacedName, sig); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if sig.Status.Phase == v1alpha1.SignalFailed {
		failedAt := sig.CreationTimestamp.Time
		if c := meta.FindStatusCondition(sig.Status.Conditions, ConditionDelivered); c != nil {
			failedAt = c.LastTransitionTime.Time
		}
		if left := time.Until(failedAt.Add(r.FailedTTL)); left > 0 {
			return ctrl.Result{RequeueAfter: left}, nil
		}
		err := r.Client.Delete(ctx, sig, client.Preconditions{UID: &sig.UID})
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	r.mu.Lock()
	if r.workers[sig.Spec.Node] {
		r.mu.Unlock()
		return ctrl.Result{}, nil // the node's worker will reach it
	}
	r.workers[sig.Spec.Node] = true
	r.mu.Unlock()
	go r.work(term, sig.Spec.Node)
	return ctrl.Result{}, nil
}

// work delivers the node's pending signals, oldest first, one at a time,
// until none is left or the term ends.
func (r *TinySignalReconciler) work(term context.Context, node string) {
	for {
		sig := r.nextFor(term, node)
		if sig == nil {
			return
		}
		r.deliver(term, sig)
		if term.Err() != nil {
			r.mu.Lock()
			delete(r.workers, node)
			r.mu.Unlock()
			return
		}
	}
}

// nextFor returns the node's oldest pending signal, or nil after removing the
// worker mark when there is none (under the lock Reconcile takes, so no signal
// is left without a worker).
func (r *TinySignalReconciler) nextFor(ctx context.Context, node string) *v1alpha1.TinySignal {
	var list v1alpha1.TinySignalList
	err := r.Client.List(ctx, &list, client.InNamespace(r.Namespace))
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil || ctx.Err() != nil {
		delete(r.workers, node)
		return nil
	}
	var pending []v1alpha1.TinySignal
	present := map[types.UID]bool{}
	for _, s := range list.Items {
		present[s.UID] = true
		if s.Spec.Node != node || s.Status.Phase == v1alpha1.SignalFailed || !s.DeletionTimestamp.IsZero() {
			continue
		}
		if _, finished := r.done[s.UID]; finished {
			continue
		}
		pending = append(pending, s)
	}
	for uid, at := range r.done { // forget what the cache no longer shows
		if !present[uid] && time.Since(at) > time.Minute {
			delete(r.done, uid)
		}
	}
	if len(pending) == 0 {
		delete(r.workers, node)
		return nil
	}
	sort.Slice(pending, func(i, j int) bool { return createdBefore(&pending[i], &pending[j]) })
	return pending[0].DeepCopy()
}

// createdBefore orders signals by creation: the timestamp, then, within its
// one-second resolution, etcd's revision at creation, which a signal keeps
// until the leader first writes its status (and the head of a node's queue
// is the only one that has been written).
func createdBefore(a, b *v1alpha1.TinySignal) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	if (a.Status.Attempts > 0) != (b.Status.Attempts > 0) {
		return a.Status.Attempts > 0
	}
	ra, errA := strconv.ParseUint(a.ResourceVersion, 10, 64)
	rb, errB := strconv.ParseUint(b.ResourceVersion, 10, 64)
	if errA == nil && errB == nil && ra != rb {
		return ra < rb
	}
	return a.Name < b.Name
}

// deliver takes one signal to its end: deleted, failed, or left for the next
// leader when the term ends.
func (r *TinySignalReconciler) deliver(term context.Context, sig *v1alpha1.TinySignal) {
	for term.Err() == nil {
		if !r.authorize(term, "signal "+sig.Name) {
			return
		}
		sig.Status.Phase = v1alpha1.SignalDelivering
		sig.Status.Attempts++
		if err := r.Client.Status().Update(term, sig); err != nil {
			switch {
			case apierrors.IsNotFound(err):
				r.finish(sig)
				return
			case apierrors.IsConflict(err):
				// Someone wrote it since the cache saw it: read it fresh.
				fresh := &v1alpha1.TinySignal{}
				if err := r.Reader.Get(term, client.ObjectKeyFromObject(sig), fresh); err != nil {
					if apierrors.IsNotFound(err) {
						r.finish(sig)
						return
					}
					pause(term, r.retry.Base)
					continue
				}
				if fresh.UID != sig.UID || fresh.Status.Phase == v1alpha1.SignalFailed {
					r.finish(sig)
					return
				}
				sig = fresh
			default:
				pause(term, r.retry.Base)
			}
			continue
		}
		if !r.authorize(term, "signal delivery "+sig.Name) {
			return
		}
		result := r.attempt(term, sig)
		if term.Err() != nil {
			return // the next leader delivers it again
		}
		act, wait := r.retry.next(classify(result), sig.Status.Attempts)
		switch act {
		case deleteSignal:
			if err := r.Client.Delete(context.Background(), sig, client.Preconditions{UID: &sig.UID}); err != nil && !apierrors.IsNotFound(err) {
				pause(term, r.retry.Base)
				continue
			}
			r.finish(sig)
			r.counter.WithLabelValues("delivered").Inc()
			return
		case failSignal:
			r.fail(term, sig, result)
			return
		case retrySignal:
			r.counter.WithLabelValues("retried").Inc()
			if err, ok := result.(error); ok {
				sig.Status.LastError = err.Error()
			}
			pause(term, wait)
		}
	}
}

// authorize confirms leadership right before leader-only work; when it has
// run out, it waits for the term to end with it, so that the caller, seeing
// the term over, leaves the signal to the next leader.
func (r *TinySignalReconciler) authorize(term context.Context, action string) bool {
	if leader.Authorize(r.Leader, action) {
		return true
	}
	<-term.Done()
	return false
}

// attempt hands the signal to the scheduler and waits for Handle to return or
// for the acceptance window to pass.
func (r *TinySignalReconciler) attempt(term context.Context, sig *v1alpha1.TinySignal) any {
	var data any
	if sig.Spec.Data != nil {
		data = json.RawMessage(sig.Spec.Data.Raw)
	}
	msg := scheduler.Msg{To: sig.Spec.Node + "." + sig.Spec.Port, Data: data, ID: string(sig.UID)}
	results := make(chan any, 1)
	go func() { results <- r.Scheduler.Handle(term, msg) }()
	window := time.NewTimer(r.AcceptanceWindow)
	defer window.Stop()
	select {
	case res := <-results:
		return res
	case <-window.C:
		return nil // accepted: the handler runs on
	case <-term.Done():
		return term.Err()
	}
}

func (r *TinySignalReconciler) fail(ctx context.Context, sig *v1alpha1.TinySignal, result any) {
	msg := fmt.Sprint(result)
	if err, ok := result.(error); ok {
		msg = err.Error()
	}
	sig.Status.Phase = v1alpha1.SignalFailed
	sig.Status.LastError = msg
	meta.SetStatusCondition(&sig.Status.Conditions, metav1.Condition{
		Type: ConditionDelivered, Status: metav1.ConditionFalse, Reason: "Failed",
		Message: fmt.Sprintf("gave up after %d attempts: %s", sig.Status.Attempts, msg),
	})
	if err := r.Client.Status().Update(ctx, sig); err != nil && !apierrors.IsNotFound(err) {
		return // the next reconcile tries again
	}
	r.finish(sig)
	r.counter.WithLabelValues("failed").Inc()
	if r.Recorder != nil {
		r.Recorder.Eventf(sig, nil, corev1.EventTypeWarning, "DeliveryFailed", "Deliver",
			"signal for %s.%s failed after %d attempts: %s", sig.Spec.Node, sig.Spec.Port, sig.Status.Attempts, msg)
	}
}

func (r *TinySignalReconciler) finish(sig *v1alpha1.TinySignal) {
	r.mu.Lock()
	r.done[sig.UID] = time.Now()
	r.mu.Unlock()
}

// pause waits for d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
