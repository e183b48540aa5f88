// Package sdkstyle holds components written the way the TinySystems SDK's
// components are, against tinymod's compat/tinysystems packages only: the
// compat tests run them through the real scheduler and, in a module binary,
// on several replicas.
//
//   - emitter is started and stopped on a _control port it declares as a
//     source, whose type follows its state; on the leader it sends a
//     numbered message on out every period while running, and keeps
//     "running" in its node's metadata, so that a new leader resumes it.
//   - store keeps what arrives on put in its node's metadata, on whichever
//     replica it arrives (a reader's write reaches the leader).
//   - announcer sends one put on every replica when its settings arrive.
//   - recorder records what arrives on in, and how.
package sdkstyle

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/tinymod/tinymod/compat/tinysystems/api/v1alpha1"
	"github.com/tinymod/tinymod/compat/tinysystems/module"
	"github.com/tinymod/tinymod/compat/tinysystems/pkg/utils"
	"github.com/tinymod/tinymod/compat/tinysystems/registry"
)

// Register registers the components; identity names the replica in what
// the announcer puts.
func Register(identity string) {
	registry.Register(&Emitter{})
	registry.Register(&Store{})
	registry.Register(&Announcer{Identity: identity})
	registry.Register(&Recorder{})
}

// Observer, if set, sees what the components do: event names with details.
var Observer func(node, event string, details map[string]any)

func observe(node, event string, details map[string]any) {
	if Observer != nil {
		Observer(node, event, details)
	}
}

const metaRunning = "running"

// EmitterSettings configure an emitter.
type EmitterSettings struct {
	PeriodMs int    `json:"periodMs" title:"Period, ms" required:"true" minimum:"10"`
	Label    string `json:"label" title:"Label" description:"Sent with every message"`
}

// StartControl is the emitter's control while it is stopped.
type StartControl struct {
	Start bool `json:"start" format:"button" title:"Start" required:"true"`
}

// StopControl is the emitter's control while it runs.
type StopControl struct {
	Stop    bool `json:"stop" format:"button" title:"Stop" required:"true"`
	Running bool `json:"running" readonly:"true" title:"Running"`
}

// Tick is what an emitter sends.
type Tick struct {
	Label string `json:"label"`
	Seq   int    `json:"seq"`
}

// Emitter sends ticks while running.
type Emitter struct {
	mu       sync.Mutex
	name     string
	settings EmitterSettings
	running  bool
	cancel   context.CancelFunc
	seq      int
	handler  module.Handler
}

func (e *Emitter) Instance() module.Component {
	return &Emitter{settings: EmitterSettings{PeriodMs: 100}}
}

func (e *Emitter) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: "emitter", Description: "Sends ticks while running", Tags: []string{"SDK"}}
}

func (e *Emitter) Ports() []module.Port {
	e.mu.Lock()
	running := e.running
	e.mu.Unlock()
	var control any = StartControl{}
	if running {
		control = StopControl{Running: true}
	}
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Label: "Settings", Configuration: EmitterSettings{PeriodMs: 100, Label: "example"}},
		{Name: v1alpha1.ControlPort, Label: "Control", Source: true, Configuration: control},
		{Name: "out", Label: "Out", Source: true, Position: module.Right, Configuration: Tick{}},
	}
}

func (e *Emitter) Handle(ctx context.Context, handler module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.ReconcilePort:
		node, ok := msg.(v1alpha1.TinyNode)
		if !ok {
			return fmt.Errorf("_reconcile: got %T", msg)
		}
		e.mu.Lock()
		e.name, e.handler = node.Name, handler
		e.running = node.Status.Metadata[metaRunning] == "true"
		running := e.running
		e.mu.Unlock()
		observe(node.Name, "reconcile", map[string]any{"running": running, "leader": utils.IsLeader(ctx)})
		if running && utils.IsLeader(ctx) {
			e.startLoop(ctx)
		} else if !utils.IsLeader(ctx) {
			e.stopLoop()
		}
		return nil
	case v1alpha1.SettingsPort:
		s, ok := msg.(EmitterSettings)
		if !ok {
			return fmt.Errorf("_settings: got %T", msg)
		}
		e.mu.Lock()
		e.settings = s
		running, name := e.running, e.name
		e.mu.Unlock()
		// As the SDK's signal does: settings on a stopped emitter clear
		// what an earlier run left. That is only right if _reconcile came
		// first and restored the running state.
		observe(name, "settings", map[string]any{"running": running})
		if !running && utils.IsLeader(ctx) {
			_ = handler(context.Background(), v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) error {
				delete(n.Status.Metadata, metaRunning)
				return nil
			})
		}
		return nil
	case v1alpha1.ControlPort:
		if !utils.IsLeader(ctx) {
			return nil
		}
		switch c := msg.(type) {
		case StartControl:
			if !c.Start {
				return nil
			}
			e.setRunning(handler, true)
			e.startLoop(ctx)
		case StopControl:
			if !c.Stop {
				return nil
			}
			e.stopLoop()
			e.setRunning(handler, false)
		default:
			return fmt.Errorf("_control: got %T", msg)
		}
		e.mu.Lock()
		name := e.name
		e.mu.Unlock()
		observe(name, "control", map[string]any{"type": fmt.Sprintf("%T", msg)})
		return nil
	}
	return fmt.Errorf("port %s is not an input", port)
}

