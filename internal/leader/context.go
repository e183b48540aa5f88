package leader

import "context"

// Status tells whether this replica leads at the moment it is asked.
type Status interface {
	IsLeader() bool
}

// Terms is implemented by a Status whose leadership comes in terms: Term
// returns the current term's context, which ends when leadership does.
type Terms interface {
	Term() (context.Context, bool)
}

// Authorizer is a Status that can be told what the leadership it confirms is
// for, so that a journal names the work.
type Authorizer interface {
	Authorize(action string) bool
}

// Authorize asks s whether this replica leads, for action.
func Authorize(s Status, action string) bool {
	if a, ok := s.(Authorizer); ok {
		return a.Authorize(action)
	}
	return s.IsLeader()
}

// Named is a Status that confirms leadership for one named action: the
// Status that a node's components see carries the node's name.
type Named struct {
	Status
	Action string
}

// IsLeader asks the underlying Status, for the named action.
func (n Named) IsLeader() bool { return Authorize(n.Status, n.Action) }

// Static is a Status that never changes: for single-replica runs and tests.
type Static bool

// IsLeader returns s.
func (s Static) IsLeader() bool { return bool(s) }

// Term returns a term that never ends, if s.
func (s Static) Term() (context.Context, bool) { return context.Background(), bool(s) }

type statusKey struct{}

// NewContext returns ctx carrying s, which IsLeader consults on every call.
func NewContext(ctx context.Context, s Status) context.Context {
	return context.WithValue(ctx, statusKey{}, s)
}

// IsLeader reports whether the replica that delivered ctx leads now. It is live:
// called in a loop, it turns false the moment leadership is lost. A context that
// carries no Status is not a leader's.
func IsLeader(ctx context.Context) bool {
	s, _ := ctx.Value(statusKey{}).(Status)
	return s != nil && s.IsLeader()
}
