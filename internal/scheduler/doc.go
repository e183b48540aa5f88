// Package scheduler runs a module's TinyNodes as component instances and moves
// messages between them.
//
// Update creates, reconfigures or replaces the instance of a node: it delivers
// the node's settings on _settings when they change and the node itself on
// _reconcile. An instance's output handler sends along the edges of a port:
// in-process to a node of the same module, through a Transport to a node of
// another. Per-edge mappings (package mapping) shape a message for its target;
// the result is decoded into the target port's Go type. Errors and results come
// back to the caller; panics are recovered; a depth limit stops cycles.
//
// The scheduler does no I/O of its own: it learns of leadership through a
// leader.Status, asks a StatusWriter to persist status, and finds other nodes
// through a Lookup.
package scheduler
