package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/test/e2e/harness"
)

// sent is a signal the test created.
type sent struct {
	name string
	uid  types.UID
	at   time.Time
}

// producer creates numbered signals for one node, one every interval, until
// stopped (and at least min of them).
type producer struct {
	w      *world
	prefix string // signal names: PREFIX-00042
	node   string
	every  time.Duration
	min    int

	stop chan struct{}
	done chan struct{}

	mu   sync.Mutex
	sent []sent
}

func (w *world) produce(prefix, node string) *producer {
	pr := &producer{w: w, prefix: prefix, node: node, every: w.p.signalEvery, min: w.p.minSignals,
		stop: make(chan struct{}), done: make(chan struct{})}
	go pr.run()
	return pr
}

func (pr *producer) run() {
	defer close(pr.done)
	next := time.Now()
	for i := 0; ; i++ {
		if i >= pr.min {
			select {
			case <-pr.stop:
				return
			default:
			}
		}
		s, ok := pr.w.createSignal(fmt.Sprintf("%s-%05d", pr.prefix, i), pr.node, "in", fmt.Sprintf(`{"n": %d}`, i))
		if !ok {
			return
		}
		pr.mu.Lock()
		pr.sent = append(pr.sent, s)
		pr.mu.Unlock()
		next = next.Add(pr.every)
		select {
		case <-time.After(time.Until(next)):
		case <-pr.w.ctx.Done():
			return
		case <-pr.w.done:
			return
		}
	}
}

// finish stops the producer and waits for it.
func (pr *producer) finish(t *testing.T) {
	t.Helper()
	close(pr.stop)
	select {
	case <-pr.done:
	case <-pr.w.ctx.Done():
		t.Fatalf("signals %s-* were still being created when the test ran out of time", pr.prefix)
	}
}

func (pr *producer) signals() []sent {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return append([]sent(nil), pr.sent...)
}

// createSignal creates a TinySignal, retrying while the API server is away;
// a retry of a create that landed finds it there.
func (w *world) createSignal(name, node, port, data string) (sent, bool) {
	s := &v1alpha1.TinySignal{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: w.ns},
		Spec: v1alpha1.TinySignalSpec{Node: node, Port: port, Data: &apiextensionsv1.JSON{Raw: []byte(data)}}}
	for w.ctx.Err() == nil && !w.over() {
		obj := s.DeepCopy()
		err := w.env.Client.Create(w.ctx, obj)
		if apierrors.IsAlreadyExists(err) {
			err = w.env.Client.Get(w.ctx, client.ObjectKeyFromObject(s), obj)
			if apierrors.IsNotFound(err) {
				return sent{name: name, at: time.Now()}, true // landed, and already delivered
			}
		}
		if err == nil {
			return sent{name: name, uid: obj.UID, at: obj.CreationTimestamp.Time}, true
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-w.ctx.Done():
		case <-w.done:
		}
	}
	if !w.over() {
		w.t.Errorf("signal %s not created before the test ran out of time", name)
	}
	return sent{}, false
}

// probeLine is a probe's log line: one delivery.
type probeLine struct {
	Time     time.Time       `json:"time"`
	Identity string          `json:"identity"`
	Node     string          `json:"node"`
	Data     json.RawMessage `json:"data"`
	Leader   *bool           `json:"leader"`
	ID       string          `json:"id"`
}

// delivery is one run of a probe's Handle for a numbered signal.
type delivery struct {
	n        int
	identity string
	at       int64 // CLOCK_MONOTONIC
	leader   *bool
	id       string
}

