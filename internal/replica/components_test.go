package replica_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
)

// Components written for these tests. Instances find each other through probes,
// keyed by "<namespace>/<node>", which each learns on _reconcile.

type Greeting struct {
	Who   string `json:"who"`
	Count int    `json:"count"`
	Note  string `json:"note"`
}

type StarterSettings struct {
	Who string `json:"who"`
	Run int    `json:"run" jsonschema:"title=Run,description=Change it to send again,minimum=0"`
}

var probes sync.Map // "<ns>/<node>" -> *probe

type probe struct {
	settings   atomic.Int32 // settings deliveries
	reconciles atomic.Int32
	destroyed  atomic.Bool
	mu         sync.Mutex
	got        []Greeting
	lastSeen   string // the "probe" annotation last seen on _reconcile
}

func probeOf(ns, node string) *probe {
	p, _ := probes.LoadOrStore(ns+"/"+node, &probe{})
	return p.(*probe)
}

// base keeps the probe of a node once its name is known.
type base struct {
	mu       sync.Mutex
	p        *probe
	settings int32
}

func (b *base) reconcile(msg any) *probe {
	n := msg.(*v1alpha1.TinyNode)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.p == nil {
		b.p = probeOf(n.Namespace, n.Name)
		b.p.settings.Add(b.settings)
	}
	b.p.reconciles.Add(1)
	b.p.mu.Lock()
	b.p.lastSeen = n.Annotations["probe"]
	b.p.mu.Unlock()
	return b.p
}

func (b *base) settingsArrived() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.p != nil {
		b.p.settings.Add(1)
	} else {
		b.settings++
	}
}

func (b *base) Destroy() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.p != nil {
		b.p.destroyed.Store(true)
	}
}

// starter sends Greeting{Who} on out whenever its settings' run changes, on
// the leader, and writes the result into its metadata.
type starter struct {
	base
	lastRun int
}

func (s *starter) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: "starter", Description: "sends when run changes"}
}
func (s *starter) Instance() module.Component { return &starter{} }
func (s *starter) Ports() []module.Port {
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Label: "Settings", Configuration: StarterSettings{Who: "nobody"}},
		{Name: "out", Label: "Out", Source: true, Position: module.Right, Configuration: Greeting{}},
	}
}
func (s *starter) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.ReconcilePort:
		s.reconcile(msg)
	case v1alpha1.SettingsPort:
		s.settingsArrived()
		settings := msg.(StarterSettings)
		if settings.Run == s.lastRun {
			return nil
		}
		s.lastRun = settings.Run
		res := output(ctx, "out", Greeting{Who: settings.Who, Count: settings.Run})
		text := fmt.Sprint(res)
		return output(ctx, v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) {
			n.Status.Metadata["result"] = text
			n.Status.Metadata["run"] = fmt.Sprint(settings.Run)
		})
	}
	return nil
}

// relay passes "in" to "out".
type relay struct{ base }

func (r *relay) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "relay"} }
func (r *relay) Instance() module.Component    { return &relay{} }
func (r *relay) Ports() []module.Port {
	return []module.Port{
		{Name: "in", Configuration: Greeting{}},
		{Name: "out", Source: true, Configuration: Greeting{}},
	}
}
func (r *relay) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.ReconcilePort:
		r.reconcile(msg)
	case "in":
		return output(ctx, "out", msg)
	}
	return nil
}

// sink records what arrives and answers "got <who>", or fails for "fail".
type sink struct{ base }

func (s *sink) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "sink"} }
func (s *sink) Instance() module.Component    { return &sink{} }
func (s *sink) Ports() []module.Port {
	return []module.Port{{Name: "in", Label: "In", Configuration: Greeting{}}}
}
func (s *sink) Handle(_ context.Context, _ module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.ReconcilePort:
		s.reconcile(msg)
	case "in":
		g := msg.(Greeting)
		s.mu.Lock()
		p := s.p
		s.mu.Unlock()
		p.mu.Lock()
		p.got = append(p.got, g)
		p.mu.Unlock()
		if g.Who == "fail" {
			return errors.New("sink refused")
		}
		return "got " + g.Who
	}
	return nil
}

// marker writes metadata seen=yes on every _reconcile, on the leader: an
// idempotent write that must reach the API server once.
type marker struct{ base }

func (m *marker) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "marker"} }
func (m *marker) Instance() module.Component    { return &marker{} }
func (m *marker) Ports() []module.Port {
	return []module.Port{{Name: v1alpha1.SettingsPort, Configuration: StarterSettings{}}}
}
func (m *marker) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.SettingsPort:
		m.settingsArrived()
	case v1alpha1.ReconcilePort:
		n := msg.(*v1alpha1.TinyNode)
		res := output(ctx, v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) {
			n.Status.Metadata["seen"] = "yes"
		})
		// Publish what was seen only once the write has been decided.
		m.reconcile(n)
		return res
	}
	return nil
}

// panicker panics on its settings.
type panicker struct{}

func (panicker) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "panicker"} }
func (panicker) Instance() module.Component    { return panicker{} }
func (panicker) Ports() []module.Port {
	return []module.Port{{Name: v1alpha1.SettingsPort, Configuration: StarterSettings{}}}
}
func (panicker) Handle(_ context.Context, _ module.Handler, port string, _ any) any {
	if port == v1alpha1.SettingsPort {
		panic("panicker always panics")
	}
	return nil
}

func testComponents() []module.Component {
	return []module.Component{&starter{}, &relay{}, &sink{}, &marker{}, panicker{}}
}
