package replica_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controller"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/module"
)

// Tests of the leader's signal queue: a signal is never left waiting for an
// event that does not come, and API errors are retried with backoff.

// point is a place in a replica's work where a test stops it: reached is
// closed when the work gets there, and the work goes on once release is
// closed (or after holdLimit, so that a failing test still ends).
type point struct {
	reached, release chan struct{}
	once             sync.Once
}

const holdLimit = 30 * time.Second

func newPoint() *point { return &point{reached: make(chan struct{}), release: make(chan struct{})} }

func (p *point) arrive(ctx context.Context) {
	close(p.reached)
	t := time.NewTimer(holdLimit)
	defer t.Stop()
	select {
	case <-p.release:
	case <-ctx.Done():
	case <-t.C:
	}
}

func (p *point) free() { p.once.Do(func() { close(p.release) }) }

func (p *point) waitReached(t *testing.T, limit time.Duration, what string) {
	t.Helper()
	select {
	case <-p.reached:
	case <-time.After(limit):
		t.Fatalf("%s: not reached within %s", what, limit)
	}
}

// gates are the points the gate component's Handle stops at, per namespace
// and signal name; each is used once.
var gates sync.Map // "<ns>/<name>" -> *point

// GateMsg is what a gate component's signal carries.
type GateMsg struct {
	Name string `json:"name"`
}

// gate counts its Handle runs (handlingOf) and, for a signal the test has
// set a point for, stops in Handle until the test lets it go or the
// delivery's context ends.
type gate struct{}

func (gate) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "gate"} }
func (gate) Instance() module.Component    { return gate{} }
func (gate) Ports() []module.Port {
	return []module.Port{{Name: "in", Configuration: GateMsg{}}}
}
func (gate) Handle(ctx context.Context, _ module.Handler, port string, msg any) any {
	if port != "in" {
		return nil
	}
	ns := namespaceOf(ctx)
	handlingOf(ns, module.MessageID(ctx)).runs.Add(1)
	if p, ok := gates.LoadAndDelete(ns + "/" + msg.(GateMsg).Name); ok {
		p.(*point).arrive(ctx)
	}
	return nil
}

// holdHandle makes the gate's Handle for signal name stop until released
// (at the latest when the test ends).
func holdHandle(t *testing.T, ns, name string) *point {
	p := newPoint()
	t.Cleanup(p.free)
	gates.Store(ns+"/"+name, p)
	return p
}

// wire is a replica's connection to the API server as a test sees and steers
// it: it holds the response of chosen requests (the request has reached the
// API server, the replica does not know it yet) and records the events that
// the replica's TinySignal watches read.
type wire struct {
	mu     sync.Mutex
	holds  []*heldRequest
	events map[string]bool // "<TYPE> <name>"
}

type heldRequest struct {
	method, path string // path ends with path
	*point
}

func newWire() *wire { return &wire{events: map[string]bool{}} }

// holdResponse holds the response of the next request with method whose path
// ends with path, until released (at the latest when the test ends).
func (w *wire) holdResponse(t *testing.T, method, path string) *point {
	h := &heldRequest{method: method, path: path, point: newPoint()}
	t.Cleanup(h.free)
	w.mu.Lock()
	w.holds = append(w.holds, h)
	w.mu.Unlock()
	return h.point
}

func (w *wire) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTrip(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return resp, err
		}
		if req.Method == http.MethodGet && req.URL.Query().Get("watch") == "true" && strings.Contains(req.URL.Path, "/tinysignals") {
			resp.Body = &tappedBody{ReadCloser: resp.Body, w: w}
		}
		w.mu.Lock()
		var held *heldRequest
		for i, h := range w.holds {
			if req.Method == h.method && strings.HasSuffix(req.URL.Path, h.path) {
				held = h
				w.holds = append(w.holds[:i], w.holds[i+1:]...)
				break
			}
		}
		w.mu.Unlock()
		if held != nil {
			held.arrive(req.Context())
		}
		return resp, err
	})
}

// tappedBody records each watch event as the replica's informer reads it.
type tappedBody struct {
	io.ReadCloser
	w   *wire
	buf []byte
}