// deliveries reads, from every incarnation of the module, the probe lines of
// node, by signal number, each list in time order.
func (f *fleet) deliveries(node string) map[int][]delivery {
	out := map[int][]delivery{}
	for _, p := range f.incarnations() {
		for _, l := range harness.Decode[probeLine](p.Process, "probe") {
			if l.Node != node {
				continue
			}
			var d struct{ N *int }
			if json.Unmarshal(l.Data, &d) != nil || d.N == nil {
				continue
			}
			out[*d.N] = append(out[*d.N], delivery{n: *d.N, identity: l.Identity, at: f.w.mono(l.Time), leader: l.Leader, id: l.ID})
		}
	}
	for _, ds := range out {
		sort.Slice(ds, func(i, j int) bool { return ds[i].at < ds[j].at })
	}
	return out
}

// signalReport is what became of one module's numbered signals.
type signalReport struct {
	module                  string
	sent, delivered, failed int
	duplicated, duplicates  int // signals delivered more than once, and the extra runs
	leaderChanges           int
	unjustified, notLeader  int
	wrongKey, lost          int
	kills, stops, downs     int
}

// tenureAt returns id's tenure at the instant at, as the Lease history saw
// it: the one that holds at, or else the nearest within tolerance (the
// history sees a change a little after the replica makes it). A replica
// that lost its term and won the next at once has two tenures a few
// milliseconds apart; a run between them belongs to the nearer.
func tenureAt(tenures []leader.Tenure, id string, at, tolerance int64) *leader.Tenure {
	var best *leader.Tenure
	bestDistance := tolerance + 1
	for i := range tenures {
		tn := &tenures[i]
		if tn.Holder != id {
			continue
		}
		var distance int64
		switch {
		case at < tn.Begin:
			distance = tn.Begin - at
		case tn.End != 0 && at > tn.End:
			distance = at - tn.End
		}
		if distance < bestDistance {
			best, bestDistance = tn, distance
		}
	}
	return best
}

// checkDeliveries holds a module's numbered signals against the contract:
// each delivered (none lost, none failed); a second run of Handle only where
// the replica that ran the first stopped leading before the second; every
// run on a replica that leads, as utils.IsLeader says, with the signal's UID
// as its idempotency key.
func (w *world) checkDeliveries(f *fleet, pr *producer, node string, rep *signalReport) {
	t := w.t
	tenures := leader.Tenures(f.history.Records())
	rep.module, rep.leaderChanges = f.name, max(len(tenures)-1, 0)
	byN := f.deliveries(node)
	sentList := pr.signals()
	rep.sent = len(sentList)
	var missing []string
	tolerance := int64(500 * time.Millisecond)
	tenureAt := func(id string, at int64) *leader.Tenure { return tenureAt(tenures, id, at, tolerance) }
	for i, s := range sentList {
		ds := byN[i]
		if len(ds) == 0 {
			missing = append(missing, s.name)
			continue
		}
		rep.delivered++
		if len(ds) > 1 {
			rep.duplicated++
			rep.duplicates += len(ds) - 1
		}
		for j, d := range ds {
			if s.uid != "" && d.id != string(s.uid) {
				rep.wrongKey++
				if rep.wrongKey <= 5 {
					t.Errorf("signal %s: delivered by %s with idempotency key %q, not its UID %s", s.name, d.identity, d.id, s.uid)
				}
			}
			tn := tenureAt(d.identity, d.at)
			if d.leader == nil || !*d.leader {
				// utils.IsLeader is false in Handle only once leadership
				// is lost: the Lease then changes hands soon after.
				ended := tn != nil && tn.End != 0 && tn.End <= d.at+int64(2*w.p.lease)+tolerance
				if !ended {
					rep.notLeader++
					if rep.notLeader <= 5 {
						t.Errorf("signal %s: Handle on %s ran with utils.IsLeader false (leader=%v), while %s led on (tenure %+v)", s.name, d.identity, fmtBool(d.leader), d.identity, tn)
					}
				}
			}
			if j == 0 {
				continue
			}
			// A second run is justified only if the first ran on a
			// replica whose tenure ended before the second.
			prev := ds[j-1]
			ptn := tenureAt(prev.identity, prev.at)
			if ptn == nil || ptn.End == 0 || ptn.End > d.at+tolerance || (prev.identity == d.identity && ptn == tn) {
				rep.unjustified++
				if rep.unjustified <= 10 {
					t.Errorf("signal %s: Handle ran again on %s at %s after %s ran it at %s, whose tenure (%s) had not ended: a duplicate no leader death explains",
						s.name, d.identity, w.wall(d.at), prev.identity, w.wall(prev.at), fmtTenure(ptn, w))
				}
			}
		}
	}
	rep.lost = len(missing)
	if len(missing) > 0 {
		t.Errorf("module %s: %d of %d signals lost: %v", f.name, len(missing), len(sentList), missing[:min(len(missing), 20)])
	}
	if rep.duplicates > rep.leaderChanges {
		t.Errorf("module %s: %d duplicate deliveries, more than its %d leader changes", f.name, rep.duplicates, rep.leaderChanges)
	}
	if rep.unjustified > 10 || rep.notLeader > 5 || rep.wrongKey > 5 {
		t.Errorf("module %s: %d duplicates without a leader death, %d runs with IsLeader false, %d with a wrong idempotency key (first ones above)",
			f.name, rep.unjustified, rep.notLeader, rep.wrongKey)
	}
}

