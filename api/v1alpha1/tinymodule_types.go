package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TinyModuleSpec is empty: a module is described by what it publishes.
type TinyModuleSpec struct{}

// TinyModuleStatus is what a module's leader publishes about the module.
type TinyModuleStatus struct {
	// Addr is the gRPC address that spreads over all replicas of the module.
	// +optional
	Addr string `json:"addr,omitempty"`

	// Leader is the identity of the replica holding the module's lease.
	// +optional
	Leader string `json:"leader,omitempty"`

	// LeaderAddr is the gRPC address of the leader replica.
	// +optional
	LeaderAddr string `json:"leaderAddr,omitempty"`

	// Version of the module's binary.
	// +optional
	Version string `json:"version,omitempty"`

	// Components are the components the module hosts.
	// +optional
	// +listType=map
	// +listMapKey=name
	Components []ModuleComponent `json:"components,omitempty"`

	// Conditions: Ready is True when the module has a leader.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ModuleComponent is a component with its ports, as a module publishes it.
type ModuleComponent struct {
	ComponentInfo `json:",inline"`

	// Ports of the component with their schemas.
	// +optional
	// +listType=atomic
	Ports []PortStatus `json:"ports,omitempty"`
}

// TinyModule advertises a module: where to reach it and what it hosts.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tm,categories=tinymod
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.status.addr`
// +kubebuilder:printcolumn:name="Leader",type=string,JSONPath=`.status.leader`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.version`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TinyModule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec   TinyModuleSpec   `json:"spec,omitempty"`
	Status TinyModuleStatus `json:"status,omitempty"`
}

// TinyModuleList is a list of TinyModules.
//
// +kubebuilder:object:root=true
type TinyModuleList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TinyModule `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TinyModule{}, &TinyModuleList{})
}
