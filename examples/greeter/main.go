package main

import (
	"os"

	"github.com/tinymod/tinymod/cli"
	"github.com/tinymod/tinymod/components"
	"github.com/tinymod/tinymod/module"
)

// version is what the module reports; the Dockerfile sets it with
// -ldflags "-X main.version=...".
var version = "v0.1.0"

func main() {
	module.Register(&Greeter{})
	module.Register(components.Standard()...)
	if err := cli.NewRootCommand("greeter", version).Execute(); err != nil {
		os.Exit(1)
	}
}
