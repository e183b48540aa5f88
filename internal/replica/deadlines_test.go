package replica_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/internal/transport"
)

// TestResolverHasDeadlines: while the API server holds controlplanetest.Every request, the
// look-ups of another module's replicas and leader, read from the cache as a
// replica reads them, find nothing at their bound, even while the cache's
// first Lease read waits on a discovery that heeds no context; once the API
// server answers again, they find them.
func TestResolverHasDeadlines(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, 2*time.Minute)
	const addr = "10.0.0.9:8483"
	holder, secs, now := "other-0", int32(60), metav1.NowMicro()
	for _, l := range []*coordinationv1.Lease{{
		ObjectMeta: metav1.ObjectMeta{Name: leader.MemberLeaseName("other", holder), Namespace: ns,
			Labels:      map[string]string{leader.ModuleLabel: "other", leader.RoleLabel: "member"},
			Annotations: map[string]string{leader.AddressAnnotation: addr}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &now},
	}, {
		ObjectMeta: metav1.ObjectMeta{Name: replica.LeaseName("other"), Namespace: ns},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &now},
	}} {
		if err := env.Client.Create(ctx, l); err != nil {
			t.Fatal(err)
		}
	}

	h := &controlplanetest.Hang{}
	t.Cleanup(h.Answer)
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(h.Wrap)
	const bound = 500 * time.Millisecond
	limit := bound + 5*time.Second // what a loaded machine may add
	// resolver reads through a cache of its own, as new as a replica's
	// at start: its first read of Leases discovers them and starts an informer.
	resolver := func() transport.Resolver {
		c, err := cache.New(cfg, cache.Options{Scheme: env.Scheme, DefaultNamespaces: map[string]cache.Config{ns: {}}})
		if err != nil {
			t.Fatal(err)
		}
		cctx, stop := context.WithCancel(context.Background())
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			_ = c.Start(cctx)
		}()
		t.Cleanup(func() { stop(); h.Answer(); <-stopped })
		return replica.NewResolver(c, ns, bound)
	}
	replicas := func(r transport.Resolver) func() error {
		return func() error {
			// The caller's context has no deadline: the bound is the resolver's.
			if got := r.Replicas(context.Background(), "other"); len(got) > 0 {
				return fmt.Errorf("replicas %v", got)
			}
			return nil
		}
	}
	leaderOf := func(r transport.Resolver) func() error {
		return func() error {
			if got, ok := r.Leader(context.Background(), "other"); ok {
				return fmt.Errorf("leader %s", got)
			}
			return nil
		}
	}
	leases := func(req *http.Request) bool { return strings.Contains(req.URL.Path, "/leases") }
	steps := []struct {
		what   string
		held   func(*http.Request) bool
		lookUp func(transport.Resolver) func() error
	}{
		{"Replicas, nothing answered (the discovery of Leases first)", controlplanetest.Every, replicas},
		{"Leader, nothing answered (the discovery of Leases first)", controlplanetest.Every, leaderOf},
		{"Replicas, the Lease list held", leases, replicas},
		{"Leader, the Lease list held", leases, leaderOf},
	}
	var resolvers []transport.Resolver
	for _, s := range steps {
		r := resolver()
		resolvers = append(resolvers, r)
		h.Hold(s.held)
		if ok, err := h.Returns(t, limit, s.what, s.lookUp(r)); ok && err != nil {
			t.Errorf("%s: found %v, want nothing", s.what, err)
		}
		if h.Held() == 0 {
			t.Errorf("%s: no request was held: the step proves nothing", s.what)
		}
		h.Answer()
	}

	// Answered again: controlplanetest.Every resolver finds both.
	for i, r := range resolvers {
		controlplanetest.Eventually(t, 30*time.Second, func() error {
			if got := r.Replicas(ctx, "other"); len(got) != 1 || got[0] != addr {
				return fmt.Errorf("resolver %d: replicas %v, want [%s]", i, got, addr)
			}
			if got, ok := r.Leader(ctx, "other"); !ok || got != addr {
				return fmt.Errorf("resolver %d: leader %q, %v; want %s", i, got, ok, addr)
			}
			return nil
		})
	}
}
