// Package controller holds the reconcilers of a module replica. Every replica
// runs them; what they write depends on leadership:
//
//   - TinyNodeReconciler hands every node of the module to the scheduler on
//     every replica, and on the leader alone writes the node's status, adds and
//     removes its finalizer and records Events.
//   - TinyModuleReconciler keeps the module's TinyModule, whose status the
//     leader writes.
//
// Status writes go through StatusWriter, which batches them, skips those that
// change nothing and writes with resourceVersion preconditions.
package controller
