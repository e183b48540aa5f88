// Package transform reshapes each message with a JSON template in the
// language of edge mappings (docs/mapping.md): what arrives on in leaves on
// out as the template evaluated against it, as Node-RED's change node does.
// Every replica transforms.
package transform

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
)

// ComponentName is how TinyNodes name this component.
const ComponentName = "transform"

// Ports.
const (
	InPort  = "in"
	OutPort = "out"
)

// Passthrough is the default mapping: the message unchanged.
const Passthrough = "{{$}}"

// Settings of a transform.
type Settings struct {
	Mapping any `json:"mapping" jsonschema:"title=Mapping,description=A JSON template: strings holding {{ expr }} are expressions over the message ($); everything else is copied as written. Default {{$}}: the message unchanged"`
}

// Component is the transform.
type Component struct {
	mu       sync.RWMutex
	settings Settings
	tpl      *module.Template
}

// GetInfo describes the component.
func (c *Component) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: ComponentName, Description: "Reshapes messages with a template",
		Info: "Sends each message on out as its mapping (a JSON template in the language of edge mappings) evaluated against it. An expression that fails fails the message. Every replica transforms.",
		Tags: []string{"SDK"}}
}

// Instance returns a new transform, passing messages through unchanged
// until its settings say otherwise.
func (c *Component) Instance() module.Component {
	tpl, _ := module.CompileTemplate([]byte(`"` + Passthrough + `"`))
	return &Component{settings: Settings{Mapping: Passthrough}, tpl: tpl}
}

// Ports: settings, in and out.
func (c *Component) Ports() []module.Port {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Label: "Settings", Configuration: c.settings},
		{Name: InPort, Label: "In", Position: module.Left},
		{Name: OutPort, Label: "Out", Source: true, Position: module.Right},
	}
}

// Handle compiles the mapping on settings and transforms on every replica.
func (c *Component) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.SettingsPort:
		s, _ := msg.(Settings)
		if s.Mapping == nil {
			s.Mapping = Passthrough
		}
		raw, err := json.Marshal(s.Mapping)
		if err != nil {
			return module.Permanent(fmt.Errorf("mapping: %w", err))
		}
		tpl, err := module.CompileTemplate(raw)
		if err != nil {
			return module.Permanent(fmt.Errorf("mapping: %w", err))
		}
		c.mu.Lock()
		c.settings, c.tpl = s, tpl
		c.mu.Unlock()
	case InPort:
		c.mu.RLock()
		tpl := c.tpl
		c.mu.RUnlock()
		out, err := tpl.Eval(msg)
		if err != nil {
			// The same message fails the same way every time.
			return module.Permanent(fmt.Errorf("mapping: %w", err))
		}
		return output(ctx, OutPort, out)
	}
	return nil
}
