package leader_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
)

// TestMembershipCallsHaveDeadlines: while the API server holds every Lease
// request, each renewal of the membership Lease and each collection of
// expired ones is given up at its bound (the renewal period, at least a
// second) and the next one tries again; once
// the API server answers, the Lease is renewed; and a replica that stops while
// the API server hangs returns within the 5 s bound of its last delete.
func TestMembershipCallsHaveDeadlines(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, 2*time.Minute)
	h := &hang{}
	t.Cleanup(h.answer)
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(h.wrap)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	var logs lines
	const (
		duration = 1500 * time.Millisecond // renewed every 500 ms
		bound    = time.Second             // max(renewal period, 1 s)
		slack    = 5 * time.Second         // what a loaded machine may add
	)
	m := &leader.Membership{Client: cs, Namespace: ns, Module: "m", Identity: "me", Addr: "10.0.0.2:8483", Duration: duration,
		GCAfter: 2 * time.Second, // collects every renewal period or two
		Log:     funcr.New(logs.add, funcr.Options{Verbosity: 1})}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(mctx)
	}()
	t.Cleanup(func() {
		stop()
		h.answer()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("membership still running 30 s after it was stopped and the API server answered")
		}
	})
	own := leader.MemberLeaseName("m", "me")
	renewed := func() time.Time {
		t.Helper()
		l, err := plain.CoordinationV1().Leases(ns).Get(ctx, own, metav1.GetOptions{})
		if err != nil || l.Spec.RenewTime == nil {
			return time.Time{}
		}
		return l.Spec.RenewTime.Time
	}
	controlplanetest.Eventually(t, 10*time.Second, func() error {
		if renewed().IsZero() {
			return fmt.Errorf("no membership lease %s yet", own)
		}
		return nil
	})

	// Hung: each renewal is given up at the bound, and the next one tries.
	leases := func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/leases") }
	h.hold(leases)
	count := func(given []giveUp) (renewals, lists int) {
		for _, g := range given {
			if strings.HasSuffix(g.request, "/"+own) {
				renewals++
			} else if strings.HasPrefix(g.request, http.MethodGet) {
				lists++
			}
		}
		return renewals, lists
	}
	wait := 6*bound + slack
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); {
		if renewals, lists := count(h.givenUp()); renewals >= 2 && lists >= 1 {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling the held requests
	}
	givenUp := h.givenUp()
	if renewals, lists := count(givenUp); renewals < 2 || lists < 1 {
		t.Errorf("hung API server: in %s, %d renewal requests and %d collections given up, want 2 or more and 1 or more (held: %d)",
			wait, renewals, lists, h.heldCount())
	}
	for _, g := range givenUp {
		if g.waited > bound+slack {
			t.Errorf("%s held for %s before it was given up, bound %s", g.request, g.waited, bound)
		}
	}
	if len(givenUp) > 0 && !logs.contain("context deadline exceeded") {
		t.Errorf("no renewal failed with a deadline; logged:\n%s", logs.String())
	}

	// Answered again: the Lease is renewed.
	h.answer()
	answered := time.Now()
	controlplanetest.Eventually(t, 10*time.Second, func() error {
		if at := renewed(); !at.After(answered) {
			return fmt.Errorf("membership lease last renewed at %s, the API server answered again at %s", at, answered)
		}
		return nil
	})

	// Stopping while hung: the last delete is given up at its 5 s bound.
	h.hold(leases)
	stop()
	select {
	case <-done:
	case <-time.After(bound + 5*time.Second + slack):
		t.Errorf("membership still running %s after it was stopped with the API server hung", bound+5*time.Second+slack)
	}
	deleted := false
	for _, g := range h.givenUp() {
		deleted = deleted || strings.HasPrefix(g.request, http.MethodDelete)
	}
	if !deleted {
		t.Errorf("no delete of the membership lease was held and given up: the step proves nothing (given up: %v)", h.givenUp())
	}
	h.answer()
}

// lines collects what a logger writes.
type lines struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lines) add(prefix, args string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, "%s %s\n", prefix, args)
}

func (l *lines) contain(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.b.String(), s)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// hang holds the API requests it is told to, as a hung API server does:
// until it answers again, or until the request's own context ends.
type hang struct {
	mu      sync.Mutex
	match   func(*http.Request) bool
	release chan struct{}
	held    int      // requests held since the last hold
	gaveUp  []giveUp // the held requests whose callers gave up, since the last hold
}

type giveUp struct {
	request string
	waited  time.Duration
}

// hold holds the requests match selects, from now until answer.
func (h *hang) hold(match func(*http.Request) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.match, h.release, h.held, h.gaveUp = match, make(chan struct{}), 0, nil
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

func (h *hang) givenUp() []giveUp {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]giveUp(nil), h.gaveUp...)
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
			start := time.Now()
			select {
			case <-release:
			case <-req.Context().Done():
				h.mu.Lock()
				if h.release == release {
					h.gaveUp = append(h.gaveUp, giveUp{req.Method + " " + req.URL.Path, time.Since(start)})
				}
				h.mu.Unlock()
				return nil, req.Context().Err()
			}
		}
		return rt.RoundTrip(req)
	})
}

type hangTrip func(*http.Request) (*http.Response, error)

func (f hangTrip) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