func (b *tappedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.buf = append(b.buf, p[:n]...)
	for {
		i := bytes.IndexByte(b.buf, '\n')
		if i < 0 {
			break
		}
		var ev struct {
			Type   string `json:"type"`
			Object struct {
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
			} `json:"object"`
		}
		if json.Unmarshal(b.buf[:i], &ev) == nil && ev.Type != "" {
			b.w.mu.Lock()
			b.w.events[ev.Type+" "+ev.Object.Metadata.Name] = true
			b.w.mu.Unlock()
		}
		b.buf = b.buf[i+1:]
	}
	return n, err
}

// cacheGrace is how long the replica's informer is given to take in a watch
// event it has read (decode, store, event handlers: in-memory hand-offs)
// before the test lets the replica's worker go on. Nothing outside the
// replica shows that moment; the wait only makes the interleaving the tests
// aim for near certain, and the code under test must deliver whatever the
// interleaving.
const cacheGrace = 200 * time.Millisecond

// waitRead waits until the replica has read the watch events named (each
// "<TYPE> <signal name>"), then gives its informer cacheGrace to take them in.
func (w *wire) waitRead(t *testing.T, events ...string) {
	t.Helper()
	controlplanetest.Eventually(t, 15*time.Second, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, ev := range events {
			if !w.events[ev] {
				return fmt.Errorf("the replica has not read %s from its watch", ev)
			}
		}
		return nil
	})
	time.Sleep(cacheGrace)
}

// prompt bounds how long a signal may wait once nothing holds the leader up:
// far below any resync, above the queue's longest backoff (10 s).
const prompt = 15 * time.Second

// TestSignalArrivingWhileItsNodeFinishesIsDelivered: a signal created while
// the node's worker is finishing the previous signal is delivered promptly,
// with no other event to wake it, in two interleavings taken in turns:
//
//   - the first signal's Handle is still running when the second signal is
//     created and has reached the replica's cache (the worker finds it when
//     it looks for the node's next signal);
//   - the worker has looked for the node's next signal and found none, and is
//     retrying the first signal's delete (which failed once): the second
//     signal is created, and it and the first one's deletion reach the
//     replica's cache, before the delete's answer does. Nothing after that
//     wakes the node: only the queue, which saw the node's key touched while
//     its worker was busy, runs the worker again.
func TestSignalArrivingWhileItsNodeFinishesIsDelivered(t *testing.T) {
	h := newHarness(t)
	currentNS.Store(h.ns)
	w := newWire()
	f := &controlplanetest.Faults{}
	cfg := rest.CopyConfig(h.env.UserConfig(t, "finish-0"))
	cfg.Wrap(w.wrap) // inside the faults: it sees only requests that reach the API server
	cfg.Wrap(f.Wrap)
	h.runModule("finish", "finish-0", cfg, false, gate{})
	h.node("g", "finish", "gate")
	h.waitReady("g", metav1.ConditionTrue, controller.ReasonRunning)

	const rounds = 20
	for round := range rounds {
		first, second := fmt.Sprintf("r%02d-first", round), fmt.Sprintf("r%02d-second", round)
		var s1, s2 *v1alpha1.TinySignal
		if round%2 == 0 {
			handle := holdHandle(t, h.ns, first)
			s1 = h.press(first, "g", fmt.Sprintf(`{"name":%q}`, first))
			handle.waitReached(t, 30*time.Second, first+"'s Handle")
			s2 = h.press(second, "g", fmt.Sprintf(`{"name":%q}`, second))
			w.waitRead(t, "ADDED "+second)
			handle.free()
		} else {
			f.Fail(http.MethodDelete, "/tinysignals/"+first, "", 1000, 0) // the first delete fails
			retry := w.holdResponse(t, http.MethodDelete, "/tinysignals/"+first)
			s1 = h.press(first, "g", fmt.Sprintf(`{"name":%q}`, first))
			retry.waitReached(t, 30*time.Second, first+"'s retried delete")
			s2 = h.press(second, "g", fmt.Sprintf(`{"name":%q}`, second))
			w.waitRead(t, "ADDED "+second, "DELETED "+first)
			retry.free()
		}
		released := time.Now()
		h.waitSignalGone(s2, prompt)
		h.waitSignalGone(s1, prompt)
		for _, s := range []*v1alpha1.TinySignal{s1, s2} {
			if n := handlingOf(h.ns, string(s.UID)).runs.Load(); n != 1 {
				t.Errorf("round %d: %s's Handle ran %d times, want 1", round, s.Name, n)
			}
		}
		t.Logf("round %d: %s delivered %s after the worker was let go", round, second, time.Since(released).Round(time.Millisecond))
	}
}

