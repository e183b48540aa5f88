// Package utils mirrors the parts of the TinySystems SDK's utils package that
// components and their tests use.
package utils

import (
	"context"

	"github.com/tinymod/tinymod/internal/leadership"
	tmutils "github.com/tinymod/tinymod/pkg/utils"
)

// IsLeader reports whether the replica that delivered ctx leads the module
// now. See tinymod's utils.IsLeader.
func IsLeader(ctx context.Context) bool { return tmutils.IsLeader(ctx) }

// WithLeader returns ctx in which IsLeader reports isLeader: for tests that
// call a component's Handle directly. (The runtime sets leadership itself.)
func WithLeader(ctx context.Context, isLeader bool) context.Context {
	if isLeader {
		return leadership.NewContext(ctx, leadership.Always, "test")
	}
	return leadership.NewContext(ctx, leadership.Never, "test")
}

// CheckForError returns input if it is a non-nil error, and nil otherwise:
// what a Handle or Handler result says about failure.
func CheckForError(input any) error {
	if err, ok := input.(error); ok && err != nil {
		return err
	}
	return nil
}
