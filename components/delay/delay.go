// Package delay passes each message on after a duration; a cancelled context
// cancels the wait.
package delay

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
)

// ComponentName is how TinyNodes name this component.
const ComponentName = "delay"

// Ports.
const (
	InPort  = "in"
	OutPort = "out"
)

// Settings of a delay.
type Settings struct {
	Duration string `json:"duration" jsonschema:"title=Duration,description=How long to hold each message: 500ms or 2s"`
}

// Component is the delay.
type Component struct {
	mu sync.RWMutex
	d  time.Duration
}

// GetInfo describes the component.
func (c *Component) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: ComponentName, Description: "Holds messages for a while", Info: "Passes each message on after its duration; cancelling the message's context cancels the wait.", Tags: []string{"SDK"}}
}

// Instance returns a new delay.
func (c *Component) Instance() module.Component { return &Component{d: time.Second} }

// Ports: settings, in and out.
func (c *Component) Ports() []module.Port {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Label: "Settings", Configuration: Settings{Duration: c.d.String()}},
		{Name: InPort, Label: "In"},
		{Name: OutPort, Label: "Out", Source: true, Position: module.Right},
	}
}

// Handle delays on every replica.
func (c *Component) Handle(ctx context.Context, handler module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.SettingsPort:
		s := msg.(Settings)
		d, err := time.ParseDuration(s.Duration)
		if err != nil || d < 0 {
			return module.Permanent(fmt.Errorf("duration %q: want a non-negative Go duration such as 500ms or 2s", s.Duration))
		}
		c.mu.Lock()
		c.d = d
		c.mu.Unlock()
	case InPort:
		c.mu.RLock()
		d := c.d
		c.mu.RUnlock()
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		return handler(ctx, OutPort, msg)
	}
	return nil
}
