// Package componenttest runs components through the real scheduler, with
// leadership and status writes the test controls.
package componenttest

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/scheduler"
	"github.com/tinymod/tinymod/module"
)

// Leader is leadership in terms the test starts and ends.
type Leader struct{ leader.Manual }

// Start begins a term.
func (l *Leader) Start() { l.Manual.Start() }

// Status keeps node statuses in memory and counts writes.
type Status struct {
	mu     sync.Mutex
	nodes  map[string]*v1alpha1.TinyNode
	writes int
	// OnWrite, if set, sees each node after a write (as a watch would).
	OnWrite func(*v1alpha1.TinyNode)
}

// UpdateStatus applies fn to the in-memory node.
func (s *Status) UpdateStatus(_ context.Context, node string, fn func(*v1alpha1.TinyNode) error) error {
	s.mu.Lock()
	n := s.nodes[node]
	if n == nil {
		n = &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: node}}
		s.nodes[node] = n
	}
	if n.Status.Metadata == nil {
		n.Status.Metadata = map[string]string{}
	}
	if err := fn(n); err != nil {
		s.mu.Unlock()
		return err
	}
	s.writes++
	copied := n.DeepCopy()
	onWrite := s.OnWrite
	s.mu.Unlock()
	if onWrite != nil {
		onWrite(copied)
	}
	return nil
}

// Refresh does nothing.
func (s *Status) Refresh(string) {}

// Metadata returns a node's metadata value.
func (s *Status) Metadata(node, key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nodes[node]; n != nil {
		return n.Status.Metadata[key]
	}
	return ""
}

// Writes counts the status writes so far.
func (s *Status) Writes() int { s.mu.Lock(); defer s.mu.Unlock(); return s.writes }

// Sink records what arrives on its "in" port; Block makes it wait for its
// context to end.
type Sink struct {
	mu    sync.Mutex
	got   []any
	Block bool
	ctxs  []context.Context
}

func (s *Sink) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "sink"} }
func (s *Sink) Instance() module.Component    { return s }
func (s *Sink) Ports() []module.Port          { return []module.Port{{Name: "in"}} }
func (s *Sink) Handle(ctx context.Context, _ module.Handler, port string, msg any) any {
	if port != "in" {
		return nil
	}
	s.mu.Lock()
	s.got = append(s.got, msg)
	s.ctxs = append(s.ctxs, ctx)
	block := s.Block
	s.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return "ok"
}

// Got returns what arrived.
func (s *Sink) Got() []any { s.mu.Lock(); defer s.mu.Unlock(); return append([]any(nil), s.got...) }

// Flow is a scheduler running components, with a Sink named "sink".
type Flow struct {
	T      *testing.T
	S      *scheduler.Scheduler
	Leader *Leader
	Status *Status
	Sink   *Sink
	nodes  map[string]*v1alpha1.TinyNode
}

// New returns a flow hosting components and a sink, leading.
func New(t *testing.T, components ...module.Component) *Flow {
	f := &Flow{T: t, Leader: &Leader{}, Status: &Status{nodes: map[string]*v1alpha1.TinyNode{}}, Sink: &Sink{}, nodes: map[string]*v1alpha1.TinyNode{}}
	f.Leader.Start()
	s, err := scheduler.New(scheduler.Options{
		Module: module.Info{Name: "m"}, Components: append(components, f.Sink),
		Leader: f.Leader, Status: f.Status,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	f.S = s
	// Status writes reach every instance through _reconcile, as the watch does.
	f.Status.OnWrite = func(n *v1alpha1.TinyNode) {
		if spec, ok := f.nodes[n.Name]; ok {
			next := spec.DeepCopy()
			next.Status = n.Status
			go s.Update(context.Background(), next)
		}
	}
	f.Add("sink", "sink", nil, nil)
	return f
}

// Add runs a node of component with settings, its out-like ports wired to targets.
func (f *Flow) Add(name, component string, settings any, edges map[string]string) {
	f.T.Helper()
	n := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: component}}
	if settings != nil {
		raw, err := json.Marshal(settings)
		if err != nil {
			f.T.Fatal(err)
		}
		n.Spec.Ports = []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: &apiextensionsv1.JSON{Raw: raw}}}
	}
	for port, to := range edges {
		n.Spec.Edges = append(n.Spec.Edges, v1alpha1.TinyNodeEdge{ID: name + "-" + port, Port: port, To: to})
	}
	f.nodes[name] = n
	if problems := f.S.Update(context.Background(), n); len(problems) > 0 {
		f.T.Fatalf("node %s: %+v", name, problems)
	}
}

// Problems applies a node and returns its problems.
func (f *Flow) Problems(name, component string, settings any) []scheduler.Problem {
	raw, _ := json.Marshal(settings)
	n := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: component,
		Ports: []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: &apiextensionsv1.JSON{Raw: raw}}}}}
	return f.S.Update(context.Background(), n)
}

// Send delivers data to "<node>.<port>" as a signal would.
func (f *Flow) Send(to string, data any) any {
	raw, err := json.Marshal(data)
	if err != nil {
		f.T.Fatal(err)
	}
	return f.S.Handle(context.Background(), scheduler.Msg{To: to, Data: json.RawMessage(raw), ID: "test"})
}

// Eventually polls cond every 5ms for up to limit.
func Eventually(t *testing.T, limit time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
