package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/apicall"
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
	Leader leader.Source
	// Namespace of the module.
	Namespace string
	// Identity of this replica, published as the leader's.
	Identity string
	// Addr spreads over all replicas; LeaderAddr is this replica's own.
	Addr, LeaderAddr string
	// Modules learns every other module's addresses. Optional.
	Modules *AddressBook
	// RequestTimeout bounds each API request of EnsureExists, so that a
	// hung API server cannot hold start-up past RetryStartup's deadline.
	// apicall.DefaultTimeout (30 s) if zero.
	RequestTimeout time.Duration

	resync chan event.GenericEvent
}

// ModuleAddress is where a module can be reached, as its leader publishes it.
type ModuleAddress struct {
	// Addr spreads over all the module's replicas.
	Addr string
	// LeaderAddr reaches the module's leader.
	LeaderAddr string
}

// AddressBook holds the addresses of the namespace's modules; every replica
// keeps one, so that messages can be sent to other modules.
type AddressBook struct {
	mu      sync.RWMutex
	modules map[string]ModuleAddress
}

// Get returns the address of module, if it has published one.
func (b *AddressBook) Get(module string) (ModuleAddress, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	a, ok := b.modules[module]
	return a, ok
}

func (b *AddressBook) set(module string, a ModuleAddress, present bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.modules == nil {
		b.modules = map[string]ModuleAddress{}
	}
	if !present || a.Addr == "" && a.LeaderAddr == "" {
		delete(b.modules, module)
		return
	}
	b.modules[module] = a
}

// Resync queues the module again: a new leader writes its status.
func (r *TinyModuleReconciler) Resync() {
	m := &v1alpha1.TinyModule{ObjectMeta: metav1.ObjectMeta{Name: r.Scheduler.Module().Name, Namespace: r.Namespace}}
	select {
	case r.resync <- event.GenericEvent{Object: m}:
	default:
	}
}

// SetupWithManager registers the reconciler for the namespace's TinyModules:
// its own, whose status the leader writes, and the others, whose addresses
// every replica tracks.
func (r *TinyModuleReconciler) SetupWithManager(mgr manager.Manager) error {
	r.resync = make(chan event.GenericEvent, 16)
	return ctrl.ControllerManagedBy(mgr).
		Named("tinymodule").
		For(&v1alpha1.TinyModule{}).
		WatchesRawSource(source.Channel(r.resync, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{ReconciliationTimeout: time.Minute, SkipNameValidation: ptr(true)}).
		Complete(r)
}

// EnsureExists creates the TinyModule if it is missing. Any replica may.
// Each request is bounded by RequestTimeout: RetryStartup checks its deadline
// only between calls, so one call that hangs would hang start-up.
func (r *TinyModuleReconciler) EnsureExists(ctx context.Context) error {
	name := r.Scheduler.Module().Name
	key := client.ObjectKey{Namespace: r.Namespace, Name: name}
	// Look before writing: readers write nothing when it is there.
	err := apicall.Bounded(ctx, r.RequestTimeout, func(ctx context.Context) error {
		return r.Reader.Get(ctx, key, &v1alpha1.TinyModule{})
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil:
		// Unanswered: a write would fare no better. The caller tries again.
		return fmt.Errorf("get TinyModule %s: %w", name, err)
	}
	err = apicall.Bounded(ctx, r.RequestTimeout, func(ctx context.Context) error {
		return r.Client.Create(ctx, &v1alpha1.TinyModule{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: r.Namespace}})
	})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create TinyModule %s: %w", name, err)
	}
	return nil
}

// Reconcile records another module's addresses, or writes this module's
// status on the leader.
func (r *TinyModuleReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	m := &v1alpha1.TinyModule{}
	err := r.Client.Get(ctx, req.NamespacedName, m)
	if err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, err
	}
	if req.Name != r.Scheduler.Module().Name {
		if r.Modules != nil {
			r.Modules.set(req.Name, ModuleAddress{Addr: m.Status.Addr, LeaderAddr: m.Status.LeaderAddr}, err == nil)
		}
		return reconcile.Result{}, nil
	}
	term := r.Leader.Current()
	if err != nil || !term.Confirm("module status") {
		return reconcile.Result{}, nil
	}
	ctx = leader.WithTerm(ctx, term)
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
	if !term.Confirm("module status write") {
		return reconcile.Result{}, nil
	}
	if err := r.Client.Status().Update(ctx, m); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	return reconcile.Result{}, nil
}

func ptr[T any](v T) *T { return &v }
