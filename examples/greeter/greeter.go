// Package main is a module with one component of its own, greeter, beside
// the standard ones; docs/writing-a-component.md walks through it.
package main

import (
	"context"
	"fmt"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
)

type Settings struct {
	Greeting string `json:"greeting" jsonschema:"title=Greeting,description=How to greet"`
}

type Person struct {
	Name string `json:"name" jsonschema:"title=Name"`
}

type Greeter struct{ settings Settings }

func (g *Greeter) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: "greeter", Description: "Greets whoever arrives"}
}

func (g *Greeter) Instance() module.Component { return &Greeter{settings: Settings{Greeting: "Hello"}} }

func (g *Greeter) Ports() []module.Port {
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Configuration: g.settings},
		{Name: "in", Label: "Person", Configuration: Person{}},
		{Name: "out", Label: "Greeting", Source: true, Position: module.Right, Configuration: ""},
	}
}

func (g *Greeter) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.SettingsPort:
		g.settings = msg.(Settings) // every replica keeps its settings
	case "in": // every replica handles messages
		return output(ctx, "out", fmt.Sprintf("%s, %s!", g.settings.Greeting, msg.(Person).Name))
	}
	return nil
}
