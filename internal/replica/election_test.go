package replica_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controlplane"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/pkg/utils"
)

var fastElection = leader.Config{LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 500 * time.Millisecond}

// workLog records leader-only work: each entry is one moment at which a
// replica did leader-only work, on the boot clock shared by all replicas.
type workLog struct {
	mu    sync.Mutex
	marks []workMark
	// transitions counts what each identity's failover component saw.
	became, lost map[string]int
	// deliveries of signals: message IDs, per identity.
	deliveries []delivery
	// metadata is the "last" metadata value each identity's instance saw on _reconcile.
	metadata map[string]string
}

type workMark struct {
	identity string
	at       time.Duration
}

type delivery struct{ identity, id, data string }

func newWorkLog() *workLog {
	return &workLog{became: map[string]int{}, lost: map[string]int{}, metadata: map[string]string{}}
}

// failover is the seed's failover sample: it tracks wasLeader on _reconcile,
// starts leader-only work on becoming leader and stops it on losing the lease.
type failover struct {
	identity string
	log      *workLog

	cancelFunc context.CancelFunc
	mu         sync.Mutex
	wasLeader  bool
}

func (c *failover) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "failover"} }
func (c *failover) Instance() module.Component {
	return &failover{identity: c.identity, log: c.log}
}
func (c *failover) Ports() []module.Port {
	return []module.Port{{Name: "in", Configuration: ""}}
}

func (c *failover) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.ReconcilePort:
		c.log.mu.Lock()
		c.log.metadata[c.identity] = msg.(*v1alpha1.TinyNode).Status.Metadata["last"]
		c.log.mu.Unlock()
		isLeader := utils.IsLeader(ctx)

		c.mu.Lock()
		defer c.mu.Unlock()

		if isLeader && !c.wasLeader {
			c.onBecameLeader(ctx, output)
			c.wasLeader = true
		} else if !isLeader && c.wasLeader {
			c.onLostLeadership()
			c.wasLeader = false
		}
	case "in":
		// A signal: record who delivered it with which ID.
		c.log.mu.Lock()
		c.log.deliveries = append(c.log.deliveries, delivery{identity: c.identity, id: module.MessageID(ctx), data: fmt.Sprint(msg)})
		c.log.mu.Unlock()
		// Shared state for every replica: the leader writes, readers read.
		return output(ctx, v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) {
			n.Status.Metadata["last"] = fmt.Sprint(msg)
		})
	}
	return nil
}

func (c *failover) onBecameLeader(ctx context.Context, _ module.Handler) {
	c.log.mu.Lock()
	c.log.became[c.identity]++
	c.log.mu.Unlock()
	ctx, c.cancelFunc = context.WithCancel(ctx)
	go func() {
		clock := leader.BootClock{}
		for {
			select {
			case <-ctx.Done():
				return
			default:
				if !utils.IsLeader(ctx) {
					return
				}
				now := clock.Now() // the work: a timestamped mark
				c.log.mu.Lock()
				c.log.marks = append(c.log.marks, workMark{identity: c.identity, at: now})
				c.log.mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}
	}()
}

func (c *failover) onLostLeadership() {
	c.log.mu.Lock()
	c.log.lost[c.identity]++
	c.log.mu.Unlock()
	if c.cancelFunc != nil {
		c.cancelFunc()
		c.cancelFunc = nil
	}
}

// checkNoOverlap fails if two identities' work marks interleave: the marks,
// sorted by time, must form runs of one identity each, never alternating
// within a gap shorter than what separates leaders.
func (w *workLog) checkNoOverlap(t *testing.T) (terms int) {
	t.Helper()
	w.mu.Lock()
	marks := append([]workMark(nil), w.marks...)
	w.mu.Unlock()
	sort.Slice(marks, func(i, j int) bool { return marks[i].at < marks[j].at })
	type run struct {
		identity    string
		first, last time.Duration
	}
	var runs []run
	for _, m := range marks {
		if n := len(runs); n > 0 && runs[n-1].identity == m.identity {
			runs[n-1].last = m.at
			continue
		}
		runs = append(runs, run{m.identity, m.at, m.at})
	}
	seen := map[string]int{}
	for i, r := range runs {
		seen[r.identity]++
		if i > 0 && r.first <= runs[i-1].last {
			t.Errorf("%s worked at %s while %s still worked until %s", r.identity, r.first, runs[i-1].identity, runs[i-1].last)
		}
	}
	// A run broken by another identity and resumed means overlap too, unless
	// the replica really won the lease again (counted by became).
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, n := range seen {
		if n > w.became[id] {
			t.Errorf("%s did leader-only work in %d separate runs but became leader %d times", id, n, w.became[id])
		}
	}
	return len(runs)
}

type testReplica struct {
	identity string
	proxy    *controlplane.Proxy
	cancel   context.CancelFunc
	done     chan error
	once     sync.Once
}

// startElected runs a replica that campaigns for the lease, through its own
// proxy to the API server, as its own user.
func (h *harness) startElected(identity string, log *workLog) *testReplica {
	h.t.Helper()
	proxy, cfg := controlplanetest.NewProxy(h.t, h.env.UserConfig(h.t, identity))
	return h.runReplica(identity, cfg, proxy, log)
}

func (h *harness) runReplica(identity string, cfg *rest.Config, proxy *controlplane.Proxy, log *workLog) *testReplica {
	return h.runComponents(identity, cfg, proxy, &failover{identity: identity, log: log})
}

// runWith runs an elected replica, as its own user, with extra components.
func (h *harness) runWith(identity string, extra ...module.Component) *testReplica {
	h.t.Helper()
	proxy, cfg := controlplanetest.NewProxy(h.t, h.env.UserConfig(h.t, identity))
	return h.runComponents(identity, cfg, proxy, extra...)
}

func (h *harness) runComponents(identity string, cfg *rest.Config, proxy *controlplane.Proxy, extra ...module.Component) *testReplica {
	ctx, cancel := context.WithCancel(context.Background())
	r := &testReplica{identity: identity, proxy: proxy, cancel: cancel, done: make(chan error, 1)}
	go func() {
		r.done <- replica.Run(ctx, replica.Options{
			Module:     module.Info{Name: moduleName, Version: "v0.0.1-test"},
			Components: append(testComponents(), extra...),
			Config:     cfg,
			Namespace:  h.ns,
			Identity:   identity,
			Election:   fastElection,
		})
	}()
	h.t.Cleanup(func() { r.stop(h.t) })
	return r
}

func (r *testReplica) stop(t *testing.T) {
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("replica %s: %v", r.identity, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("replica %s did not stop within 30s", r.identity)
		}
	})
}

