// Package inject sends a configured value when its button is pressed: a
// constant, or a template in the language of edge mappings evaluated at the
// press ("{{now()}}"). Only the leader sends, so one press is one message.
package inject

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/pkg/utils"
)

// ComponentName is how TinyNodes name this component.
const ComponentName = "inject"

// OutPort carries the value.
const OutPort = "out"

// Settings of an inject.
type Settings struct {
	Value any `json:"value,omitempty" jsonschema:"title=Value,description=What a press sends on out: any JSON value. Strings holding {{ expr }} are evaluated at the press ({{now()}}) with $ null"`
}

// Control is a button press.
type Control struct {
	Send bool `json:"send,omitempty" jsonschema:"title=Send,description=Send the value on out"`
}

// Component is the inject.
type Component struct {
	mu       sync.RWMutex
	settings Settings
	value    *module.Template
}

// GetInfo describes the component.
func (c *Component) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: ComponentName, Description: "Sends a value at the press of a button",
		Info: "Send sends the value on out and returns what the flow returned; strings holding {{ expr }} in it are evaluated at the press, in the language of edge mappings ({{now()}}). Only the leader sends.",
		Tags: []string{"SDK"}}
}

// Instance returns a new inject, whose value is null until its settings say.
func (c *Component) Instance() module.Component {
	tpl, _ := module.CompileTemplate([]byte("null"))
	return &Component{value: tpl}
}

// Ports: settings, control and out.
func (c *Component) Ports() []module.Port {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Label: "Settings", Configuration: c.settings},
		{Name: v1alpha1.ControlPort, Label: "Control", Configuration: Control{}},
		{Name: OutPort, Label: "Out", Source: true, Position: module.Right},
	}
}

// Handle keeps the settings on every replica; the leader alone sends.
func (c *Component) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.SettingsPort:
		s, _ := msg.(Settings)
		raw, err := json.Marshal(s.Value)
		if err != nil {
			return module.Permanent(fmt.Errorf("value: %w", err))
		}
		tpl, err := module.CompileTemplate(raw)
		if err != nil {
			return module.Permanent(fmt.Errorf("value: %w", err))
		}
		c.mu.Lock()
		c.settings, c.value = s, tpl
		c.mu.Unlock()
	case v1alpha1.ControlPort:
		control, _ := msg.(Control)
		if !control.Send || !utils.IsLeader(ctx) {
			return nil
		}
		c.mu.RLock()
		tpl := c.value
		c.mu.RUnlock()
		v, err := tpl.Eval(nil)
		if err != nil {
			// The same value fails the same way at the next press.
			return module.Permanent(fmt.Errorf("value: %w", err))
		}
		return output(ctx, OutPort, v)
	}
	return nil
}
