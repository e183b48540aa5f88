package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TinyNodeSpec is what a node runs and where its messages go.
type TinyNodeSpec struct {
	// Module is the name of the module that runs this node (the module's --name).
	// +kubebuilder:validation:MinLength=1
	Module string `json:"module"`

	// Component is the name of the component this node is an instance of.
	// +kubebuilder:validation:MinLength=1
	Component string `json:"component"`

	// Ports configures the node's ports: its own settings, and mappings for
	// messages that arrive along particular edges.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=128
	Ports []TinyNodePortConfig `json:"ports,omitempty"`

	// Edges connect this node's output ports to other nodes' input ports.
	// +optional
	// +listType=map
	// +listMapKey=id
	// +kubebuilder:validation:MaxItems=128
	Edges []TinyNodeEdge `json:"edges,omitempty"`
}

// TinyNodePortConfig is the configuration of one port of a node.
type TinyNodePortConfig struct {
	// Port is the name of this node's port the configuration is for.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="!self.contains('.')",message="port names never contain dots"
	Port string `json:"port"`

	// From is "<node>.<port>" when the configuration maps messages arriving along
	// the edge from that port; empty for the node's own settings.
	// +optional
	// +kubebuilder:validation:MaxLength=317
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*[.][^.]+$')",message="must be <node>.<port>: a node name, a dot, then a port name without dots"
	From string `json:"from,omitempty"`

	// Configuration is any JSON value: the settings, or the mapping of an edge.
	// +optional
	Configuration *apiextensionsv1.JSON `json:"configuration,omitempty"`
}

// TinyNodeEdge connects an output port of this node to a port of another node.
type TinyNodeEdge struct {
	// ID identifies the edge; unique within the node.
	// +kubebuilder:validation:MinLength=1
	ID string `json:"id"`

	// Port is the output port of this node the edge leaves from.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="!self.contains('.')",message="port names never contain dots"
	Port string `json:"port"`

	// Retry re-sends a message along this edge after a transient error.
	// Off by default: a message is sent once.
	// +optional
	Retry *RetryPolicy `json:"retry,omitempty"`

	// To is the target "<node>.<port>", split at its last dot.
	// +kubebuilder:validation:MaxLength=317
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*[.][^.]+$')",message="must be <node>.<port>: a node name, a dot, then a port name without dots"
	To string `json:"to"`
}

// RetryPolicy bounds the re-sending of a message after transient errors.
// Permanent errors and cancelled messages are never retried.
type RetryPolicy struct {
	// Attempts is how many times a message is sent at most, the first included.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=20
	Attempts int32 `json:"attempts"`

	// Backoff is the wait before the first retry, doubling after each (a Go
	// duration: 100ms, 1s). Defaults to 100ms.
	// +optional
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	Backoff string `json:"backoff,omitempty"`
}

// TinyNodeStatus is what the module's leader publishes about a node.
type TinyNodeStatus struct {
	// Module is the module running the node.
	// +optional
	Module ModuleInfo `json:"module,omitempty"`

	// Component describes the node's component.
	// +optional
	Component ComponentInfo `json:"component,omitempty"`

	// Ports are the node's ports with their schemas.
	// +optional
	// +listType=atomic
	Ports []PortStatus `json:"ports,omitempty"`

	// Metadata is shared state written by the leader and read by every replica.
	// +optional
	Metadata map[string]string `json:"metadata,omitempty"`

	// Error is the node's current error, empty when it runs.
	// +optional
	Error string `json:"error,omitempty"`

	// Conditions: Ready is True when the node runs as its spec says.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ObservedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// ModuleInfo names a module and its version.
type ModuleInfo struct {
	// Name of the module.
	// +optional
	Name string `json:"name,omitempty"`

	// Version of the module's binary.
	// +optional
	Version string `json:"version,omitempty"`
}

// TinyNode is one instance of a component, run by every replica of its module.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tn,categories=tinymod
// +kubebuilder:printcolumn:name="Module",type=string,JSONPath=`.spec.module`
// +kubebuilder:printcolumn:name="Component",type=string,JSONPath=`.spec.component`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Error",type=string,JSONPath=`.status.error`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TinyNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TinyNodeSpec   `json:"spec"`
	Status TinyNodeStatus `json:"status,omitempty"`
}

// TinyNodeList is a list of TinyNodes.
//
// +kubebuilder:object:root=true
type TinyNodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TinyNode `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TinyNode{}, &TinyNodeList{})
}