// lease reads the module's leader Lease.
func (h *harness) lease() *coordinationv1.Lease {
	h.t.Helper()
	l := &coordinationv1.Lease{}
	if err := h.c.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: replica.LeaseName(moduleName)}, l); err != nil {
		h.t.Fatalf("read the lease: %v", err)
	}
	return l
}

// takeLease writes the module's Lease as another candidate does when it
// acquires it, for duration, and returns the transition count it wrote.
func (h *harness) takeLease(holder string, duration time.Duration) int32 {
	h.t.Helper()
	var transitions int32
	controlplanetest.Eventually(h.t, 10*time.Second, func() error {
		l := &coordinationv1.Lease{}
		if err := h.c.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: replica.LeaseName(moduleName)}, l); err != nil {
			return err
		}
		transitions = 1
		if l.Spec.LeaseTransitions != nil {
			transitions = *l.Spec.LeaseTransitions + 1
		}
		secs := int32(duration / time.Second)
		now := metav1.NowMicro()
		l.Spec.HolderIdentity = &holder
		l.Spec.LeaseDurationSeconds = &secs
		l.Spec.AcquireTime = &now
		l.Spec.RenewTime = &now
		l.Spec.LeaseTransitions = &transitions
		return h.c.Update(h.ctx, l) // a conflict with a renewal: read it again
	})
	return transitions
}

// TestQuickReelectionDeliversPendingSignals: the leader's term ends (another
// candidate takes the lease for a second) while a signal's delivery is under
// way and two more are pending, and the same replica wins the lease back at
// once. Every pending signal is delivered in the new term, promptly, with
// nothing but the new term to wake the node. In turns, the delivery under way
// is
//
//   - finishing: the first signal's delete has reached the API server but its
//     answer is held until the new term has begun (the worker of the old term
//     is still busy with the node when the new term queues it);
//   - in Handle: the term ends while the first signal's Handle runs, and the
//     new term delivers it again.
func TestQuickReelectionDeliversPendingSignals(t *testing.T) {
	h := newHarness(t)
	currentNS.Store(h.ns)
	w := newWire()
	cfg := rest.CopyConfig(h.env.UserConfig(t, "re-0"))
	cfg.Wrap(w.wrap)
	h.runModule(moduleName, "re-0", cfg, true, gate{})
	if got := h.waitHolder(); got != "re-0" {
		t.Fatalf("holder %s", got)
	}
	h.node("g", moduleName, "gate")
	h.waitReady("g", metav1.ConditionTrue, controller.ReasonRunning)

	const rounds = 6
	for round := range rounds {
		name := func(s string) string { return fmt.Sprintf("r%d-%s", round, s) }
		press := func(s string) *v1alpha1.TinySignal {
			return h.press(name(s), "g", fmt.Sprintf(`{"name":%q}`, name(s)))
		}
		inHandle := round%2 == 1
		var (
			hold *point
			s1   *v1alpha1.TinySignal
		)
		if inHandle {
			hold = holdHandle(t, h.ns, name("first"))
			s1 = press("first")
			hold.waitReached(t, 30*time.Second, "the first signal's Handle")
		} else {
			hold = w.holdResponse(t, http.MethodDelete, "/tinysignals/"+name("first"))
			s1 = press("first")
			hold.waitReached(t, 30*time.Second, "the first signal's delete")
		}
		pending := []*v1alpha1.TinySignal{press("second"), press("third")}
		if !inHandle {
			// The old term's worker is still busy with the node and has
			// been told of both, and of the first one's deletion. (In Handle,
			// the term must end within the acceptance window: no waiting.)
			w.waitRead(t, "ADDED "+pending[0].Name, "ADDED "+pending[1].Name, "DELETED "+s1.Name)
		}

		intruder := h.takeLease("intruder", time.Second)
		controlplanetest.Eventually(t, 20*time.Second, func() error {
			l := h.lease()
			if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != "re-0" || l.Spec.LeaseTransitions == nil || *l.Spec.LeaseTransitions <= intruder {
				return fmt.Errorf("lease %+v; want re-0 in a term after %d", l.Spec, intruder)
			}
			return nil
		})
		// The new term has queued the node (its resync reads the cache and
		// queues at once); the old term's worker may now finish.
		time.Sleep(cacheGrace)
		released := time.Now()
		hold.free()
		for _, s := range pending {
			h.waitSignalGone(s, prompt)
		}
		h.waitSignalGone(s1, prompt)
		for _, s := range pending {
			if n := handlingOf(h.ns, string(s.UID)).runs.Load(); n != 1 {
				t.Errorf("round %d: %s's Handle ran %d times, want 1", round, s.Name, n)
			}
		}
		n := handlingOf(h.ns, string(s1.UID)).runs.Load()
		if inHandle && (n < 1 || n > 2) || !inHandle && n != 1 {
			t.Errorf("round %d: %s's Handle ran %d times", round, s1.Name, n)
		}
		t.Logf("round %d (term ended %s): pending signals delivered %s after the old term's worker was let go; first signal's Handle ran %d times",
			round, map[bool]string{true: "in Handle", false: "while finishing"}[inHandle], time.Since(released).Round(time.Millisecond), n)
	}
}

