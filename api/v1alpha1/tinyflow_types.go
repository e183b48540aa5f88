package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TinyFlowSpec describes a flow; its nodes carry the FlowNameLabel label.
type TinyFlowSpec struct {
	// Description says what the flow does.
	// +optional
	Description string `json:"description,omitempty"`
}

// TinyFlowStatus is the observed state of a flow.
type TinyFlowStatus struct {
	// Conditions of the flow.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TinyFlow groups nodes into a flow.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tf,categories=tinymod
// +kubebuilder:printcolumn:name="Description",type=string,JSONPath=`.spec.description`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TinyFlow struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec   TinyFlowSpec   `json:"spec,omitempty"`
	Status TinyFlowStatus `json:"status,omitempty"`
}

// TinyFlowList is a list of TinyFlows.
//
// +kubebuilder:object:root=true
type TinyFlowList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TinyFlow `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TinyFlow{}, &TinyFlowList{})
}
