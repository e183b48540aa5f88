package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
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

// signalNodeIndex indexes TinySignals by spec.node in the cache.
const signalNodeIndex = "spec.node"

// TinySignalReconciler delivers signals on the leader: to the target node's
// port through the scheduler, one at a time per node in creation order, then
// deletes them; failures are retried with bounded backoff and end as
// phase Failed, kept for FailedTTL.
//
// Its work queue is keyed by target node, so that a node's signals are
// handled by one worker at a time and a signal that arrives while its node's
// worker is busy is seen when that worker is done (the queue marks the key
// dirty). It takes only signals for nodes of its own module, and for nodes
// that do not exist: a signal for another module's node is left to that
// module's leader, and waits while that module is down.
type TinySignalReconciler struct {
	// Client reads from the cache and writes.
	Client client.Client
	// Reader reads without the cache, after a write conflict.
	Reader client.Reader
	// Scheduler runs the target nodes.
	Scheduler *scheduler.Scheduler
	// Leader gives the term signals are delivered in: readers do nothing
	// with signals.
	Leader leader.Source
	// Events, when set, writes a Warning Event for each failed signal, as
	// Identity, trying again while the API server fails.
	Events bool
	// Identity names this replica in the Events it writes.
	Identity string
	// Namespace of the module.
	Namespace string
	// AcceptanceWindow defaults to DefaultAcceptanceWindow.
	AcceptanceWindow time.Duration
	// FailedTTL defaults to DefaultFailedTTL.
	FailedTTL time.Duration
	// Metrics registers tinymod_signals_total; nil registers none.
	Metrics prometheus.Registerer
	// MaxConcurrentDeliveries bounds how many nodes get signals at once.
	// Defaults to 8.
	MaxConcurrentDeliveries int

	retry   retryPolicy
	resync  chan event.GenericEvent
	counter *prometheus.CounterVec

	inflight atomic.Int32 // deliveries under way, for a graceful stop to wait on

	beganMu sync.Mutex
	asking  *leader.Term // the term whose read is under way
	began   struct {     // the signals' version when the current term began
		term    *leader.Term
		version uint64
		ok      bool
	}

	mu        sync.Mutex
	settled   map[types.UID]*settled  // signals whose delivery has ended here
	unwritten map[string]int          // by node: settled signals whose deletion or Failed has not landed
	notBefore map[types.UID]time.Time // signals waiting out a retry backoff
	lastError map[types.UID]string    // a retried signal's error, for its next status write
}

// settled is how a signal's delivery ended on this replica, kept until its
// deletion or Failed status has been written (a failed write is retried, never
// the delivery) and then for a while, to hide it from a lagging cache.
type settled struct {
	failed  bool   // else delivered
	message string // why it failed
	node    string
	written bool
	at      time.Time
}

// SetupWithManager registers the reconciler and its cache index.
func (r *TinySignalReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := r.prepare(); err != nil {
		return err
	}
	// The index needs the API server's discovery, which may fail a request
	// or two at start-up: try again for a while rather than stop.
	err := RetryStartup(context.Background(), func() error {
		return mgr.GetFieldIndexer().IndexField(context.Background(), &v1alpha1.TinySignal{}, signalNodeIndex,
			func(o client.Object) []string { return []string{o.(*v1alpha1.TinySignal).Spec.Node} })
	})
	if err != nil {
		return fmt.Errorf("index signals by node: %w", err)
	}
	return r.watch(mgr)
}

// prepare sets defaults and what delivery keeps.
func (r *TinySignalReconciler) prepare() error {
	if r.AcceptanceWindow == 0 {
		r.AcceptanceWindow = DefaultAcceptanceWindow
	}
	if r.FailedTTL == 0 {
		r.FailedTTL = DefaultFailedTTL
	}
	if r.MaxConcurrentDeliveries == 0 {
		r.MaxConcurrentDeliveries = 8
	}
	r.retry = defaultRetry
	r.resync = make(chan event.GenericEvent, 4096)
	r.settled = map[types.UID]*settled{}
	r.unwritten = map[string]int{}
	r.notBefore = map[types.UID]time.Time{}
	r.lastError = map[types.UID]string{}
	r.counter = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tinymod_signals_total", Help: "Signals processed by the leader, by result: delivered, retried or failed.",
	}, []string{"result"})
	var err error
	r.counter, err = metrics.Register(r.Metrics, r.counter)
	return err
}