// TestSignalWriteErrorsBackOff: the API server fails, for 3 s, every status
// write of one signal, and every delete of another (after its Handle ran), on
// two nodes. The leader backs off per node from 100 ms: about 5 attempts each
// in those 3 s, where a fixed 100 ms retry makes about 30. Once the faults
// stop, each signal is delivered, its Handle having run once.
func TestSignalWriteErrorsBackOff(t *testing.T) {
	h := newHarness(t)
	currentNS.Store(h.ns)
	f := &controlplanetest.Faults{}
	cfg := rest.CopyConfig(h.env.UserConfig(t, "backoff-0"))
	cfg.Wrap(f.Wrap)
	h.runModule("backoff", "backoff-0", cfg, false)
	h.node("wa", "backoff", "recorder")
	h.node("wb", "backoff", "recorder")
	h.waitReady("wa", metav1.ConditionTrue, controller.ReasonRunning)
	h.waitReady("wb", metav1.ConditionTrue, controller.ReasonRunning)

	const (
		window   = 3 * time.Second
		maxTries = 12
	)
	type faulty struct {
		what   string
		rule   *controlplanetest.FaultRule
		sig    *v1alpha1.TinySignal
		first  time.Time
		counts int
		done   bool
	}
	cases := []*faulty{
		{what: "status write", rule: f.Fail(http.MethodPut, "/tinysignals/w-status/status", "", 1, 0)},
		{what: "delete", rule: f.Fail(http.MethodDelete, "/tinysignals/w-delete", "", 1, 0)},
	}
	cases[0].sig = h.press("w-status", "wa", `{}`)
	cases[1].sig = h.press("w-delete", "wb", `{}`)
	// Each fault runs for window from the first request it fails.
	controlplanetest.EventuallyEvery(t, 30*time.Second, 5*time.Millisecond, func() error {
		left := 0
		for _, c := range cases {
			switch {
			case c.done:
			case c.first.IsZero():
				if c.rule.Failed() > 0 {
					c.first = time.Now()
				}
				left++
			case time.Since(c.first) >= window:
				c.counts, c.done = c.rule.Stop(), true
				if c.what == "status write" {
					if n := handlingOf(h.ns, string(c.sig.UID)).runs.Load(); n != 0 {
						t.Errorf("Handle ran %d times while no status write landed", n)
					}
				}
			default:
				left++
			}
		}
		if left > 0 {
			return fmt.Errorf("%d faults still running", left)
		}
		return nil
	})
	for _, c := range cases {
		t.Logf("%s: %d attempts failed in %s", c.what, c.counts, window)
		if c.counts > maxTries {
			t.Errorf("%s: %d attempts in %s, want at most %d: the leader does not back off", c.what, c.counts, window, maxTries)
		}
		if c.counts < 3 {
			t.Errorf("%s: %d attempts in %s, want the leader to keep trying", c.what, c.counts, window)
		}
	}
	for _, c := range cases {
		h.waitSignalGone(c.sig, 30*time.Second)
		if n := handlingOf(h.ns, string(c.sig.UID)).runs.Load(); n != 1 {
			t.Errorf("%s: Handle ran %d times, want 1", c.what, n)
		}
	}
}
