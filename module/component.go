package module

import (
	"context"

	"github.com/tinymod/tinymod/api/v1alpha1"
)

// Handler sends a message from a node's port: along the port's edges for an
// output port, or to the runtime for a system port. It returns the receivers'
// result or error.
type Handler func(ctx context.Context, port string, data any) any

// Component is what a module author implements.
type Component interface {
	// GetInfo describes the component.
	GetInfo() ComponentInfo
	// Handle processes a message that arrived on port; see the package doc.
	Handle(ctx context.Context, output Handler, port string, msg any) any
	// Ports lists the component's ports. It is called again to refresh the
	// published ports, so it may reflect the instance's state.
	Ports() []Port
	// Instance returns a new, independent instance for one node.
	Instance() Component
}

// Destroyer is implemented by components that clean up when their node is
// deleted or the replica shuts down.
type Destroyer interface {
	Destroy()
}

// LeaderWriter is implemented by a component whose status metadata writes
// go through the leader from every replica. On a reader,
// output(ctx, v1alpha1.ReconcilePort, fn) then sends fn's change of the
// metadata to the leader and returns once the leader has written it (or
// failed to), retrying across a change of leader for up to 15 s; without
// it, a reader's metadata writes do nothing. A forwarded change is a set
// of keys to set and keys to delete, applied to the leader's copy: writes
// of different keys from different replicas do not overwrite each other.
type LeaderWriter interface {
	WritesThroughLeader() bool
}

// ComponentInfo describes a component.
type ComponentInfo struct {
	// Name is how TinyNode.spec.component names the component.
	Name string
	// Description is a one-line summary.
	Description string
	// Info is a longer explanation.
	Info string
	// Tags group components in a palette.
	Tags []string
}

// Position is the side of a node's box on which a port is drawn.
type Position = v1alpha1.Position

// Port positions.
const (
	Top    = v1alpha1.PositionTop
	Right  = v1alpha1.PositionRight
	Bottom = v1alpha1.PositionBottom
	Left   = v1alpha1.PositionLeft
)

// Port is one port of a component.
type Port struct {
	// Name of the port; never contains a dot.
	Name string
	// Label is a human-readable name.
	Label string
	// Source is true for an output port.
	Source bool
	// Position is where the port is drawn.
	Position Position
	// Configuration is both the default value and the Go type that messages on
	// this port are decoded into. Nil means messages arrive as they were sent.
	Configuration any
	// ResponseConfiguration is the type of what Handle returns for this port,
	// for documentation and schemas. Optional.
	ResponseConfiguration any
}

// Info describes a module binary.
type Info struct {
	// Name of the module: its TinyModule, its Lease and the spec.module of its nodes.
	Name string
	// Version of the binary.
	Version string
}

// SetMetadata writes one key of the node's status metadata through output and
// refreshes the published control port, which often shows that state. Like
// every status write it happens on the leader only (a reader's call does
// nothing) and returns once persisted or failed.
func SetMetadata(output Handler, key, value string) any {
	res := output(context.Background(), v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) {
		n.Status.Metadata[key] = value
	})
	output(context.Background(), v1alpha1.ControlPort, nil)
	return res
}
