package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/pkg/utils"
)

// Test components.

type Greeting struct {
	Who   string `json:"who"`
	Count int    `json:"count"`
	Big   bool   `json:"big"`
	Note  string `json:"note"`
}

type RelaySettings struct {
	Prefix string `json:"prefix" jsonschema:"title=Prefix"`
	Times  int    `json:"times" jsonschema:"minimum=1"`
}

// relay passes what arrives on "in" to "out", prefixed; "boom" panics.
type relay struct {
	mu          sync.Mutex
	settings    RelaySettings
	settingsN   int
	reconciles  int
	destroyed   *atomic.Int32
	lastContext context.Context
}

func (r *relay) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "relay"} }
func (r *relay) Instance() module.Component    { return &relay{destroyed: r.destroyed} }
func (r *relay) Ports() []module.Port {
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Configuration: RelaySettings{Times: 1}},
		{Name: "in", Configuration: Greeting{}},
		{Name: "out", Source: true, Configuration: Greeting{}},
	}
}
func (r *relay) Destroy() {
	if r.destroyed != nil {
		r.destroyed.Add(1)
	}
}
func (r *relay) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.SettingsPort:
		r.mu.Lock()
		r.settings = msg.(RelaySettings)
		r.settingsN++
		r.mu.Unlock()
	case v1alpha1.ReconcilePort:
		r.mu.Lock()
		r.reconciles++
		r.lastContext = ctx
		r.mu.Unlock()
	case "in":
		g := msg.(Greeting)
		if g.Who == "boom" {
			panic("relay exploded")
		}
		r.mu.Lock()
		g.Note = r.settings.Prefix + g.Note
		r.mu.Unlock()
		return output(ctx, "out", g)
	}
	return nil
}

// sink records messages; it returns "got <who>" or an error for who == "fail".
type sink struct {
	mu   sync.Mutex
	got  []any
	ctxs []context.Context
}

func (s *sink) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "sink"} }
func (s *sink) Instance() module.Component    { return &sink{} }
func (s *sink) Ports() []module.Port {
	return []module.Port{{Name: "in", Configuration: Greeting{}}, {Name: "raw"}}
}
func (s *sink) Handle(ctx context.Context, _ module.Handler, port string, msg any) any {
	if port == v1alpha1.ReconcilePort || port == v1alpha1.SettingsPort {
		return nil
	}
	s.mu.Lock()
	s.got = append(s.got, msg)
	s.ctxs = append(s.ctxs, ctx)
	s.mu.Unlock()
	if g, ok := msg.(Greeting); ok {
		switch g.Who {
		case "fail":
			return errors.New("sink refused")
		case "permanent":
			return module.Permanent(errors.New("never"))
		}
		return "got " + g.Who
	}
	return msg
}

func (s *sink) messages() []any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]any(nil), s.got...)
}

func raw(t testing.TB, v any) *apiextensionsv1.JSON {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return &apiextensionsv1.JSON{Raw: data}
}

type fixture struct {
	t     *testing.T
	s     *Scheduler
	nodes map[string]*v1alpha1.TinyNode
}