// watch registers the controller: signals by their node, and the nodes whose
// coming or going changes whose signals they are.
func (r *TinySignalReconciler) watch(mgr ctrl.Manager) error {
	module := r.Scheduler.Module().Name
	return ctrl.NewControllerManagedBy(mgr).
		Named("tinysignal").
		Watches(&v1alpha1.TinySignal{}, handler.EnqueueRequestsFromMapFunc(r.signalNode)).
		// A node that appears in (or moves to) this module may have signals waiting.
		Watches(&v1alpha1.TinyNode{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			if n, ok := o.(*v1alpha1.TinyNode); ok && n.Spec.Module == module {
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: n.Namespace, Name: n.Name}}}
			}
			return nil
		}), builder.WithPredicates(predicate.Funcs{
			CreateFunc: func(eventCreate) bool { return true },
			UpdateFunc: func(e eventUpdate) bool {
				return e.ObjectOld.(*v1alpha1.TinyNode).Spec.Module != e.ObjectNew.(*v1alpha1.TinyNode).Spec.Module
			},
			DeleteFunc:  func(eventDelete) bool { return false },
			GenericFunc: func(eventGeneric) bool { return false },
		})).
		// A node that goes, whatever its module: its signals now belong to
		// no module, and any leader fails them after the retry budget.
		Watches(&v1alpha1.TinyNode{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}}}
		}), builder.WithPredicates(predicate.Funcs{
			CreateFunc:  func(eventCreate) bool { return false },
			UpdateFunc:  func(eventUpdate) bool { return false },
			DeleteFunc:  func(eventDelete) bool { return true },
			GenericFunc: func(eventGeneric) bool { return false },
		})).
		WatchesRawSource(source.Channel(r.resync, handler.EnqueueRequestsFromMapFunc(r.signalNode))).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: r.MaxConcurrentDeliveries,
			SkipNameValidation:      ptr(true),
			// API errors are retried per node with backoff, from 100 ms to 10 s.
			RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](100*time.Millisecond, 10*time.Second),
		}).
		Complete(r)
}

// signalNode maps a signal to its node's key, unless the node belongs to
// another module.
func (r *TinySignalReconciler) signalNode(ctx context.Context, o client.Object) []reconcile.Request {
	sig, ok := o.(*v1alpha1.TinySignal)
	if !ok || !r.ours(ctx, sig.Spec.Node) {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: sig.Namespace, Name: sig.Spec.Node}}}
}

// ours reports whether this module's leader handles signals for node: the
// node is this module's, or there is no such node (its signals fail after the
// retry budget, whichever leader gets there first).
func (r *TinySignalReconciler) ours(ctx context.Context, node string) bool {
	n := &v1alpha1.TinyNode{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: node}, n)
	return err != nil || n.Spec.Module == r.Scheduler.Module().Name
}

// oursNow is ours, asked of the API server when the cache has no such node:
// a cache that lags behind a node's creation (a watch cut by a failing API
// server) must not make this leader take another module's signal.
func (r *TinySignalReconciler) oursNow(ctx context.Context, node string) (bool, error) {
	n := &v1alpha1.TinyNode{}
	key := client.ObjectKey{Namespace: r.Namespace, Name: node}
	err := r.Client.Get(ctx, key, n)
	if apierrors.IsNotFound(err) {
		err = bounded(ctx, func(ctx context.Context) error { return r.Reader.Get(ctx, key, n) })
	}
	switch {
	case apierrors.IsNotFound(err):
		return true, nil // no such node: its signals fail after the retry budget
	case err != nil:
		return false, fmt.Errorf("read node %s: %w", node, err)
	}
	return n.Spec.Module == r.Scheduler.Module().Name, nil
}

