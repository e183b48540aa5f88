// Command tinymod runs the standard tinymod module and the developer tooling.
package main

import (
	"os"

	"github.com/tinymod/tinymod/cli"
)

func main() {
	if err := cli.NewRootCommand("tinymod").Execute(); err != nil {
		os.Exit(1)
	}
}