func newFixture(t *testing.T, isLeader bool) *fixture {
	f := &fixture{t: t, nodes: map[string]*v1alpha1.TinyNode{}}
	s, err := New(Options{
		Module:     module.Info{Name: "m"},
		Components: []module.Component{&relay{destroyed: &atomic.Int32{}}, &sink{}},
		Leader:     leaderIf(isLeader),
		Lookup: func(name string) (*v1alpha1.TinyNode, bool) {
			n, ok := f.nodes[name]
			return n, ok
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	f.s = s
	return f
}

func (f *fixture) add(name, component string, edges []v1alpha1.TinyNodeEdge, ports ...v1alpha1.TinyNodePortConfig) []Problem {
	n := &v1alpha1.TinyNode{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
		Spec:       v1alpha1.TinyNodeSpec{Module: "m", Component: component, Edges: edges, Ports: ports},
	}
	f.nodes[name] = n
	return f.s.Update(context.Background(), n)
}

func (f *fixture) mustAdd(name, component string, edges []v1alpha1.TinyNodeEdge, ports ...v1alpha1.TinyNodePortConfig) {
	f.t.Helper()
	if p := f.add(name, component, edges, ports...); len(p) > 0 {
		f.t.Fatalf("node %s: %v", name, p)
	}
}

func (f *fixture) component(name string) module.Component {
	inst := f.s.instance(name)
	if inst == nil {
		f.t.Fatalf("no instance of %s", name)
	}
	return inst.component
}

func wire(id, port, to string) v1alpha1.TinyNodeEdge {
	return v1alpha1.TinyNodeEdge{ID: id, Port: port, To: to}
}

// TestFlowDeliversMapsAndReturns runs a → b → c, with a mapping on b → c.
func TestFlowDeliversMapsAndReturns(t *testing.T) {
	f := newFixture(t, true)
	f.mustAdd("c", "sink", nil, v1alpha1.TinyNodePortConfig{Port: "in", From: "b.out", Configuration: raw(t, map[string]any{
		"who":   "{{$.who}}",
		"count": "{{$.count * 10}}",
		"big":   "{{$.count > 2}}",
		"note":  "hi {{$.who}}, {{$.note}} [{{$.missing.deep}}]",
	})})
	f.mustAdd("b", "relay", []v1alpha1.TinyNodeEdge{wire("e2", "out", "c.in")},
		v1alpha1.TinyNodePortConfig{Port: v1alpha1.SettingsPort, Configuration: raw(t, map[string]any{"prefix": "p:"})})
	f.mustAdd("a", "relay", []v1alpha1.TinyNodeEdge{wire("e1", "out", "b.in")})

	res := f.s.Handle(context.Background(), Msg{To: "a.in", Data: map[string]any{"who": "ann", "count": 3, "note": "n"}})
	if res != "got ann" {
		t.Fatalf("result: %v", res)
	}
	got := f.component("c").(*sink).messages()
	want := Greeting{Who: "ann", Count: 30, Big: true, Note: "hi ann, p:n []"}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("sink got %#v, want %#v", got, want)
	}

	// Errors come back up the chain with their class.
	res = f.s.Handle(context.Background(), Msg{To: "a.in", Data: Greeting{Who: "fail"}})
	if err, ok := res.(error); !ok || !strings.Contains(err.Error(), "sink refused") || module.IsPermanent(err) {
		t.Errorf("transient error: got %v", res)
	}
	res = f.s.Handle(context.Background(), Msg{To: "a.in", Data: Greeting{Who: "permanent"}})
	if err, ok := res.(error); !ok || !module.IsPermanent(err) {
		t.Errorf("permanent error: got %v", res)
	}
}

func TestMappingKeepsTypesAndMissingIsNull(t *testing.T) {
	f := newFixture(t, true)
	f.mustAdd("c", "sink", nil, v1alpha1.TinyNodePortConfig{Port: "raw", From: "a.out", Configuration: raw(t, map[string]any{
		"n": "{{$.count}}", "s": "{{$.who}}", "b": "{{$.big}}", "gone": "{{$.nothing.here}}", "o": "{{$}}",
	})})
	f.mustAdd("a", "relay", []v1alpha1.TinyNodeEdge{wire("e1", "out", "c.raw")})
	f.s.Handle(context.Background(), Msg{To: "a.in", Data: Greeting{Who: "x", Count: 2, Big: true}})
	got := f.component("c").(*sink).messages()
	if len(got) != 1 {
		t.Fatalf("got %v", got)
	}
	m := got[0].(map[string]any)
	if m["n"] != 2.0 || m["s"] != "x" || m["b"] != true || m["gone"] != nil {
		t.Errorf("mapped: %#v", m)
	}
	if _, ok := m["gone"]; !ok {
		t.Error("a missing path dropped the key instead of giving null")
	}
	if o := m["o"].(map[string]any); o["who"] != "x" {
		t.Errorf("$ is not the whole message: %#v", o)
	}
}

func TestFanOutReturnsFirstErrorInEdgeOrder(t *testing.T) {
	f := newFixture(t, true)
	for _, n := range []string{"s1", "s2", "s3"} {
		f.mustAdd(n, "sink", nil)
	}
	// s2 fails only through its mapping: who is forced to "fail".
	f.mustAdd("s2", "sink", nil, v1alpha1.TinyNodePortConfig{Port: "in", From: "a.out", Configuration: raw(t, map[string]any{"who": "fail"})})
	f.mustAdd("a", "relay", []v1alpha1.TinyNodeEdge{wire("1", "out", "s1.in"), wire("2", "out", "s2.in"), wire("3", "out", "s3.in")})

	res := f.s.Handle(context.Background(), Msg{To: "a.in", Data: Greeting{Who: "ok"}})
	if err, ok := res.(error); !ok || !strings.Contains(err.Error(), "sink refused") {
		t.Fatalf("want the error of edge 2, got %v", res)
	}
	for _, n := range []string{"s1", "s2", "s3"} {
		if got := f.component(n).(*sink).messages(); len(got) != 1 {
			t.Errorf("%s got %d messages", n, len(got))
		}
	}
	f.mustAdd("s2", "sink", nil)
	if res := f.s.Handle(context.Background(), Msg{To: "a.in", Data: Greeting{Who: "ok"}}); res != "got ok" {
		t.Errorf("first edge's result: got %v", res)
	}
}

func TestSettingsRedeliveredOnlyWhenChanged(t *testing.T) {
	f := newFixture(t, true)
	settings := func(v map[string]any) v1alpha1.TinyNodePortConfig {
		return v1alpha1.TinyNodePortConfig{Port: v1alpha1.SettingsPort, Configuration: raw(t, v)}
	}
	f.mustAdd("a", "relay", nil)
	r := f.component("a").(*relay)
	if r.settingsN != 1 || r.settings != (RelaySettings{Times: 1}) {
		t.Fatalf("defaults: %d deliveries, %+v", r.settingsN, r.settings)
	}
	f.mustAdd("a", "relay", nil, settings(map[string]any{"prefix": "x"}))
	if r.settingsN != 2 || r.settings != (RelaySettings{Prefix: "x", Times: 1}) {
		t.Fatalf("changed: %d deliveries, %+v", r.settingsN, r.settings)
	}
	f.mustAdd("a", "relay", nil, settings(map[string]any{"prefix": "x"}))
	f.mustAdd("a", "relay", []v1alpha1.TinyNodeEdge{wire("e", "out", "a.in")}, settings(map[string]any{"prefix": "x", "times": 1}))
	if r.settingsN != 2 {
		t.Errorf("unchanged settings redelivered: %d deliveries", r.settingsN)
	}
	if r.reconciles != 4 {
		t.Errorf("reconcile delivered %d times for 4 updates", r.reconciles)
	}
}

func TestCycleHitsDepthLimit(t *testing.T) {
	f := newFixture(t, true)
	f.mustAdd("b", "relay", nil)
	f.mustAdd("a", "relay", []v1alpha1.TinyNodeEdge{wire("e1", "out", "b.in")})
	f.mustAdd("b", "relay", []v1alpha1.TinyNodeEdge{wire("e2", "out", "a.in")})
	done := make(chan any, 1)
	go func() { done <- f.s.Handle(context.Background(), Msg{To: "a.in", Data: Greeting{Who: "loop"}}) }()
	select {
	case res := <-done:
		err, ok := res.(error)
		if !ok || !errors.Is(err, ErrDepth) || !module.IsPermanent(err) {
			t.Fatalf("want a permanent depth error, got %v", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cycle did not end")
	}
}

func TestPanicBecomesErrorAndOthersRun(t *testing.T) {
	f := newFixture(t, true)
	f.mustAdd("c", "sink", nil)
	f.mustAdd("a", "relay", []v1alpha1.TinyNodeEdge{wire("e1", "out", "c.in")})
	f.mustAdd("other", "relay", []v1alpha1.TinyNodeEdge{wire("e2", "out", "c.in")})
	res := f.s.Handle(context.Background(), Msg{To: "a.in", Data: Greeting{Who: "boom"}})
	if err, ok := res.(error); !ok || !strings.Contains(err.Error(), "relay exploded") {
		t.Fatalf("want the panic as an error, got %v", res)
	}
	if res := f.s.Handle(context.Background(), Msg{To: "other.in", Data: Greeting{Who: "fine"}}); res != "got fine" {
		t.Errorf("other node after a panic: %v", res)
	}
	if res := f.s.Handle(context.Background(), Msg{To: "a.in", Data: Greeting{Who: "again"}}); res != "got again" {
		t.Errorf("panicking node afterwards: %v", res)
	}
}

func TestCancellationStopsTheChain(t *testing.T) {
	f := newFixture(t, true)
	f.mustAdd("c", "sink", nil)
	f.mustAdd("a", "relay", []v1alpha1.TinyNodeEdge{wire("e1", "out", "c.in")})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := f.s.Handle(ctx, Msg{To: "a.in", Data: Greeting{Who: "late"}})
	if !errors.Is(res.(error), context.Canceled) {
		t.Errorf("want context.Canceled, got %v", res)
	}
	if got := f.component("c").(*sink).messages(); len(got) != 0 {
		t.Errorf("sink got %v after cancellation", got)
	}
}

func TestContexts(t *testing.T) {
	f := newFixture(t, true)
	f.mustAdd("c", "sink", nil)
	f.mustAdd("a", "relay", []v1alpha1.TinyNodeEdge{wire("e1", "out", "c.in")})
	f.s.Handle(context.Background(), Msg{To: "a.in", Data: Greeting{Who: "x"}})
	s := f.component("c").(*sink)
	if err := s.ctxs[0].Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("a business message's context outlived its answer: %v", err)
	}
	r := f.component("a").(*relay)
	if r.lastContext.Err() != nil || !utils.IsLeader(r.lastContext) {
		t.Errorf("reconcile context: err %v, leader %v", r.lastContext.Err(), utils.IsLeader(r.lastContext))
	}
	f.s.Remove("a")
	if r.lastContext.Err() == nil {
		t.Error("the system-port context outlived the instance")
	}
}

func TestRemoveDestroys(t *testing.T) {
	f := newFixture(t, true)
	f.mustAdd("a", "relay", nil)
	r := f.component("a").(*relay)
	f.s.Remove("a")
	if r.destroyed.Load() != 1 || f.s.Has("a") {
		t.Errorf("destroyed %d times, still there: %v", r.destroyed.Load(), f.s.Has("a"))
	}
	// Changing the component replaces the instance.
	f.mustAdd("b", "relay", nil)
	f.mustAdd("b", "sink", nil)
	if r.destroyed.Load() != 2 {
		t.Errorf("replaced instance destroyed %d times", r.destroyed.Load()-1)
	}
}

func TestBadInputProblems(t *testing.T) {
	f := newFixture(t, true)
	f.mustAdd("c", "sink", nil)
	cases := []struct {
		name, component string
		edges           []v1alpha1.TinyNodeEdge
		ports           []v1alpha1.TinyNodePortConfig
		reason, text    string
	}{
		{"unknown", "nope", nil, nil, ReasonUnknownComponent, `no component "nope"`},
		{"bad-settings-type", "relay", nil, []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: raw(t, map[string]any{"prefix": 5})}}, ReasonInvalidSettings, "/prefix"},
		{"bad-settings-min", "relay", nil, []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: raw(t, map[string]any{"times": 0})}}, ReasonInvalidSettings, "/times"},
		{"missing-node", "relay", []v1alpha1.TinyNodeEdge{wire("e", "out", "ghost.in")}, nil, ReasonInvalidEdge, "ghost"},
		{"missing-port", "relay", []v1alpha1.TinyNodeEdge{wire("e", "out", "c.nothere")}, nil, ReasonInvalidEdge, `no input port "nothere"`},
		{"bad-source-port", "relay", []v1alpha1.TinyNodeEdge{wire("e", "in", "c.in")}, nil, ReasonInvalidEdge, `no output port "in"`},
		{"bad-mapping", "sink", nil, []v1alpha1.TinyNodePortConfig{{Port: "in", From: "x.out", Configuration: raw(t, map[string]any{"who": "{{$.a +}}"})}}, ReasonInvalidMapping, "$.a +"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			problems := f.add(c.name, c.component, c.edges, c.ports...)
			if len(problems) != 1 || problems[0].Reason != c.reason || !strings.Contains(problems[0].Message, c.text) {
				t.Fatalf("got %+v, want %s mentioning %q", problems, c.reason, c.text)
			}
		})
	}
	// Every other node still runs.
	f.mustAdd("a", "relay", []v1alpha1.TinyNodeEdge{wire("e1", "out", "c.in")})
	if res := f.s.Handle(context.Background(), Msg{To: "a.in", Data: Greeting{Who: "still"}}); res != "got still" {
		t.Errorf("healthy flow beside broken nodes: %v", res)
	}
	// A message for an unknown node or port is a clear permanent error.
	for _, to := range []string{"ghost.in", "c.nothere", "c.out", "nodot"} {
		res := f.s.Handle(context.Background(), Msg{To: to})
		if err, ok := res.(error); !ok || !module.IsPermanent(err) {
			t.Errorf("message to %s: %v", to, res)
		}
	}
}