// Drain waits, up to timeout, for deliveries under way to be settled: a
// graceful stop calls it after leader-only work has stopped and before the
// lease is released, so that a signal whose Handle returned is not handed to
// the next leader again.
func (r *TinySignalReconciler) Drain(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for r.inflight.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// Resync queues the nodes of every signal again: a new leader picks up
// pending ones.
func (r *TinySignalReconciler) Resync(ctx context.Context) {
	if term := r.Leader.Current(); term != nil {
		r.askTermBegan(ctx, term) // before any signal is looked at, so that new ones are
	}
	var list v1alpha1.TinySignalList
	if err := r.Client.List(ctx, &list, client.InNamespace(r.Namespace)); err != nil {
		return
	}
	seen := map[string]bool{}
	for i := range list.Items {
		if seen[list.Items[i].Spec.Node] {
			continue
		}
		seen[list.Items[i].Spec.Node] = true
		select {
		case r.resync <- event.GenericEvent{Object: &list.Items[i]}:
		case <-ctx.Done():
			return
		}
	}
}

// Reconcile delivers the pending signals of one node, oldest first, one at a
// time, while this replica leads in the term it started with; it deletes
// failed signals whose time is up. Readers return at once.
func (r *TinySignalReconciler) Reconcile(_ context.Context, req ctrl.Request) (ctrl.Result, error) {
	term := r.Leader.Current()
	if term == nil {
		return ctrl.Result{}, nil // a new term queues every node again
	}
	// Leader-only work runs under the term, and its writes carry it to the fence.
	ctx := leader.WithTerm(term.Context(), term)
	for ctx.Err() == nil {
		// Asked again before each signal: the node may have appeared, or
		// moved to another module, since the last.
		if mine, err := r.oursNow(ctx, req.Name); err != nil || !mine {
			return ctrl.Result{}, err
		}
		sig, wait, err := r.next(ctx, req.Name)
		if err != nil || sig == nil {
			return ctrl.Result{RequeueAfter: wait}, err
		}
		if left := r.backoffLeft(sig.UID); left > 0 {
			return ctrl.Result{RequeueAfter: left}, nil
		}
		again, err := r.deliver(ctx, term, sig)
		if err != nil {
			return ctrl.Result{}, err
		}
		if again > 0 {
			return ctrl.Result{RequeueAfter: again}, nil
		}
		if !term.Valid() {
			return ctrl.Result{}, nil // the next term picks the node up again
		}
	}
	return ctrl.Result{}, nil
}

// next returns the node's oldest pending signal, after settling the writes of
// signals already delivered or failed here and deleting failed signals whose
// time is up; with none pending, it returns when to look again (for the next
// failed signal to expire), or zero.
func (r *TinySignalReconciler) next(ctx context.Context, node string) (*v1alpha1.TinySignal, time.Duration, error) {
	var list v1alpha1.TinySignalList
	if err := r.Client.List(ctx, &list, client.InNamespace(r.Namespace), client.MatchingFields{signalNodeIndex: node}); err != nil {
		return nil, 0, fmt.Errorf("list signals of node %s: %w", node, err)
	}
	var (
		pending []*v1alpha1.TinySignal
		wait    time.Duration
	)
	present := map[types.UID]bool{}
	for i := range list.Items {
		sig := &list.Items[i]
		present[sig.UID] = true
		if !sig.DeletionTimestamp.IsZero() {
			continue
		}
		if st := r.settledOf(sig.UID); st != nil {
			if err := r.settle(ctx, sig, st); err != nil {
				return nil, 0, err
			}
			if !st.failed || sig.Status.Phase != v1alpha1.SignalFailed {
				continue // delivered, or Failed not in the cache yet
			}
			// Failed, as the cache now shows: kept until its time is up.
		}
		if sig.Status.Phase == v1alpha1.SignalFailed {
			if left := r.expiresIn(sig); left > 0 {
				if wait == 0 || left < wait {
					wait = left
				}
			} else if err := bounded(ctx, func(ctx context.Context) error { return r.Client.Delete(ctx, sig, client.Preconditions{UID: &sig.UID}) }); err != nil && !apierrors.IsNotFound(err) {
				return nil, 0, fmt.Errorf("delete expired signal %s: %w", sig.Name, err)
			}
			continue
		}
		pending = append(pending, sig)
	}
	r.forgetSettled(node, present)
	if len(pending) == 0 {
		return nil, wait, nil
	}
	sort.Slice(pending, func(i, j int) bool { return createdBefore(pending[i], pending[j]) })
	return pending[0].DeepCopy(), 0, nil
}

func (r *TinySignalReconciler) expiresIn(sig *v1alpha1.TinySignal) time.Duration {
	failedAt := sig.CreationTimestamp.Time
	if c := meta.FindStatusCondition(sig.Status.Conditions, ConditionDelivered); c != nil {
		failedAt = c.LastTransitionTime.Time
	}
	return time.Until(failedAt.Add(r.FailedTTL))
}

func (r *TinySignalReconciler) settledOf(uid types.UID) *settled {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.settled[uid]
}

func (r *TinySignalReconciler) backoffLeft(uid types.UID) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Until(r.notBefore[uid])
}

