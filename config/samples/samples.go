// Package samples embeds the sample flow so `tinymod dev` can apply it.
package samples

import _ "embed"

// DemoFlow is demo-flow.yaml: a ticker through a router into debug sinks, and
// a signal-triggered branch.
//
//go:embed demo-flow.yaml
var DemoFlow []byte