func TestMalformedDataIsAnError(t *testing.T) {
	f := newFixture(t, true)
	f.mustAdd("c", "sink", nil)
	for _, data := range []any{json.RawMessage(`{"who": 5}`), "text", []int{1}, func() {}} {
		res := f.s.Handle(context.Background(), Msg{To: "c.in", Data: data})
		if err, ok := res.(error); !ok || !module.IsPermanent(err) {
			t.Errorf("data %T: want a permanent error, got %v", data, res)
		}
	}
	if res := f.s.Handle(context.Background(), Msg{To: "c.in", Data: json.RawMessage(`{"who":"json"}`)}); res != "got json" {
		t.Errorf("JSON data: %v", res)
	}
}

func TestReadersDoNotWrite(t *testing.T) {
	w := &countingWriter{}
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{&writer{}}, Leader: leader.Never, Status: w})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	s.Update(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "w"}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "writer"}})
	if res := s.Handle(context.Background(), Msg{To: "w.in"}); res != nil {
		t.Errorf("reader's reconcile output returned %v", res)
	}
	if w.updates.Load() != 0 || w.refreshes.Load() != 0 {
		t.Errorf("a reader wrote: %d updates, %d refreshes", w.updates.Load(), w.refreshes.Load())
	}
}

type countingWriter struct{ updates, refreshes atomic.Int32 }

