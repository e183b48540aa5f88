package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/pkg/utils"
)

// Tests of what hostile but ordinary deployments do to the scheduler:
// components with bugs, messages that do not fit, peers that lie.

// lockedStatus is a StatusWriter that renders the node's ports, as the real
// one does, on a goroutine of its own, and applies the change.
type lockedStatus struct {
	s *Scheduler
}

func (w *lockedStatus) UpdateStatus(_ context.Context, node string, fn func(*v1alpha1.TinyNode) error) error {
	done := make(chan error, 1)
	go func() {
		w.s.Describe(node) // Render: the ports as published
		n := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: node}}
		n.Status.Metadata = map[string]string{}
		done <- fn(n)
	}()
	return <-done
}
func (w *lockedStatus) Refresh(string) {}

// guarded is the seed's failover sample's shape: Handle holds the component's
// lock while it writes status, and Ports takes the same lock.
type guarded struct{ mu sync.Mutex }

func (g *guarded) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "guarded"} }
func (g *guarded) Instance() module.Component    { return &guarded{} }
func (g *guarded) Ports() []module.Port {
	g.mu.Lock()
	defer g.mu.Unlock()
	return []module.Port{{Name: "in"}}
}
func (g *guarded) Handle(ctx context.Context, output module.Handler, port string, _ any) any {
	if port != "in" {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return output(ctx, v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) { n.Status.Metadata["x"] = "y" })
}

// TestStatusWriteUnderTheComponentsLock: writing status while holding the
// lock that Ports takes does not deadlock: the status path never calls Ports.
func TestStatusWriteUnderTheComponentsLock(t *testing.T) {
	w := &lockedStatus{}
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{&guarded{}}, Leader: leader.Always, Status: w})
	if err != nil {
		t.Fatal(err)
	}
	w.s = s
	defer s.Stop()
	s.Update(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "g"}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "guarded"}})
	done := make(chan any, 1)
	go func() { done <- s.Handle(context.Background(), Msg{To: "g.in"}) }()
	select {
	case res := <-done:
		if res != nil {
			t.Errorf("Handle: %v", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("deadlock: the status write waits for Ports, which waits for Handle's lock")
	}
}

// bomb panics wherever its kind says: in Instance, Ports, GetInfo, Destroy,
// Handle, a status callback, or decoding (a message type whose UnmarshalJSON
// panics).
type bomb struct{ where string }

type Fuse struct{ Lit bool }

func (f *Fuse) UnmarshalJSON(b []byte) error {
	if strings.Contains(string(b), "lit") {
		panic("decoding exploded")
	}
	return nil
}

func (b *bomb) GetInfo() module.ComponentInfo {
	if b.where == "info" {
		panic("GetInfo exploded")
	}
	return module.ComponentInfo{Name: "bomb-" + b.where}
}
func (b *bomb) Instance() module.Component {
	if b.where == "instance" {
		panic("Instance exploded")
	}
	return &bomb{where: b.where}
}
func (b *bomb) Ports() []module.Port {
	if b.where == "ports" {
		panic("Ports exploded")
	}
	return []module.Port{{Name: "in", Configuration: Fuse{}}}
}
func (b *bomb) Destroy() {
	if b.where == "destroy" {
		panic("Destroy exploded")
	}
}
func (b *bomb) Handle(ctx context.Context, output module.Handler, port string, _ any) any {
	switch {
	case port == "in" && b.where == "handle":
		panic("Handle exploded")
	case port == v1alpha1.ReconcilePort && b.where == "reconcile":
		panic("_reconcile exploded")
	case port == "in" && b.where == "status":
		return output(ctx, v1alpha1.ReconcilePort, func(*v1alpha1.TinyNode) { panic("status callback exploded") })
	}
	return nil
}

// named lets GetInfo panic only once the scheduler has registered the
// component under a name.
type named struct {
	*bomb
	name  string
	armed bool
}

func (n *named) GetInfo() module.ComponentInfo {
	if n.armed {
		return n.bomb.GetInfo()
	}
	return module.ComponentInfo{Name: n.name}
}
func (n *named) Instance() module.Component {
	return &named{bomb: n.bomb.Instance().(*bomb), name: n.name, armed: true}
}

// TestPanicsAnywhereAreContained: a panic in each place component code runs is
// recovered, reported once per place to OnPanic with the entry point, counted,
// and the scheduler keeps serving a healthy node.
func TestPanicsAnywhereAreContained(t *testing.T) {
	places := []string{"instance", "ports", "info", "destroy", "handle", "reconcile", "status", "decode"}
	var comps []module.Component
	for _, p := range places {
		comps = append(comps, &named{bomb: &bomb{where: p}, name: "bomb-" + p})
	}
	comps = append(comps, &sink{})
	var (
		mu     sync.Mutex
		panics = map[string][]string{}
	)
	reg := prometheus.NewRegistry()
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: comps, Leader: leader.Always, Status: &lockedStatus{}, Metrics: reg,
		OnPanic: func(node string, err error) {
			mu.Lock()
			panics[node] = append(panics[node], err.Error())
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	s.opts.Status.(*lockedStatus).s = s
	defer s.Stop()
	for _, p := range places {
		s.Update(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: p}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "bomb-" + p}})
		data := any(map[string]any{})
		if p == "decode" {
			data = "lit"
		}
		if res := s.Handle(context.Background(), Msg{To: p + ".in", Data: data}); p == "handle" || p == "status" || p == "decode" {
			if err, ok := res.(error); !ok || !strings.Contains(err.Error(), "panic") {
				t.Errorf("%s: Handle returned %v, want the panic as an error", p, res)
			}
		}
		s.Remove(p)
	}
	s.Update(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "ok"}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "sink"}})
	if res := s.Handle(context.Background(), Msg{To: "ok.in", Data: map[string]any{"who": "x"}}); res != "got x" {
		t.Errorf("a healthy node after the panics: %v", res)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range places {
		if len(panics[p]) == 0 {
			t.Errorf("%s: no panic reported", p)
			continue
		}
		if !strings.Contains(panics[p][0], "exploded") {
			t.Errorf("%s: reported %q", p, panics[p][0])
		}
	}
	if n := counterValue(s.metrics.panics.WithLabelValues("m")); n < float64(len(places)) {
		t.Errorf("tinymod_component_panics_total = %v, want at least %d", n, len(places))
	}
}

