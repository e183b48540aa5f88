package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TinySignalSpec names the node port a signal is for and what it carries.
type TinySignalSpec struct {
	// Node is the name of the target TinyNode, in the signal's namespace.
	// +kubebuilder:validation:MinLength=1
	Node string `json:"node"`

	// Port is the target port of the node.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="!self.contains('.')",message="port names never contain dots"
	Port string `json:"port"`

	// Data is the message: any JSON value, scalars included.
	// +optional
	Data *apiextensionsv1.JSON `json:"data,omitempty"`
}

// SignalPhase is where a signal is in its delivery.
// +kubebuilder:validation:Enum=Pending;Delivering;Failed
type SignalPhase string

// Signal phases. A delivered signal is deleted, so it has no phase of its own.
const (
	SignalPending    SignalPhase = "Pending"
	SignalDelivering SignalPhase = "Delivering"
	SignalFailed     SignalPhase = "Failed"
)

// TinySignalStatus is the delivery state of a signal, written by the leader.
type TinySignalStatus struct {
	// Phase is Pending until the leader starts delivering, Delivering while it
	// tries, Failed when it gave up. Delivered signals are deleted.
	// +optional
	Phase SignalPhase `json:"phase,omitempty"`

	// Attempts counts delivery attempts so far.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`

	// LastError is the error of the last failed attempt.
	// +optional
	LastError string `json:"lastError,omitempty"`

	// Conditions of the signal.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TinySignal is an external trigger for a node's port, processed by the leader.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ts,categories=tinymod
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.spec.node`
// +kubebuilder:printcolumn:name="Port",type=string,JSONPath=`.spec.port`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Attempts",type=integer,JSONPath=`.status.attempts`,priority=1
// +kubebuilder:printcolumn:name="Error",type=string,JSONPath=`.status.lastError`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TinySignal struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TinySignalSpec   `json:"spec"`
	Status TinySignalStatus `json:"status,omitempty"`
}

// TinySignalList is a list of TinySignals.
//
// +kubebuilder:object:root=true
type TinySignalList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TinySignal `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TinySignal{}, &TinySignalList{})
}