func (w *countingWriter) UpdateStatus(context.Context, string, func(*v1alpha1.TinyNode) error) error {
	w.updates.Add(1)
	return nil
}
func (w *countingWriter) Refresh(string) { w.refreshes.Add(1) }

// writer writes metadata on every message.
type writer struct{}

func (writer) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "writer"} }
func (writer) Instance() module.Component    { return writer{} }
func (writer) Ports() []module.Port          { return []module.Port{{Name: "in"}} }
func (writer) Handle(ctx context.Context, output module.Handler, port string, _ any) any {
	if port != "in" {
		return nil
	}
	output(ctx, v1alpha1.ReconcilePort, nil)
	return output(ctx, v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) { n.Status.Metadata["x"] = fmt.Sprint(time.Now()) })
}

// TestSystemContextsFollowTerms: system-port deliveries in one term share one
// cancellation (no child context per delivery), which ends with the term; the
// next term gets a fresh one. (The first update's context only adds a value.)
func TestSystemContextsFollowTerms(t *testing.T) {
	l := &leader.Manual{}
	l.Start()
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{&relay{destroyed: &atomic.Int32{}}}, Leader: l})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	node := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "relay"}}
	reconcileCtx := func() context.Context {
		s.Update(context.Background(), node)
		r := s.instance("a").component.(*relay)
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.lastContext
	}
	first, again := reconcileCtx(), reconcileCtx()
	if first.Done() != again.Done() {
		t.Error("two deliveries in one term got different cancellations")
	}
	if !utils.IsLeader(first) {
		t.Error("a leader's system context does not say leader")
	}
	l.Stop()
	select { // the term's end reaches the context from its own goroutine
	case <-first.Done():
	case <-time.After(5 * time.Second):
		t.Error("the term ended and its system context did not")
	}
	if utils.IsLeader(first) {
		t.Error("IsLeader still true after the term ended")
	}
	reader := reconcileCtx()
	if reader.Err() != nil || utils.IsLeader(reader) {
		t.Errorf("reader context: err %v, leader %v", reader.Err(), utils.IsLeader(reader))
	}
	l.Start()
	next := reconcileCtx()
	if next.Done() == first.Done() || next.Err() != nil || !utils.IsLeader(next) {
		t.Errorf("next term's context: same %v, err %v, leader %v", next.Done() == first.Done(), next.Err(), utils.IsLeader(next))
	}
}

