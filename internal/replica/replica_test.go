package replica_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controller"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/module"
)

func TestMain(m *testing.M) { controlplanetest.Main(m) }

const moduleName = "testmod"

type harness struct {
	t   *testing.T
	env *controlplanetest.Env
	ns  string
	c   client.Client
	ctx context.Context
}

func newHarness(t *testing.T) *harness {
	env := controlplanetest.Start(t)
	return &harness{t: t, env: env, ns: env.Namespace(t), c: env.Client, ctx: controlplanetest.Context(t, 2*time.Minute)}
}

// startReplica runs a leading replica as its own API user until the test ends,
// and returns a function that stops it sooner.
func (h *harness) startReplica(user string) (stop func()) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- replica.Run(ctx, replica.Options{
			Module:     module.Info{Name: moduleName, Version: "v0.0.1-test"},
			Components: testComponents(),
			Config:     h.env.UserConfig(h.t, user),
			Namespace:  h.ns,
			Identity:   user,
			Leader:     leader.Always,
		})
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					h.t.Errorf("replica %s: %v", user, err)
				}
			case <-time.After(30 * time.Second):
				h.t.Errorf("replica %s did not stop within 30s", user)
			}
		})
	}
	h.t.Cleanup(stop)
	return stop
}

func jsonOf(t *testing.T, v any) *apiextensionsv1.JSON {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return &apiextensionsv1.JSON{Raw: data}
}

func settings(t *testing.T, v any) v1alpha1.TinyNodePortConfig {
	return v1alpha1.TinyNodePortConfig{Port: v1alpha1.SettingsPort, Configuration: jsonOf(t, v)}
}

func (h *harness) create(name, component string, edges []v1alpha1.TinyNodeEdge, ports ...v1alpha1.TinyNodePortConfig) {
	h.t.Helper()
	n := &v1alpha1.TinyNode{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns, Labels: map[string]string{v1alpha1.FlowNameLabel: "test"}},
		Spec:       v1alpha1.TinyNodeSpec{Module: moduleName, Component: component, Edges: edges, Ports: ports},
	}
	if err := h.c.Create(h.ctx, n); err != nil {
		h.t.Fatalf("create node %s: %v", name, err)
	}
}

func (h *harness) get(name string) *v1alpha1.TinyNode {
	h.t.Helper()
	n := &v1alpha1.TinyNode{}
	if err := h.c.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: name}, n); err != nil {
		h.t.Fatalf("get node %s: %v", name, err)
	}
	return n
}

// edit changes a node, retrying on conflicts with the replica's writes.
func (h *harness) edit(name string, change func(*v1alpha1.TinyNode)) {
	h.t.Helper()
	controlplanetest.Eventually(h.t, 10*time.Second, func() error {
		n := &v1alpha1.TinyNode{}
		if err := h.c.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: name}, n); err != nil {
			return err
		}
		change(n)
		return h.c.Update(h.ctx, n)
	})
}

func (h *harness) waitMetadata(name, key, want string) {
	h.t.Helper()
	controlplanetest.Eventually(h.t, 20*time.Second, func() error {
		n := h.get(name)
		if got := n.Status.Metadata[key]; !strings.Contains(got, want) {
			return fmt.Errorf("node %s metadata %s = %q, want it to contain %q", name, key, got, want)
		}
		return nil
	})
}

// waitReady waits for the node's Ready condition to have status and reason.
func (h *harness) waitReady(name string, status metav1.ConditionStatus, reason string) *v1alpha1.TinyNode {
	h.t.Helper()
	var n *v1alpha1.TinyNode
	controlplanetest.Eventually(h.t, 20*time.Second, func() error {
		n = h.get(name)
		c := meta.FindStatusCondition(n.Status.Conditions, v1alpha1.ConditionReady)
		if c == nil || c.Status != status || c.Reason != reason || c.ObservedGeneration != n.Generation {
			return fmt.Errorf("node %s Ready = %+v, want %s/%s at generation %d", name, c, status, reason, n.Generation)
		}
		return nil
	})
	return n
}

func (h *harness) waitEvent(node, reason string) *eventsv1.Event {
	h.t.Helper()
	var found *eventsv1.Event
	controlplanetest.Eventually(h.t, 20*time.Second, func() error {
		var list eventsv1.EventList
		if err := h.c.List(h.ctx, &list, client.InNamespace(h.ns)); err != nil {
			return err
		}
		for i, e := range list.Items {
			if e.Regarding.Name == node && e.Reason == reason {
				found = &list.Items[i]
				return nil
			}
		}
		return fmt.Errorf("no Event %s for node %s among %d", reason, node, len(list.Items))
	})
	return found
}

