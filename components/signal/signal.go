// Package signal is the manual flow trigger: a button press (a TinySignal on
// _control) starts the flow on out, and reset cancels it. Only the leader acts;
// whether a flow runs is kept in node metadata, so every replica, and a new
// leader after a failover, shows the right button.
package signal

import (
	"context"
	"strconv"
	"sync"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/pkg/utils"
)

// ComponentName is how TinyNodes name this component.
const ComponentName = "signal"

// OutPort carries the flow's context.
const OutPort = "out"

// RunningKey is the metadata key that says whether a flow runs.
const RunningKey = "running"

// Settings of a signal node.
type Settings struct {
	Context any `json:"context,omitempty" jsonschema:"title=Context,description=What a send carries on out unless the control action brings its own"`
}

// Control is a button press.
type Control struct {
	Send    bool `json:"send,omitempty" jsonschema:"title=Send,description=Start the flow"`
	Reset   bool `json:"reset,omitempty" jsonschema:"title=Reset,description=Cancel the running flow"`
	Context any  `json:"context,omitempty" jsonschema:"title=Context,description=Overrides the settings' context for this send"`
	// Running is the state the button shows: read-only.
	Running bool `json:"running,omitempty" jsonschema:"title=Running,description=Whether a flow is running (shown; not an action),readOnly=true"`
}

// Component is the signal component.
type Component struct {
	mu         sync.Mutex
	settings   Settings
	running    bool
	cancelFunc context.CancelFunc
}

// GetInfo describes the component.
func (t *Component) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: ComponentName, Description: "Manual flow trigger", Info: "Send starts the flow on out with a cancellable context; reset cancels it. Only the leader acts.", Tags: []string{"SDK"}}
}

// Instance returns a new signal.
func (t *Component) Instance() module.Component { return &Component{} }

// Ports: settings, control (showing whether a flow runs) and out.
func (t *Component) Ports() []module.Port {
	t.mu.Lock()
	defer t.mu.Unlock()
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Label: "Settings", Configuration: t.settings},
		{Name: v1alpha1.ControlPort, Label: "Control", Configuration: Control{Running: t.running}},
		{Name: OutPort, Label: "Out", Source: true, Position: module.Right, Configuration: t.settings.Context},
	}
}

// Handle implements the seed's signal: the leader alone acts on control.
func (t *Component) Handle(ctx context.Context, handler module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.SettingsPort:
		t.mu.Lock()
		t.settings = msg.(Settings)
		t.mu.Unlock()
	case v1alpha1.ReconcilePort:
		// Every replica learns from metadata whether a flow runs.
		if node, ok := msg.(*v1alpha1.TinyNode); ok {
			t.mu.Lock()
			t.running = node.Status.Metadata[RunningKey] == "true"
			t.mu.Unlock()
		}
	case v1alpha1.ControlPort:
		if !utils.IsLeader(ctx) {
			return nil
		}
		control := msg.(Control)
		if control.Send {
			return t.send(ctx, handler, control)
		}
		if control.Reset {
			t.mu.Lock()
			if t.cancelFunc != nil {
				t.cancelFunc()
				t.cancelFunc = nil
			}
			t.mu.Unlock()
			t.setRunning(handler, false)
			return nil
		}
	}
	return nil
}

func (t *Component) send(ctx context.Context, handler module.Handler, control Control) any {
	t.mu.Lock()
	if t.cancelFunc != nil {
		t.cancelFunc()
	}
	ctx, cancel := context.WithCancel(ctx)
	t.cancelFunc = cancel
	data := t.settings.Context
	t.mu.Unlock()
	if control.Context != nil {
		data = control.Context
	}
	t.setRunning(handler, true)
	res := handler(ctx, OutPort, data)
	// The flow ended: unless a newer send took over, the button goes back.
	t.mu.Lock()
	mine := ctx.Err() == nil
	if mine {
		t.cancelFunc = nil
	}
	t.mu.Unlock()
	cancel()
	if mine {
		t.setRunning(handler, false)
	}
	return res
}

// setRunning records the state in metadata (leader only) and refreshes the
// control port, so a UI shows the right button.
func (t *Component) setRunning(handler module.Handler, running bool) {
	t.mu.Lock()
	t.running = running
	t.mu.Unlock()
	module.SetMetadata(handler, RunningKey, strconv.FormatBool(running))
}