func (h *harness) holder() string {
	l := &coordinationv1.Lease{}
	if err := h.c.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: replica.LeaseName(moduleName)}, l); err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func (h *harness) waitHolder(not ...string) string {
	h.t.Helper()
	var got string
	controlplanetest.Eventually(h.t, 30*time.Second, func() error {
		got = h.holder()
		if got == "" {
			return fmt.Errorf("no holder")
		}
		for _, n := range not {
			if got == n {
				return fmt.Errorf("holder still %s", got)
			}
		}
		return nil
	})
	return got
}

// TestReadersDoNotWrite runs three replicas; the two that never lead make no
// write besides their own Leases, as the API server's audit log shows.
func TestReadersDoNotWrite(t *testing.T) {
	h := newHarness(t)
	log := newWorkLog()
	h.startElected("lead-a", log)
	if got := h.waitHolder(); got != "lead-a" {
		t.Fatalf("holder %s", got)
	}
	h.startElected("reader-b", log)
	h.startElected("reader-c", log)
	h.create("f", "failover", nil)
	h.create("m", "marker", nil)
	// The sink first: the starter sends once, when its settings arrive, and
	// an edge to a node the leader's cache does not have yet goes nowhere.
	h.create("s", "sink", nil)
	h.create("a", "starter", []v1alpha1.TinyNodeEdge{edge("a-s", "out", "s.in")}, settings(t, map[string]any{"who": "x", "run": 1}))
	for i := range 5 {
		h.signal(fmt.Sprintf("sig-%d", i), "f", "in", fmt.Sprint(i))
	}
	h.waitMetadata("a", "result", "got x")
	h.waitSignalsGone(5)
	// The metadata the leader wrote reaches the readers' instances.
	controlplanetest.Eventually(t, 10*time.Second, func() error {
		log.mu.Lock()
		defer log.mu.Unlock()
		for _, id := range []string{"lead-a", "reader-b", "reader-c"} {
			if log.metadata[id] != "4" {
				return fmt.Errorf("%s's instance saw last=%q, want 4", id, log.metadata[id])
			}
		}
		return nil
	})
	// Give the readers every reason to write: a change to each node.
	for _, n := range []string{"f", "m", "a", "s"} {
		h.edit(n, func(n *v1alpha1.TinyNode) { n.Annotations = map[string]string{"probe": "poke"} })
	}
	h.waitProbe(probeOf(h.ns, "m"), "poke")

	for _, reader := range []string{"reader-b", "reader-c"} {
		var leases int
		for _, ev := range h.env.Writes(t, reader, h.ns) {
			if ev.ObjectRef.Resource == "leases" && ev.ObjectRef.Name != replica.LeaseName(moduleName) {
				leases++
				continue
			}
			t.Errorf("reader %s wrote: %s %s %s/%s (%d)", reader, ev.Verb, ev.ObjectRef.Resource, ev.ObjectRef.Name, ev.ObjectRef.Subresource, ev.ResponseStatus.Code)
		}
		if leases == 0 {
			t.Errorf("reader %s never wrote its membership Lease", reader)
		}
	}
	if h.holder() != "lead-a" {
		t.Errorf("leadership moved to %s", h.holder())
	}
}

func (h *harness) signal(name, node, port string, data any) {
	h.t.Helper()
	s := &v1alpha1.TinySignal{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns},
		Spec:       v1alpha1.TinySignalSpec{Node: node, Port: port, Data: jsonOf(h.t, data)},
	}
	if err := h.c.Create(h.ctx, s); err != nil {
		h.t.Fatalf("create signal: %v", err)
	}
}

