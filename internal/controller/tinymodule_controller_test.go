package controller_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controller"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/scheduler"
	"github.com/tinymod/tinymod/module"
)

func TestMain(m *testing.M) { controlplanetest.Main(m) }

// TestReadersTrackOtherModules: a reader learns other modules' addresses as
// their leaders publish them, and forgets a module that goes.
func TestReadersTrackOtherModules(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:  env.Scheme,
		Cache:   cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	sched, err := scheduler.New(scheduler.Options{Module: module.Info{Name: "mine"}, Components: []module.Component{}})
	if err != nil {
		t.Fatal(err)
	}
	book := &controller.AddressBook{}
	r := &controller.TinyModuleReconciler{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Scheduler: sched,
		Leader: leader.Never, Namespace: ns, Identity: "reader", Modules: book}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	other := &v1alpha1.TinyModule{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: ns}}
	c := env.Client
	tctx := controlplanetest.Context(t, time.Minute)
	if err := c.Create(tctx, other); err != nil {
		t.Fatal(err)
	}
	other.Status = v1alpha1.TinyModuleStatus{Addr: "other.ns.svc:8483", LeaderAddr: "10.0.0.7:8483", Leader: "other-0"}
	if err := c.Status().Update(tctx, other); err != nil {
		t.Fatal(err)
	}
	want := controller.ModuleAddress{Addr: "other.ns.svc:8483", LeaderAddr: "10.0.0.7:8483"}
	controlplanetest.Eventually(t, 10*time.Second, func() error {
		if got, ok := book.Get("other"); !ok || got != want {
			return fmt.Errorf("address of other: %+v, %v", got, ok)
		}
		return nil
	})
	if err := c.Delete(tctx, other); err != nil {
		t.Fatal(err)
	}
	controlplanetest.Eventually(t, 10*time.Second, func() error {
		if got, ok := book.Get("other"); ok {
			return fmt.Errorf("forgotten module still there: %+v", got)
		}
		return nil
	})
}
