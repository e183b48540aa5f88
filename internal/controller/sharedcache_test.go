package controller_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controller"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/scheduler"
	"github.com/tinymod/tinymod/module"
)

// meddler changes every node it is handed on _reconcile, as a careless
// component may; with a _client port when owns is set, so that its nodes
// carry a finalizer.
type meddler struct {
	name string
	owns bool
}

func (m *meddler) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: m.name} }
func (m *meddler) Instance() module.Component    { return m }
func (m *meddler) Ports() []module.Port {
	if m.owns {
		return []module.Port{{Name: v1alpha1.ClientPort}}
	}
	return nil
}
func (m *meddler) Handle(_ context.Context, _ module.Handler, port string, msg any) any {
	if n, ok := msg.(*v1alpha1.TinyNode); ok && port == v1alpha1.ReconcilePort {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels["meddled"] = "yes"
		if n.Status.Metadata == nil {
			n.Status.Metadata = map[string]string{}
		}
		n.Status.Metadata["meddled"] = "yes"
		n.Finalizers = append(n.Finalizers, "meddler/x")
		n.Spec.Edges = append(n.Spec.Edges, v1alpha1.TinyNodeEdge{ID: "meddled", Port: "out", To: "x.in"})
	}
	return nil
}

// TestReconcileLeavesTheCacheAlone: the node reconciler reads nodes from the
// informer cache without copying them, and the scheduler keeps them. Whatever
// the leader writes (a finalizer added, a stale one taken off, one released
// as its node is deleted, beside another controller's) and whatever a
// component does to the node it is handed, the cache's objects stay as the
// API server sent them.
func TestReconcileLeavesTheCacheAlone(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, time.Minute)
	informers, err := cache.New(env.Config, cache.Options{Scheme: env.Scheme, DefaultNamespaces: map[string]cache.Config{ns: {}}})
	if err != nil {
		t.Fatal(err)
	}
	cctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- informers.Start(cctx) }()
	t.Cleanup(func() { stop(); <-done })
	cached, err := client.New(env.Config, client.Options{Scheme: env.Scheme, Cache: &client.CacheOptions{Reader: informers}})
	if err != nil {
		t.Fatal(err)
	}
	// The informer starts with the first read of its kind.
	if err := cached.List(ctx, &v1alpha1.TinyNodeList{}, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}

	sched, err := scheduler.New(scheduler.Options{Module: module.Info{Name: "m"},
		Components: []module.Component{&meddler{name: "plain"}, &meddler{name: "owner", owns: true}}, Leader: leader.Always})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sched.Stop)
	status := &controller.StatusWriter{Client: env.Client, Reader: env.Client, Namespace: ns, Leader: leader.Always}
	r := &controller.TinyNodeReconciler{Client: cached, Scheduler: sched, Leader: leader.Always, Status: status, Namespace: ns}

	// Another controller's finalizer, after tinymod's: taking tinymod's off
	// in place would move it over the cache's.
	const keep = "example.com/keep"
	nodes := []*v1alpha1.TinyNode{
		// Gets the finalizer.
		{ObjectMeta: metav1.ObjectMeta{Name: "owner", Namespace: ns, Labels: map[string]string{"a": "b"}},
			Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "owner"}},
		// Carries one it does not need, which the leader takes off.
		{ObjectMeta: metav1.ObjectMeta{Name: "stale", Namespace: ns, Finalizers: []string{controller.NodeFinalizer, keep}, Labels: map[string]string{"a": "b"}},
			Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "plain"}},
		// Deleted while it still has its finalizer, which the leader releases.
		{ObjectMeta: metav1.ObjectMeta{Name: "going", Namespace: ns, Finalizers: []string{controller.NodeFinalizer, keep}, Labels: map[string]string{"a": "b"}},
			Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "owner"}},
	}
	for _, n := range nodes {
		if err := env.Client.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.Client.Delete(ctx, nodes[2]); err != nil {
		t.Fatal(err)
	}

	// seen reads a node as the cache holds it, once the cache has caught up
	// with the API server; nil once it is gone from both.
	seen := func(n *v1alpha1.TinyNode) *v1alpha1.TinyNode {
		t.Helper()
		var shared *v1alpha1.TinyNode
		controlplanetest.Eventually(t, 10*time.Second, func() error {
			fresh, got := &v1alpha1.TinyNode{}, &v1alpha1.TinyNode{}
			errAPI := env.Client.Get(ctx, client.ObjectKeyFromObject(n), fresh)
			errCache := cached.Get(ctx, client.ObjectKeyFromObject(n), got, client.UnsafeDisableDeepCopy)
			switch {
			case apierrors.IsNotFound(errAPI) && apierrors.IsNotFound(errCache):
				shared = nil
				return nil
			case errAPI != nil || errCache != nil:
				return fmt.Errorf("node %s: API server: %v; cache: %v", n.Name, errAPI, errCache)
			case got.ResourceVersion != fresh.ResourceVersion:
				return fmt.Errorf("cache has %s at %s, the API server %s", n.Name, got.ResourceVersion, fresh.ResourceVersion)
			}
			shared = got
			return nil
		})
		return shared
	}
	for round := range 2 { // the second finds the leader's own writes in the cache
		for _, n := range nodes {
			shared := seen(n)
			if shared == nil {
				continue // released and gone
			}
			before := shared.DeepCopy()
			finalizers := slices.Clone(shared.Finalizers[:cap(shared.Finalizers)])
			// Others read the cache's objects meanwhile (the race detector
			// reports any write to them, even of the same values).
			reading := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					select {
					case <-reading:
						return
					default:
						readAll(shared)
					}
				}
			})
			req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: n.Name}}
			_, err := r.Reconcile(ctx, req)
			close(reading)
			wg.Wait()
			if err != nil {
				t.Fatalf("round %d, node %s: %v", round, n.Name, err)
			}
			// shared has the cache's maps and slices: a change to any of
			// them shows here.
			if !equality.Semantic.DeepEqual(before, shared) || !slices.Equal(finalizers, shared.Finalizers[:cap(shared.Finalizers)]) {
				t.Fatalf("round %d: reconciling node %s changed the cache's copy:\nbefore %+v\nafter  %+v", round, n.Name, before, shared)
			}
		}
	}

	// And the leader's writes landed.
	got := &v1alpha1.TinyNode{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(nodes[0]), got); err != nil || len(got.Finalizers) != 1 || got.Finalizers[0] != controller.NodeFinalizer {
		t.Errorf("owner's finalizers: %v (%v), want only %s", got.Finalizers, err, controller.NodeFinalizer)
	}
	for _, n := range nodes[1:] {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(n), got); err != nil || !slices.Equal(got.Finalizers, []string{keep}) || got.Labels["meddled"] != "" {
			t.Errorf("%s's finalizers %v, labels %v (%v): want only %s, and no meddling", n.Name, got.Finalizers, got.Labels, err, keep)
		}
	}
	// Let the deleted node go.
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(nodes[2]), got); err == nil {
		got.Finalizers = nil
		if err := env.Client.Update(ctx, got); err != nil {
			t.Error(err)
		}
	}
}

// readAll reads every map and slice of n.
func readAll(n *v1alpha1.TinyNode) int {
	total := 0
	for k, v := range n.Labels {
		total += len(k) + len(v)
	}
	for k, v := range n.Annotations {
		total += len(k) + len(v)
	}
	for _, f := range n.Finalizers[:cap(n.Finalizers)] {
		total += len(f)
	}
	for _, p := range n.Spec.Ports {
		total += len(p.Port)
	}
	for _, e := range n.Spec.Edges {
		total += len(e.To)
	}
	for _, c := range n.Status.Conditions {
		total += len(c.Message)
	}
	for k, v := range n.Status.Metadata {
		total += len(k) + len(v)
	}
	return total
}