// forgetSettled drops what this replica remembers of signals the cache no
// longer shows, once the cache has had time to catch up with their deletion.
func (r *TinySignalReconciler) forgetSettled(node string, present map[types.UID]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for uid, st := range r.settled {
		// present lists node's signals only: another node's unwritten
		// record is still wanted.
		if !present[uid] && (st.written || st.node == node) && time.Since(st.at) > time.Minute {
			r.written(st) // gone, whoever deleted it
			delete(r.settled, uid)
		}
	}
	for uid, at := range r.notBefore {
		if !present[uid] && time.Since(at) > time.Minute {
			delete(r.notBefore, uid)
			delete(r.lastError, uid)
		}
	}
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

// deliver makes one attempt at a signal and returns how long to wait before
// the next (zero: go on with the node's next signal). An error is an API
// request that failed: the work queue retries it with backoff, and what was
// decided stands: a delivered signal is never handed over again because its
// deletion failed, nor a failed one because its Failed status did not land.
func (r *TinySignalReconciler) deliver(ctx context.Context, term *leader.Term, sig *v1alpha1.TinySignal) (time.Duration, error) {
	if !term.Confirm("signal " + sig.Name) {
		return 0, nil // the term is over: the next leader delivers it
	}
	attempted := sig.DeepCopy()
	attempted.Status.Phase = v1alpha1.SignalDelivering
	attempted.Status.Attempts++
	r.mu.Lock()
	if msg, ok := r.lastError[sig.UID]; ok {
		attempted.Status.LastError = msg
	}
	r.mu.Unlock()
	if r.claimAlongside(term, sig) {
		return r.deliverClaiming(ctx, term, attempted)
	}
	if err := bounded(ctx, func(ctx context.Context) error { return r.Client.Status().Update(ctx, attempted) }); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			// Deleted meanwhile: remember it as settled, so that a cache
			// that still shows it does not make this worker try again and
			// again.
			r.settle1(sig, &settled{written: true})
			return 0, nil
		case apierrors.IsConflict(err):
			// Written since the cache saw it (by this leader a moment ago, the
			// cache lagging): the next pass reads it again. Attempts count
			// only writes that landed, so this costs no attempt.
			return 0, r.waitFresh(ctx, sig)
		}
		return 0, fmt.Errorf("mark signal %s delivering: %w", sig.Name, err)
	}
	if !term.Confirm("signal delivery " + sig.Name) {
		return 0, nil
	}
	r.inflight.Add(1)
	defer r.inflight.Add(-1)
	return r.conclude(ctx, term, attempted, r.attempt(ctx, term, attempted))
}

