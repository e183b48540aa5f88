package replica_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controller"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/pkg/utils"
)

// handled counts, per "<namespace>/<message ID>", how often a recorder's
// Handle ran, and what utils.IsLeader said.
var handled sync.Map // string -> *handling

type handling struct {
	runs     atomic.Int32
	leader   atomic.Bool
	identity atomic.Value
}

func handlingOf(ns, id string) *handling {
	h, _ := handled.LoadOrStore(ns+"/"+id, &handling{})
	return h.(*handling)
}

// Outcome is what a recorder's Handle returns for a message.
type Outcome struct {
	Fail string `json:"fail"` // "", "transient" or "permanent"
	// WorkMs is how long Handle works, whatever its context says.
	WorkMs int `json:"workMs"`
}

// recorder records each message it handles and returns as the message asks.
type recorder struct{ identity string }

func (r *recorder) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "recorder"} }
func (r *recorder) Instance() module.Component    { return &recorder{identity: r.identity} }
func (r *recorder) Ports() []module.Port {
	return []module.Port{{Name: "in", Configuration: Outcome{}}}
}
func (r *recorder) Handle(ctx context.Context, _ module.Handler, port string, msg any) any {
	if port != "in" {
		return nil
	}
	h := handlingOf(namespaceOf(ctx), module.MessageID(ctx))
	h.runs.Add(1)
	h.leader.Store(utils.IsLeader(ctx))
	h.identity.Store(r.identity)
	time.Sleep(time.Duration(msg.(Outcome).WorkMs) * time.Millisecond)
	switch msg.(Outcome).Fail {
	case "transient":
		return errors.New("not now")
	case "permanent":
		return module.Permanent(errors.New("never"))
	}
	return nil
}

// currentNS is the namespace of the test running: tests of this package run
// one at a time, each in a namespace of its own.
var currentNS atomic.Value

func namespaceOf(context.Context) string { ns, _ := currentNS.Load().(string); return ns }

// runModule runs one replica of module name that always leads (or, with
// elect, campaigns), through cfg.
func (h *harness) runModule(name, identity string, cfg *rest.Config, elect bool, extra ...module.Component) *testReplica {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &testReplica{identity: identity, cancel: cancel, done: make(chan error, 1)}
	opts := replica.Options{
		Module:     module.Info{Name: name, Version: "v0.0.1-test"},
		Components: append([]module.Component{&recorder{identity: identity}}, extra...),
		Config:     cfg,
		Namespace:  h.ns,
		Identity:   identity,
		Election:   fastElection,
	}
	if !elect {
		opts.Leader = leader.Always
	}
	go func() { r.done <- replica.Run(ctx, opts) }()
	h.t.Cleanup(func() { r.stop(h.t) })
	return r
}

func (h *harness) node(name, module, component string) {
	h.t.Helper()
	n := &v1alpha1.TinyNode{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns},
		Spec:       v1alpha1.TinyNodeSpec{Module: module, Component: component},
	}
	if err := h.c.Create(h.ctx, n); err != nil {
		h.t.Fatalf("create node %s: %v", name, err)
	}
}

func (h *harness) press(name, node, data string) *v1alpha1.TinySignal {
	h.t.Helper()
	s := &v1alpha1.TinySignal{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns},
		Spec:       v1alpha1.TinySignalSpec{Node: node, Port: "in", Data: &apiextensionsv1.JSON{Raw: []byte(data)}},
	}
	if err := h.c.Create(h.ctx, s); err != nil {
		h.t.Fatalf("create signal %s: %v", name, err)
	}
	return s
}

