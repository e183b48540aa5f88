package leader

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// These tests replay interleavings that a real API server cannot be made to
// produce on demand (a watch event that lags behind a GET, a machine that
// sleeps through its lease), with a fake clock and a fake client whose watch
// the test feeds.

// fakeClock is a monotonic clock the test moves.
type fakeClock struct{ now atomic.Int64 }

func (c *fakeClock) Now() time.Duration      { return time.Duration(c.now.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.now.Add(int64(d)) }

// replay is a fake API server for one Lease: writes bump its resourceVersion;
// the watch delivers only what the test sends.
type replay struct {
	mu      sync.Mutex
	version int
	cs      *fake.Clientset
	watcher *watch.FakeWatcher
}

func newReplay() *replay {
	r := &replay{cs: fake.NewClientset(), watcher: watch.NewFakeWithChanSize(16, false)}
	r.cs.PrependWatchReactor("leases", func(k8stesting.Action) (bool, watch.Interface, error) {
		return true, r.watcher, nil
	})
	bump := func(action k8stesting.Action) (bool, runtime.Object, error) {
		obj := action.(interface{ GetObject() runtime.Object }).GetObject().(*coordinationv1.Lease)
		r.mu.Lock()
		r.version++
		obj.ResourceVersion = strconv.Itoa(r.version)
		r.mu.Unlock()
		return false, obj, nil // let the tracker store it, with the version set
	}
	r.cs.PrependReactor("create", "leases", bump)
	r.cs.PrependReactor("update", "leases", bump)
	return r
}

func lease(holder, version string, transitions int32) *coordinationv1.Lease {
	secs := int32(15)
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "l", Namespace: "ns", ResourceVersion: version},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, LeaseTransitions: &transitions},
	}
}

func startReplay(t *testing.T, r *replay, clock Clock) (*Elector, *Term) {
	t.Helper()
	started := make(chan *Term, 4)
	e, err := New(Options{Config: Config{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second},
		Client: r.cs, Namespace: "ns", Name: "l", Identity: "a", Clock: clock,
		OnStartedLeading: func(term *Term) { started <- term }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("elector did not stop")
		}
	})
	select {
	case term := <-started:
		return e, term
	case <-time.After(10 * time.Second):
		t.Fatal("never led")
		return nil, nil
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLaggingWatchEventKeepsTheTerm: the watch delivers, after the elector has
// acquired the lease, an older version in which another replica held it. The
// term must go on; a newer version naming another holder ends it.
func TestLaggingWatchEventKeepsTheTerm(t *testing.T) {
	r := newReplay()
	var clock fakeClock
	clock.Advance(time.Hour)
	e, term := startReplay(t, r, &clock)
	e.mu.Lock()
	ours := e.lease.ResourceVersion
	e.mu.Unlock()
	v, _ := strconv.Atoi(ours)

	r.watcher.Modify(lease("b", strconv.Itoa(v-1), 0))                 // lagging: older than what we wrote
	r.watcher.Modify(lease("a", strconv.Itoa(v+1), transitions(term))) // newer, ours: the marker
	waitFor(t, "the marker version", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.lease.ResourceVersion == strconv.Itoa(v+1)
	})
	if !term.Valid() || term.Context().Err() != nil || e.Current() != term {
		t.Fatal("a lagging watch event ended the term")
	}

	r.watcher.Modify(lease("b", strconv.Itoa(v+2), transitions(term)+1))
	select {
	case <-term.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a newer version held by another did not end the term")
	}
	if term.Valid() || e.Current() != nil {
		t.Error("term still valid after another replica took the lease")
	}
}

// TestSuspendEndsTheTerm: the machine sleeps past the term's validity (the
// boot clock jumps; Go's timers, which do not count suspended time, do not
// fire). The term is invalid on the first check after waking, and its
// context ends at once.
func TestSuspendEndsTheTerm(t *testing.T) {
	r := newReplay()
	var clock fakeClock
	clock.Advance(time.Hour)
	e, term := startReplay(t, r, &clock)
	if !term.Valid() || e.Current() != term {
		t.Fatal("no valid term after acquiring")
	}
	clock.Advance(time.Minute) // suspended for a minute
	if term.Valid() {
		t.Fatal("term valid after sleeping past its validity")
	}
	select {
	case <-term.Context().Done():
	case <-time.After(2 * time.Second):
		t.Fatal("the term's context outlived its validity")
	}
	if e.Current() == term {
		t.Error("Current still returns the expired term")
	}
}

// TestEveryAcquisitionIsANewTerm: a replica whose term ended unrenewed while
// the lease still names it acquires again under a new number.
func TestEveryAcquisitionIsANewTerm(t *testing.T) {
	r := newReplay()
	var clock fakeClock
	clock.Advance(time.Hour)
	e, first := startReplay(t, r, &clock)
	clock.Advance(time.Minute)
	waitFor(t, "a second term", func() bool {
		next := e.Current()
		return next != nil && next != first
	})
	second := e.Current()
	if second.Number() <= first.Number() {
		t.Errorf("second term numbered %d after %d", second.Number(), first.Number())
	}
	if first.Valid() {
		t.Error("the first term is valid again")
	}
}

func transitions(t *Term) int32 { return int32(t.Number()) }

// TestATermNeverComesBack: the Lease is deleted and made again by the same
// replica, so its transition count starts over and the new term has the old
// one's number; the old term stays invalid.
func TestATermNeverComesBack(t *testing.T) {
	r := newReplay()
	var clock fakeClock
	clock.Advance(time.Hour)
	e, first := startReplay(t, r, &clock)
	if err := r.cs.Tracker().Delete(coordinationv1.SchemeGroupVersion.WithResource("leases"), "ns", "l"); err != nil {
		t.Fatal(err)
	}
	r.watcher.Delete(lease("a", "999", 0))
	waitFor(t, "a second term", func() bool {
		next := e.Current()
		return next != nil && next != first
	})
	second := e.Current()
	if second.Number() != first.Number() {
		t.Fatalf("numbers %d and %d: the scenario needs them equal", first.Number(), second.Number())
	}
	if first.Valid() {
		t.Error("the first term is valid again in the second")
	}
}

// TestAcquisitionLandingAsTheReplicaStopsIsReleased: the replica stops while
// its acquisition is in flight; the API server took it, but the answer is
// lost with the cancelled request. The stopping replica must release the
// lease it holds without knowing, not leave the others to wait it out.
func TestAcquisitionLandingAsTheReplicaStopsIsReleased(t *testing.T) {
	cs := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs.PrependReactor("create", "leases", func(action k8stesting.Action) (bool, runtime.Object, error) {
		obj := action.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease)
		obj.ResourceVersion = "1"
		if err := cs.Tracker().Create(coordinationv1.SchemeGroupVersion.WithResource("leases"), obj, "ns"); err != nil {
			return true, nil, err
		}
		cancel() // the replica stops; the answer is lost with the request
		return true, nil, context.Canceled
	})
	e, err := New(Options{Config: Config{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second},
		Client: cs, Namespace: "ns", Name: "l", Identity: "a"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	l, err := cs.CoordinationV1().Leases("ns").Get(context.Background(), "l", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := holder(l); h != "" {
		t.Errorf("lease still held by %q after the replica stopped", h)
	}
}
