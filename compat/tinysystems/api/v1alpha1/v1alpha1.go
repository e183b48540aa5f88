// Package v1alpha1 mirrors the TinySystems SDK's API package on tinymod's
// kinds: the same group, operator.tinysystems.io/v1alpha1, and the names
// components use. Fields differ where tinymod's CRDs do (configuration is
// JSON, not base64; targets are node.port): see docs/migrating.md, and
// `tinymod import` for manifests.
package v1alpha1

import (
	tm "github.com/tinymod/tinymod/api/v1alpha1"
)

// System ports.
const (
	ReconcilePort = tm.ReconcilePort
	ControlPort   = tm.ControlPort
	SettingsPort  = tm.SettingsPort
	ClientPort    = tm.ClientPort
)

// The kinds and their parts.
type (
	TinyNode           = tm.TinyNode
	TinyNodeList       = tm.TinyNodeList
	TinyNodeSpec       = tm.TinyNodeSpec
	TinyNodeStatus     = tm.TinyNodeStatus
	TinyNodeEdge       = tm.TinyNodeEdge
	TinyNodePortConfig = tm.TinyNodePortConfig
	TinySignal         = tm.TinySignal
	TinySignalList     = tm.TinySignalList
	TinySignalSpec     = tm.TinySignalSpec
	TinySignalStatus   = tm.TinySignalStatus
	TinyModule         = tm.TinyModule
	TinyModuleList     = tm.TinyModuleList
	TinyModuleSpec     = tm.TinyModuleSpec
	TinyModuleStatus   = tm.TinyModuleStatus
	TinyFlow           = tm.TinyFlow
	TinyFlowList       = tm.TinyFlowList
	TinyFlowSpec       = tm.TinyFlowSpec
	TinyFlowStatus     = tm.TinyFlowStatus
)

// MetadataConfigPatch is a change of a node's status metadata.
type MetadataConfigPatch struct {
	Metadata map[string]string
}

var (
	// GroupVersion is the group and version of the kinds.
	GroupVersion = tm.GroupVersion
	// AddToScheme adds the kinds to a runtime.Scheme.
	AddToScheme = tm.AddToScheme
)
