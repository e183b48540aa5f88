package leader

import (
	"context"

	"github.com/tinymod/tinymod/internal/leadership"
)

// The value half of leadership lives in package leadership, which the SDK's
// facade imports without the elector's Kubernetes clients; these names keep
// the runtime's code reading leader.Term.

// Term is one acquisition of the lease by this replica (leadership.Term).
type Term = leadership.Term

// Source gives the term this replica holds now (leadership.Source).
type Source = leadership.Source

// Manual is a Source whose terms are started and ended by hand (leadership.Manual).
type Manual = leadership.Manual

// Always is a Source whose one term never ends.
var Always = leadership.Always

// Never is a Source that never leads.
var Never = leadership.Never

// NewTerm returns a term numbered number whose leader-only work runs under ctx
// and whose validity check asks check.
func NewTerm(number int64, ctx context.Context, check func(action string, journal bool) bool) *Term {
	return leadership.NewTerm(number, ctx, check)
}

// WithTerm returns ctx carrying t, for the Fence (leadership.WithTerm).
func WithTerm(ctx context.Context, t *Term) context.Context { return leadership.WithTerm(ctx, t) }

// TermFrom returns the term ctx carries, or nil.
func TermFrom(ctx context.Context) *Term { return leadership.TermFrom(ctx) }

// NewContext returns ctx from which IsLeader asks src (leadership.NewContext).
func NewContext(ctx context.Context, src Source, action string) context.Context {
	return leadership.NewContext(ctx, src, action)
}
