// Package scheduler runs a module's TinyNodes as component instances and moves
// messages between them.
//
// Update creates, reconfigures or replaces the instance of a node: it delivers
// the node's settings on _settings when they change and the node itself on
// _reconcile. An instance's output handler sends along the edges of a port:
// in-process to a node of the same module, through a Transport to a node of
// another. Per-edge mappings (package mapping) shape a message for its target;
// the result is decoded into the target port's Go type. Errors and results come
// back to the caller; a depth limit stops cycles.
//
// Component code is never trusted: a panic in Handle, Ports, GetInfo,
// Instance, Destroy, a status callback or the decoding of a message is
// recovered, counted, logged and handed to Options.OnPanic, and the replica
// and every other node run on. A failed delivery (a mapping that fails, a
// message that does not decode, a missing node or port, a handler's error) is
// counted and logged where it happened, at most once per node and edge in
// each period, and kept per node in memory (Health), never written per message.
//
// The scheduler does no I/O of its own: it learns of leadership through a
// leader.Source, asks a StatusWriter to persist status, and finds other nodes
// through a Lookup.
package scheduler