func (h *harness) waitSignalGone(s *v1alpha1.TinySignal, limit time.Duration) {
	h.t.Helper()
	controlplanetest.Eventually(h.t, limit, func() error {
		err := h.c.Get(h.ctx, client.ObjectKeyFromObject(s), &v1alpha1.TinySignal{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("signal %s still there: %v", s.Name, err)
	})
}

func (h *harness) waitSignalFailed(s *v1alpha1.TinySignal, limit time.Duration) *v1alpha1.TinySignal {
	h.t.Helper()
	got := &v1alpha1.TinySignal{}
	controlplanetest.Eventually(h.t, limit, func() error {
		if err := h.c.Get(h.ctx, client.ObjectKeyFromObject(s), got); err != nil {
			return err
		}
		if got.Status.Phase != v1alpha1.SignalFailed {
			return fmt.Errorf("signal %s: phase %q, attempts %d", s.Name, got.Status.Phase, got.Status.Attempts)
		}
		return nil
	})
	return got
}

// waitWarning waits for a Warning Event with reason about s.
func (h *harness) waitWarning(s *v1alpha1.TinySignal, reason string, limit time.Duration) {
	h.t.Helper()
	controlplanetest.Eventually(h.t, limit, func() error {
		var list eventsv1.EventList
		if err := h.c.List(h.ctx, &list, client.InNamespace(h.ns)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Regarding.UID == s.UID && e.Type == corev1.EventTypeWarning && e.Reason == reason {
				return nil
			}
		}
		return fmt.Errorf("no Warning Event %s for signal %s among %d Events", reason, s.Name, len(list.Items))
	})
}

// TestSignalsWaitForTheirModule: two modules share the namespace. A signal for
// a node of module beta, while beta is down, is left alone by alpha's leader
// (it neither delivers nor fails it) and is delivered once beta runs; alpha's
// own signals flow meanwhile; a signal for a node that does not exist fails
// after the retry budget. utils.IsLeader is true in the Handle that a signal
// reaches, on a business port.
func TestSignalsWaitForTheirModule(t *testing.T) {
	h := newHarness(t)
	currentNS.Store(h.ns)
	h.runModule("alpha", "alpha-0", h.env.UserConfig(t, "alpha-0"), false)
	h.node("a-rec", "alpha", "recorder")
	h.node("b-rec", "beta", "recorder")

	forBeta := h.press("for-beta", "b-rec", `{}`)
	forAlpha := h.press("for-alpha", "a-rec", `{}`)
	h.waitSignalGone(forAlpha, 30*time.Second)
	if got := handlingOf(h.ns, string(forAlpha.UID)); got.runs.Load() != 1 || !got.leader.Load() {
		t.Errorf("alpha's signal: %d runs, IsLeader %v; want 1 run on the leader", got.runs.Load(), got.leader.Load())
	}
	// Alpha's leader has worked through signals created after beta's: beta's
	// must still be untouched, and stay so.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		s := &v1alpha1.TinySignal{}
		if err := h.c.Get(h.ctx, client.ObjectKeyFromObject(forBeta), s); err != nil {
			t.Fatalf("beta's signal: %v", err)
		}
		if s.Status.Phase != "" || s.Status.Attempts != 0 {
			t.Fatalf("alpha's leader touched beta's signal: phase %q, attempts %d, lastError %q", s.Status.Phase, s.Status.Attempts, s.Status.LastError)
		}
		time.Sleep(100 * time.Millisecond)
	}

	t.Log("starting beta")
	h.runModule("beta", "beta-0", h.env.UserConfig(t, "beta-0"), false)
	h.waitSignalGone(forBeta, 30*time.Second)
	t.Log("beta's signal delivered")
	got := handlingOf(h.ns, string(forBeta.UID))
	if got.runs.Load() != 1 || got.identity.Load() != "beta-0" || !got.leader.Load() {
		t.Errorf("beta's signal: %d runs by %v, IsLeader %v; want 1 run by beta-0 on the leader", got.runs.Load(), got.identity.Load(), got.leader.Load())
	}

	ghost := h.press("for-nobody", "no-such-node", `{}`)
	t.Log("signal for a missing node")
	failed := h.waitSignalFailed(ghost, 60*time.Second)
	if failed.Status.Attempts < 8 || !strings.Contains(failed.Status.LastError, "no such node") {
		t.Errorf("signal for a missing node: attempts %d, lastError %q", failed.Status.Attempts, failed.Status.LastError)
	}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// TestAPIFaultsDoNotRepeatOrSpendDeliveries: the API server fails the delete
// of a delivered signal, the write of a signal's Failed status, and every
// other Delivering status write. Handle still runs once per delivered or
// permanently failed signal, and a transiently failing one gets its whole
// retry budget of Handle runs, each counted once.
func TestAPIFaultsDoNotRepeatOrSpendDeliveries(t *testing.T) {
	h := newHarness(t)
	currentNS.Store(h.ns)
	f := &controlplanetest.Faults{}
	deletes := f.Fail(http.MethodDelete, "/tinysignals/", "", 1000, 0) // the first delete of a signal fails
	failedWrites := f.Fail(http.MethodPut, "/status", `"phase":"Failed"`, 1000, 0)
	delivering := f.Fail(http.MethodPut, "/status", `"phase":"Delivering"`, 2, 0)
	failedEvents := f.Fail(http.MethodPost, "/events", "DeliveryFailed", 1000, 0) // and its first Warning Event
	cfg := rest.CopyConfig(h.env.UserConfig(t, "faulty-0"))
	cfg.Wrap(f.Wrap)
	h.runModule("faulty", "faulty-0", cfg, false)
	h.node("rec", "faulty", "recorder")

	ok := h.press("ok", "rec", `{}`)
	h.waitSignalGone(ok, 60*time.Second)
	if n := handlingOf(h.ns, string(ok.UID)).runs.Load(); n != 1 {
		t.Errorf("delivered signal whose delete failed once: Handle ran %d times, want 1", n)
	}

	never := h.press("never", "rec", `{"fail":"permanent"}`)
	got := h.waitSignalFailed(never, 60*time.Second)
	if n := handlingOf(h.ns, string(never.UID)).runs.Load(); n != 1 {
		t.Errorf("permanently failed signal whose Failed write failed once: Handle ran %d times, want 1", n)
	}
	if got.Status.LastError == "" {
		t.Error("failed signal has no lastError")
	}
	// The Event that says so is written although the API server refused it once.
	h.waitWarning(never, "DeliveryFailed", 30*time.Second)

	later := h.press("later", "rec", `{"fail":"transient"}`)
	got = h.waitSignalFailed(later, 90*time.Second)
	if n := handlingOf(h.ns, string(later.UID)).runs.Load(); n != got.Status.Attempts || n != 8 {
		t.Errorf("transiently failing signal: Handle ran %d times, status says %d attempts; want 8 and 8", n, got.Status.Attempts)
	}
	t.Logf("faults injected: %d deletes, %d Failed writes, %d Delivering writes, %d Events",
		deletes.Failed(), failedWrites.Failed(), delivering.Failed(), failedEvents.Failed())
	if deletes.Failed() == 0 || failedWrites.Failed() == 0 || delivering.Failed() == 0 || failedEvents.Failed() == 0 {
		t.Error("a fault was never injected: the test proves nothing")
	}
}

// TestFailedSignalsAreKeptForTheirTTL: a failed signal stays, with its error,
// for the TTL, and is then deleted.
func TestFailedSignalsAreKeptForTheirTTL(t *testing.T) {
	h := newHarness(t)
	currentNS.Store(h.ns)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- replica.Run(ctx, replica.Options{
			Module: module.Info{Name: "ttl"}, Components: []module.Component{&recorder{}},
			Config: h.env.UserConfig(t, "ttl-0"), Namespace: h.ns, Identity: "ttl-0", Leader: leader.Always,
			FailedSignalTTL: 3 * time.Second,
		})
	}()
	defer func() { cancel(); <-done }()
	h.node("rec", "ttl", "recorder")
	s := h.press("doomed", "rec", `{"fail":"permanent"}`)
	failed := h.waitSignalFailed(s, 30*time.Second)
	if failed.Status.LastError == "" {
		t.Error("no lastError")
	}
	h.waitSignalGone(s, 30*time.Second)
}

// TestOtherModulesFinalizersAreLeftAlone: alpha's leader never strips the
// finalizer of beta's node (nor removes what it owns), even one of a component
// alpha also hosts, created or deleted while beta is down.
func TestOtherModulesFinalizersAreLeftAlone(t *testing.T) {
	h := newHarness(t)
	currentNS.Store(h.ns)
	h.runModule("alpha", "alpha-0", h.env.UserConfig(t, "alpha-0"), false, &exposer{identity: "alpha-0"})
	foreign := &v1alpha1.TinyNode{
		ObjectMeta: metav1.ObjectMeta{Name: "b-exp", Namespace: h.ns, Finalizers: []string{controller.NodeFinalizer}},
		Spec:       v1alpha1.TinyNodeSpec{Module: "beta", Component: "exposer"},
	}
	if err := h.c.Create(h.ctx, foreign); err != nil {
		t.Fatal(err)
	}
	// Alpha has reconciled what came after: its own node runs.
	h.node("a-rec", "alpha", "recorder")
	h.waitReady("a-rec", metav1.ConditionTrue, controller.ReasonRunning)
	if err := h.c.Delete(h.ctx, foreign); err != nil {
		t.Fatal(err)
	}
	h.node("a-rec2", "alpha", "recorder")
	h.waitReady("a-rec2", metav1.ConditionTrue, controller.ReasonRunning)
	if f := h.get("b-exp").Finalizers; len(f) != 1 || f[0] != controller.NodeFinalizer {
		t.Errorf("beta's node's finalizers after alpha saw it created and deleted: %v", f)
	}
}

// TestSignalsOfADeletedNodeFail: a signal waits for beta, which is down; then
// beta's node is deleted. The signal now targets no node, and alpha's leader
// fails it after the retry budget rather than leave it stranded.
func TestSignalsOfADeletedNodeFail(t *testing.T) {
	h := newHarness(t)
	currentNS.Store(h.ns)
	h.runModule("alpha", "alpha-0", h.env.UserConfig(t, "alpha-0"), false)
	h.node("b-rec", "beta", "recorder")
	s := h.press("orphan", "b-rec", `{}`)
	h.node("a-rec", "alpha", "recorder")
	h.waitReady("a-rec", metav1.ConditionTrue, controller.ReasonRunning)
	if err := h.c.Delete(h.ctx, h.get("b-rec")); err != nil {
		t.Fatal(err)
	}
	failed := h.waitSignalFailed(s, 60*time.Second)
	if failed.Status.Attempts < 8 {
		t.Errorf("attempts %d, want the whole budget", failed.Status.Attempts)
	}
}

// TestGracefulStopSettlesTheDeliveryUnderWay: the leader stops gracefully
// while a signal's Handle is finishing; the signal is settled by it, under the
// lease it still holds, and the next leader does not run Handle again.
func TestGracefulStopSettlesTheDeliveryUnderWay(t *testing.T) {
	h := newHarness(t)
	currentNS.Store(h.ns)
	first := h.runModule(moduleName, "g-0", h.env.UserConfig(t, "g-0"), true)
	if got := h.waitHolder(); got != "g-0" {
		t.Fatalf("holder %s", got)
	}
	h.runModule(moduleName, "g-1", h.env.UserConfig(t, "g-1"), true)
	h.node("rec", moduleName, "recorder")
	h.waitReady("rec", metav1.ConditionTrue, controller.ReasonRunning)
	s := h.press("slow", "rec", `{"workMs": 300}`)
	run := handlingOf(h.ns, string(s.UID))
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		if run.runs.Load() == 0 {
			return errors.New("Handle has not started")
		}
		return nil
	})
	first.stop(t) // graceful: leader-only work ends, the lease is released
	h.waitSignalGone(s, 30*time.Second)
	if n := run.runs.Load(); n != 1 {
		t.Errorf("Handle ran %d times, want 1: a graceful stop handed a finishing delivery to the next leader", n)
	}
}

