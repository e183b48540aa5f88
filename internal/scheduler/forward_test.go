package scheduler

import (
	"context"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/contract"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/module"
)

type StartControl struct {
	Start bool `json:"start"`
}
type StopControl struct {
	Stop bool `json:"stop"`
}

// stateful is an SDK-style signal: "go" starts it and records that in
// metadata; its _control takes Start while idle and Stop while running.
type stateful struct {
	mu      sync.Mutex
	running bool
	got     []any
}

func (c *stateful) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "stateful"} }
func (c *stateful) Instance() module.Component    { return c }
func (c *stateful) RuntimeContract() contract.Contract {
	return contract.Contract{ReconcileFirst: true, DecodeOverZero: true, ForwardMetadata: true, UnvalidatedSettings: true}
}
func (c *stateful) Ports() []module.Port {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ctl any = StartControl{}
	if c.running {
		ctl = StopControl{}
	}
	return []module.Port{{Name: v1alpha1.ControlPort, Configuration: ctl}, {Name: "go"}}
}
func (c *stateful) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case "go":
		c.mu.Lock()
		c.running = true
		c.mu.Unlock()
		return output(ctx, v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) { n.Status.Metadata["running"] = "true" })
	case v1alpha1.ControlPort:
		c.mu.Lock()
		c.got = append(c.got, msg)
		c.mu.Unlock()
	}
	return nil
}

// acceptAll is a transport whose leader takes every forwarded write.
type acceptAll struct{}

func (acceptAll) Send(context.Context, string, Msg) any { return nil }

// TestReaderReadsPortsAfterItsMetadataWrite: on a reader too, a metadata
// write forwarded to the leader has the ports read again, and the next
// _control is decoded into the type of the state written (it once kept the
// type of the state before).
func TestReaderReadsPortsAfterItsMetadataWrite(t *testing.T) {
	c := &stateful{}
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{c},
		Leader: leader.Never, Status: &countingWriter{}, Transport: acceptAll{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	node := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "n", UID: "u"}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "stateful"}}
	if p := s.Update(context.Background(), node); len(p) > 0 {
		t.Fatal(p)
	}
	if res := s.Handle(context.Background(), Msg{To: "n.go", Data: map[string]any{}}); res != nil {
		t.Fatalf("go: %v", res)
	}
	if res := s.Handle(context.Background(), Msg{To: "n._control", Data: map[string]any{"stop": true}}); res != nil {
		t.Fatalf("_control: %v", res)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.got) != 1 {
		t.Fatalf("got %v", c.got)
	}
	if _, ok := c.got[0].(StopControl); !ok {
		t.Errorf("_control decoded into %T, want StopControl: the reader did not read its ports again after its metadata write", c.got[0])
	}
}

// endingTerm is a status writer whose term has just ended: every write
// meets ErrNotLeader, although the check before it said leader.
type endingTerm struct{}

func (endingTerm) UpdateStatus(context.Context, string, func(*v1alpha1.TinyNode) error) error {
	return ErrNotLeader
}
func (endingTerm) Refresh(string) {}

// recordingTransport records what it carries and accepts it.
type recordingTransport struct {
	mu      sync.Mutex
	msgs    []Msg
	modules []string
}

func (r *recordingTransport) Send(_ context.Context, module string, m Msg) any {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.modules = append(r.modules, module)
	r.mu.Unlock()
	return nil
}

// TestWriteMeetingTheEndOfATermIsForwarded: a metadata write that the status
// writer refuses because the term ended under it goes to the next leader,
// as a reader's would, instead of being lost.
func TestWriteMeetingTheEndOfATermIsForwarded(t *testing.T) {
	tr := &recordingTransport{}
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{&stateful{}},
		Leader: leader.Always, Status: endingTerm{}, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	node := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "n", UID: "u"}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "stateful"}}
	if p := s.Update(context.Background(), node); len(p) > 0 {
		t.Fatal(p)
	}
	if res := s.Handle(context.Background(), Msg{To: "n.go", Data: map[string]any{}}); res != nil {
		t.Fatalf("go: %v", res)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.msgs) != 1 || tr.msgs[0].To != "n."+MetadataPort {
		t.Fatalf("forwarded %+v, want the write to n.%s", tr.msgs, MetadataPort)
	}
	if p, ok := tr.msgs[0].Data.(MetadataPatch); !ok || p.Set["running"] != "true" {
		t.Errorf("forwarded %#v, want running=true", tr.msgs[0].Data)
	}
}

// TestForwardedWritesOnlyForTheirOwnNodes: a leader refuses, for good, a
// forwarded write for a node of another module or of a native component, and
// asks again later for a node its cache does not have yet.
func TestForwardedWritesOnlyForTheirOwnNodes(t *testing.T) {
	nodes := map[string]*v1alpha1.TinyNode{
		"other":  {ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: v1alpha1.TinyNodeSpec{Module: "elsewhere", Component: "stateful"}},
		"native": {ObjectMeta: metav1.ObjectMeta{Name: "native"}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "relay"}},
		"sdk":    {ObjectMeta: metav1.ObjectMeta{Name: "sdk"}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "stateful"}},
	}
	w := &countingWriter{}
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{&stateful{}, &relay{}},
		Leader: leader.Always, Status: w,
		Lookup: func(name string) (*v1alpha1.TinyNode, bool) { n, ok := nodes[name]; return n, ok }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	forward := func(node string) any {
		return s.Handle(context.Background(), Msg{To: node + "." + MetadataPort, From: node + "." + v1alpha1.ReconcilePort,
			Data: MetadataPatch{Set: map[string]string{"k": "v"}}})
	}
	for _, node := range []string{"other", "native"} {
		if err, ok := forward(node).(error); !ok || !module.IsPermanent(err) {
			t.Errorf("forward for %s: %v, want a permanent refusal", node, err)
		}
	}
	if err, ok := forward("unknown").(error); !ok || module.IsPermanent(err) {
		t.Errorf("forward for a node not in the cache yet: %v, want a transient error", err)
	}
	if res := forward("sdk"); res != nil {
		t.Errorf("forward for sdk: %v", res)
	}
	if n := w.updates.Load(); n != 1 {
		t.Errorf("%d writes, want 1", n)
	}
}
