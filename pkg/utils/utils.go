// Package utils is the SDK's entry to runtime facts a component asks about.
// It is a thin facade: the logic lives in the runtime.
package utils

import (
	"context"

	"github.com/tinymod/tinymod/internal/leadership"
)

// IsLeader reports whether the replica that delivered ctx leads the module now.
//
// It is true on the leading replica in every Handle, whatever the port
// (_settings, _control, _reconcile or a business port) and wherever the
// message came from (a TinySignal, an edge within the module, another module
// over gRPC), and false on every other replica. It is live: a loop that checks
// it sees leadership end the moment it is lost. Leader-only work that must not
// outlive the term should take the term's context rather than poll this.
func IsLeader(ctx context.Context) bool { return leadership.IsLeader(ctx) }
