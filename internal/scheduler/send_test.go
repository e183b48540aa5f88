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

// Its "out" port, as reshaping declares it.
const (
	outSource  = iota // an output port
	outGone           // no port
	outAnInput        // an input port
)

// reshaping sends what arrives on "in" out of "out"; a message on "reshape"
// (outSource, outGone or outAnInput) changes what "out" is.
type reshaping struct{ out atomic.Int32 }

func (c *reshaping) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "reshaping"} }
func (c *reshaping) Instance() module.Component    { return &reshaping{} }
func (c *reshaping) Ports() []module.Port {
	ports := []module.Port{{Name: "in", Configuration: Greeting{}}, {Name: "reshape", Configuration: 0}}
	switch c.out.Load() {
	case outSource:
		ports = append(ports, module.Port{Name: "out", Source: true, Configuration: Greeting{}})
	case outAnInput:
		ports = append(ports, module.Port{Name: "out", Configuration: Greeting{}})
	}
	return ports
}
func (c *reshaping) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case "reshape":
		c.out.Store(int32(msg.(int)))
		return output(ctx, v1alpha1.ControlPort, nil) // read the ports again
	case "in":
		return output(ctx, "out", msg)
	}
	return nil
}

// TestSendFollowsTheOutputPort: the node's edges name "out" throughout. A
// send there fails and reaches nobody while the component has no such output
// port (none, or an input of that name), and reaches the sink again when the
// port comes back.
func TestSendFollowsTheOutputPort(t *testing.T) {
	s, err := New(Options{
		Module:     module.Info{Name: "m"},
		Components: []module.Component{&reshaping{}, &sink{}},
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
		{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "reshaping",
			Edges: []v1alpha1.TinyNodeEdge{wire("e", "out", "y.in")}}},
	} {
		if p := s.Update(ctx, n); len(p) > 0 {
			t.Fatalf("%s: %v", n.Name, p)
		}
	}
	delivered := 0
	for _, step := range []struct {
		what      string
		out       int
		delivered bool
	}{
		{"an output port", outSource, true},
		{"gone", outGone, false},
		{"back", outSource, true},
		{"an input port", outAnInput, false},
		{"an output port again", outSource, true},
	} {
		if res := s.Handle(ctx, Msg{To: "x.reshape", Data: step.out}); res != nil {
			t.Fatalf("%s: reshape: %v", step.what, res)
		}
		res := s.Handle(ctx, Msg{To: "x.in", Data: Greeting{Who: "ann"}})
		if step.delivered {
			delivered++
			if res != "got ann" {
				t.Errorf("%s: %v, want got ann", step.what, res)
			}
		} else if err, _ := res.(error); !errors.Is(err, ErrNoPort) || !module.IsPermanent(err) {
			t.Errorf("%s: %v, want a permanent ErrNoPort", step.what, res)
		}
		if got := s.instance("y").component.(*sink).messages(); len(got) != delivered {
			t.Errorf("%s: the sink got %d messages, want %d", step.what, len(got), delivered)
		}
	}
}