// sender sends on out from its settings delivery, as the seed's components
// may: its edges must be in place by then.
type sender struct{}

func (sender) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "sender"} }
func (sender) Instance() module.Component    { return sender{} }
func (sender) Ports() []module.Port {
	return []module.Port{{Name: v1alpha1.SettingsPort, Configuration: Greeting{}}, {Name: "out", Source: true, Configuration: Greeting{}}}
}
func (sender) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	if port == v1alpha1.SettingsPort && msg.(Greeting).Who != "" {
		return output(ctx, "out", msg)
	}
	return nil
}

func TestEdgesInPlaceWhenSettingsArrive(t *testing.T) {
	f := newFixture(t, true)
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{sender{}, &sink{}}, Leader: leader.Always,
		Lookup: func(name string) (*v1alpha1.TinyNode, bool) { n, ok := f.nodes[name]; return n, ok }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	f.s = s
	f.mustAdd("c", "sink", nil)
	f.mustAdd("a", "sender", []v1alpha1.TinyNodeEdge{wire("e", "out", "c.in")},
		v1alpha1.TinyNodePortConfig{Port: v1alpha1.SettingsPort, Configuration: raw(t, map[string]any{"who": "early"})})
	if got := f.component("c").(*sink).messages(); len(got) != 1 || got[0].(Greeting).Who != "early" {
		t.Errorf("a send from the first settings delivery reached %v", got)
	}
}

