// Package moduletest runs components in a test the way a replica of a module
// runs them: through tinymod's own scheduler, so settings, _reconcile, edges,
// port decoding, panics and utils.IsLeader behave as they do on a cluster.
// The test holds what a cluster would: it starts and ends leadership terms,
// reads the status the leader would write, and watches what arrives at a sink.
//
//	f := moduletest.New(t, &Greeter{})
//	f.Add("g", "greeter", Settings{Greeting: "Hi"}, map[string]string{"out": "sink.in"})
//	f.Send("g.in", Person{Name: "ann"})
//	f.Sink.Got() // ["Hi, ann!"]
//
// No API server, network or goroutine outlives the test.
package moduletest

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/leadership"
	"github.com/tinymod/tinymod/internal/scheduler"
	"github.com/tinymod/tinymod/module"
)

// ModuleName is the module every node of a Flow belongs to (spec.module).
const ModuleName = "test"

// SinkComponent and SinkNode name the Sink: wire an output to "sink.in".
const (
	SinkComponent = "sink"
	SinkNode      = "sink"
)

// Flow is one replica running nodes of the given components, and a node
// "sink" of the Sink.
type Flow struct {
	// Leader starts and ends this replica's leadership terms. A Flow leads
	// from the start.
	Leader *Leader
	// Status is the node status this replica has written as leader.
	Status *Status
	// Sink records what arrives at "sink.in".
	Sink *Sink

	t  testing.TB
	s  *scheduler.Scheduler
	mu sync.Mutex
	// nodeMu orders, per node, the test's applies and removals with the
	// statuses writes bring back, as a controller's queue does per key.
	nodeMu map[string]*sync.Mutex
	nodes  map[string]*v1alpha1.TinyNode
}

