package main

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
)

// Where a faulty node panics: the values of FaultySettings.PanicIn.
const (
	PanicInSettings  = "settings"  // Handle on _settings
	PanicInReconcile = "reconcile" // Handle on _reconcile
	PanicInPorts     = "ports"     // Ports, once the settings are in
	PanicInDestroy   = "destroy"   // Destroy
)

// FaultySettings say where a faulty node panics.
type FaultySettings struct {
	PanicIn []string `json:"panicIn,omitempty" jsonschema:"title=Panic in,description=settings reconcile ports or destroy"`
	// Fuse panics while it is decoded, when it is "blow".
	Fuse Fuse `json:"fuse,omitempty"`
	// ArmInstance makes faulty-instance's Instance panic from now on, in
	// this process: the runtime calls Instance for more than nodes (to list
	// a module's components, say), so it panics only once armed.
	ArmInstance bool `json:"armInstance,omitempty"`
}

// instanceArmed is set by a faulty node's ArmInstance setting.
var instanceArmed atomic.Bool

// FaultyControl makes the leader's instance panic.
type FaultyControl struct {
	// Panic panics in Handle on _control.
	Panic bool `json:"panic,omitempty"`
	// PanicInStatus panics in a status callback given to the _reconcile output.
	PanicInStatus bool `json:"panicInStatus,omitempty"`
}

// FaultyMessage is what the business port takes.
type FaultyMessage struct {
	// Panic panics in Handle on in.
	Panic bool `json:"panic,omitempty"`
	// Fuse panics while the message is decoded, when it is "blow".
	Fuse Fuse `json:"fuse,omitempty"`
}

// Fuse is a string whose decoding panics when it is "blow".
type Fuse string

// UnmarshalJSON panics on "blow".
func (f *Fuse) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	if s == "blow" {
		panic("faulty: fuse blown while decoding")
	}
	*f = Fuse(s)
	return nil
}

// faulty panics where it is told to.
type faulty struct {
	instancePanics bool

	mu       sync.Mutex
	settings FaultySettings
}

func (c *faulty) GetInfo() module.ComponentInfo {
	if c.instancePanics {
		return module.ComponentInfo{Name: "faulty-instance", Description: "Panics in Instance"}
	}
	return module.ComponentInfo{Name: "faulty", Description: "Panics where its settings or a control message say"}
}

func (c *faulty) Instance() module.Component {
	if c.instancePanics && instanceArmed.Load() {
		panic("faulty: Instance")
	}
	return &faulty{}
}

func (c *faulty) panicsIn(where string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Contains(c.settings.PanicIn, where)
}

func (c *faulty) Ports() []module.Port {
	if c.panicsIn(PanicInPorts) {
		panic("faulty: Ports")
	}
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Label: "Settings", Configuration: FaultySettings{}},
		{Name: v1alpha1.ControlPort, Label: "Control", Configuration: FaultyControl{}},
		{Name: "in", Label: "In", Position: module.Left, Configuration: FaultyMessage{}},
	}
}

func (c *faulty) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.SettingsPort:
		s := msg.(FaultySettings)
		c.mu.Lock()
		c.settings = s
		c.mu.Unlock()
		if s.ArmInstance {
			instanceArmed.Store(true)
		}
		if c.panicsIn(PanicInSettings) {
			panic("faulty: Handle on _settings")
		}
	case v1alpha1.ReconcilePort:
		if c.panicsIn(PanicInReconcile) {
			panic("faulty: Handle on _reconcile")
		}
	case v1alpha1.ControlPort:
		ctl := msg.(FaultyControl)
		if ctl.Panic {
			panic("faulty: Handle on _control")
		}
		if ctl.PanicInStatus {
			return output(ctx, v1alpha1.ReconcilePort, func(*v1alpha1.TinyNode) {
				panic("faulty: status callback")
			})
		}
	case "in":
		if msg.(FaultyMessage).Panic {
			panic("faulty: Handle on in")
		}
	}
	return nil
}

func (c *faulty) Destroy() {
	if c.panicsIn(PanicInDestroy) {
		panic("faulty: Destroy")
	}
}
