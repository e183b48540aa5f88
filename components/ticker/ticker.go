// Package ticker emits its context on out every delay milliseconds while
// started. Only the leader emits; the loop ends the moment leadership is lost.
// Whether it is started lives in node metadata, so a new leader resumes
// ticking after a failover.
package ticker

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/pkg/utils"
)

// ComponentName is how TinyNodes name this component.
const ComponentName = "ticker"

// OutPort carries each tick.
const OutPort = "out"

// RunningKey is the metadata key that says whether the ticker is started.
const RunningKey = "running"

// Settings of a ticker.
type Settings struct {
	Delay   int `json:"delay" jsonschema:"title=Delay,description=Milliseconds between ticks,minimum=1"`
	Context any `json:"context,omitempty" jsonschema:"title=Context,description=What each tick carries on out"`
}

// Control starts or stops the ticker. A control with neither does nothing, so
// a stale stop can never start it.
type Control struct {
	Start bool `json:"start,omitempty" jsonschema:"title=Start"`
	Stop  bool `json:"stop,omitempty" jsonschema:"title=Stop"`
	// Running is the state: read-only.
	Running bool `json:"running,omitempty" jsonschema:"title=Running,readOnly=true"`
}

// Component is the ticker.
type Component struct {
	mu       sync.Mutex
	settings Settings
	running  bool               // as metadata says
	cancel   context.CancelFunc // of the local emit loop, if any
	loopDone chan struct{}
}

// GetInfo describes the component.
func (t *Component) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: ComponentName, Description: "Periodic emission", Info: "Emits its context on out every delay ms while started; only the leader emits, and a new leader resumes.", Tags: []string{"SDK"}}
}

// Instance returns a new ticker.
func (t *Component) Instance() module.Component {
	return &Component{settings: Settings{Delay: 1000}}
}

// Ports: settings, control and out.
func (t *Component) Ports() []module.Port {
	t.mu.Lock()
	defer t.mu.Unlock()
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Label: "Settings", Configuration: t.settingsOrDefault()},
		{Name: v1alpha1.ControlPort, Label: "Control", Configuration: Control{Running: t.running}},
		{Name: OutPort, Label: "Out", Source: true, Position: module.Right, Configuration: t.settings.Context},
	}
}

func (t *Component) settingsOrDefault() Settings {
	if t.settings.Delay == 0 {
		return Settings{Delay: 1000, Context: t.settings.Context}
	}
	return t.settings
}

// Handle implements the seed's ticker.
func (t *Component) Handle(ctx context.Context, handler module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.SettingsPort:
		t.mu.Lock()
		t.settings = msg.(Settings)
		t.mu.Unlock()
	case v1alpha1.ControlPort:
		if !utils.IsLeader(ctx) {
			return nil
		}
		control := msg.(Control)
		switch {
		case control.Start:
			t.record(handler, true)
			return t.emit(ctx, handler)
		case control.Stop:
			t.stopLoop()
			t.record(handler, false)
		}
	case v1alpha1.ReconcilePort:
		node, ok := msg.(*v1alpha1.TinyNode)
		if !ok {
			return nil
		}
		running := node.Status.Metadata[RunningKey] == "true"
		t.mu.Lock()
		t.running = running
		looping := t.loopDone != nil
		t.mu.Unlock()
		// A leader that finds the ticker started but not ticking here takes
		// over: after a failover, ticking resumes on the new leader.
		if running && !looping && utils.IsLeader(ctx) {
			go t.emit(ctx, handler)
		}
	}
	return nil
}

// emit ticks until stopped, the context ends or leadership is lost. It blocks.
func (t *Component) emit(ctx context.Context, handler module.Handler) error {
	t.mu.Lock()
	if t.cancel != nil {
		t.cancel() // one loop at a time
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	t.cancel, t.loopDone = cancel, done
	t.mu.Unlock()
	defer func() {
		cancel()
		t.mu.Lock()
		if t.loopDone == done {
			t.cancel, t.loopDone = nil, nil
		}
		t.mu.Unlock()
		close(done)
	}()

	timer := time.NewTimer(t.delay())
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			if !utils.IsLeader(runCtx) {
				return nil
			}
			t.mu.Lock()
			data := t.settings.Context
			t.mu.Unlock()
			handler(runCtx, OutPort, data)
			timer.Reset(t.delay())
		case <-runCtx.Done():
			return runCtx.Err()
		}
	}
}

func (t *Component) delay() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return time.Duration(t.settingsOrDefault().Delay) * time.Millisecond
}

func (t *Component) stopLoop() {
	t.mu.Lock()
	cancel := t.cancel
	t.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

func (t *Component) record(handler module.Handler, running bool) {
	t.mu.Lock()
	t.running = running
	t.mu.Unlock()
	module.SetMetadata(handler, RunningKey, strconv.FormatBool(running))
}

// Destroy stops the loop when the node goes.
func (t *Component) Destroy() { t.stopLoop() }