// TestFailedDeliveriesLeaveATrace: a mapping that fails at run time and a
// message that does not decode each fail the sender, count as an error of the
// target port, show in the node's health, and are logged, at most once per
// node and edge in each period.
func TestFailedDeliveriesLeaveATrace(t *testing.T) {
	var (
		mu    sync.Mutex
		lines []string
	)
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		lines = append(lines, args)
		mu.Unlock()
	}, funcr.Options{})
	reg := prometheus.NewRegistry()
	f := &fixture{t: t, nodes: map[string]*v1alpha1.TinyNode{}}
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{&relay{}, &sink{}}, Leader: leader.Always,
		Metrics: reg, Log: log, LogEvery: time.Hour,
		Lookup: func(name string) (*v1alpha1.TinyNode, bool) { n, ok := f.nodes[name]; return n, ok }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	f.s = s
	// b maps with a template that fails at run time (division by zero of a
	// string); c gets a count that does not decode into Greeting.Count.
	f.mustAdd("b", "sink", nil, v1alpha1.TinyNodePortConfig{Port: "in", From: "a.out", Configuration: raw(t, map[string]any{"count": "{{$.who / 0}}"})})
	f.mustAdd("c", "sink", nil, v1alpha1.TinyNodePortConfig{Port: "in", From: "a2.out", Configuration: raw(t, map[string]any{"count": "{{$.who}}"})})
	f.mustAdd("a", "relay", []v1alpha1.TinyNodeEdge{wire("ab", "out", "b.in")})
	f.mustAdd("a2", "relay", []v1alpha1.TinyNodeEdge{wire("ac", "out", "c.in")})

	for i := 0; i < 3; i++ {
		for _, from := range []string{"a", "a2"} {
			res := s.Handle(context.Background(), Msg{To: from + ".in", Data: map[string]any{"who": "ann"}})
			if err, ok := res.(error); !ok || err == nil {
				t.Fatalf("%s: %v, want an error", from, res)
			}
		}
	}
	for _, node := range []string{"b", "c"} {
		if n := gathered(t, reg, "tinymod_messages_total", "node", node, "port", "in", "result", "error"); n != 3 {
			t.Errorf("tinymod_messages_total{node=%q,port=in,result=error} = %v, want 3", node, n)
		}
		h := s.Health()[node]
		if h.Errors != 3 || h.LastError == "" || h.LastErrorAt.IsZero() {
			t.Errorf("health of %s: %+v", node, h)
		}
	}
	if n := counterValue(s.metrics.failures.WithLabelValues("m")); n < 6 {
		t.Errorf("tinymod_delivery_failures_total = %v, want at least 6", n)
	}
	mu.Lock()
	defer mu.Unlock()
	perNode := map[string]int{}
	for _, l := range lines {
		if !strings.Contains(l, `"msg"="delivery failed"`) {
			continue
		}
		for _, node := range []string{"b", "c"} {
			if strings.Contains(l, fmt.Sprintf(`"node"=%q`, node)) {
				perNode[node]++
			}
		}
	}
	// Each target fails three times along one edge: one line each (the sender,
	// a relay that returns its output's error, logs its own).
	if perNode["b"] != 1 || perNode["c"] != 1 {
		t.Errorf("log lines per failing node: %v, want one each (rate-limited); lines: %q", perNode, lines)
	}
}

