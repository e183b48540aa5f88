package transport

import (
	"context"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/contract"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/scheduler"
	"github.com/tinymod/tinymod/module"
)

// putter, under the SDK's contract, writes metadata on every message to "in".
type putter struct{}

func (putter) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "putter"} }
func (putter) Instance() module.Component    { return putter{} }
func (putter) Ports() []module.Port          { return []module.Port{{Name: "in"}} }
func (putter) RuntimeContract() contract.Contract {
	return contract.Contract{ForwardMetadata: true, ReconcileFirst: true, DecodeOverZero: true, UnvalidatedSettings: true}
}
func (putter) Handle(ctx context.Context, output module.Handler, port string, _ any) any {
	if port != "in" {
		return nil
	}
	return output(ctx, v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) { n.Status.Metadata["k"] = "v" })
}

// memStatus keeps status metadata in memory.
type memStatus struct {
	mu   sync.Mutex
	meta map[string]map[string]string
}

func (m *memStatus) UpdateStatus(_ context.Context, node string, fn func(*v1alpha1.TinyNode) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: node}}
	n.Status.Metadata = map[string]string{}
	for k, v := range m.meta[node] {
		n.Status.Metadata[k] = v
	}
	if err := fn(n); err != nil {
		return err
	}
	if m.meta == nil {
		m.meta = map[string]map[string]string{}
	}
	m.meta[node] = n.Status.Metadata
	return nil
}
func (m *memStatus) Refresh(string) {}
func (m *memStatus) get(node, key string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.meta[node][key]
}

// TestForwardReachesALeaderThatHasNotStartedTheNode: a reader's metadata
// write reaches, over gRPC, a leader whose cache has the node but whose
// controller has not started it yet (a new leader): the leader writes it.
// (It once answered ErrNoNode, which the transport makes permanent: the
// write was lost.)
func TestForwardReachesALeaderThatHasNotStartedTheNode(t *testing.T) {
	node := &v1alpha1.TinyNode{
		ObjectMeta: metav1.ObjectMeta{Name: "n", Namespace: "ns", UID: "u", Generation: 1},
		Spec:       v1alpha1.TinyNodeSpec{Module: "m", Component: "putter"},
	}
	leaderStatus := &memStatus{}
	lead, err := scheduler.New(scheduler.Options{Module: module.Info{Name: "m"}, Components: []module.Component{putter{}},
		Leader: leader.Always, Status: leaderStatus,
		Lookup: func(name string) (*v1alpha1.TinyNode, bool) { return node, name == node.Name }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lead.Stop)
	addr := listen(t, NewServer(lead, "t"))
	c := NewClient(fixedResolver(addr), "t")
	t.Cleanup(c.Close)

	reader, err := scheduler.New(scheduler.Options{Module: module.Info{Name: "m"}, Components: []module.Component{putter{}},
		Leader: leader.Never, Status: &memStatus{}, Transport: c})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reader.Stop)
	if p := reader.Update(context.Background(), node.DeepCopy()); len(p) > 0 {
		t.Fatal(p)
	}

	done := make(chan any, 1)
	go func() { done <- reader.Handle(context.Background(), scheduler.Msg{To: "n.in", Data: map[string]any{}}) }()
	var res any
	select {
	case res = <-done:
	case <-time.After(scheduler.ForwardTimeout + 5*time.Second):
		t.Fatal("the forward never returned")
	}
	if err, ok := res.(error); ok && err != nil {
		t.Errorf("the reader's write failed (permanent=%v): %v", module.IsPermanent(err), err)
	}
	if got := leaderStatus.get("n", "k"); got != "v" {
		t.Errorf("the leader wrote k=%q, want v: the reader's write was lost", got)
	}
}
