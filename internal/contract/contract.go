// Package contract names the runtime contracts a component may ask for where
// they differ from tinymod's own. It holds types only, so that the compat
// packages module authors import stay light; internal/scheduler honours them.
package contract

// Contract is the runtime contract a component was written for, where it
// differs from tinymod's own. Native components have the zero Contract;
// components written for the TinySystems SDK, registered through
// compat/tinysystems/registry, ask for that SDK's.
type Contract struct {
	// ReconcileFirst delivers _reconcile before _settings in each update, so
	// that state restored from the node's metadata is there when the
	// settings arrive.
	ReconcileFirst bool
	// DecodeOverZero decodes a message over the zero value of its port's
	// type; by default it is decoded over the port's Configuration, so that
	// fields a message leaves out keep their defaults.
	DecodeOverZero bool
	// ForwardMetadata sends a reader's metadata writes (output on
	// _reconcile) to the leader, which writes them; by default a reader's
	// writes do nothing.
	ForwardMetadata bool
	// UnvalidatedSettings decodes settings without checking them against the
	// port's schema first, as the SDK does: its schemas mark required what its
	// editor asks for, and its nodes may leave such fields out.
	UnvalidatedSettings bool
}

// Holder is implemented by components whose contract is not tinymod's.
type Holder interface {
	RuntimeContract() Contract
}

// NodeDeleter is implemented by components that act when their node is
// deleted (or leaves the module), and only then: not when the replica stops.
// NodeDeleted gets the node's last known status metadata, never nil.
type NodeDeleter interface {
	NodeDeleted(metadata map[string]string)
}

// Of returns the contract c asks for: the zero Contract unless it is a Holder.
func Of(c any) Contract {
	if h, ok := c.(Holder); ok {
		return h.RuntimeContract()
	}
	return Contract{}
}
