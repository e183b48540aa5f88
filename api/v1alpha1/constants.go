package v1alpha1

// System ports: every node has them whether or not its component declares them.
const (
	// SettingsPort receives a node's settings (the spec.ports entry with no from).
	SettingsPort = "_settings"
	// ControlPort receives control actions such as a button press; the leader acts on them.
	ControlPort = "_control"
	// ReconcilePort is delivered to every replica whenever the node changes, and is
	// the port a component writes its node's status through.
	ReconcilePort = "_reconcile"
	// ClientPort hands a component a Kubernetes client for the resources it manages.
	ClientPort = "_client"
)

// FlowNameLabel is the label that makes a TinyNode part of a TinyFlow.
const FlowNameLabel = "tinysystems.io/flow-name"

// ModuleNameLabel is the label on the Leases of a module's replicas.
const ModuleNameLabel = "tinysystems.io/module-name"

// Condition types used on tinymod objects.
const (
	// ConditionReady is True when an object is running as its spec says.
	ConditionReady = "Ready"
)