func (h *harness) waitSignalsGone(limit int) {
	h.t.Helper()
	controlplanetest.Eventually(h.t, 60*time.Second, func() error {
		var list v1alpha1.TinySignalList
		if err := h.c.List(h.ctx, &list, client.InNamespace(h.ns)); err != nil {
			return err
		}
		if len(list.Items) > 0 {
			s := list.Items[0]
			return fmt.Errorf("%d of %d signals left, e.g. %s: %s %d %s (lease holder %q)", len(list.Items), limit, s.Name, s.Status.Phase, s.Status.Attempts, s.Status.LastError, h.holder())
		}
		return nil
	})
}

// TestFailover: a leader cut off from the API server stops its leader-only work
// on its own before another replica takes over within lease + 1s; a graceful
// stop hands over in under a second; no two replicas ever work at once; the
// seed's failover sample sees both transitions.
func TestFailover(t *testing.T) {
	h := newHarness(t)
	log := newWorkLog()
	replicas := map[string]*testReplica{}
	for _, id := range []string{"r-a", "r-b", "r-c"} {
		replicas[id] = h.startElected(id, log)
	}
	h.create("f", "failover", nil)
	first := h.waitHolder()
	h.waitWork(log, first)

	// Crash, made real: the leader's connection to the API server goes dead.
	cut := time.Now()
	replicas[first].proxy.Cut()
	second := h.waitHolder(first)
	if took := time.Since(cut); took > fastElection.LeaseDuration+time.Second {
		t.Errorf("new leader after %s, want within lease + 1s (%s)", took, fastElection.LeaseDuration+time.Second)
	}
	h.waitWork(log, second)

	// The cut-off leader comes back as a reader.
	replicas[first].proxy.Restore()

	// Graceful handover.
	stop := time.Now()
	go replicas[second].stop(t)
	third := h.waitHolder(second)
	if took := time.Since(stop); took > time.Second {
		t.Errorf("graceful handover took %s, want under 1s", took)
	}
	h.waitWork(log, third)
	t.Logf("leaders: %s, %s, %s", first, second, third)

	if terms := log.checkNoOverlap(t); terms < 3 {
		t.Errorf("only %d leadership terms did work", terms)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	for _, id := range []string{first, second} {
		if log.became[id] < 1 || log.lost[id] < 1 {
			t.Errorf("%s: became leader %d times, lost %d times; want both seen", id, log.became[id], log.lost[id])
		}
	}
}

// waitWork waits until identity has done leader-only work.
func (h *harness) waitWork(log *workLog, identity string) {
	h.t.Helper()
	controlplanetest.Eventually(h.t, 20*time.Second, func() error {
		log.mu.Lock()
		defer log.mu.Unlock()
		for i := len(log.marks) - 1; i >= 0; i-- {
			if log.marks[i].identity == identity {
				return nil
			}
		}
		return fmt.Errorf("%s has done no leader-only work", identity)
	})
}

// TestSignalsAcrossFailovers creates signals while the leader is cut off or
// stopped again and again: none is lost, duplicates stay within the failovers,
// and every delivery carries the signal's UID.
func TestSignalsAcrossFailovers(t *testing.T) {
	h := newHarness(t)
	log := newWorkLog()
	replicas := map[string]*testReplica{}
	start := func(id string) { replicas[id] = h.startElected(id, log) }
	for _, id := range []string{"s-a", "s-b", "s-c"} {
		start(id)
	}
	h.create("f", "failover", nil)
	h.waitHolder()

	const total, failovers = 510, 5
	n := 0
	for round := range failovers + 1 {
		for range total / (failovers + 1) {
			name := fmt.Sprintf("sig-%03d", n)
			h.signal(name, "f", "in", fmt.Sprint(n))
			n++
		}
		if round == failovers {
			break
		}
		leaderID := h.waitHolder()
		if round%2 == 0 {
			replicas[leaderID].proxy.Cut()
			h.waitHolder(leaderID)
			replicas[leaderID].proxy.Restore()
		} else {
			replicas[leaderID].stop(t)
			h.waitHolder(leaderID)
			start(leaderID + "-again")
		}
	}
	h.waitSignalsGone(total)

	log.mu.Lock()
	defer log.mu.Unlock()
	count := map[string]int{}
	for _, d := range log.deliveries {
		if d.id == "" {
			t.Errorf("delivery of %s by %s carried no ID", d.data, d.identity)
		}
		count[d.data]++
	}
	duplicates := 0
	for i := range n {
		c := count[fmt.Sprint(i)]
		if c == 0 {
			t.Errorf("signal %d lost", i)
		}
		duplicates += max(c-1, 0)
	}
	t.Logf("%d signals, %d failovers, %d duplicate deliveries", n, failovers, duplicates)
	if duplicates > failovers {
		t.Errorf("%d duplicates for %d failovers", duplicates, failovers)
	}
}
