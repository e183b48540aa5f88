package sdkstyle_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/scheduler"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/test/e2e/compat/sdkstyle"
)

// The components register once, through compat's registry, as a module
// binary's main would.
var register sync.Once

// events records what the components observe, per test node name.
type events struct {
	mu  sync.Mutex
	all []string // "node event k=v ..."
}

func (e *events) add(node, event string, details map[string]any) {
	keys := make([]string, 0, len(details))
	for k := range details {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	line := node + " " + event
	for _, k := range keys {
		line += fmt.Sprintf(" %s=%v", k, details[k])
	}
	e.mu.Lock()
	e.all = append(e.all, line)
	e.mu.Unlock()
}

// forget drops what was recorded of node: a test run again (-count) starts
// afresh.
func (e *events) forget(node string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	kept := e.all[:0]
	for _, l := range e.all {
		if !strings.HasPrefix(l, node+" ") {
			kept = append(kept, l)
		}
	}
	e.all = kept
}

func (e *events) of(node string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, l := range e.all {
		if strings.HasPrefix(l, node+" ") {
			out = append(out, strings.TrimPrefix(l, node+" "))
		}
	}
	return out
}

var seen = &events{}

// memStatus keeps node statuses in memory, as the leader's status writer
// would persist them.
type memStatus struct {
	mu     sync.Mutex
	nodes  map[string]*v1alpha1.TinyNode
	writes int
}

func (m *memStatus) UpdateStatus(_ context.Context, node string, fn func(*v1alpha1.TinyNode) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.nodes[node]
	if n == nil {
		n = &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: node}}
		m.nodes[node] = n
	}
	if n.Status.Metadata == nil {
		n.Status.Metadata = map[string]string{}
	}
	if fn != nil {
		if err := fn(n); err != nil {
			return err
		}
	}
	m.writes++
	return nil
}

func (m *memStatus) Refresh(string) {}

func (m *memStatus) metadata(node string) map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := m.nodes[node]; n != nil {
		out := map[string]string{}
		for k, v := range n.Status.Metadata {
			out[k] = v
		}
		return out
	}
	return nil
}

// nodes is what the schedulers' Lookup finds, as a replica's cache would.
var nodes sync.Map // name -> *v1alpha1.TinyNode

func newScheduler(t *testing.T, src leader.Source, status scheduler.StatusWriter, tr scheduler.Transport) *scheduler.Scheduler {
	t.Helper()
	register.Do(func() {
		sdkstyle.Register("test")
		sdkstyle.Observer = seen.add
	})
	lookup := func(name string) (*v1alpha1.TinyNode, bool) {
		n, ok := nodes.Load(name)
		if !ok {
			return nil, false
		}
		return n.(*v1alpha1.TinyNode), true
	}
	s, err := scheduler.New(scheduler.Options{Module: module.Info{Name: "sdk"}, Leader: src, Status: status, Transport: tr, Lookup: lookup})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func node(t *testing.T, name, component string, settings any, metadata map[string]string, edges ...v1alpha1.TinyNodeEdge) *v1alpha1.TinyNode {
	if _, known := nodes.Load(name); !known {
		seen.forget(name)
	}
	t.Cleanup(func() { nodes.Delete(name) })
	n := &v1alpha1.TinyNode{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name)},
		Spec:       v1alpha1.TinyNodeSpec{Module: "sdk", Component: component, Edges: edges},
		Status:     v1alpha1.TinyNodeStatus{Metadata: metadata},
	}
	if settings != nil {
		raw, err := json.Marshal(settings)
		if err != nil {
			t.Fatal(err)
		}
		n.Spec.Ports = []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: &apiextensionsv1.JSON{Raw: raw}}}
	}
	return n
}

