package scheduler

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/module"
)

// closing sends what arrives on "in" out of "out", until a message on "close"
// takes that port away.
type closing struct{ closed atomic.Bool }

func (c *closing) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "closing"} }
func (c *closing) Instance() module.Component    { return &closing{} }
func (c *closing) Ports() []module.Port {
	ports := []module.Port{{Name: "in", Configuration: Greeting{}}, {Name: "close"}}
	if !c.closed.Load() {
		ports = append(ports, module.Port{Name: "out", Source: true, Configuration: Greeting{}})
	}
	return ports
}
func (c *closing) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case "close":
		c.closed.Store(true)
		return output(ctx, v1alpha1.ControlPort, nil) // read the ports again
	case "in":
		return output(ctx, "out", msg)
	}
	return nil
}

// TestSendOnAPortThatWentFails: the node's edges still name "out", but the
// component no longer has it; a send there fails and reaches nobody.
func TestSendOnAPortThatWentFails(t *testing.T) {
	s, err := New(Options{
		Module:     module.Info{Name: "m"},
		Components: []module.Component{&closing{}, &sink{}},
		Leader:     leader.Always,
		Metrics:    prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	ctx := context.Background()
	for _, n := range []*v1alpha1.TinyNode{
		{ObjectMeta: metav1.ObjectMeta{Name: "y"}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "sink"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "closing",
			Edges: []v1alpha1.TinyNodeEdge{wire("e", "out", "y.in")}}},
	} {
		if p := s.Update(ctx, n); len(p) > 0 {
			t.Fatalf("%s: %v", n.Name, p)
		}
	}
	if res := s.Handle(ctx, Msg{To: "x.in", Data: Greeting{Who: "ann"}}); res != "got ann" {
		t.Fatalf("before the port went: %v, want got ann", res)
	}
	if res := s.Handle(ctx, Msg{To: "x.close"}); res != nil {
		t.Fatalf("close: %v", res)
	}
	res := s.Handle(ctx, Msg{To: "x.in", Data: Greeting{Who: "bob"}})
	if err, _ := res.(error); !errors.Is(err, ErrNoPort) || !module.IsPermanent(err) {
		t.Fatalf("after the port went: %v, want a permanent ErrNoPort", res)
	}
	if got := s.instance("y").component.(*sink).messages(); len(got) != 1 {
		t.Errorf("the sink got %v, want ann's message only", got)
	}
}