func (w *world) wall(mono int64) string {
	return w.wallAtZero.Add(time.Duration(mono)).Format("15:04:05.000")
}

func fmtTenure(tn *leader.Tenure, w *world) string {
	if tn == nil {
		return "none found"
	}
	end := "open"
	if tn.End != 0 {
		end = w.wall(tn.End)
	}
	return fmt.Sprintf("term %d from %s to %s", tn.Term, w.wall(tn.Begin), end)
}

func fmtBool(b *bool) string {
	if b == nil {
		return "absent"
	}
	return fmt.Sprint(*b)
}

// listSignals returns the namespace's signals by name.
func (w *world) listSignals(ctx context.Context) (map[string]v1alpha1.TinySignal, error) {
	var list v1alpha1.TinySignalList
	if err := w.env.Client.List(ctx, &list, client.InNamespace(w.ns)); err != nil {
		return nil, err
	}
	out := make(map[string]v1alpha1.TinySignal, len(list.Items))
	for _, s := range list.Items {
		out[s.Name] = s
	}
	return out, nil
}

// TestTenureAtPrefersTheNearest replays a chaos run's timings: a leader lost
// its term for want of a renewal and won the next one 5 ms later; the
// signal it had run just before was run again in the new term. The second
// run belongs to the new tenure, which justifies it.
func TestTenureAtPrefersTheNearest(t *testing.T) {
	ms := int64(time.Millisecond)
	tenures := []leader.Tenure{
		{Holder: "beta-r0-2", Term: 6, Begin: 44466 * ms, End: 47959 * ms},
		{Holder: "beta-r0-2", Term: 7, Begin: 47961 * ms, End: 49500 * ms},
		{Holder: "beta-r2-1", Term: 8, Begin: 49510 * ms},
	}
	tol := 500 * ms
	for _, c := range []struct {
		id   string
		at   int64
		want int32 // 0: none
	}{
		{"beta-r0-2", 47954 * ms, 6},
		{"beta-r0-2", 47973 * ms, 7},
		{"beta-r0-2", 47960 * ms, 6}, // between the two, 1 ms from each: the earlier
		{"beta-r0-2", 49900 * ms, 7}, // past the end, within the tolerance
		{"beta-r0-2", 50100 * ms, 0},
		{"beta-r2-1", 49400 * ms, 8}, // seen a little after it began
		{"beta-r1-0", 47973 * ms, 0},
	} {
		got := tenureAt(tenures, c.id, c.at, tol)
		if (got == nil) != (c.want == 0) || got != nil && got.Term != c.want {
			t.Errorf("tenureAt(%s, %d ms) = %+v, want term %d", c.id, c.at/ms, got, c.want)
		}
	}
}
