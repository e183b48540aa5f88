package controller_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controller"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/scheduler"
	"github.com/tinymod/tinymod/module"
)

// seer records the metadata each _reconcile carries.
type seer struct {
	mu   sync.Mutex
	seen []string
}

func (s *seer) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "seer"} }
func (s *seer) Instance() module.Component    { return s }
func (s *seer) Ports() []module.Port          { return nil }
func (s *seer) Handle(_ context.Context, _ module.Handler, port string, msg any) any {
	if n, ok := msg.(*v1alpha1.TinyNode); ok && port == v1alpha1.ReconcilePort {
		s.mu.Lock()
		s.seen = append(s.seen, n.Status.Metadata["state"])
		s.mu.Unlock()
	}
	return nil
}

// lagging serves the node as it was when frozen: a cache that has not seen
// the last writes yet (a real one catches up within milliseconds, too soon
// to make the interleaving happen on purpose).
type lagging struct {
	client.Client
	mu     sync.Mutex
	frozen *v1alpha1.TinyNode
}

func (l *lagging) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	l.mu.Lock()
	frozen := l.frozen
	l.mu.Unlock()
	if n, ok := obj.(*v1alpha1.TinyNode); ok && frozen != nil && frozen.Name == key.Name {
		frozen.DeepCopyInto(n)
		return nil
	}
	return l.Client.Get(ctx, key, obj, opts...)
}

// TestCopiesOlderThanOwnWritesAreNotReconciled: the leader writes a node's
// metadata twice (a start, then a stop); a reconcile that reads the node from
// a cache still holding the first write must not hand the component that
// state, which it has moved past.
func TestCopiesOlderThanOwnWritesAreNotReconciled(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, time.Minute)
	c := env.Client
	comp := &seer{}
	sched, err := scheduler.New(scheduler.Options{Module: module.Info{Name: "m"}, Components: []module.Component{comp}, Leader: leader.Always})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sched.Stop)
	status := &controller.StatusWriter{Client: c, Reader: c, Namespace: ns, Leader: leader.Always}
	reads := &lagging{Client: c}
	r := &controller.TinyNodeReconciler{Client: reads, Scheduler: sched, Leader: leader.Always, Status: status, Namespace: ns}

	node := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "n", Namespace: ns}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "seer"}}
	if err := c.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "n"}}
	set := func(state string) {
		t.Helper()
		if err := status.UpdateStatus(ctx, "n", func(n *v1alpha1.TinyNode) error { n.Status.Metadata["state"] = state; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	set("started")
	started := &v1alpha1.TinyNode{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(node), started); err != nil {
		t.Fatal(err)
	}
	set("stopped")

	reads.mu.Lock()
	reads.frozen = started // the cache still has the start
	reads.mu.Unlock()
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	reads.mu.Lock()
	reads.frozen = nil // caught up
	reads.mu.Unlock()
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	comp.mu.Lock()
	defer comp.mu.Unlock()
	for _, s := range comp.seen {
		if s == "started" {
			t.Fatalf("_reconcile handed the component state it had moved past: %q", comp.seen)
		}
	}
	if len(comp.seen) == 0 || comp.seen[len(comp.seen)-1] != "stopped" {
		t.Errorf("_reconcile carried %q, want the last one stopped", comp.seen)
	}
}

// statusWriterBehindFaults makes node "n" and a status writer whose client
// gets 503 for its first n status writes.
func statusWriterBehindFaults(t *testing.T, n int) (*controlplanetest.Env, context.Context, *v1alpha1.TinyNode, *controlplanetest.FaultRule, *controller.StatusWriter) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, time.Minute)
	faults := &controlplanetest.Faults{}
	statusWrites := faults.Fail(http.MethodPut, "/status", "", 1, n)
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(faults.Wrap)
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	node := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "n", Namespace: ns}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "seer"}}
	if err := env.Client.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	return env, ctx, node, statusWrites, &controller.StatusWriter{Client: c, Reader: c, Namespace: ns, Leader: leader.Always}
}

// TestFlushWaitsForARetriedChange: a graceful stop's flush waits for a
// component's change whose first write failed and which waits to be tried
// again, rather than leave it to a term that is about to end.
func TestFlushWaitsForARetriedChange(t *testing.T) {
	env, ctx, node, faults, status := statusWriterBehindFaults(t, 1)
	changed := make(chan error, 1)
	go func() {
		changed <- status.UpdateStatus(ctx, "n", func(n *v1alpha1.TinyNode) error {
			n.Status.Metadata["running"] = "true"
			return nil
		})
	}()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		if faults.Failed() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first write never came")
		}
	}
	if !status.FlushWithin(30 * time.Second) {
		t.Fatal("the flush gave up")
	}
	got := &v1alpha1.TinyNode{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(node), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Metadata["running"] != "true" {
		t.Errorf("metadata %v after the flush: the change waiting to be tried again was not waited for", got.Status.Metadata)
	}
	if err := <-changed; err != nil {
		t.Errorf("the change failed: %v", err)
	}
}

// TestComponentChangesOutlastAPIFailures: a component's status change (a
// ticker's "running", which a new leader resumes from) is written although
// the API server refuses its first writes, and the component is told it
// succeeded, not that it failed.
func TestComponentChangesOutlastAPIFailures(t *testing.T) {
	env, ctx, node, faults, status := statusWriterBehindFaults(t, 3)
	if err := status.UpdateStatus(ctx, "n", func(n *v1alpha1.TinyNode) error {
		n.Status.Metadata["running"] = "true"
		return nil
	}); err != nil {
		t.Fatalf("the change failed: %v", err)
	}
	got := &v1alpha1.TinyNode{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(node), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Metadata["running"] != "true" {
		t.Errorf("metadata %v: the change was not written", got.Status.Metadata)
	}
	if n := faults.Failed(); n != 3 {
		t.Errorf("%d of 3 faults injected: the test proves less", n)
	}
}
