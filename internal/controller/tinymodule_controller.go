package controller

import (
	"context"
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
