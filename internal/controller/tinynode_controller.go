package controller

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/scheduler"
)

// NodeFinalizer keeps a TinyNode whose component may own cluster resources
// (it declares the _client port) until the leader has removed them. Other
// nodes carry none, so that they can be deleted once their module is gone.
const NodeFinalizer = "operator.tinysystems.io/node"

// Condition reasons on a TinyNode besides the scheduler's problem reasons.
const (
	ReasonRunning = "Running"
)

// TinyNodeReconciler runs the module's TinyNodes through the scheduler.
type TinyNodeReconciler struct {
	// Client reads from the cache and writes finalizers.
	Client client.Client
	// Scheduler runs the node instances.
	Scheduler *scheduler.Scheduler
	// Leader gives this replica's leadership term.
	Leader leader.Source
	// Status writes node status on the leader.
	Status *StatusWriter
	// Recorder records Events on the leader; nil records none.
	Recorder events.EventRecorder
	// Identity of this replica, the reporting instance of the Events it
	// writes itself.
	Identity string
	// Namespace of the module.
	Namespace string
	// Cleanup, if set, removes the cluster resources a deleted node made
	// through its _client port, before the leader releases its finalizer.
	Cleanup func(ctx context.Context, node string) error

	resync chan event.GenericEvent

	mu      sync.Mutex
	applied map[string]appliedSpec
	panics  map[string]nodePanic
}

// nodePanic is the last panic of a node's component code on this replica, kept
// for the node's status until its spec changes.
type nodePanic struct {
	message    string
	generation int64
	evented    time.Time // when it last became an Event
}

// panicEventEvery bounds the Events of one node's panics.
const panicEventEvery = time.Minute

// Resync queues every node of the module again: a new leader renders all
// their statuses.
func (r *TinyNodeReconciler) Resync(ctx context.Context) {
	var list v1alpha1.TinyNodeList
	if err := r.Client.List(ctx, &list, client.InNamespace(r.Namespace)); err != nil {
		return
	}
	for i := range list.Items {
		if list.Items[i].Spec.Module != r.Scheduler.Module().Name {
			continue
		}
		select {
		case r.resync <- event.GenericEvent{Object: &list.Items[i]}:
		case <-ctx.Done():
			return
		}
	}
}

// appliedSpec is what the scheduler made of a node's spec.
type appliedSpec struct {
	generation int64
	uid        types.UID
	problems   []scheduler.Problem
}

// edgeTargetIndex indexes the cached TinyNodes by the nodes their edges
// point at, so that a node's creation or deletion finds the nodes pointing
// at it without walking (and copying) every node of the namespace.
const edgeTargetIndex = "tinymod.edgeTargets"

// edgeTargets lists the nodes o's edges point at.
func edgeTargets(o client.Object) []string {
	n, ok := o.(*v1alpha1.TinyNode)
	if !ok {
		return nil
	}
	var out []string
	for _, e := range n.Spec.Edges {
		if target, _, err := scheduler.SplitTarget(e.To); err == nil && target != n.Name && !slices.Contains(out, target) {
			out = append(out, target)
		}
	}
	return out
}

// SetupWithManager registers the reconciler: it watches the module's nodes,
// and re-reconciles a node when a node its edges point at appears or goes.
func (r *TinyNodeReconciler) SetupWithManager(mgr ctrl.Manager) error {
	module := r.Scheduler.Module().Name
	r.resync = make(chan event.GenericEvent, 4096)
	// The indexer asks the API server for the kind's mapping: a failed
	// request (a restarting API server) is retried, as at every start-up step.
	if err := RetryStartup(context.Background(), func() error {
		return mgr.GetFieldIndexer().IndexField(context.Background(), &v1alpha1.TinyNode{}, edgeTargetIndex, edgeTargets)
	}); err != nil {
		return fmt.Errorf("index nodes by edge target: %w", err)
	}
	ours := predicate.NewPredicateFuncs(func(o client.Object) bool {
		n, ok := o.(*v1alpha1.TinyNode)
		return ok && n.Spec.Module == module
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("tinynode").
		// Only this module's nodes, and a node that has just left it (its
		// instance must go). Every field is set: predicate.Funcs passes any
		// event whose function is nil.
		For(&v1alpha1.TinyNode{}, builder.WithPredicates(predicate.Funcs{
			CreateFunc: func(e eventCreate) bool { return ours.Create(e) },
			DeleteFunc: func(e eventDelete) bool { return ours.Delete(e) },
			UpdateFunc: func(e eventUpdate) bool {
				old, ok := e.ObjectOld.(*v1alpha1.TinyNode)
				return ours.Update(e) || ok && old.Spec.Module == module
			},
			GenericFunc: func(e eventGeneric) bool { return ours.Generic(e) },
		})).
		Watches(&v1alpha1.TinyNode{}, handler.EnqueueRequestsFromMapFunc(r.nodesPointingAt),
			builder.WithPredicates(predicate.Funcs{
				CreateFunc:  func(eventCreate) bool { return true },
				DeleteFunc:  func(eventDelete) bool { return true },
				UpdateFunc:  func(e eventUpdate) bool { return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() },
				GenericFunc: func(eventGeneric) bool { return false },
			})).
		WatchesRawSource(source.Channel(r.resync, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4, ReconciliationTimeout: time.Minute, SkipNameValidation: ptr(true)}).
		Complete(r)
}

// nodesPointingAt lists the module's nodes with an edge to o.
func (r *TinyNodeReconciler) nodesPointingAt(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1alpha1.TinyNodeList
	if err := r.Client.List(ctx, &list, client.InNamespace(r.Namespace), client.MatchingFields{edgeTargetIndex: o.GetName()}); err != nil {
		return nil
	}
	var out []reconcile.Request
	for _, n := range list.Items {
		if n.Spec.Module != r.Scheduler.Module().Name || n.Name == o.GetName() {
			continue
		}
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: n.Namespace, Name: n.Name}})
	}
	return out
}

