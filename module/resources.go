package module

import (
	"context"
	"errors"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ErrNotLeader is what a ResourceManager's write returns on a replica that
// does not lead: it changed nothing, and the leader does the same work.
var ErrNotLeader = errors.New("only the leader writes cluster resources: this replica does not lead")

// ResourceManager is what a component that declares the _client port
// (v1alpha1.ClientPort) receives on it, once, when its node starts: the
// cluster resources of the module's namespace. Reads work on every replica;
// writes are leader-only by construction, so a component may call them from
// any replica and only the leader's call takes effect.
//
// Resources it creates belong to the node: they carry an owner reference to
// the TinyNode and are removed when the node is deleted.
type ResourceManager interface {
	// ExposePort makes port of the module's replicas reachable: a Service
	// selecting the module's pods and, with hostnames, an Ingress routing
	// them to it. It is idempotent, and adopts what an earlier leader made.
	ExposePort(ctx context.Context, port int, hostnames ...string) error
	// DisclosePort removes what ExposePort made for port.
	DisclosePort(ctx context.Context, port int) error
	// Reader reads objects of the module's namespace.
	Reader() client.Reader
}
