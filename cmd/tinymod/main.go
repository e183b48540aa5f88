// Command tinymod runs the standard tinymod module and the developer tooling.
package main

import (
	"os"

	"github.com/tinymod/tinymod/cli"
	"github.com/tinymod/tinymod/components"
	"github.com/tinymod/tinymod/module"
)

// version is stamped in at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	module.Register(components.Standard()...)
	if err := cli.NewRootCommand("tinymod", version).Execute(); err != nil {
		os.Exit(1)
	}
}