// Reconcile hands the node to the scheduler on every replica; on the leader it
// also keeps the finalizer and asks for the status to be written.
func (r *TinyNodeReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	// The node as the cache holds it, shared with the cache and never
	// changed here: the scheduler keeps it (a copy of each node beside the
	// cache's would be a kilobyte a node), and each write below is made on a
	// copy of its own.
	node := &v1alpha1.TinyNode{}
	if err := r.Client.Get(ctx, req.NamespacedName, node, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	// The cache's objects carry no kind; this part of node is its own.
	node.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("TinyNode"))
	term := r.Leader.Current()
	isLeader := term.Confirm("node " + req.Name)
	ctx = leader.WithTerm(ctx, term)

	if node.Spec.Module != r.Scheduler.Module().Name {
		// Another module's node (or one that left this module): its own
		// module's leader keeps its finalizer and resources. Never touch them.
		r.forget(node.Name)
		return ctrl.Result{}, nil
	}
	if !node.DeletionTimestamp.IsZero() {
		r.forget(node.Name)
		if isLeader && controllerutil.ContainsFinalizer(node, NodeFinalizer) {
			// What the node made through its _client port goes with it.
			if r.Cleanup != nil && r.Scheduler.UsesClient(node.Spec.Component) {
				if err := r.Cleanup(ctx, node.Name); err != nil {
					return ctrl.Result{}, fmt.Errorf("remove the resources of node %s: %w", node.Name, err)
				}
			}
			if err := r.removeFinalizer(ctx, node); err != nil {
				return ctrl.Result{}, fmt.Errorf("release node %s: %w", node.Name, err)
			}
		}
		return ctrl.Result{}, nil
	}

	// A node that may own cluster resources (its component has a _client
	// port) gets its finalizer before it runs, so that nothing it makes
	// outlives it. Any other carries none (one set by an earlier version is
	// taken off), so that it can be deleted once its module is gone.
	owns := r.Scheduler.UsesClient(node.Spec.Component)
	if isLeader && owns {
		if err := r.addFinalizer(ctx, node); err != nil {
			return ctrl.Result{}, err
		}
	}
	if r.Status != nil && r.Status.Behind(node) {
		// The cache has not caught up with this replica's own status write;
		// the write's event brings the node again (the requeue is a net).
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	problems := r.Scheduler.Update(ctx, node)
	changed := r.remember(node, problems)
	if isLeader && !owns && controllerutil.ContainsFinalizer(node, NodeFinalizer) {
		if err := r.removeFinalizer(ctx, node); err != nil {
			return ctrl.Result{}, fmt.Errorf("remove the finalizer of node %s: %w", node.Name, err)
		}
	}

	if !isLeader {
		// Stay in sync; a reader never writes.
		return ctrl.Result{RequeueAfter: 30 * time.Second}, nil
	}
	if changed && r.Recorder != nil {
		r.recordProblems(node, problems)
	}
	// The status follows without holding the node up: the writer batches
	// it, writes it behind the client's rate limit and tries again if the
	// write fails, so the leader runs nodes as fast as a reader does.
	r.Status.Refresh(node.Name)
	return ctrl.Result{RequeueAfter: 5 * time.Minute}, nil
}

// addFinalizer writes the node's finalizer, on a copy: node is the cache's.
func (r *TinyNodeReconciler) addFinalizer(ctx context.Context, node *v1alpha1.TinyNode) error {
	if controllerutil.ContainsFinalizer(node, NodeFinalizer) {
		return nil
	}
	written := node.DeepCopy()
	controllerutil.AddFinalizer(written, NodeFinalizer)
	if err := r.Client.Update(ctx, written); err != nil {
		return fmt.Errorf("add finalizer to node %s: %w", node.Name, err)
	}
	return nil
}

// removeFinalizer takes the node's finalizer off, on a copy: node is the
// cache's. A node already gone is not an error.
func (r *TinyNodeReconciler) removeFinalizer(ctx context.Context, node *v1alpha1.TinyNode) error {
	written := node.DeepCopy()
	controllerutil.RemoveFinalizer(written, NodeFinalizer)
	if err := r.Client.Update(ctx, written); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

func (r *TinyNodeReconciler) forget(name string) {
	r.Scheduler.Remove(name)
	if r.Status != nil {
		r.Status.Forget(name)
	}
	r.mu.Lock()
	delete(r.applied, name)
	delete(r.panics, name)
	r.mu.Unlock()
}

// Panicked is the scheduler's OnPanic: the panic becomes the node's
// status.error (until its spec changes) and, on the leader, an Event, at most
// one a minute per node.
func (r *TinyNodeReconciler) Panicked(name string, err error) {
	now := time.Now()
	node, found := r.Lookup(name)
	r.mu.Lock()
	if r.panics == nil {
		r.panics = map[string]nodePanic{}
	}
	prev := r.panics[name]
	applied := r.applied[name]
	generation := applied.generation
	if found {
		generation = node.Generation // the spec being applied, when the panic came from applying it
	} else if applied.uid != "" {
		// Gone already (a Destroy that panics as its node is deleted): the
		// Event names the node as it was.
		node = &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: r.Namespace, UID: applied.uid}}
		found = true
	}
	p := nodePanic{message: err.Error(), generation: generation, evented: prev.evented}
	event := r.Recorder != nil && (p.message != prev.message || now.Sub(prev.evented) >= panicEventEvery)
	if event {
		p.evented = now
	}
	r.panics[name] = p
	r.mu.Unlock()
	term := r.Leader.Current()
	if !term.Confirm("node " + name) {
		return
	}
	if event && found {
		recordSurely(r.Client, term, warning{regarding: referTo(node, "TinyNode"), reason: "ComponentPanic", action: "Run",
			note: p.message, controller: "tinymod/" + r.Scheduler.Module().Name, instance: r.Identity})
	}
	if r.Status != nil {
		r.Status.Refresh(name)
	}
}