// flaky fails transiently until it has been called failUntil times.
type flaky struct {
	calls     atomic.Int32
	failUntil int32
	permanent bool
}

func (f *flaky) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "flaky"} }
func (f *flaky) Instance() module.Component    { return f }
func (f *flaky) Ports() []module.Port          { return []module.Port{{Name: "in"}} }
func (f *flaky) Handle(_ context.Context, _ module.Handler, port string, _ any) any {
	if port != "in" {
		return nil
	}
	if n := f.calls.Add(1); n < f.failUntil {
		if f.permanent {
			return module.Permanent(errors.New("bad"))
		}
		return errors.New("busy")
	}
	return "done"
}

func TestEdgeRetryPolicy(t *testing.T) {
	cases := []struct {
		name      string
		retry     *v1alpha1.RetryPolicy
		failUntil int32
		permanent bool
		want      any
		calls     int32
	}{
		{"off by default", nil, 3, false, "busy", 1},
		{"retries transient errors", &v1alpha1.RetryPolicy{Attempts: 3, Backoff: "1ms"}, 3, false, "done", 3},
		{"gives up after attempts", &v1alpha1.RetryPolicy{Attempts: 2, Backoff: "1ms"}, 5, false, "busy", 2},
		{"never retries permanent errors", &v1alpha1.RetryPolicy{Attempts: 5, Backoff: "1ms"}, 3, true, "bad", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			target := &flaky{failUntil: c.failUntil, permanent: c.permanent}
			s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{target, &relay{destroyed: &atomic.Int32{}}}, Leader: leader.Always})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Stop()
			s.Update(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "f"}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "flaky"}})
			if p := s.Update(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "relay",
				Edges: []v1alpha1.TinyNodeEdge{{ID: "e", Port: "out", To: "f.in", Retry: c.retry}}}}); len(p) > 0 {
				t.Fatal(p)
			}
			res := s.Handle(context.Background(), Msg{To: "a.in", Data: Greeting{Who: "x"}})
			got := res
			if err, ok := res.(error); ok {
				got = err.Error()
			}
			if got != c.want || target.calls.Load() != c.calls {
				t.Errorf("got %v after %d calls, want %v after %d", got, target.calls.Load(), c.want, c.calls)
			}
		})
	}
	// A backoff that is not a duration is a problem of the node.
	s, _ := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{&flaky{}, &relay{destroyed: &atomic.Int32{}}}})
	defer s.Stop()
	s.Update(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "f"}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "flaky"}})
	p := s.Update(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "relay",
		Edges: []v1alpha1.TinyNodeEdge{{ID: "e", Port: "out", To: "f.in", Retry: &v1alpha1.RetryPolicy{Attempts: 2, Backoff: "soon"}}}}})
	if len(p) != 1 || p[0].Reason != ReasonInvalidEdge || !strings.Contains(p[0].Message, "retry.backoff") {
		t.Errorf("bad backoff: %+v", p)
	}
}