// deliverClaiming is deliver's first attempt at a signal no earlier leader
// can have seen: the claim (Delivering, one attempt) is written while Handle
// runs rather than before, and Handle starts one API round trip sooner.
func (r *TinySignalReconciler) deliverClaiming(ctx context.Context, term *leader.Term, attempted *v1alpha1.TinySignal) (time.Duration, error) {
	if !term.Confirm("signal delivery " + attempted.Name) {
		return 0, nil
	}
	r.inflight.Add(1)
	defer r.inflight.Add(-1)
	claim := attempted.DeepCopy() // Handle reads attempted meanwhile
	claimed := make(chan error, 1)
	go func() {
		claimed <- bounded(ctx, func(ctx context.Context) error { return r.Client.Status().Update(ctx, claim) })
	}()
	result := r.attempt(ctx, term, attempted)
	if act, _ := r.retry.next(classify(result), attempted.Status.Attempts); act == deleteSignal {
		// Delivered: the deletion supersedes the claim and need not wait
		// for it (a claim that lands after it finds nothing).
		return r.conclude(ctx, term, attempted, result)
	}
	switch err := <-claimed; {
	case err == nil:
		attempted.ResourceVersion = claim.ResourceVersion
	case apierrors.IsNotFound(err):
		// Deleted while Handle ran: nothing is left to settle.
		r.settle1(attempted, &settled{written: true})
		return 0, nil
	default:
		// Changed since the cache saw it, or the write failed: Handle has
		// run all the same, and its outcome is settled as any other's. The
		// attempt is not counted durably, as after any failed write.
	}
	return r.conclude(ctx, term, attempted, result)
}

// claimAlongside reports whether sig's claim may be written while its
// Handle runs: it is the signal's first attempt, and the signal was created
// after this term began, so no earlier leader can have delivered it and a
// cache lagging behind an earlier leader's writes cannot show it as new; this
// replica has not tried it before (its cache may lag behind its own claim);
// and every signal this replica settled for the node has had its deletion (or
// Failed) land, so that a leader cut off from the API server has at most one
// signal per node whose Handle ran and whose outcome is not written, the one
// the next leader delivers again. Everything else is claimed before Handle,
// which a write conflict, or an API server out of reach, stops.
func (r *TinySignalReconciler) claimAlongside(term *leader.Term, sig *v1alpha1.TinySignal) bool {
	if sig.Status.Attempts != 0 || (sig.Status.Phase != "" && sig.Status.Phase != v1alpha1.SignalPending) {
		return false
	}
	r.mu.Lock()
	unwritten := r.unwritten[sig.Spec.Node]
	_, tried := r.lastError[sig.UID] // a cache behind this replica's own claim shows no attempt
	r.mu.Unlock()
	if unwritten > 0 || tried {
		return false
	}
	version, err := strconv.ParseUint(sig.ResourceVersion, 10, 64)
	if err != nil {
		return false
	}
	began, ok := r.termBegan(term)
	return ok && version > began
}

// termBegan returns the signals' resource version read from the API server
// after term began (a quorum read): a signal whose version is newer was
// created after the term began, or written since, and a first attempt has
// no earlier write. It never waits: until the read has been made (Resync
// makes it as the term begins), signals are claimed before Handle.
func (r *TinySignalReconciler) termBegan(term *leader.Term) (uint64, bool) {
	r.beganMu.Lock()
	defer r.beganMu.Unlock()
	if r.began.term == term {
		return r.began.version, r.began.ok
	}
	if r.asking != term {
		r.asking = term
		go r.askTermBegan(term.Context(), term)
	}
	return 0, false
}

// askTermBegan makes termBegan's read for term; a failed one is made again
// when a signal next asks.
func (r *TinySignalReconciler) askTermBegan(ctx context.Context, term *leader.Term) {
	var list v1alpha1.TinySignalList
	err := bounded(ctx, func(ctx context.Context) error {
		return r.Reader.List(ctx, &list, client.InNamespace(r.Namespace), client.Limit(1))
	})
	r.beganMu.Lock()
	defer r.beganMu.Unlock()
	if r.asking == term {
		r.asking = nil
	}
	if err != nil || r.began.term == term {
		return
	}
	version, err := strconv.ParseUint(list.ResourceVersion, 10, 64)
	r.began.term, r.began.version, r.began.ok = term, version, err == nil
}