func edge(id, port, to string) v1alpha1.TinyNodeEdge {
	return v1alpha1.TinyNodeEdge{ID: id, Port: port, To: to}
}

// TestFlowDeliversMapsAndReturns runs starter → relay → sink with a mapping on
// the last edge; the result comes back to the starter, which writes it into
// its status metadata.
func TestFlowDeliversMapsAndReturns(t *testing.T) {
	h := newHarness(t)
	h.startReplica("replica-a")
	h.create("c", "sink", nil, v1alpha1.TinyNodePortConfig{Port: "in", From: "b.out", Configuration: jsonOf(t, map[string]any{
		"who": "{{$.who}}", "count": "{{$.count * 100}}", "note": "for {{$.who}}{{$.missing.path}}",
	})})
	h.create("b", "relay", []v1alpha1.TinyNodeEdge{edge("b-c", "out", "c.in")})
	h.create("a", "starter", []v1alpha1.TinyNodeEdge{edge("a-b", "out", "b.in")}, settings(t, map[string]any{"who": "ann", "run": 1}))

	h.waitMetadata("a", "result", "got ann")
	p := probeOf(h.ns, "c")
	p.mu.Lock()
	got := append([]Greeting(nil), p.got...)
	p.mu.Unlock()
	if len(got) != 1 || got[0] != (Greeting{Who: "ann", Count: 100, Note: "for ann"}) {
		t.Errorf("sink got %+v", got)
	}

	// An error comes back up the chain too.
	h.edit("a", func(n *v1alpha1.TinyNode) {
		n.Spec.Ports = []v1alpha1.TinyNodePortConfig{settings(t, map[string]any{"who": "fail", "run": 2})}
	})
	h.waitMetadata("a", "result", "sink refused")
}

// TestStatusPublishesPortsAndModule checks node status (ports with schemas,
// Ready) and the TinyModule's components.
func TestStatusPublishesPortsAndModule(t *testing.T) {
	h := newHarness(t)
	h.startReplica("replica-a")
	h.create("a", "starter", nil)
	n := h.waitReady("a", metav1.ConditionTrue, controller.ReasonRunning)
	if n.Status.Module.Name != moduleName || n.Status.Module.Version != "v0.0.1-test" || n.Status.Component.Name != "starter" {
		t.Errorf("module/component: %+v %+v", n.Status.Module, n.Status.Component)
	}
	ports := map[string]v1alpha1.PortStatus{}
	for _, p := range n.Status.Ports {
		ports[p.Name] = p
	}
	out, ok := ports["out"]
	if !ok || !out.Source || out.Position != v1alpha1.PositionRight || out.Label != "Out" {
		t.Errorf("out port: %+v", out)
	}
	var schema map[string]any
	if err := json.Unmarshal(ports[v1alpha1.SettingsPort].Schema.Raw, &schema); err != nil {
		t.Fatal(err)
	}
	run := schema["properties"].(map[string]any)["run"].(map[string]any)
	if run["title"] != "Run" || run["description"] != "Change it to send again" {
		t.Errorf("settings schema: %v", schema)
	}
	if def := schema["default"].(map[string]any); def["who"] != "nobody" {
		t.Errorf("settings default: %v", schema["default"])
	}
	// Its component owns no cluster resources: no finalizer, so that the node
	// can be deleted even once its module is gone.
	if len(n.Finalizers) != 0 {
		t.Errorf("finalizers: %v, want none", n.Finalizers)
	}

	controlplanetest.Eventually(t, 20*time.Second, func() error {
		m := &v1alpha1.TinyModule{}
		if err := h.c.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: moduleName}, m); err != nil {
			return err
		}
		if m.Status.Leader != "replica-a" || m.Status.Version != "v0.0.1-test" || len(m.Status.Components) != len(testComponents()) {
			return fmt.Errorf("module status: %+v", m.Status)
		}
		for _, c := range m.Status.Components {
			if c.Name == "starter" && c.Description == "sends when run changes" && len(c.Ports) == 2 && c.Ports[0].Schema != nil {
				return nil
			}
		}
		return fmt.Errorf("no starter with ports in %+v", m.Status.Components)
	})
}

