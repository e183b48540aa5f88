// Package utils is the SDK's entry to runtime facts a component asks about.
// It is a thin facade: the logic lives in the runtime.
package utils

import (
	"context"

	"github.com/tinymod/tinymod/internal/leadership"
)

// IsLeader reports whether the replica that delivered ctx leads the module now.
// It is live: a loop that checks it sees leadership end the moment it is lost.
func IsLeader(ctx context.Context) bool { return leadership.IsLeader(ctx) }
