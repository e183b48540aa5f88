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

// TestMembershipCallsHaveDeadlines: while the API server holds controlplanetest.Every Lease
// request, each renewal of the membership Lease and each collection of
// expired ones is given up at its bound (the renewal period, at least a
// second) and the next one tries again; once
// the API server answers, the Lease is renewed; and a replica that stops while
// the API server hangs returns within the 5 s bound of its last delete.
func TestMembershipCallsHaveDeadlines(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, 2*time.Minute)
	h := &controlplanetest.Hang{}
	t.Cleanup(h.Answer)
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(h.Wrap)
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
		duration = 1500 * time.Millisecond // renewed controlplanetest.Every 500 ms
		bound    = time.Second             // max(renewal period, 1 s)
		slack    = 5 * time.Second         // what a loaded machine may add
	)
	m := &leader.Membership{Client: cs, Namespace: ns, Module: "m", Identity: "me", Addr: "10.0.0.2:8483", Duration: duration,
		GCAfter: 2 * time.Second, // collects controlplanetest.Every renewal period or two
		Log:     funcr.New(logs.add, funcr.Options{Verbosity: 1})}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(mctx)
	}()
	t.Cleanup(func() {
		stop()
		h.Answer()
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
	h.Hold(leases)
	count := func(given []controlplanetest.GiveUp) (renewals, lists int) {
		for _, g := range given {
			if strings.HasSuffix(g.Request, "/"+own) {
				renewals++
			} else if strings.HasPrefix(g.Request, http.MethodGet) {
				lists++
			}
		}
		return renewals, lists
	}
	wait := 6*bound + slack
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); {
		if renewals, lists := count(h.GivenUp()); renewals >= 2 && lists >= 1 {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling the held requests
	}
	givenUp := h.GivenUp()
	if renewals, lists := count(givenUp); renewals < 2 || lists < 1 {
		t.Errorf("hung API server: in %s, %d renewal requests and %d collections given up, want 2 or more and 1 or more (held: %d)",
			wait, renewals, lists, h.Held())
	}
	for _, g := range givenUp {
		if g.Waited > bound+slack {
			t.Errorf("%s held for %s before it was given up, bound %s", g.Request, g.Waited, bound)
		}
	}
	if len(givenUp) > 0 && !logs.contain("context deadline exceeded") {
		t.Errorf("no renewal failed with a deadline; logged:\n%s", logs.String())
	}

	// Answered again: the Lease is renewed.
	h.Answer()
	answered := time.Now()
	controlplanetest.Eventually(t, 10*time.Second, func() error {
		if at := renewed(); !at.After(answered) {
			return fmt.Errorf("membership lease last renewed at %s, the API server answered again at %s", at, answered)
		}
		return nil
	})

	// Stopping while hung: the last delete is given up at its 5 s bound.
	h.Hold(leases)
	stop()
	select {
	case <-done:
	case <-time.After(bound + 5*time.Second + slack):
		t.Errorf("membership still running %s after it was stopped with the API server hung", bound+5*time.Second+slack)
	}
	deleted := false
	for _, g := range h.GivenUp() {
		deleted = deleted || strings.HasPrefix(g.Request, http.MethodDelete)
	}
	if !deleted {
		t.Errorf("no delete of the membership lease was held and given up: the step proves nothing (given up: %v)", h.GivenUp())
	}
	h.Answer()
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
