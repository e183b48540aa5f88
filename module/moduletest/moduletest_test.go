package moduletest_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/module/moduletest"
	"github.com/tinymod/tinymod/pkg/utils"
)

type settings struct {
	Prefix string `json:"prefix" jsonschema:"title=Prefix"`
}

// counter passes on what arrives, prefixed; on _control, the leader counts
// in the node's metadata. Every instance remembers the last count it saw on
// _reconcile and whether it led then.
type counter struct {
	mu       sync.Mutex
	settings settings
	seen     string
	led      bool
}

func (c *counter) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "counter"} }
func (c *counter) Instance() module.Component    { return &counter{} }
func (c *counter) Ports() []module.Port {
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Configuration: settings{}},
		{Name: v1alpha1.ReconcilePort},
		{Name: v1alpha1.ControlPort, Configuration: struct{}{}},
		{Name: "in", Configuration: ""},
		{Name: "out", Source: true, Configuration: ""},
	}
}

func (c *counter) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.SettingsPort:
		c.mu.Lock()
		c.settings = msg.(settings)
		c.mu.Unlock()
	case v1alpha1.ReconcilePort:
		if n, ok := msg.(*v1alpha1.TinyNode); ok {
			c.mu.Lock()
			c.seen, c.led = n.Status.Metadata["count"], utils.IsLeader(ctx)
			c.mu.Unlock()
		}
	case v1alpha1.ControlPort:
		if !utils.IsLeader(ctx) {
			return errors.New("not the leader")
		}
		return output(ctx, v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) {
			k, _ := strconv.Atoi(n.Status.Metadata["count"])
			n.Status.Metadata["count"] = strconv.Itoa(k + 1)
		})
	case "in":
		c.mu.Lock()
		p := c.settings.Prefix
		c.mu.Unlock()
		return output(ctx, "out", p+msg.(string))
	}
	return nil
}

func (c *counter) state() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen, c.led
}

func TestSettingsEdgesAndSink(t *testing.T) {
	f := moduletest.New(t, &counter{})
	f.Add("c", "counter", settings{Prefix: "> "}, map[string]string{"out": "sink.in"})
	if res := f.Send("c.in", "hi"); res != "ok" {
		t.Fatalf("send: %v", res)
	}
	if got := f.Sink.Got(); len(got) != 1 || got[0] != "> hi" {
		t.Errorf("sink got %v, want [> hi]", got)
	}
	var names []string
	for _, p := range f.Ports("c") {
		names = append(names, p.Name)
		if p.Name == v1alpha1.SettingsPort && (p.Schema == nil || len(p.Schema.Raw) == 0) {
			t.Error("the settings port has no schema")
		}
	}
	if len(names) != 5 {
		t.Errorf("ports %v", names)
	}
	if f.Ports("nothing") != nil {
		t.Error("ports of a node that does not run")
	}
}

func TestLeadershipAndStatus(t *testing.T) {
	inst := &counter{}
	f := moduletest.New(t, &one{inst})
	f.Add("c", "counter", nil, nil)
	if !f.Leader.Leading() {
		t.Fatal("a new Flow does not lead")
	}
	if res := f.Send("c._control", struct{}{}); res != nil {
		t.Fatalf("control on the leader: %v", res)
	}
	if got := f.Status.Metadata("c", "count"); got != "1" || f.Status.Writes() != 1 {
		t.Fatalf("count %q after %d writes, want 1 after 1", got, f.Status.Writes())
	}
	if f.Status.Node("c").Metadata["count"] != "1" {
		t.Error("Node does not show the metadata")
	}
	moduletest.Eventually(t, 5*time.Second, func() bool { s, _ := inst.state(); return s == "1" }, "the write reaches the instance on _reconcile")

	f.Leader.Stop()
	if f.Leader.Leading() {
		t.Error("leading after Stop")
	}
	moduletest.Eventually(t, 5*time.Second, func() bool { _, led := inst.state(); return !led }, "_reconcile on losing the term")
	if res, ok := f.Send("c._control", struct{}{}).(error); !ok {
		t.Errorf("control on a reader: %v, want an error", res)
	}
	if f.Status.Writes() != 1 {
		t.Errorf("a reader wrote status: %d writes", f.Status.Writes())
	}

	f.Leader.Start()
	moduletest.Eventually(t, 5*time.Second, func() bool { _, led := inst.state(); return led }, "_reconcile on a new term")
	f.Send("c._control", struct{}{})
	if got := f.Status.Metadata("c", "count"); got != "2" {
		t.Errorf("count %q in the second term, want 2", got)
	}
}

// one hands out a single instance, so the test can look into it.
type one struct{ *counter }

func (o *one) Instance() module.Component { return o.counter }

func TestProblems(t *testing.T) {
	f := moduletest.New(t, &counter{})
	if p := f.Problems("x", "nope", nil); len(p) != 1 || p[0].Reason != moduletest.ReasonUnknownComponent {
		t.Errorf("unknown component: %+v", p)
	}
	if p := f.Problems("y", "counter", map[string]any{"prefix": 3}); len(p) != 1 || p[0].Reason != moduletest.ReasonInvalidSettings {
		t.Errorf("settings of the wrong type: %+v", p)
	}
	n := moduletest.Node("z", "counter", nil)
	n.Spec.Edges = []v1alpha1.TinyNodeEdge{{ID: "e", Port: "out", To: "missing.in"}}
	if p := f.Apply(n); len(p) != 1 || p[0].Reason != moduletest.ReasonInvalidEdge {
		t.Errorf("edge to a missing node: %+v", p)
	}
	f.Remove("z")
	if res, ok := f.Send("z.in", "x").(error); !ok {
		t.Errorf("a removed node answered %v", res)
	}
}

func TestBlockingSink(t *testing.T) {
	f := moduletest.New(t, &counter{})
	f.Sink.Block = true
	f.Add("c", "counter", nil, map[string]string{"out": "sink.in"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if res, ok := f.SendContext(ctx, "c.in", "x").(error); !ok || !errors.Is(res, context.DeadlineExceeded) {
		t.Errorf("a blocked sink answered %v, want the context's error", res)
	}
}
