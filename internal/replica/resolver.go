package replica

import (
	"context"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/internal/apicall"
	"github.com/tinymod/tinymod/internal/leader"
)

// resolveTimeout bounds one look-up. Reads come from the cache, but the first
// one of a kind waits for its informer to sync, which a sick API server can
// hold up for as long as it likes, and before that for the REST mapper's
// discovery of the kind, which heeds no context.
const resolveTimeout = 5 * time.Second

// lookUps holds a slot for each look-up running. One given up at its bound
// runs on until the API server answers, keeping its slot: when all are
// taken, a look-up waits for one only until its bound. A hung API server so
// costs this many goroutines, not one for every message sent meanwhile.
var lookUps = make(chan struct{}, 32)

// resolver finds other modules' replicas from their membership Leases and
// their leader from the leader Lease, both read from the cache.
type resolver struct {
	c  client.Reader
	ns string
	// timeout bounds one look-up; resolveTimeout if zero.
	timeout time.Duration
}

// within runs lookUp bounded by r.timeout, and returns what it found, or
// nothing once the bound passes or ctx ends, whether or not lookUp has
// returned.
func within[T any](ctx context.Context, r resolver, lookUp func(context.Context) T) T {
	timeout := r.timeout
	if timeout <= 0 {
		timeout = resolveTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var none T
	select {
	case lookUps <- struct{}{}:
	case <-ctx.Done():
		return none
	}
	v, err := apicall.BoundedValue(ctx, timeout, func(ctx context.Context) (T, error) {
		defer func() { <-lookUps }()
		return lookUp(ctx), nil
	})
	if err != nil {
		return none
	}
	return v
}

// live returns the module's live members: identity -> address.
func (r resolver) live(ctx context.Context, module string) map[string]string {
	var leases coordinationv1.LeaseList
	if err := r.c.List(ctx, &leases, client.InNamespace(r.ns),
		client.MatchingLabels{leader.ModuleLabel: module, leader.RoleLabel: "member"}); err != nil {
		return nil
	}
	now := time.Now()
	out := map[string]string{}
	for _, l := range leases.Items {
		addr := l.Annotations[leader.AddressAnnotation]
		if addr == "" || l.Spec.HolderIdentity == nil || l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
			continue
		}
		// A replica that stopped renewing has gone: drop it from the rotation.
		if leader.MemberExpired(&l, now, 0) {
			continue
		}
		out[*l.Spec.HolderIdentity] = addr
	}
	return out
}

// Replicas returns the addresses of the module's live replicas.
func (r resolver) Replicas(ctx context.Context, module string) []string {
	members := within(ctx, r, func(ctx context.Context) map[string]string { return r.live(ctx, module) })
	out := make([]string, 0, len(members))
	for _, addr := range members {
		out = append(out, addr)
	}
	return out
}

// Leader returns the address of the replica holding the module's lease.
func (r resolver) Leader(ctx context.Context, module string) (string, bool) {
	addr := within(ctx, r, func(ctx context.Context) string {
		l := &coordinationv1.Lease{}
		if err := r.c.Get(ctx, client.ObjectKey{Namespace: r.ns, Name: LeaseName(module)}, l); err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return r.live(ctx, module)[*l.Spec.HolderIdentity]
	})
	return addr, addr != ""
}