func TestInstancesGauge(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{emitter{}}, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	gauge := func() float64 {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == "tinymod_node_instances" {
				return f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return -1
	}
	for _, name := range []string{"a", "b"} {
		s.Update(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "emitter"}})
	}
	if g := gauge(); g != 2 {
		t.Errorf("after two nodes: %v", g)
	}
	s.Remove("a")
	if g := gauge(); g != 1 {
		t.Errorf("after a removal: %v", g)
	}
	s.Stop()
	if g := gauge(); g != 0 {
		t.Errorf("after Stop: %v", g)
	}
}

func leaderIf(leading bool) leader.Source {
	if leading {
		return leader.Always
	}
	return leader.Never
}

// TestSystemContextsHookTheTermOnlyWhenAsked: a leader's system context
// hangs nothing on the term until a component asks for Done (thousands of
// nodes would each keep a hook), and ends with the term all the same.
func TestSystemContextsHookTheTermOnlyWhenAsked(t *testing.T) {
	l := &leader.Manual{}
	l.Start()
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{&relay{destroyed: &atomic.Int32{}}}, Leader: l})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	for _, name := range []string{"a", "b"} {
		s.Update(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "relay"}})
	}
	contextOf := func(name string) context.Context {
		r := s.instance(name).component.(*relay)
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.lastContext
	}
	a, b := contextOf("a"), contextOf("b")
	if m := s.instance("a").termCtx.merged.Load(); m != nil {
		t.Fatal("a system context hooked the term before anyone asked for Done")
	}
	derived, cancel := context.WithCancel(b) // asks b for Done
	defer cancel()
	if s.instance("b").termCtx.merged.Load() == nil {
		t.Fatal("a context derived from a system context is not hooked to the term")
	}
	if a.Err() != nil || derived.Err() != nil {
		t.Fatalf("contexts ended within the term: %v, %v", a.Err(), derived.Err())
	}
	l.Stop()
	if !errors.Is(a.Err(), context.Canceled) || context.Cause(a) == nil {
		t.Errorf("the term ended; a context never asked for Done has Err %v, Cause %v", a.Err(), context.Cause(a))
	}
	for _, ctx := range []context.Context{a, derived} {
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
			t.Error("the term ended and a system context, or one derived from it, did not")
		}
	}
}
