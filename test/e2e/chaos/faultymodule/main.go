// Command faultymodule is the module the chaos suite runs: tinymod's standard
// components, built the way a module author builds a module with package cli,
// plus components that misbehave on purpose or record what the runtime did:
//
//   - faulty panics where its settings or a control message say: in Handle on
//     _settings, _reconcile, _control or its business port, in Ports, in
//     Destroy, in a status callback, and while its settings or a message are
//     decoded; faulty-instance panics in Instance once a faulty node's
//     settings have armed it;
//   - pacer sends messages with deadlines, at a steady rate, on every replica;
//   - hold receives them and holds each for a while, or until its deadline;
//   - probe logs each message it receives with whether the replica leads and
//     the message's idempotency key.
package main

import (
	"os"

	"github.com/tinymod/tinymod/cli"
	"github.com/tinymod/tinymod/components"
	"github.com/tinymod/tinymod/module"
)

var version = "chaos"

func main() {
	module.Register(components.Standard()...)
	module.Register(&faulty{}, &faulty{instancePanics: true}, &pacer{}, &hold{}, &probe{})
	if err := cli.NewRootCommand("faultymodule", version).Execute(); err != nil {
		os.Exit(1)
	}
}
