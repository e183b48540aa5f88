package main

import (
	"os"

	"github.com/tinymod/tinymod/cli"
	"github.com/tinymod/tinymod/components"
	"github.com/tinymod/tinymod/module"
)

func main() {
	module.Register(&Greeter{})
	module.Register(components.Standard()...)
	if err := cli.NewRootCommand("greeter", "v0.1.0").Execute(); err != nil {
		os.Exit(1)
	}
}
