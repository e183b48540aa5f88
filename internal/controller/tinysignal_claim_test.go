package controller_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

// Pressed is what the counter's port takes.
type Pressed struct {
	N int `json:"n"`
}

// counter counts the runs of Handle per message, and fails them while
// failing is set.
type counter struct {
	mu      sync.Mutex
	runs    map[int]int
	failing bool
}

func (c *counter) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "counter"} }
func (c *counter) Instance() module.Component    { return c }
func (c *counter) Ports() []module.Port {
	return []module.Port{{Name: "in", Label: "In", Configuration: Pressed{}}}
}
func (c *counter) Handle(_ context.Context, _ module.Handler, port string, msg any) any {
	if p, ok := msg.(Pressed); ok && port == "in" {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.runs[p.N]++
		if c.failing {
			return errors.New("not yet")
		}
	}
	return nil
}

func (c *counter) count(n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runs[n]
}

// frozenSignals serves the signals as they were when frozen, as a cache
// that has not seen the last writes yet does; lists of signals by node are
// filtered here, as the cache's index does.
type frozenSignals struct {
	client.Client
	mu     sync.Mutex
	frozen []v1alpha1.TinySignal
}

func (f *frozenSignals) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	sigs, ok := list.(*v1alpha1.TinySignalList)
	if !ok {
		return f.Client.List(ctx, list, opts...)
	}
	lo := (&client.ListOptions{}).ApplyOptions(opts)
	node, byNode := "", false
	if lo.FieldSelector != nil {
		node, byNode = lo.FieldSelector.RequiresExactMatch("spec.node")
	}
	f.mu.Lock()
	frozen := f.frozen
	f.mu.Unlock()
	items := frozen
	if items == nil {
		var live v1alpha1.TinySignalList
		if err := f.Client.List(ctx, &live, client.InNamespace(lo.Namespace)); err != nil {
			return err
		}
		items = live.Items
	}
	sigs.Items = nil
	for _, s := range items {
		if !byNode || s.Spec.Node == node {
			sigs.Items = append(sigs.Items, *s.DeepCopy())
		}
	}
	return nil
}

func (f *frozenSignals) freeze(items []v1alpha1.TinySignal) {
	f.mu.Lock()
	f.frozen = items
	f.mu.Unlock()
}

func claims(req *http.Request) bool {
	return req.Method == http.MethodPut && strings.Contains(req.URL.Path, "/tinysignals/") && strings.HasSuffix(req.URL.Path, "/status")
}

func deletions(req *http.Request) bool {
	return req.Method == http.MethodDelete && strings.Contains(req.URL.Path, "/tinysignals/")
}

// signalFixture is one node of module m, run by a real scheduler, with the
// signal reconciler called by the test: its reads of signals may be frozen,
// and its requests held.
type signalFixture struct {
	ctx     context.Context
	ns      string
	c       client.Client
	hold    *controlplanetest.Hang
	held    func(*http.Request) bool
	reads   *frozenSignals
	terms   *leader.Manual
	comp    *counter
	sched   *scheduler.Scheduler
	signals *controller.TinySignalReconciler
	req     ctrl.Request
}

