// Package router sends each message to the first route whose condition holds,
// else to the default port. Conditions are expressions over the message in
// the language of edge mappings ($ is the message).
package router

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
)

// ComponentName is how TinyNodes name this component.
const ComponentName = "router"

// InPort receives messages; DefaultPort takes what no route matches.
const (
	InPort      = "in"
	DefaultPort = "default"
)

// Route is one output port and its condition.
type Route struct {
	Port      string `json:"port" jsonschema:"title=Port,description=Output port name (no dots)"`
	Condition string `json:"condition" jsonschema:"title=Condition,description=Expression over the message: $.n > 10"`
}

// Settings of a router.
type Settings struct {
	Routes []Route `json:"routes,omitempty" jsonschema:"title=Routes,description=Tried in order; the first whose condition is true wins"`
	// Default says whether unmatched messages go out on the default port
	// (true) or are dropped (false).
	Default bool `json:"default,omitempty" jsonschema:"title=Default,description=Send unmatched messages on the default port"`
}

type compiled struct {
	port string
	expr *module.Expr
}

// Component is the router.
type Component struct {
	mu       sync.RWMutex
	settings Settings
	routes   []compiled
}

// GetInfo describes the component.
func (c *Component) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: ComponentName, Description: "Routes messages by condition", Info: "Sends each message to the first route whose condition holds, else to default.", Tags: []string{"SDK"}}
}

// Instance returns a new router.
func (c *Component) Instance() module.Component { return &Component{} }

// Ports: settings, in, one output per route and default.
func (c *Component) Ports() []module.Port {
	c.mu.RLock()
	defer c.mu.RUnlock()
	ports := []module.Port{
		{Name: v1alpha1.SettingsPort, Label: "Settings", Configuration: c.settings},
		{Name: InPort, Label: "In", Position: module.Left},
	}
	for _, r := range c.routes {
		ports = append(ports, module.Port{Name: r.port, Label: r.port, Source: true, Position: module.Right})
	}
	return append(ports, module.Port{Name: DefaultPort, Label: "Default", Source: true, Position: module.Bottom})
}

// Handle routes on every replica.
func (c *Component) Handle(ctx context.Context, handler module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.SettingsPort:
		settings := msg.(Settings)
		routes := make([]compiled, 0, len(settings.Routes))
		var errs []error
		seen := map[string]bool{}
		for i, r := range settings.Routes {
			switch {
			case r.Port == "" || strings.Contains(r.Port, ".") || strings.HasPrefix(r.Port, "_") || r.Port == InPort || r.Port == DefaultPort:
				errs = append(errs, fmt.Errorf("routes[%d]: port %q must be a name without dots, not a system port, %s or %s", i, r.Port, InPort, DefaultPort))
				continue
			case seen[r.Port]:
				errs = append(errs, fmt.Errorf("routes[%d]: port %q used twice", i, r.Port))
				continue
			}
			seen[r.Port] = true
			e, err := module.CompileExpr(r.Condition)
			if err != nil {
				errs = append(errs, fmt.Errorf("routes[%d] (%s): %w", i, r.Port, err))
				continue
			}
			routes = append(routes, compiled{port: r.Port, expr: e})
		}
		if len(errs) > 0 {
			return module.Permanent(errors.Join(errs...))
		}
		c.mu.Lock()
		c.settings, c.routes = settings, routes
		c.mu.Unlock()
	case InPort:
		c.mu.RLock()
		routes, fallback := c.routes, c.settings.Default
		c.mu.RUnlock()
		for _, r := range routes {
			ok, err := r.expr.Bool(msg)
			if err != nil {
				return module.Permanent(fmt.Errorf("route %s: %w", r.port, err))
			}
			if ok {
				return handler(ctx, r.port, msg)
			}
		}
		if fallback {
			return handler(ctx, DefaultPort, msg)
		}
	}
	return nil
}
