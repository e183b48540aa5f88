// Package module mirrors the TinySystems SDK's module package on tinymod's
// types: a component written against it is a tinymod component.
package module

import (
	tm "github.com/tinymod/tinymod/module"
)

type (
	// Handler sends a message from a node's port. See tinymod's module.Handler.
	Handler = tm.Handler
	// Component is what a module author implements. See tinymod's module.Component.
	Component = tm.Component
	// ComponentInfo describes a component.
	ComponentInfo = tm.ComponentInfo
	// Port is one port of a component.
	Port = tm.Port
	// Position is the side of a node's box on which a port is drawn.
	Position = tm.Position
)

// Port positions.
const (
	Top    = tm.Top
	Right  = tm.Right
	Bottom = tm.Bottom
	Left   = tm.Left
)

// Destroyer is implemented by components that clean up when their node is
// deleted. OnDestroy gets the node's last status metadata, never nil. It does
// not run when a replica stops: the node goes on running elsewhere.
type Destroyer interface {
	OnDestroy(metadata map[string]string)
}

// Info describes a module binary.
type Info struct {
	Name       string
	Version    string
	VersionID  string
	SDKVersion string
	Addr       string
	Components []ComponentInfo
}

// GetNameAndVersion returns "name:version".
func (i Info) GetNameAndVersion() string { return i.Name + ":" + i.Version }

// Requirements are what a module asks of the cluster. tinymod's chart grants
// RBAC itself (see docs/deploy.md); they are kept for the code that sets them.
type Requirements struct {
	RBAC RBACRequirements `json:"rbac,omitempty"`
}

// RBACRequirements are a module's RBAC needs.
type RBACRequirements struct {
	EnableKubernetesResourceAccess bool       `json:"enableKubernetesResourceAccess,omitempty"`
	ExtraRules                     []RBACRule `json:"extraRules,omitempty"`
}

// RBACRule is one extra RBAC rule.
type RBACRule struct {
	APIGroups []string `json:"apiGroups,omitempty"`
	Resources []string `json:"resources,omitempty"`
	Verbs     []string `json:"verbs,omitempty"`
}