// conclude settles an attempt whose Handle has returned or been accepted.
func (r *TinySignalReconciler) conclude(ctx context.Context, term *leader.Term, attempted *v1alpha1.TinySignal, result any) (time.Duration, error) {
	if !term.Valid() {
		return 0, nil // the lease was lost during the attempt: the next leader delivers it again
	}
	// The outcome is written even when a graceful stop has begun (the
	// term's context ended, the lease still held): under the term, which the
	// fence checks, not under its context.
	settleCtx := leader.WithTerm(context.Background(), term)
	act, wait := r.retry.next(classify(result), attempted.Status.Attempts)
	switch act {
	case deleteSignal:
		r.counter.WithLabelValues("delivered").Inc()
		return 0, r.settle(settleCtx, attempted, r.settle1(attempted, &settled{}))
	case failSignal:
		r.counter.WithLabelValues("failed").Inc()
		return 0, r.settle(settleCtx, attempted, r.settle1(attempted, &settled{failed: true, message: resultMessage(result)}))
	}
	r.counter.WithLabelValues("retried").Inc()
	r.mu.Lock()
	r.notBefore[attempted.UID] = time.Now().Add(wait)
	r.lastError[attempted.UID] = resultMessage(result)
	r.mu.Unlock()
	return wait, nil
}

// waitFresh waits, briefly, for the cache to show a version of sig at least
// as new as the API server's.
func (r *TinySignalReconciler) waitFresh(ctx context.Context, sig *v1alpha1.TinySignal) error {
	fresh := &v1alpha1.TinySignal{}
	if err := bounded(ctx, func(ctx context.Context) error { return r.Reader.Get(ctx, client.ObjectKeyFromObject(sig), fresh) }); err != nil {
		return client.IgnoreNotFound(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		cached := &v1alpha1.TinySignal{}
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(sig), cached); err != nil || !leader.Newer(cached.ResourceVersion, fresh.ResourceVersion) {
			return nil
		}
		pause(ctx, 10*time.Millisecond)
	}
	return nil
}

// settle1 records how a signal's delivery ended here and returns the record.
func (r *TinySignalReconciler) settle1(sig *v1alpha1.TinySignal, st *settled) *settled {
	st.at, st.node = time.Now(), sig.Spec.Node
	r.mu.Lock()
	if old := r.settled[sig.UID]; old != nil {
		r.written(old)
	}
	r.settled[sig.UID] = st
	if !st.written {
		r.unwritten[st.node]++
	}
	delete(r.notBefore, sig.UID)
	delete(r.lastError, sig.UID)
	r.mu.Unlock()
	return st
}

// settle writes what was decided for sig: its deletion, or its Failed status.
func (r *TinySignalReconciler) settle(ctx context.Context, sig *v1alpha1.TinySignal, st *settled) error {
	r.mu.Lock()
	written := st.written
	r.mu.Unlock()
	if written {
		return nil
	}
	if !st.failed {
		if err := bounded(ctx, func(ctx context.Context) error { return r.Client.Delete(ctx, sig, client.Preconditions{UID: &sig.UID}) }); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete delivered signal %s: %w", sig.Name, err)
		}
	} else if err := r.fail(ctx, sig, st.message); err != nil {
		return err
	}
	r.mu.Lock()
	r.written(st)
	r.mu.Unlock()
	return nil
}

// written marks st written, and no longer its node's to wait for; the caller
// holds mu.
func (r *TinySignalReconciler) written(st *settled) {
	if !st.written {
		if r.unwritten[st.node]--; r.unwritten[st.node] <= 0 {
			delete(r.unwritten, st.node)
		}
	}
	st.written, st.at = true, time.Now()
}

