package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

// Position is the side of a node's box on which a port is drawn.
// +kubebuilder:validation:Enum=Top;Right;Bottom;Left
type Position string

// Port positions.
const (
	PositionTop    Position = "Top"
	PositionRight  Position = "Right"
	PositionBottom Position = "Bottom"
	PositionLeft   Position = "Left"
)

// PortStatus describes one port of a component as the runtime publishes it.
type PortStatus struct {
	// Name of the port; never contains a dot.
	// +kubebuilder:validation:Pattern=`^[^.]+$`
	Name string `json:"name"`

	// Label is a human-readable name for the port.
	// +optional
	Label string `json:"label,omitempty"`

	// Source is true for an output port: messages leave the node through it.
	// +optional
	Source bool `json:"source,omitempty"`

	// Position is the side of the node the port is drawn on.
	// +optional
	Position Position `json:"position,omitempty"`

	// Schema is the JSON Schema of the messages the port carries.
	// +optional
	Schema *apiextensionsv1.JSON `json:"schema,omitempty"`
}

// ComponentInfo describes a component hosted by a module.
type ComponentInfo struct {
	// Name of the component, as TinyNode.spec.component names it.
	Name string `json:"name"`

	// Description is a one-line summary of what the component does.
	// +optional
	Description string `json:"description,omitempty"`

	// Info is a longer explanation of the component.
	// +optional
	Info string `json:"info,omitempty"`

	// Tags group components in a palette.
	// +optional
	Tags []string `json:"tags,omitempty"`
}
