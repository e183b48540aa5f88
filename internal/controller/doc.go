// Package controller holds the reconcilers of a module replica. Every replica
// runs them; what they write depends on leadership, which each takes as a
// leader.Term and carries in the context of its writes (the Fence lets a write
// out only while that term is valid):
//
//   - TinyNodeReconciler hands every node of the module to the scheduler on
//     every replica, and on the leader alone writes the node's status, keeps
//     the finalizer of nodes that may own cluster resources (and only those),
//     and records Events, panics of a node's component among them.
//   - TinySignalReconciler delivers signals on the leader, from a work queue
//     keyed by target node: one signal of a node at a time, oldest first. It
//     takes only signals for its module's nodes (and for nodes that do not
//     exist, which fail after the retry budget), so modules share a namespace
//     and a signal for a module that is down waits for it. Handle runs twice
//     for one signal only if the delivering leader died or lost its lease
//     during that delivery: a failed API request after a delivery is retried,
//     never the delivery.
//   - TinyModuleReconciler keeps the module's TinyModule, whose status the
//     leader writes.
//
// Status writes go through StatusWriter, which batches them, skips those that
// change nothing and writes with resourceVersion preconditions.
package controller
