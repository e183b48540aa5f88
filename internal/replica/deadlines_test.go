package replica_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
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

// TestResolverHasDeadlines: while the API server holds every request, the
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

	h := &hang{}
	t.Cleanup(h.answer)
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(h.wrap)
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
		t.Cleanup(func() { stop(); h.answer(); <-stopped })
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
		{"Replicas, nothing answered (the discovery of Leases first)", every, replicas},
		{"Leader, nothing answered (the discovery of Leases first)", every, leaderOf},
		{"Replicas, the Lease list held", leases, replicas},
		{"Leader, the Lease list held", leases, leaderOf},
	}
	var resolvers []transport.Resolver
	for _, s := range steps {
		r := resolver()
		resolvers = append(resolvers, r)
		h.hold(s.held)
		if ok, err := h.returns(t, limit, s.what, s.lookUp(r)); ok && err != nil {
			t.Errorf("%s: found %v, want nothing", s.what, err)
		}
		if h.heldCount() == 0 {
			t.Errorf("%s: no request was held: the step proves nothing", s.what)
		}
		h.answer()
	}

	// Answered again: every resolver finds both.
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

// hang holds the API requests it is told to, as a hung API server does:
// until it answers again, or until the request's own context ends.
type hang struct {
	mu      sync.Mutex
	match   func(*http.Request) bool
	release chan struct{}
	held    int // requests held since the last hold
}

// hold holds the requests match selects, from now until answer.
func (h *hang) hold(match func(*http.Request) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.match, h.release, h.held = match, make(chan struct{}), 0
}

// answer lets the held requests, and all later ones, through.
func (h *hang) answer() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.match != nil {
		close(h.release)
		h.match = nil
	}
}

func (h *hang) heldCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held
}

func (h *hang) wrap(rt http.RoundTripper) http.RoundTripper {
	return hangTrip(func(req *http.Request) (*http.Response, error) {
		h.mu.Lock()
		release, holding := h.release, h.match != nil && h.match(req)
		if holding {
			h.held++
		}
		h.mu.Unlock()
		if holding {
			select {
			case <-release:
			case <-req.Context().Done():
				return nil, req.Context().Err()
			}
		}
		return rt.RoundTrip(req)
	})
}

// returns runs call and gives its error, or fails the test if call has not
// returned within limit; then it answers, so that call can end.
func (h *hang) returns(t *testing.T, limit time.Duration, what string, call func() error) (bool, error) {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- call() }()
	select {
	case err := <-done:
		t.Logf("%s: returned after %s: %v", what, time.Since(start).Round(time.Millisecond), err)
		return true, err
	case <-time.After(limit):
	}
	h.answer()
	select {
	case err := <-done:
		t.Errorf("%s: still blocked %s after the API server stopped answering (answered, it returned %v)", what, limit, err)
	case <-time.After(time.Minute):
		t.Errorf("%s: still blocked %s after the API server stopped answering, and a minute after it answered again", what, limit)
	}
	return false, nil
}

type hangTrip func(*http.Request) (*http.Response, error)

func (f hangTrip) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func every(*http.Request) bool { return true }