// TestSettingsRedeliveredOnlyWhenChanged changes settings once and the rest of
// the node twice.
func TestSettingsRedeliveredOnlyWhenChanged(t *testing.T) {
	h := newHarness(t)
	h.startReplica("replica-a")
	h.create("m", "marker", nil, settings(t, map[string]any{"who": "x"}))
	p := probeOf(h.ns, "m")
	h.waitReady("m", metav1.ConditionTrue, controller.ReasonRunning)
	if got := p.settings.Load(); got != 1 {
		t.Fatalf("settings delivered %d times at creation", got)
	}

	h.edit("m", func(n *v1alpha1.TinyNode) {
		n.Spec.Ports = []v1alpha1.TinyNodePortConfig{settings(t, map[string]any{"who": "y"})}
	})
	h.waitReady("m", metav1.ConditionTrue, controller.ReasonRunning)
	if got := p.settings.Load(); got != 2 {
		t.Fatalf("settings delivered %d times after a change, want 2", got)
	}

	for i := range 2 {
		mark := fmt.Sprint(i)
		h.edit("m", func(n *v1alpha1.TinyNode) {
			n.Annotations = map[string]string{"probe": mark}
			n.Spec.Ports = []v1alpha1.TinyNodePortConfig{settings(t, map[string]any{"who": "y", "run": 0})}
		})
		h.waitProbe(p, mark)
	}
	if got := p.settings.Load(); got != 2 {
		t.Errorf("unchanged settings redelivered: %d deliveries, want 2", got)
	}
}

func (h *harness) waitProbe(p *probe, mark string) {
	h.t.Helper()
	controlplanetest.Eventually(h.t, 20*time.Second, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.lastSeen != mark {
			return fmt.Errorf("reconcile saw probe %q, want %q", p.lastSeen, mark)
		}
		return nil
	})
}

// TestNoWriteWhenNothingChanges counts status writes at the API server, from
// its audit log: reconciles that change nothing make none.
func TestNoWriteWhenNothingChanges(t *testing.T) {
	h := newHarness(t)
	const user = "replica-writes"
	h.startReplica(user)
	h.create("m", "marker", nil)
	p := probeOf(h.ns, "m")
	h.waitReady("m", metav1.ConditionTrue, controller.ReasonRunning)
	h.waitMetadata("m", "seen", "yes")
	h.edit("m", func(n *v1alpha1.TinyNode) { n.Annotations = map[string]string{"probe": "settled"} })
	h.waitProbe(p, "settled")

	statusWrites := func() int {
		n := 0
		for _, ev := range h.env.Writes(t, user, h.ns) {
			if ev.ObjectRef.Resource == "tinynodes" && ev.ObjectRef.Subresource == "status" {
				n++
			}
		}
		return n
	}
	before := statusWrites()
	if before == 0 {
		t.Fatal("the audit log shows no status write by the replica at all")
	}
	for i := range 3 {
		mark := fmt.Sprint("again-", i)
		h.edit("m", func(n *v1alpha1.TinyNode) { n.Annotations = map[string]string{"probe": mark} })
		h.waitProbe(p, mark)
	}
	// Each reconcile re-rendered the status and re-ran the marker's write:
	// none of them changed anything, so none reached the API server.
	if after := statusWrites(); after != before {
		t.Errorf("%d status writes for changes that changed nothing", after-before)
	}
}

// TestBadInputBecomesStatus gives each kind of bad input its own node and
// checks its condition and Event, while a healthy node keeps running.
func TestBadInputBecomesStatus(t *testing.T) {
	h := newHarness(t)
	h.startReplica("replica-a")
	h.create("healthy", "sink", nil)
	h.create("unknown", "no-such-component", nil)
	h.create("badsettings", "starter", nil, settings(t, map[string]any{"who": 5}))
	h.create("badedge", "relay", []v1alpha1.TinyNodeEdge{edge("e", "out", "ghost.in")})
	h.create("badport", "relay", []v1alpha1.TinyNodeEdge{edge("e", "out", "healthy.nope")})
	h.create("badmapping", "sink", nil, v1alpha1.TinyNodePortConfig{Port: "in", From: "x.out", Configuration: jsonOf(t, map[string]any{"who": "{{$.a +}}"})})
	h.create("panics", "panicker", nil)

	cases := []struct{ node, reason, text string }{
		{"unknown", "UnknownComponent", `no component "no-such-component"`},
		{"badsettings", "InvalidSettings", "/who"},
		{"badedge", "InvalidEdge", "ghost"},
		{"badport", "InvalidEdge", `no input port "nope"`},
		{"badmapping", "InvalidMapping", "$.a +"},
		{"panics", "SettingsRejected", "panicker always panics"},
	}
	for _, c := range cases {
		t.Run(c.node, func(t *testing.T) {
			n := h.waitReady(c.node, metav1.ConditionFalse, c.reason)
			if !strings.Contains(n.Status.Error, c.text) {
				t.Errorf("status.error %q does not mention %q", n.Status.Error, c.text)
			}
			ev := h.waitEvent(c.node, c.reason)
			if ev.Type != "Warning" || !strings.Contains(ev.Note, c.text) {
				t.Errorf("event: %s %q", ev.Type, ev.Note)
			}
		})
	}
	h.waitReady("healthy", metav1.ConditionTrue, controller.ReasonRunning)

	// The missing node appears: the edge that pointed at it heals.
	h.create("ghost", "sink", nil)
	h.waitReady("badedge", metav1.ConditionTrue, controller.ReasonRunning)
}

