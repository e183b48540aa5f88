package leader_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
)

func TestCheckClaims(t *testing.T) {
	history := []leader.LeaseRecord{
		{Holder: "a", Transitions: 0, Seen: 100},
		{Holder: "a", Transitions: 0, Seen: 150}, // a renewal
		{Holder: "b", Transitions: 1, Seen: 300},
		{Holder: "", Transitions: 1, Seen: 500}, // released
		{Holder: "a", Transitions: 2, Seen: 600},
	}
	good := []leader.Claim{
		{Identity: "a", Term: 0, Action: "x", Start: 100, Checked: 101, Until: 250},
		{Identity: "b", Term: 1, Action: "x", Start: 300, Checked: 301, Until: 450},
		{Identity: "a", Term: 2, Action: "x", Start: 599, Checked: 600, Until: 900},
	}
	if errs := leader.CheckClaims(good, history); len(errs) != 0 {
		t.Fatalf("a clean history: %v", errs)
	}
	if got := leader.Tenures(history); len(got) != 3 || got[0].End != 300 || got[1].End != 500 || got[2].End != 0 {
		t.Fatalf("tenures: %+v", got)
	}

	for name, c := range map[string]struct {
		claims []leader.Claim
		want   string
	}{
		"overlap":            {append(good[:1:1], leader.Claim{Identity: "b", Term: 1, Action: "x", Start: 240, Checked: 241, Until: 400}), "overlap"},
		"unknown term":       {[]leader.Claim{{Identity: "b", Term: 0, Action: "x", Start: 10, Checked: 11, Until: 20}}, "never shows"},
		"past the next term": {[]leader.Claim{{Identity: "a", Term: 0, Action: "x", Start: 290, Checked: 291, Until: 310}}, "next term"},
		// An ex-leader that resumes and acts on its old term.
		"stale after resume": {append(good[:2:2], leader.Claim{Identity: "a", Term: 0, Action: "x", Start: 400, Checked: 401, Until: 420}), "next term"},
		"out of order":       {[]leader.Claim{{Identity: "a", Term: 0, Action: "x", Start: 120, Checked: 110, Until: 200}}, "out of order"},
	} {
		errs := leader.CheckClaims(c.claims, history)
		if len(errs) == 0 || !strings.Contains(errs[0].Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", name, errs, c.want)
		}
	}
}

// TestJournalRecordsHandover: two electors on the real API server, each
// confirming leadership as fast as it can, hand over gracefully; the journal
// they share holds claims of both, and checks against the watched Lease.
func TestJournalRecordsHandover(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	cs := kubernetes.NewForConfigOrDie(env.Config)
	ctx := controlplanetest.Context(t, time.Minute)
	history, err := leader.WatchHistory(ctx, cs, ns, "l")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "journal")
	journal, err := leader.OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer journal.Close()

	var wg sync.WaitGroup
	run := func(id string) (*leader.Elector, context.CancelFunc, chan struct{}) {
		e, err := leader.New(leader.Options{Config: fast, Client: cs, Namespace: ns, Name: "l", Identity: id, Journal: journal})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		wg.Add(2)
		go func() { defer wg.Done(); defer close(done); _ = e.Run(ctx) }()
		go func() { // leader-only work, as often as the elector allows it
			defer wg.Done()
			for ctx.Err() == nil {
				e.Current().Confirm("work")
				time.Sleep(time.Millisecond)
			}
		}()
		return e, cancel, done
	}
	a, stopA, aDone := run("a")
	controlplanetest.Eventually(t, 20*time.Second, func() error {
		if a.Current() == nil {
			return context.DeadlineExceeded
		}
		return nil
	})
	b, stopB, _ := run("b")
	stopA()
	<-aDone
	controlplanetest.Eventually(t, 10*time.Second, func() error {
		if b.Current() == nil {
			return context.DeadlineExceeded
		}
		return nil
	})
	stopB()
	wg.Wait()

	claims, err := leader.ReadClaims(path)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]int{}
	for _, c := range claims {
		by[c.Identity]++
	}
	if by["a"] == 0 || by["b"] == 0 {
		t.Fatalf("claims by identity: %v", by)
	}
	if errs := leader.CheckClaims(claims, history.Records()); len(errs) != 0 {
		t.Fatalf("%d violations, first: %v", len(errs), errs[0])
	}
	t.Logf("claims: %v over %d lease versions", by, len(history.Records()))
}