// remember stores what the scheduler made of the node and reports whether its
// problems changed. A node first seen running has not changed: its Ready
// condition says it runs, and an Event for each of a module's nodes at every
// start would be thousands of writes; one that recovers gets its Event.
func (r *TinyNodeReconciler) remember(node *v1alpha1.TinyNode, problems []scheduler.Problem) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.applied == nil {
		r.applied = map[string]appliedSpec{}
	}
	prev := r.applied[node.Name]
	r.applied[node.Name] = appliedSpec{generation: node.Generation, uid: node.UID, problems: problems}
	return scheduler.ProblemsText(prev.problems) != scheduler.ProblemsText(problems)
}

func (r *TinyNodeReconciler) recordProblems(node *v1alpha1.TinyNode, problems []scheduler.Problem) {
	if len(problems) == 0 {
		r.Recorder.Eventf(node, nil, corev1.EventTypeNormal, ReasonRunning, "Run", "node runs component %s", node.Spec.Component)
		return
	}
	for _, p := range problems {
		r.Recorder.Eventf(node, nil, corev1.EventTypeWarning, p.Reason, "Run", "%s", p.Message)
	}
}

// RenderStatus fills in the status fields the runtime owns. It is the
// StatusWriter's Render.
func (r *TinyNodeReconciler) RenderStatus(node *v1alpha1.TinyNode) {
	info := r.Scheduler.Module()
	node.Status.Module = v1alpha1.ModuleInfo{Name: info.Name, Version: info.Version}
	if c, ports, ok := r.Scheduler.Describe(node.Name); ok {
		node.Status.Component = v1alpha1.ComponentInfo{Name: c.Name, Description: c.Description, Info: c.Info, Tags: c.Tags}
		node.Status.Ports = ports
	} else {
		node.Status.Component = v1alpha1.ComponentInfo{Name: node.Spec.Component}
		node.Status.Ports = nil
	}

	r.mu.Lock()
	applied, ok := r.applied[node.Name]
	r.mu.Unlock()
	if !ok {
		return // not seen by the scheduler yet
	}
	node.Status.ObservedGeneration = applied.generation
	cond := metav1.Condition{
		Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonRunning,
		Message: "the node runs", ObservedGeneration: applied.generation,
	}
	node.Status.Error = ""
	if len(applied.problems) > 0 {
		cond.Status = metav1.ConditionFalse
		cond.Reason = applied.problems[0].Reason
		cond.Message = scheduler.ProblemsText(applied.problems)
		node.Status.Error = cond.Message
	} else if p, ok := r.lastPanic(node.Name, applied.generation); ok {
		// The node runs, and its component has a bug that a message or a
		// callback ran into: say so until the spec changes.
		node.Status.Error = "component panicked: " + p
	}
	meta.SetStatusCondition(&node.Status.Conditions, cond)
}

func (r *TinyNodeReconciler) lastPanic(name string, generation int64) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.panics[name]
	return p.message, ok && p.generation == generation
}

// Lookup finds a node of the namespace in the cache, for the scheduler.
func (r *TinyNodeReconciler) Lookup(name string) (*v1alpha1.TinyNode, bool) {
	node := &v1alpha1.TinyNode{}
	if err := r.Client.Get(context.Background(), client.ObjectKey{Namespace: r.Namespace, Name: name}, node); err != nil {
		if !apierrors.IsNotFound(err) {
			log.Log.V(1).Info("lookup node", "node", name, "error", err)
		}
		return nil, false
	}
	return node, true
}