func update(t *testing.T, s *scheduler.Scheduler, n *v1alpha1.TinyNode) {
	t.Helper()
	nodes.Store(n.Name, n)
	if p := s.Update(context.Background(), n); len(p) > 0 {
		t.Fatalf("node %s: %v", n.Name, p)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReconcileByValueBeforeSettings: a restarted replica's emitter learns
// from _reconcile (a TinyNode by value) that it was running before its
// settings arrive, so the settings do not clear the running flow.
func TestReconcileByValueBeforeSettings(t *testing.T) {
	status := &memStatus{nodes: map[string]*v1alpha1.TinyNode{}}
	s := newScheduler(t, leader.Always, status, nil)
	update(t, s, node(t, "e1", "emitter", sdkstyle.EmitterSettings{PeriodMs: 1000}, map[string]string{"running": "true"}))

	got := seen.of("e1")
	if len(got) < 2 || got[0] != "reconcile leader=true running=true" || got[1] != "settings running=true" {
		t.Fatalf("events %q: want _reconcile (running restored) and then _settings", got)
	}
	if md := status.metadata("e1"); md != nil && md["running"] != "true" {
		t.Errorf("the settings cleared the running flow: metadata %v", md)
	}
}

// TestControlDeclaredAsSourceReceives: start and stop an emitter on its
// _control port, which it declares as a source; the stop is decoded into the
// control type the emitter declares once running.
func TestControlDeclaredAsSourceReceives(t *testing.T) {
	status := &memStatus{nodes: map[string]*v1alpha1.TinyNode{}}
	s := newScheduler(t, leader.Always, status, nil)
	update(t, s, node(t, "e2", "emitter", sdkstyle.EmitterSettings{PeriodMs: 1000}, nil))

	if res := s.Handle(context.Background(), scheduler.Msg{To: "e2._control", Data: json.RawMessage(`{"start":true}`)}); res != nil {
		t.Fatalf("start: %v", res)
	}
	if md := status.metadata("e2"); md["running"] != "true" {
		t.Fatalf("running not written on start: %v", md)
	}
	// At once: the port's type must already be the one for a running emitter.
	if res := s.Handle(context.Background(), scheduler.Msg{To: "e2._control", Data: json.RawMessage(`{"stop":true}`)}); res != nil {
		t.Fatalf("stop: %v", res)
	}
	got := seen.of("e2")
	want := []string{"control type=sdkstyle.StartControl", "control type=sdkstyle.StopControl"}
	var controls []string
	for _, e := range got {
		if strings.HasPrefix(e, "control") {
			controls = append(controls, e)
		}
	}
	if !slices.Equal(controls, want) {
		t.Fatalf("controls %q, want %q", controls, want)
	}
	if md := status.metadata("e2"); md["running"] != "" {
		t.Errorf("running still written after stop: %v", md)
	}
}

// TestOnDestroyOnDeletionOnly: OnDestroy runs, with the node's metadata,
// when the node is removed, and not when the replica stops.
func TestOnDestroyOnDeletionOnly(t *testing.T) {
	s := newScheduler(t, leader.Never, nil, nil)
	update(t, s, node(t, "e3", "emitter", nil, map[string]string{"running": "true"}))
	update(t, s, node(t, "e4", "emitter", nil, map[string]string{"running": "true"}))
	s.Remove("e3")
	s.Stop()
	if got := seen.of("e3"); !slices.Contains(got, "destroy running=true") {
		t.Errorf("e3 removed, events %q: want OnDestroy with its metadata", got)
	}
	for _, e := range seen.of("e4") {
		if strings.HasPrefix(e, "destroy") {
			t.Errorf("e4 was not deleted, only the replica stopped, and OnDestroy ran: %q", e)
		}
	}
}

// TestMessagesDecodeOverTheZeroValue: fields a message leaves out are zero,
// not the port's example values.
func TestMessagesDecodeOverTheZeroValue(t *testing.T) {
	s := newScheduler(t, leader.Always, nil, nil)
	update(t, s, node(t, "r1", "recorder", nil, nil))
	if res := s.Handle(context.Background(), scheduler.Msg{To: "r1.in", Data: json.RawMessage(`{"seq": 3}`)}); res != nil {
		t.Fatal(res)
	}
	if got := seen.of("r1"); !slices.Contains(got, "sample extra= label= leader=true seq=3") {
		t.Errorf("events %q: want a sample with empty label and extra", got)
	}
}

// leaderTransport carries messages from a reader's scheduler to the leader's,
// as the gRPC transport does for system ports.
type leaderTransport struct {
	to    func() *scheduler.Scheduler
	calls int
}

func (tr *leaderTransport) Send(ctx context.Context, _ string, msg scheduler.Msg) any {
	tr.calls++
	// Across the wire the data is JSON.
	raw, err := json.Marshal(msg.Data)
	if err != nil {
		return err
	}
	msg.Data = json.RawMessage(raw)
	return tr.to().Handle(ctx, msg)
}

// readerStatus fails the test on any write: a reader never writes.
type readerStatus struct{ t *testing.T }

func (r readerStatus) UpdateStatus(context.Context, string, func(*v1alpha1.TinyNode) error) error {
	r.t.Error("a reader wrote status")
	return nil
}
func (readerStatus) Refresh(string) {}

// TestReaderMetadataReachesTheLeader: a put that arrives on a reader is
// written by the leader, once; the reader writes nothing.
func TestReaderMetadataReachesTheLeader(t *testing.T) {
	status := &memStatus{nodes: map[string]*v1alpha1.TinyNode{}}
	lead := newScheduler(t, leader.Always, status, nil)
	tr := &leaderTransport{to: func() *scheduler.Scheduler { return lead }}
	reader := newScheduler(t, leader.Never, readerStatus{t}, tr)
	for _, s := range []*scheduler.Scheduler{lead, reader} {
		update(t, s, node(t, "kv", "store", nil, map[string]string{"kv-old": "1"}))
	}
	if res := reader.Handle(context.Background(), scheduler.Msg{To: "kv.put", Data: json.RawMessage(`{"key":"a","value":"from-reader"}`)}); res != nil {
		t.Fatalf("put on the reader: %v", res)
	}
	md := status.metadata("kv")
	if md["kv-a"] != "from-reader" {
		t.Fatalf("leader's metadata %v: want kv-a=from-reader", md)
	}
	if _, ok := md["kv-old"]; ok {
		t.Errorf("the forwarded write carried keys it did not change: %v", md)
	}
	if tr.calls != 1 {
		t.Errorf("forwarded %d times, want once", tr.calls)
	}
	// Nothing else may write through the forwarding port.
	res := lead.Handle(context.Background(), scheduler.Msg{To: "kv." + scheduler.MetadataPort, Data: json.RawMessage(`{"set":{"x":"y"}}`)})
	if err, ok := res.(error); !ok || !module.IsPermanent(err) {
		t.Errorf("a message to %s from outside: %v, want a permanent error", scheduler.MetadataPort, res)
	}
}

// TestPortsFollowTheRestoredState: an emitter that learns from _reconcile
// that it runs (a new leader's, after a failover) publishes, and decodes
// into, its running control at once.
func TestPortsFollowTheRestoredState(t *testing.T) {
	term := &leader.Manual{}
	s := newScheduler(t, term, &memStatus{nodes: map[string]*v1alpha1.TinyNode{}}, nil)
	update(t, s, node(t, "e5", "emitter", sdkstyle.EmitterSettings{PeriodMs: 1000}, nil))
	// The leader started it and wrote so; this replica, a reader, sees the
	// new status, and nothing else, on _reconcile. Then it leads.
	update(t, s, node(t, "e5", "emitter", sdkstyle.EmitterSettings{PeriodMs: 1000}, map[string]string{"running": "true"}))
	term.Start()
	if res := s.Handle(context.Background(), scheduler.Msg{To: "e5._control", Data: json.RawMessage(`{"stop":true}`)}); res != nil {
		t.Fatalf("stop: %v", res)
	}
	if got := seen.of("e5"); !slices.Contains(got, "control type=sdkstyle.StopControl") {
		t.Errorf("events %q: the stop was not decoded into the running control", got)
	}
}

// TestSettingsAreDecodedNotValidated: the SDK hands a component its settings
// as they decode, even without a field its schema marks required.
func TestSettingsAreDecodedNotValidated(t *testing.T) {
	s := newScheduler(t, leader.Never, nil, nil)
	update(t, s, node(t, "e6", "emitter", map[string]any{"label": "only"}, nil))
	if got := seen.of("e6"); !slices.Contains(got, "settings running=false") {
		t.Errorf("events %q: want the settings delivered", got)
	}
}