func (e *Emitter) setRunning(handler module.Handler, running bool) {
	e.mu.Lock()
	e.running = running
	e.mu.Unlock()
	_ = handler(context.Background(), v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) error {
		if running {
			n.Status.Metadata[metaRunning] = "true"
		} else {
			delete(n.Status.Metadata, metaRunning)
		}
		return nil
	})
	_ = handler(context.Background(), v1alpha1.ControlPort, nil)
}

func (e *Emitter) startLoop(ctx context.Context) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cancel != nil {
		return
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	period := time.Duration(max(e.settings.PeriodMs, 10)) * time.Millisecond
	handler := e.handler
	go func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-loopCtx.Done():
				return
			case <-t.C:
			}
			if !utils.IsLeader(ctx) {
				e.stopLoop()
				return
			}
			e.mu.Lock()
			e.seq++
			tick := Tick{Label: e.settings.Label, Seq: e.seq}
			e.mu.Unlock()
			_ = handler(loopCtx, "out", tick)
		}
	}()
}

func (e *Emitter) stopLoop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cancel != nil {
		e.cancel()
		e.cancel = nil
	}
}

// OnDestroy stops the loop when the node is deleted.
func (e *Emitter) OnDestroy(metadata map[string]string) {
	e.stopLoop()
	e.mu.Lock()
	name := e.name
	e.mu.Unlock()
	observe(name, "destroy", map[string]any{"running": metadata[metaRunning]})
}

var _ module.Destroyer = (*Emitter)(nil)

// Put is what a store keeps.
type Put struct {
	Key   string `json:"key" required:"true" title:"Key"`
	Value string `json:"value" title:"Value"`
}

// Store keeps puts in its node's metadata.
type Store struct {
	mu   sync.Mutex
	name string
	data map[string]string
}

func (s *Store) Instance() module.Component { return &Store{data: map[string]string{}} }
func (s *Store) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: "store", Description: "Keeps what it is given in its node's metadata"}
}
func (s *Store) Ports() []module.Port {
	return []module.Port{
		{Name: v1alpha1.ReconcilePort},
		{Name: "put", Label: "Put", Configuration: Put{Key: "example", Value: "example"}},
	}
}

func (s *Store) Handle(ctx context.Context, handler module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.ReconcilePort:
		node, ok := msg.(v1alpha1.TinyNode)
		if !ok {
			return fmt.Errorf("_reconcile: got %T", msg)
		}
		s.mu.Lock()
		s.name = node.Name
		for k, v := range node.Status.Metadata {
			s.data[k] = v
		}
		s.mu.Unlock()
		return nil
	case "put":
		p, ok := msg.(Put)
		if !ok {
			return fmt.Errorf("put: got %T", msg)
		}
		if p.Key == "" {
			return errors.New("put: key is required")
		}
		s.mu.Lock()
		s.data[p.Key] = p.Value
		name := s.name
		s.mu.Unlock()
		observe(name, "put", map[string]any{"key": p.Key, "value": p.Value, "leader": utils.IsLeader(ctx)})
		res := handler(context.Background(), v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) error {
			n.Status.Metadata["kv-"+p.Key] = p.Value
			return nil
		})
		return utils.CheckForError(res)
	}
	return fmt.Errorf("port %s is not an input", port)
}

// AnnouncerSettings configure an announcer.
type AnnouncerSettings struct {
	Who string `json:"who" title:"Who"`
}

// Announcer sends one put on every replica when its settings arrive: the key
// is the replica's identity, learned from the settings' context.
type Announcer struct{ Identity string }

func (a *Announcer) Instance() module.Component { return &Announcer{Identity: a.Identity} }
func (a *Announcer) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: "announcer", Description: "Puts its replica's name once"}
}
func (a *Announcer) Ports() []module.Port {
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Configuration: AnnouncerSettings{}},
		{Name: "out", Source: true, Position: module.Right, Configuration: Put{}},
	}
}

func (a *Announcer) Handle(ctx context.Context, handler module.Handler, port string, msg any) any {
	if port != v1alpha1.SettingsPort {
		return nil
	}
	s, _ := msg.(AnnouncerSettings)
	role := "reader"
	if utils.IsLeader(ctx) {
		role = "leader"
	}
	return handler(ctx, "out", Put{Key: a.Identity, Value: s.Who + "@" + role})
}

// Recorder records what arrives on in.
type Recorder struct {
	mu   sync.Mutex
	name string
}

// Sample is what a recorder's in takes.
type Sample struct {
	Label string `json:"label"`
	Seq   int    `json:"seq"`
	Extra string `json:"extra"`
}

func (r *Recorder) Instance() module.Component { return &Recorder{} }
func (r *Recorder) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: "recorder", Description: "Records what arrives"}
}
func (r *Recorder) Ports() []module.Port {
	return []module.Port{{Name: "in", Label: "In", Configuration: Sample{Label: "example", Extra: "example"}}}
}

func (r *Recorder) Handle(ctx context.Context, _ module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.ReconcilePort:
		if n, ok := msg.(v1alpha1.TinyNode); ok {
			r.mu.Lock()
			r.name = n.Name
			r.mu.Unlock()
		}
		return nil
	case "in":
		s, ok := msg.(Sample)
		if !ok {
			return fmt.Errorf("in: got %T", msg)
		}
		r.mu.Lock()
		name := r.name
		r.mu.Unlock()
		observe(name, "sample", map[string]any{"label": s.Label, "seq": strconv.Itoa(s.Seq), "extra": s.Extra, "leader": utils.IsLeader(ctx)})
		return nil
	}
	return nil
}
