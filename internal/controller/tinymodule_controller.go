package controller

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/scheduler"
)

// TinyModuleReconciler keeps the module's TinyModule and, on the leader, its status.
type TinyModuleReconciler struct {
	// Client reads from the cache and writes.
	Client client.Client
	// Reader reads without the cache, for use before it has started.
	Reader client.Reader
	// Scheduler knows the module and its components.
	Scheduler *scheduler.Scheduler
	// Leader tells whether this replica leads.
	Leader leader.Status
	// Namespace of the module.
	Namespace string
	// Identity of this replica, published as the leader's.
	Identity string
	// Addr spreads over all replicas; LeaderAddr is this replica's own.
	Addr, LeaderAddr string

	resync chan event.GenericEvent
}

// Resync queues the module again: a new leader writes its status.
func (r *TinyModuleReconciler) Resync() {
	m := &v1alpha1.TinyModule{ObjectMeta: metav1.ObjectMeta{Name: r.Scheduler.Module().Name, Namespace: r.Namespace}}
	select {
	case r.resync <- event.GenericEvent{Object: m}:
	default:
	}
}

// SetupWithManager registers the reconciler for the module's own TinyModule.
func (r *TinyModuleReconciler) SetupWithManager(mgr manager.Manager) error {
	name := r.Scheduler.Module().Name
	r.resync = make(chan event.GenericEvent, 16)
	return ctrl.ControllerManagedBy(mgr).
		Named("tinymodule").
		For(&v1alpha1.TinyModule{}, ctrl.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetName() == name
		}))).
		WatchesRawSource(source.Channel(r.resync, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{SkipNameValidation: ptr(true)}).
		Complete(r)
}

// EnsureExists creates the TinyModule if it is missing. Any replica may.
func (r *TinyModuleReconciler) EnsureExists(ctx context.Context) error {
	m := &v1alpha1.TinyModule{ObjectMeta: metav1.ObjectMeta{Name: r.Scheduler.Module().Name, Namespace: r.Namespace}}
	// Look before writing: readers write nothing when it is there.
	if err := r.Reader.Get(ctx, client.ObjectKeyFromObject(m), &v1alpha1.TinyModule{}); err == nil {
		return nil
	}
	if err := r.Client.Create(ctx, m); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create TinyModule %s: %w", m.Name, err)
	}
	return nil
}

// Reconcile writes the module's status on the leader.
func (r *TinyModuleReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if !r.Leader.IsLeader() {
		return reconcile.Result{}, nil
	}
	m := &v1alpha1.TinyModule{}
	if err := r.Client.Get(ctx, req.NamespacedName, m); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	before := m.Status.DeepCopy()
	info := r.Scheduler.Module()
	m.Status.Addr = r.Addr
	m.Status.Leader = r.Identity
	m.Status.LeaderAddr = r.LeaderAddr
	m.Status.Version = info.Version
	m.Status.Components = r.Scheduler.ModuleComponents()
	meta.SetStatusCondition(&m.Status.Conditions, metav1.Condition{
		Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Leading",
		Message: fmt.Sprintf("%s leads the module", r.Identity),
	})
	if sameJSON(before, &m.Status) {
		return reconcile.Result{}, nil
	}
	if !r.Leader.IsLeader() {
		return reconcile.Result{}, nil
	}
	if err := r.Client.Status().Update(ctx, m); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	return reconcile.Result{}, nil
}

func ptr[T any](v T) *T { return &v }