func newSignalFixture(t *testing.T, held func(*http.Request) bool) *signalFixture {
	env := controlplanetest.Start(t)
	f := &signalFixture{ns: env.Namespace(t), ctx: controlplanetest.Context(t, 2*time.Minute), c: env.Client,
		hold: &controlplanetest.Hang{}, held: held, terms: &leader.Manual{}, comp: &counter{runs: map[int]int{}}}
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(f.hold.Wrap)
	writes, err := client.New(cfg, client.Options{Scheme: f.c.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	f.reads = &frozenSignals{Client: writes}
	sched, err := scheduler.New(scheduler.Options{Module: module.Info{Name: "m"}, Components: []module.Component{f.comp}, Leader: f.terms})
	if err != nil {
		t.Fatal(err)
	}
	f.sched = sched
	t.Cleanup(sched.Stop)
	t.Cleanup(f.hold.Answer)
	status := &controller.StatusWriter{Client: f.c, Reader: f.c, Namespace: f.ns, Leader: f.terms}
	nodes := &controller.TinyNodeReconciler{Client: f.c, Scheduler: sched, Leader: f.terms, Status: status, Namespace: f.ns}
	f.signals = &controller.TinySignalReconciler{Client: f.reads, Reader: f.c, Scheduler: sched, Leader: f.terms, Namespace: f.ns}
	if err := controller.PrepareSignals(f.signals); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Create(f.ctx, &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "n", Namespace: f.ns},
		Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "counter"}}); err != nil {
		t.Fatal(err)
	}
	f.req = ctrl.Request{NamespacedName: types.NamespacedName{Namespace: f.ns, Name: "n"}}
	if _, err := nodes.Reconcile(f.ctx, f.req); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *signalFixture) press(t *testing.T, n int) *v1alpha1.TinySignal {
	t.Helper()
	s := &v1alpha1.TinySignal{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("press-%d", n), Namespace: f.ns},
		Spec: v1alpha1.TinySignalSpec{Node: "n", Port: "in", Data: &apiextensionsv1.JSON{Raw: fmt.Appendf(nil, `{"n": %d}`, n)}}}
	if err := f.c.Create(f.ctx, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *signalFixture) gone(s *v1alpha1.TinySignal) error {
	err := f.c.Get(f.ctx, client.ObjectKeyFromObject(s), &v1alpha1.TinySignal{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("signal %s still there (%v)", s.Name, err)
}

// reconcile runs the node's signal worker once, in the background.
func (f *signalFixture) reconcile() <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := f.signals.Reconcile(f.ctx, f.req)
		done <- err
	}()
	return done
}

func (f *signalFixture) ended(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-f.ctx.Done():
		t.Fatal("the signal worker did not return")
	}
}

// TestSignalsAreClaimedBeforeHandleUnlessNewInTheTerm: a signal an earlier
// leader may have delivered is claimed (written Delivering) before Handle
// runs, so a new leader whose cache has not yet seen the earlier leader
// delete it does not run Handle again; a signal created after the term
// began, which no earlier leader can have seen, runs Handle while its claim
// is written, and is then deleted, having run once.
func TestSignalsAreClaimedBeforeHandleUnlessNewInTheTerm(t *testing.T) {
	f := newSignalFixture(t, claims)
	ctx, c := f.ctx, f.c

	// An earlier leader delivered press-0 and deleted it; this replica's
	// cache has not seen the deletion when its term begins.
	old := f.press(t, 0)
	var before v1alpha1.TinySignalList
	if err := c.List(ctx, &before, client.InNamespace(f.ns)); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, old); err != nil {
		t.Fatal(err)
	}
	f.reads.freeze(before.Items)
	f.terms.Start()
	f.signals.Resync(ctx)
	f.ended(t, f.reconcile())
	if n := f.comp.count(0); n != 0 {
		t.Fatalf("a signal an earlier leader had delivered and deleted ran Handle %d times in the next term", n)
	}
	f.reads.freeze(nil)

	// press-1 is created in the term: Handle runs while its claim is held.
	f.hold.Hold(f.held)
	fresh := f.press(t, 1)
	done := f.reconcile()
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		if f.comp.count(1) == 0 || f.hold.Held() == 0 {
			return fmt.Errorf("Handle ran %d times, %d claims held", f.comp.count(1), f.hold.Held())
		}
		return nil
	})
	f.hold.Answer()
	f.ended(t, done)
	controlplanetest.Eventually(t, 30*time.Second, func() error { return f.gone(fresh) })
	if n := f.comp.count(1); n != 1 {
		t.Errorf("a signal created in the term ran Handle %d times, want 1", n)
	}
}

