// Package v1alpha1 holds the tinymod API: TinyModule, TinyNode, TinySignal and
// TinyFlow in group operator.tinysystems.io.
//
// A TinyNode is one instance of a component, run by every replica of its module
// and wired to other nodes by edges. A TinySignal is an external trigger that the
// module's leader delivers to a node's port. A TinyModule advertises a module:
// where to reach it, which replica leads, which components it hosts. A TinyFlow
// groups nodes through the FlowNameLabel label.
//
// +kubebuilder:object:generate=true
// +groupName=operator.tinysystems.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every tinymod kind.
	GroupVersion = schema.GroupVersion{Group: "operator.tinysystems.io", Version: "v1alpha1"}

	// SchemeBuilder registers the tinymod kinds with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the tinymod kinds to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