// TestCycleAndDepthLimit wires a cycle behind a starter.
func TestCycleAndDepthLimit(t *testing.T) {
	h := newHarness(t)
	h.startReplica("replica-a")
	h.create("b", "relay", []v1alpha1.TinyNodeEdge{edge("b-c", "out", "c.in")})
	h.create("c", "relay", []v1alpha1.TinyNodeEdge{edge("c-b", "out", "b.in")})
	h.waitReady("b", metav1.ConditionTrue, controller.ReasonRunning)
	h.waitReady("c", metav1.ConditionTrue, controller.ReasonRunning)
	h.create("a", "starter", []v1alpha1.TinyNodeEdge{edge("a-b", "out", "b.in")}, settings(t, map[string]any{"who": "loop", "run": 1}))
	h.waitMetadata("a", "result", "depth limit")
}

// TestDeleteDestroysAndReleases deletes a node: the object goes at once (it
// carries no finalizer) and the instance is destroyed.
func TestDeleteDestroysAndReleases(t *testing.T) {
	h := newHarness(t)
	h.startReplica("replica-a")
	h.create("a", "sink", nil)
	n := h.waitReady("a", metav1.ConditionTrue, controller.ReasonRunning)
	p := probeOf(h.ns, "a")
	if err := h.c.Delete(h.ctx, n); err != nil {
		t.Fatal(err)
	}
	controlplanetest.Eventually(t, 20*time.Second, func() error {
		err := h.c.Get(h.ctx, client.ObjectKeyFromObject(n), &v1alpha1.TinyNode{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("node still there: %v", err)
		}
		return nil
	})
	controlplanetest.Eventually(t, 20*time.Second, func() error {
		if !p.destroyed.Load() {
			return errors.New("instance not destroyed")
		}
		return nil
	})
}

// TestNodesOutliveTheirModule: once the module is gone (no replica runs),
// its nodes can still be deleted; a finalizer an earlier version set on a
// node that owns no cluster resources is taken off.
func TestNodesOutliveTheirModule(t *testing.T) {
	h := newHarness(t)
	stop := h.startReplica("replica-a")
	legacy := &v1alpha1.TinyNode{
		ObjectMeta: metav1.ObjectMeta{Name: "legacy", Namespace: h.ns, Finalizers: []string{controller.NodeFinalizer}},
		Spec:       v1alpha1.TinyNodeSpec{Module: moduleName, Component: "sink"},
	}
	if err := h.c.Create(h.ctx, legacy); err != nil {
		t.Fatal(err)
	}
	h.create("plain", "sink", nil)
	h.waitReady("plain", metav1.ConditionTrue, controller.ReasonRunning)
	controlplanetest.Eventually(t, 20*time.Second, func() error {
		if f := h.get("legacy").Finalizers; len(f) != 0 {
			return fmt.Errorf("legacy finalizers: %v", f)
		}
		return nil
	})
	stop()
	for _, name := range []string{"plain", "legacy"} {
		if err := h.c.Delete(h.ctx, h.get(name)); err != nil {
			t.Fatal(err)
		}
		if err := h.c.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: name}, &v1alpha1.TinyNode{}); !apierrors.IsNotFound(err) {
			t.Errorf("node %s with its module gone: %v, want it deleted at once", name, err)
		}
	}
}

// TestOtherModulesNodesIgnored: a node of another module gets no instance,
// no finalizer and no status from this module.
func TestOtherModulesNodesIgnored(t *testing.T) {
	h := newHarness(t)
	h.startReplica("replica-a")
	other := &v1alpha1.TinyNode{
		ObjectMeta: metav1.ObjectMeta{Name: "foreign", Namespace: h.ns},
		Spec:       v1alpha1.TinyNodeSpec{Module: "another-module", Component: "sink"},
	}
	if err := h.c.Create(h.ctx, other); err != nil {
		t.Fatal(err)
	}
	h.create("mine", "sink", nil)
	h.waitReady("mine", metav1.ConditionTrue, controller.ReasonRunning)
	n := h.get("foreign")
	if len(n.Finalizers) != 0 || len(n.Status.Conditions) != 0 {
		t.Errorf("foreign node touched: finalizers %v, status %+v", n.Finalizers, n.Status)
	}
	if _, ok := probes.Load(h.ns + "/foreign"); ok {
		t.Error("foreign node got an instance")
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