func resultMessage(result any) string {
	if err, ok := result.(error); ok {
		return err.Error()
	}
	return fmt.Sprint(result)
}

// attempt hands the signal to the scheduler and waits for Handle to return or
// for the acceptance window to pass.
func (r *TinySignalReconciler) attempt(ctx context.Context, term *leader.Term, sig *v1alpha1.TinySignal) any {
	var data any
	if sig.Spec.Data != nil {
		data = json.RawMessage(sig.Spec.Data.Raw)
	}
	msg := scheduler.Msg{To: sig.Spec.Node + "." + sig.Spec.Port, Data: data, ID: string(sig.UID)}
	results := make(chan any, 1)
	go func() { results <- r.Scheduler.Handle(ctx, msg) }()
	window := time.NewTimer(r.AcceptanceWindow)
	defer window.Stop()
	ended := ctx.Done()
	for {
		select {
		case res := <-results:
			return res
		case <-window.C:
			return nil // accepted: the handler runs on
		case <-ended:
			if !term.Valid() {
				return ctx.Err() // the lease is gone: the next leader delivers it again
			}
			// A graceful stop: leader-only work is over but the lease is
			// still held, so a Handle that returns now is settled here
			// rather than run again by the next leader.
			ended = nil
		}
	}
}

// fail writes the Failed status, on a fresh copy after a conflict.
func (r *TinySignalReconciler) fail(ctx context.Context, sig *v1alpha1.TinySignal, msg string) error {
	for attempt := 0; ; attempt++ {
		sig.Status.Phase = v1alpha1.SignalFailed
		sig.Status.LastError = msg
		meta.SetStatusCondition(&sig.Status.Conditions, metav1.Condition{
			Type: ConditionDelivered, Status: metav1.ConditionFalse, Reason: "Failed",
			Message: fmt.Sprintf("gave up after %d attempts: %s", sig.Status.Attempts, msg),
		})
		err := bounded(ctx, func(ctx context.Context) error { return r.Client.Status().Update(ctx, sig) })
		switch {
		case err == nil:
		case apierrors.IsNotFound(err):
			return nil
		case apierrors.IsConflict(err) && attempt < 3:
			fresh := &v1alpha1.TinySignal{}
			if err := bounded(ctx, func(ctx context.Context) error { return r.Reader.Get(ctx, client.ObjectKeyFromObject(sig), fresh) }); err != nil {
				return client.IgnoreNotFound(err)
			}
			if fresh.UID != sig.UID {
				return nil
			}
			fresh.Status.Attempts = max(fresh.Status.Attempts, sig.Status.Attempts)
			sig = fresh
			continue
		default:
			return fmt.Errorf("mark signal %s failed: %w", sig.Name, err)
		}
		break
	}
	if term := leader.TermFrom(ctx); r.Events && term != nil {
		recordSurely(r.Client, term, warning{regarding: referTo(sig, "TinySignal"), reason: "DeliveryFailed", action: "Deliver",
			note:       fmt.Sprintf("signal for %s.%s failed after %d attempts: %s", sig.Spec.Node, sig.Spec.Port, sig.Status.Attempts, msg),
			controller: "tinymod/" + r.Scheduler.Module().Name, instance: r.Identity})
	}
	return nil
}

// RetryStartup runs f until it succeeds, for up to about a minute, backing
// off from 100 ms to 5 s: start-up steps that an API server's passing failure
// must not turn into a replica that exits.
func RetryStartup(ctx context.Context, f func() error) error {
	wait := 100 * time.Millisecond
	for deadline := time.Now().Add(time.Minute); ; {
		err := f()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		pause(ctx, wait)
		wait = min(2*wait, 5*time.Second)
	}
}

// requestTimeout bounds one API request of signal delivery: a request that
// hangs must not hold its node's signals until the term ends.
const requestTimeout = 30 * time.Second

// bounded runs one API request with ctx bounded by requestTimeout.
func bounded(ctx context.Context, request func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return request(ctx)
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