// New returns a leading Flow hosting components and the sink; it stops when
// the test ends.
func New(t testing.TB, components ...module.Component) *Flow {
	t.Helper()
	f := &Flow{
		Status: &Status{nodes: map[string]*v1alpha1.TinyNode{}},
		Sink:   &Sink{},
		t:      t,
		nodes:  map[string]*v1alpha1.TinyNode{},
	}
	f.Leader = &Leader{f: f}
	f.Leader.m.Start()
	s, err := scheduler.New(scheduler.Options{
		Module:     module.Info{Name: ModuleName},
		Components: append(append([]module.Component(nil), components...), f.Sink),
		Leader:     &f.Leader.m,
		Status:     statusWriter{f.Status},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.s = s
	t.Cleanup(s.Stop)
	// A status write reaches every instance on _reconcile, as the watch
	// brings it: in order, off the writer's goroutine, and always the latest
	// status, as a cache would hand it.
	kick, stop, stopped := make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	latest := map[string]v1alpha1.TinyNodeStatus{}
	f.Status.onWrite = func(n *v1alpha1.TinyNode) {
		f.mu.Lock()
		latest[n.Name] = n.Status
		f.mu.Unlock()
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	go func() {
		defer close(stopped)
		for {
			select {
			case <-stop:
				return
			case <-kick:
			}
			// The status goes with the node's spec as it is now: a node
			// applied again since keeps its new spec, a removed one stays
			// removed.
			f.mu.Lock()
			todo := latest
			latest = map[string]v1alpha1.TinyNodeStatus{}
			f.mu.Unlock()
			for name, status := range todo {
				unlock := f.lockNode(name)
				f.mu.Lock()
				spec, ok := f.nodes[name]
				f.mu.Unlock()
				if ok {
					next := spec.DeepCopy()
					next.Status = status
					s.Update(context.Background(), next)
				}
				unlock()
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-stopped })
	f.Add(SinkNode, SinkComponent, nil, nil)
	return f
}

// Add runs node name of component with settings (any value that encodes to
// the settings port's JSON; nil for none), its output ports wired by edges
// from port name to "<node>.<port>". The test fails if the node is rejected.
func (f *Flow) Add(name, component string, settings any, edges map[string]string) {
	f.t.Helper()
	n := Node(name, component, settings)
	for port, to := range edges {
		n.Spec.Edges = append(n.Spec.Edges, v1alpha1.TinyNodeEdge{ID: name + "-" + port, Port: port, To: to})
	}
	if problems := f.Apply(n); len(problems) > 0 {
		f.t.Fatalf("node %s: %+v", name, problems)
	}
}

// Problems applies a node as Add does, without edges, and returns what is
// wrong with it instead of failing the test.
func (f *Flow) Problems(name, component string, settings any) []Problem {
	f.t.Helper()
	return f.Apply(Node(name, component, settings))
}

// Apply runs node as given, or updates its instance, and returns what is wrong
// with it: what the node's status.error and Ready condition would say. Use it
// for what Add cannot express, such as edge mappings.
func (f *Flow) Apply(node *v1alpha1.TinyNode) []Problem {
	node = node.DeepCopy()
	if node.Spec.Module == "" {
		node.Spec.Module = ModuleName
	}
	defer f.lockNode(node.Name)()
	// As the API server would, the node keeps the status written so far.
	if written := f.Status.Node(node.Name); node.Status.Metadata == nil && written.Metadata != nil {
		node.Status = written
	}
	f.mu.Lock()
	f.nodes[node.Name] = node
	f.mu.Unlock()
	var out []Problem
	for _, p := range f.s.Update(context.Background(), node) {
		out = append(out, Problem{Reason: p.Reason, Message: p.Message})
	}
	return out
}

// lockNode takes the node's lock and returns its release.
func (f *Flow) lockNode(name string) func() {
	f.mu.Lock()
	if f.nodeMu == nil {
		f.nodeMu = map[string]*sync.Mutex{}
	}
	m := f.nodeMu[name]
	if m == nil {
		m = &sync.Mutex{}
		f.nodeMu[name] = m
	}
	f.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// Remove stops a node's instance, as deleting its TinyNode does.
func (f *Flow) Remove(name string) {
	defer f.lockNode(name)()
	f.mu.Lock()
	delete(f.nodes, name)
	f.mu.Unlock()
	f.s.Remove(name)
}

// Send delivers data to "<node>.<port>" as a TinySignal would (encoded to
// JSON, then decoded into the port's type) and returns the node's result.
func (f *Flow) Send(to string, data any) any {
	f.t.Helper()
	return f.SendContext(context.Background(), to, data)
}

// SendContext is Send with the sender's context.
func (f *Flow) SendContext(ctx context.Context, to string, data any) any {
	f.t.Helper()
	raw, err := json.Marshal(data)
	if err != nil {
		f.t.Fatalf("send to %s: %v", to, err)
	}
	return f.s.Handle(ctx, scheduler.Msg{To: to, Data: json.RawMessage(raw), ID: "moduletest"})
}

// Ports returns a node's ports with their JSON Schemas, as its status
// publishes them; nil if the node does not run.
func (f *Flow) Ports(node string) []v1alpha1.PortStatus {
	_, ports, ok := f.s.Describe(node)
	if !ok {
		return nil
	}
	return append([]v1alpha1.PortStatus(nil), ports...)
}

// Node returns a TinyNode of component with settings, for Apply.
func Node(name, component string, settings any) *v1alpha1.TinyNode {
	n := &v1alpha1.TinyNode{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.TinyNodeSpec{Module: ModuleName, Component: component},
	}
	if settings != nil {
		raw, err := json.Marshal(settings)
		if err != nil {
			raw, _ = json.Marshal(err.Error()) // the settings port rejects it, as the API would
		}
		n.Spec.Ports = []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: &apiextensionsv1.JSON{Raw: raw}}}
	}
	return n
}

// Problem is something wrong with a node's spec.
type Problem struct {
	// Reason is a CamelCase word, as in the node's Ready condition: one of
	// the Reason constants.
	Reason string
	// Message says what is wrong, naming the part of the spec.
	Message string
}

// Reasons of a Problem.
const (
	ReasonUnknownComponent = scheduler.ReasonUnknownComponent // spec.component is not hosted
	ReasonInvalidSettings  = scheduler.ReasonInvalidSettings  // the settings do not fit the port's schema
	ReasonSettingsRejected = scheduler.ReasonSettingsRejected // the component returned an error for its settings
	ReasonInvalidEdge      = scheduler.ReasonInvalidEdge      // an edge names a missing node or port
	ReasonInvalidMapping   = scheduler.ReasonInvalidMapping   // a mapping in spec.ports does not compile
	ReasonComponentPanic   = scheduler.ReasonComponentPanic   // the component panicked
)

// Leader is this replica's leadership, in terms the test starts and ends.
type Leader struct {
	f *Flow
	m leadership.Manual
}

// Start begins a new term, ending the current one first, and tells every
// instance on _reconcile, as the runtime does when the lease is won.
func (l *Leader) Start() {
	l.m.Start()
	l.changed()
}

// Stop ends the current term: utils.IsLeader turns false and leader-only
// contexts end. Every instance hears of it on _reconcile, as the runtime
// does when the lease is lost.
func (l *Leader) Stop() {
	l.m.Stop()
	l.changed()
}

// Leading reports whether a term is running.
func (l *Leader) Leading() bool { return l.m.Current() != nil }

func (l *Leader) changed() {
	if l.f.s != nil {
		l.f.s.LeadershipChanged()
	}
}

// Status keeps the status of nodes in memory, as the leader writes it.
type Status struct {
	mu      sync.Mutex
	nodes   map[string]*v1alpha1.TinyNode
	writes  int
	onWrite func(*v1alpha1.TinyNode)
}

// Metadata returns a value of a node's status.metadata.
func (s *Status) Metadata(node, key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nodes[node]; n != nil {
		return n.Status.Metadata[key]
	}
	return ""
}

// Node returns a copy of a node's status as last written.
func (s *Status) Node(node string) v1alpha1.TinyNodeStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nodes[node]; n != nil {
		return *n.Status.DeepCopy()
	}
	return v1alpha1.TinyNodeStatus{}
}

// Writes counts the status writes so far, of every node. Readers never write.
func (s *Status) Writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// statusWriter is the scheduler's side of Status.
type statusWriter struct{ s *Status }

func (w statusWriter) UpdateStatus(_ context.Context, node string, fn func(*v1alpha1.TinyNode) error) error {
	s := w.s
	s.mu.Lock()
	n := s.nodes[node]
	if n == nil {
		n = &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: node}}
	}
	next := n.DeepCopy() // fn works on a fresh copy: a failed fn changes nothing
	if next.Status.Metadata == nil {
		next.Status.Metadata = map[string]string{}
	}
	if err := fn(next); err != nil {
		s.mu.Unlock()
		return err
	}
	s.nodes[node] = next
	s.writes++
	copied := next.DeepCopy()
	onWrite := s.onWrite
	s.mu.Unlock()
	if onWrite != nil {
		onWrite(copied)
	}
	return nil
}

func (statusWriter) Refresh(string) {}

// Sink is the component of the node "sink": it records what arrives on its
// port "in" and answers "ok".
type Sink struct {
	mu sync.Mutex
	// Block makes it hold each message until the message's context ends, and
	// answer with the context's error: a receiver that is still busy.
	Block bool
	got   []any
}

// Got returns what arrived, in order.
func (s *Sink) Got() []any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]any(nil), s.got...)
}

// GetInfo names the component "sink".
func (s *Sink) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: SinkComponent, Description: "Records what arrives"}
}

// Instance returns the Sink itself: every node of it records in one place.
func (s *Sink) Instance() module.Component { return s }

// Ports is one input, "in", of any value.
func (s *Sink) Ports() []module.Port { return []module.Port{{Name: "in"}} }

// Handle records a message on "in".
func (s *Sink) Handle(ctx context.Context, _ module.Handler, port string, msg any) any {
	if port != "in" {
		return nil
	}
	s.mu.Lock()
	s.got = append(s.got, msg)
	block := s.Block
	s.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return "ok"
}

// Eventually fails the test unless cond turns true within limit; it checks
// every 5ms. what says what was awaited.
func Eventually(t testing.TB, limit time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