// boom is a component with a bug in every entry point, chosen by its settings.
type boom struct{ where string }

// BoomSettings say where the component panics.
type BoomSettings struct {
	Where string `json:"where"`
}

func (b *boom) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "boom"} }
func (b *boom) Instance() module.Component    { return &boom{} }
func (b *boom) Ports() []module.Port {
	if b.where == "ports" {
		panic("Ports: nil map")
	}
	return []module.Port{{Name: v1alpha1.SettingsPort, Configuration: BoomSettings{}}, {Name: "in", Configuration: Outcome{}}}
}
func (b *boom) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.SettingsPort:
		b.where = msg.(BoomSettings).Where
	case "in":
		switch b.where {
		case "handle":
			var m map[string]int
			m["x"]++ // the bug
		case "status":
			return output(ctx, v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) {
				var m map[string]int
				m["x"]++ // the bug, in a status callback run by the status writer
			})
		case "ports":
			return output(ctx, v1alpha1.ReconcilePort, nil) // the ports are read again
		}
	}
	return nil
}

// TestComponentBugsDoNotTakeTheReplicaDown: a component panics in Handle, in a
// status callback, in Ports; the replica keeps running and serving other
// nodes, and each panic becomes the node's status.error and an Event.
func TestComponentBugsDoNotTakeTheReplicaDown(t *testing.T) {
	h := newHarness(t)
	currentNS.Store(h.ns)
	// The API server refuses the first Event: the panic's Event must still
	// be written.
	f := &controlplanetest.Faults{}
	refused := f.Fail(http.MethodPost, "/events", "ComponentPanic", 1000, 0)
	cfg := rest.CopyConfig(h.env.UserConfig(t, "buggy-0"))
	cfg.Wrap(f.Wrap)
	r := h.runModule("buggy", "buggy-0", cfg, false, &boom{})
	defer func() {
		if refused.Failed() == 0 {
			t.Error("no Event was refused: the test proves nothing about retries")
		}
	}()
	h.node("rec", "buggy", "recorder")
	for i, where := range []string{"handle", "status", "ports"} {
		name := "boom-" + where
		n := &v1alpha1.TinyNode{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns},
			Spec: v1alpha1.TinyNodeSpec{Module: "buggy", Component: "boom", Ports: []v1alpha1.TinyNodePortConfig{
				{Port: v1alpha1.SettingsPort, Configuration: jsonOf(t, BoomSettings{Where: where})}}},
		}
		if err := h.c.Create(h.ctx, n); err != nil {
			t.Fatal(err)
		}
		h.press(fmt.Sprintf("press-%d", i), name, `{}`)
		controlplanetest.Eventually(t, 30*time.Second, func() error {
			if e := h.get(name).Status.Error; !strings.Contains(e, "panic") {
				return fmt.Errorf("node %s: status.error %q", name, e)
			}
			return nil
		})
		controlplanetest.Eventually(t, 30*time.Second, func() error {
			var list corev1.EventList
			if err := h.c.List(h.ctx, &list, client.InNamespace(h.ns)); err != nil {
				return err
			}
			for _, e := range list.Items {
				if e.InvolvedObject.Name == name && e.Reason == "ComponentPanic" {
					return nil
				}
			}
			return fmt.Errorf("no ComponentPanic event for %s", name)
		})
		// The replica still runs and serves another node.
		select {
		case err := <-r.done:
			t.Fatalf("the replica stopped after a panic in %s: %v", where, err)
		default:
		}
		s := h.press(fmt.Sprintf("after-%d", i), "rec", `{}`)
		h.waitSignalGone(s, 30*time.Second)
	}
}

// TestReplicaStopsWithItsManager: a runnable of the replica's manager fails
// after start-up; the replica stops and releases the lease rather than lead
// while doing nothing.
func TestReplicaStopsWithItsManager(t *testing.T) {
	h := newHarness(t)
	fail := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- replica.Run(ctx, replica.Options{
			Module:     module.Info{Name: moduleName, Version: "v0.0.1-test"},
			Components: testComponents(),
			Config:     h.env.UserConfig(t, "r-0"),
			Namespace:  h.ns,
			Identity:   "r-0",
			Election:   fastElection,
			Runnables: []manager.Runnable{manager.RunnableFunc(func(ctx context.Context) error {
				select {
				case <-fail:
					return errors.New("a runnable broke")
				case <-ctx.Done():
					return nil
				}
			})},
		})
	}()
	if got := h.waitHolder(); got != "r-0" {
		t.Fatalf("holder %q", got)
	}
	close(fail)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "a runnable broke") {
			t.Errorf("Run returned %v, want the runnable's error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the replica kept running after its manager stopped")
	}
	if got := h.holder(); got != "" {
		t.Errorf("lease still held by %q after the replica stopped", got)
	}
}