// TestDepthFromOutsideIsChecked: a message whose depth is negative (a peer
// that lies) is refused, so the cycle limit cannot be turned off.
func TestDepthFromOutsideIsChecked(t *testing.T) {
	f := newFixture(t, true)
	f.add("a", "relay", []v1alpha1.TinyNodeEdge{wire("ab", "out", "b.in")})
	f.mustAdd("b", "relay", []v1alpha1.TinyNodeEdge{wire("ba", "out", "a.in")})
	f.mustAdd("a", "relay", []v1alpha1.TinyNodeEdge{wire("ab", "out", "b.in")})
	res := f.s.Handle(WithDepth(context.Background(), -1<<40), Msg{To: "a.in", Data: map[string]any{"who": "x"}})
	err, ok := res.(error)
	if !ok || !errors.Is(err, ErrDepth) || !module.IsPermanent(err) {
		t.Fatalf("negative depth: %v, want a permanent ErrDepth", res)
	}
}

// TestLookupNeverRevivesOrRollsBack: a message along an edge to a node that is
// being deleted does not start an instance of it, and a stale copy of a node
// does not roll its instance back to an older spec.
func TestLookupNeverRevivesOrRollsBack(t *testing.T) {
	f := newFixture(t, true)
	now := metav1.Now()
	f.nodes["gone"] = &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "gone", DeletionTimestamp: &now, Finalizers: []string{"x"}},
		Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "sink"}}
	f.mustAdd("a", "relay", nil)
	f.s.instance("a").mu.Lock()
	f.s.instance("a").edges = map[string][]*edge{"out": {{id: "ag", from: "a.out", to: "gone.in", toNode: "gone", toPort: "in"}}}
	f.s.instance("a").publishLocked()
	f.s.instance("a").mu.Unlock()
	res := f.s.Handle(context.Background(), Msg{To: "a.in", Data: map[string]any{"who": "x"}})
	if err, ok := res.(error); !ok || !errors.Is(err, ErrNoNode) {
		t.Errorf("message to a node being deleted: %v, want ErrNoNode", res)
	}
	if f.s.Has("gone") {
		t.Error("a message revived the instance of a node being deleted")
	}

	newer := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "r", UID: "u1", Generation: 2},
		Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "relay", Ports: []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: raw(t, map[string]any{"prefix": "new:"})}}}}
	older := newer.DeepCopy()
	older.Generation = 1
	older.Spec.Ports[0].Configuration = raw(t, map[string]any{"prefix": "old:"})
	f.s.Update(context.Background(), newer)
	f.s.Update(context.Background(), older)
	r := f.component("r").(*relay)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.settings.Prefix != "new:" {
		t.Errorf("settings after a stale update: %q, want new:", r.settings.Prefix)
	}
}

// TestIsLeaderOnEveryPort: utils.IsLeader answers for this replica in Handle on
// a business port, whoever delivered the message (here: from outside, with a
// context that carries no leadership of its own).
func TestIsLeaderOnEveryPort(t *testing.T) {
	for _, leading := range []bool{true, false} {
		f := newFixture(t, leading)
		f.mustAdd("s", "sink", nil)
		f.s.Handle(context.Background(), Msg{To: "s.in", Data: map[string]any{"who": "x"}, ID: "signal-uid"})
		sk := f.component("s").(*sink)
		sk.mu.Lock()
		ctx := sk.ctxs[0]
		sk.mu.Unlock()
		if got := utils.IsLeader(ctx); got != leading {
			t.Errorf("leading=%v: utils.IsLeader in Handle on a business port = %v", leading, got)
		}
	}
}

// gathered is the value of the counter or histogram count of family with
// the labels given as name, value pairs, gathered from reg; -1 if none.
func gathered(t *testing.T, reg prometheus.Gatherer, family string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != family {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metric
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// counted counts its live instances: made by Instance, ended by Destroy.
type counted struct {
	name string
	live *atomic.Int32
}

func (c *counted) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: c.name} }
func (c *counted) Instance() module.Component {
	c.live.Add(1)
	return &counted{name: c.name, live: c.live}
}
func (c *counted) Ports() []module.Port                                    { return []module.Port{{Name: "in"}} }
func (c *counted) Handle(context.Context, module.Handler, string, any) any { return nil }
func (c *counted) Destroy()                                                { c.live.Add(-1) }

// TestConcurrentUpdatesLeaveOneInstance: many callers switch a node to another
// component at once (the controller and messages along edges both make
// instances); exactly one instance of the node is left running.
func TestConcurrentUpdatesLeaveOneInstance(t *testing.T) {
	a, b := &atomic.Int32{}, &atomic.Int32{}
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{&counted{name: "a", live: a}, &counted{name: "b", live: b}}})
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 50; round++ {
		name := fmt.Sprintf("n%d", round)
		s.Update(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "a"}})
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.Update(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "b"}})
			}()
		}
		wg.Wait()
	}
	if a.Load() != 0 || b.Load() != 50 {
		t.Fatalf("live instances: %d of a, %d of b; want 0 and 50 (one per node)", a.Load(), b.Load())
	}
	s.Stop()
	if b.Load() != 0 {
		t.Errorf("%d instances outlived Stop", b.Load())
	}
}
