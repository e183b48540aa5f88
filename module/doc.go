// Package module is the contract a tinymod component implements.
//
// A module is one Go binary hosting components. Each TinyNode custom resource
// names a component; every replica of the module runs one instance of it per
// node, made with Instance(). The runtime talks to an instance through Handle:
//
//	func (c *Ticker) Handle(ctx context.Context, output module.Handler, port string, msg any) any
//
// port says what arrived:
//
//   - v1alpha1.SettingsPort: the node's settings, decoded into the Configuration
//     type of the component's settings port; redelivered whenever they change.
//   - v1alpha1.ReconcilePort: the *v1alpha1.TinyNode, whenever it changes.
//   - v1alpha1.ControlPort: a control action (a button press), usually sent by a
//     TinySignal and processed by the leader only.
//   - any input port of the component: a business message from an edge.
//
// msg is a value of the Go type of the port's Configuration (the runtime decodes
// it), so a component writes msg.(Control). Handle returns a result for the
// caller, or an error; plain errors are transient, Permanent(err) marks one that
// must not be retried.
//
// output sends from the node: output(ctx, "out", data) delivers data along every
// edge of the output port "out", waits for the receivers and returns the first
// error in edge order, or else the first edge's result. output is bound to the
// node, so it works with any context, context.Background() included.
// output(ctx, v1alpha1.ReconcilePort, func(*v1alpha1.TinyNode)) changes the
// node's status metadata (on the leader only; the function must be idempotent,
// since it may run again after a write conflict).
//
// Contexts: one delivered with a system port lives as long as the instance and,
// on the leader, ends when leadership is lost; one delivered with a business
// message lives until that message is answered. utils.IsLeader(ctx) tells, live,
// whether this replica leads.
package module
