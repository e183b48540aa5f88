package leadership

import "context"

type sourceKey struct{}

type named struct {
	src    Source
	action string
}

// NewContext returns ctx from which IsLeader asks src, live, naming action in
// the journal. A ctx that already asks src is returned as it is: a message
// along an edge of the same module carries its sender's, at no cost per hop.
func NewContext(ctx context.Context, src Source, action string) context.Context {
	if n, ok := ctx.Value(sourceKey{}).(named); ok && n.src == src {
		return ctx
	}
	return context.WithValue(ctx, sourceKey{}, named{src: src, action: action})
}

// IsLeader reports whether the replica that delivered ctx leads now: it holds
// a valid term whose leader-only work has not stopped. It is live: called in a
// loop, it turns false the moment leadership is lost, and true again in a
// later term. A context that carries no Source is not a leader's.
func IsLeader(ctx context.Context) bool {
	n, ok := ctx.Value(sourceKey{}).(named)
	if !ok || n.src == nil {
		return false
	}
	t := n.src.Current()
	return t != nil && t.Context().Err() == nil && t.Confirm(n.action)
}