// TestALeaderCutOffLeavesOneSignalPerNodeToRunAgain: the leader's deletions
// hang (the API server takes its claims but not its deletes, then it is cut
// off for good). Its node's worker waits on the first deletion rather than
// go on to the next signal, so the next leader runs one signal again, not
// every one delivered meanwhile.
func TestALeaderCutOffLeavesOneSignalPerNodeToRunAgain(t *testing.T) {
	f := newSignalFixture(t, deletions)
	f.terms.Start()
	f.signals.Resync(f.ctx)
	f.hold.Hold(f.held)
	presses := []*v1alpha1.TinySignal{f.press(t, 1), f.press(t, 2), f.press(t, 3)}
	f.reconcile()
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		if f.comp.count(1) != 1 || f.hold.Held() == 0 {
			return fmt.Errorf("press-1 ran %d times, %d deletions held", f.comp.count(1), f.hold.Held())
		}
		return nil
	})
	// For a while (the worker is fast: were it to go on, it would within
	// milliseconds), the node's next signals must not run.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if a, b := f.comp.count(2), f.comp.count(3); a != 0 || b != 0 {
			t.Fatalf("the node's next signals ran (%d, %d times) while press-1's deletion hung", a, b)
		}
	}
	f.terms.Stop() // the leader is cut off; its deletion never lands

	// The next leader, on another replica: its own state, its own term.
	next := &leader.Manual{}
	successor := &controller.TinySignalReconciler{Client: &frozenSignals{Client: f.c}, Reader: f.c, Scheduler: f.sched, Leader: next, Namespace: f.ns}
	if err := controller.PrepareSignals(successor); err != nil {
		t.Fatal(err)
	}
	next.Start()
	successor.Resync(f.ctx)
	controlplanetest.Eventually(t, 60*time.Second, func() error {
		if _, err := successor.Reconcile(f.ctx, f.req); err != nil {
			return err
		}
		for _, s := range presses {
			if err := f.gone(s); err != nil {
				return err
			}
		}
		return nil
	})
	runs := []int{f.comp.count(1), f.comp.count(2), f.comp.count(3)}
	again := 0
	for _, n := range runs {
		if n == 0 {
			t.Errorf("a signal never ran: %v", runs)
		}
		again += max(n-1, 0)
	}
	if again > 1 {
		t.Errorf("Handle ran %v times for press-1..3: a leader cut off left %d signals of one node to run again, want at most 1", runs, again)
	}
}

// TestARetryIsClaimedFirstUnderALaggingCache: a signal's first attempt,
// claimed alongside Handle, fails and is to be tried again; the cache still
// shows the signal as it was before that claim. The retry is claimed first,
// which the stale version makes conflict, so Handle does not run again
// until the cache shows the attempt: no run goes uncounted.
func TestARetryIsClaimedFirstUnderALaggingCache(t *testing.T) {
	f := newSignalFixture(t, func(*http.Request) bool { return false })
	f.terms.Start()
	f.signals.Resync(f.ctx)
	f.comp.mu.Lock()
	f.comp.failing = true
	f.comp.mu.Unlock()
	f.press(t, 1)
	var before v1alpha1.TinySignalList
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		if err := f.c.List(f.ctx, &before, client.InNamespace(f.ns)); err != nil || len(before.Items) != 1 {
			return fmt.Errorf("press-1 not listed (%v)", err)
		}
		return nil
	})
	f.reads.freeze(before.Items) // the cache stays behind the first claim
	f.ended(t, f.reconcile())
	if n := f.comp.count(1); n != 1 {
		t.Fatalf("the first attempt ran Handle %d times", n)
	}
	// Past the retry's backoff, the worker is woken again and again.
	stop := make(chan struct{})
	woken := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				woken <- nil
				return
			default:
			}
			if _, err := f.signals.Reconcile(f.ctx, f.req); err != nil {
				woken <- err
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	for deadline := time.Now().Add(1500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if n := f.comp.count(1); n != 1 {
			t.Errorf("Handle ran %d times while the cache showed no attempt: runs that no claim counts", n)
			break
		}
	}
	f.comp.mu.Lock()
	f.comp.failing = false
	f.comp.mu.Unlock()
	f.reads.freeze(nil) // the cache catches up: the retry runs, counted
	close(stop)
	f.ended(t, woken)
}
