// Package chaos breaks a three-replica module on purpose, while it works, and
// checks the leader-reader guarantees against records the replicas and the
// test keep: kill -9 and SIGSTOP of leaders, and a kube-apiserver restart,
// while TinySignals arrive and a ticker runs.
//
// The short profile runs in `make test`; the long one, with the default lease
// durations, under `make chaos` (TINYMOD_CHAOS=long).
package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/test/bench/benchutil"
	"github.com/tinymod/tinymod/test/e2e/harness"
)

func TestMain(m *testing.M) { controlplanetest.Main(m) }

// profile is how hard and how long the suite pushes.
type profile struct {
	name                string
	lease, renew, retry time.Duration
	// signals are created one every signalEvery, through the whole run.
	signals     int
	signalEvery time.Duration
	// events is the order of faults: k kill -9, s SIGSTOP past the lease, r
	// kube-apiserver restart.
	events string
	// limit bounds the whole test.
	limit time.Duration
}

var profiles = map[string]profile{
	"short": {name: "short", lease: 2 * time.Second, renew: 1500 * time.Millisecond, retry: 500 * time.Millisecond,
		signals: 1000, signalEvery: 60 * time.Millisecond, events: "kskkskkrskksksk" + "k", limit: 5 * time.Minute},
	"long": {name: "long", lease: leader.DefaultLeaseDuration, renew: leader.DefaultRenewDeadline, retry: leader.DefaultRetryPeriod,
		signals: 1000, signalEvery: 500 * time.Millisecond, events: "kskkskkrskksksk" + "k", limit: 40 * time.Minute},
}

const (
	moduleName = "chaos"
	// sinks is 1: a node takes its signals one at a time, so a leader death
	// interrupts at most one delivery, and duplicates stay within deaths.
	// (Across several nodes, each may have one delivery in flight.)
	sinks = 1
	slots = 3
)

// fault is one fault the test caused, on CLOCK_MONOTONIC.
type fault struct {
	kind       string // kill, stop, restart
	victim     string
	at, resume time.Duration
}

// fleet keeps three replicas running, each incarnation under an identity
// and an API user of its own, as a Deployment's pods are.
type fleet struct {
	t       *testing.T
	env     *controlplanetest.Env
	cluster *harness.Cluster
	ns      string
	p       profile

	mu   sync.Mutex
	live [slots]*harness.Process
	gen  [slots]int
	all  []*harness.Process
}

func (f *fleet) start(slot int) *harness.Process {
	f.t.Helper()
	f.mu.Lock()
	id := fmt.Sprintf("r%d-%d", slot, f.gen[slot])
	f.gen[slot]++
	f.mu.Unlock()
	kubeconfig := f.cluster.KubeconfigFor(id, f.env.UserConfig(f.t, id))
	p := f.cluster.Run(moduleName, f.ns, id, "--kubeconfig", kubeconfig,
		"--leader-journal", filepath.Join(f.cluster.Dir, "journal-"+id),
		"--lease-duration", f.p.lease.String(), "--renew-deadline", f.p.renew.String(), "--retry-period", f.p.retry.String())
	f.mu.Lock()
	f.live[slot] = p
	f.all = append(f.all, p)
	f.mu.Unlock()
	return p
}

// slotOf returns the slot of a live replica, or -1.
func (f *fleet) slotOf(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, p := range f.live {
		if p != nil && p.ID == id {
			return i
		}
	}
	return -1
}

// waitLeader waits for a live replica other than not to hold the Lease.
func (f *fleet) waitLeader(limit time.Duration, not ...string) string {
	f.t.Helper()
	var got string
	controlplanetest.Eventually(f.t, limit, func() error {
		got = harness.Holder(context.Background(), f.env.Client, f.ns, moduleName)
		if got == "" || f.slotOf(got) < 0 {
			return fmt.Errorf("lease holder %q is not a live replica", got)
		}
		for _, n := range not {
			if got == n {
				return fmt.Errorf("lease still held by %q", got)
			}
		}
		return nil
	})
	return got
}

func (f *fleet) byID(id string) *harness.Process {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.all {
		if p.ID == id {
			return p
		}
	}
	return nil
}

// delivered counts, across every incarnation's log, the sink lines of each
// signal number, and the ticks each identity logged.
func (f *fleet) delivered() (bySignal map[int]int, ticks map[string]int) {
	f.mu.Lock()
	all := append([]*harness.Process(nil), f.all...)
	f.mu.Unlock()
	bySignal, ticks = map[int]int{}, map[string]int{}
	for _, p := range all {
		for _, l := range p.Lines("debug") {
			switch {
			case l.Node == "tick-sink":
				ticks[p.ID]++
			case strings.HasPrefix(l.Node, "sink-"):
				var d struct{ N int }
				if json.Unmarshal(l.Data, &d) == nil {
					bySignal[d.N]++
				}
			}
		}
	}
	return bySignal, ticks
}

func TestChaos(t *testing.T) {
	name := os.Getenv("TINYMOD_CHAOS")
	if name == "" {
		name = "short"
	}
	p, ok := profiles[name]
	if !ok {
		t.Fatalf("TINYMOD_CHAOS=%q: want short or long", name)
	}
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, p.limit)
	cs := kubernetes.NewForConfigOrDie(env.Config)
	// Wall-clock times (the audit log's) map to CLOCK_MONOTONIC through one
	// offset read now.
	wallAtZero := time.Now().Add(-leader.MonotonicNow())
	history, err := leader.WatchHistory(ctx, cs, ns, replica.LeaseName(moduleName))
	if err != nil {
		t.Fatal(err)
	}

	f := &fleet{t: t, env: env, cluster: harness.NewCluster(t, env.Kubeconfig), ns: ns, p: p}
	createFlow(t, ctx, env.Client, ns)
	for i := range slots {
		f.start(i)
	}
	first := f.waitLeader(30 * time.Second)
	controlplanetest.Eventually(t, 60*time.Second, func() error { return nodesReady(ctx, env.Client, ns) })
	sendSignal(ctx, t, env.Client, ns, "start-ticker", "tick", v1alpha1.ControlPort, `{"start": true}`)

	// Signals arrive one every signalEvery for the whole run, whatever breaks.
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		next := time.Now()
		for i := range p.signals {
			sendSignal(ctx, t, env.Client, ns, fmt.Sprintf("sig-%04d", i), fmt.Sprintf("sink-%d", i%sinks), "in", fmt.Sprintf(`{"n": %d}`, i))
			next = next.Add(p.signalEvery)
			select {
			case <-time.After(time.Until(next)):
			case <-ctx.Done():
				return
			}
		}
	}()

	// waitWorking waits until leader has delivered a signal (while signals
	// still come) and logged a tick, since its term began.
	waitWorking := func(id string) {
		t.Helper()
		p := f.byID(id)
		controlplanetest.Eventually(t, 2*f.p.lease+30*time.Second, func() error {
			var ticked, sank bool
			for _, l := range p.Lines("debug") {
				ticked = ticked || l.Node == "tick-sink"
				sank = sank || strings.HasPrefix(l.Node, "sink-")
			}
			select {
			case <-produced:
				sank = true
			default:
			}
			if !ticked || !sank {
				return fmt.Errorf("leader %s: ticked %v, delivered a signal %v", id, ticked, sank)
			}
			return nil
		})
	}

	failover := 2*p.lease + 10*time.Second // generous: a correctness bound, not a measurement
	var faults []fault
	current := first
	waitWorking(current)
	for i, ev := range p.events {
		switch ev {
		case 'k':
			victim := current
			slot := f.slotOf(victim)
			if err := f.byID(victim).Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			faults = append(faults, fault{kind: "kill", victim: victim, at: leader.MonotonicNow()})
			<-f.byID(victim).Exited
			f.start(slot) // a new pod, a new identity
			current = f.waitLeader(failover, victim)
		case 's':
			victim := current
			stopped := leader.MonotonicNow()
			if err := f.byID(victim).Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			current = f.waitLeader(failover, victim)
			// Paused for longer than the lease, whatever the takeover took.
			time.Sleep(p.lease + 500*time.Millisecond - (leader.MonotonicNow() - stopped))
			if err := f.byID(victim).Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			faults = append(faults, fault{kind: "stop", victim: victim, at: stopped, resume: leader.MonotonicNow()})
		case 'r':
			before := map[string]int{}
			f.mu.Lock()
			for _, p := range f.live {
				before[p.ID] = p.Cmd.Process.Pid
			}
			f.mu.Unlock()
			at := leader.MonotonicNow()
			restartedWall := time.Now()
			if err := env.RestartAPIServer(); err != nil {
				t.Fatal(err)
			}
			faults = append(faults, fault{kind: "restart", at: at, resume: leader.MonotonicNow()})
			current = f.waitLeader(failover)
			// Every replica recovers by itself: the same process renews its
			// membership Lease on the new API server.
			controlplanetest.Eventually(t, failover, func() error {
				for id, pid := range before {
					p := f.byID(id)
					if !p.Alive() || p.Cmd.Process.Pid != pid {
						return fmt.Errorf("replica %s did not survive the API-server restart: %v", id, p.Err)
					}
					l, err := cs.CoordinationV1().Leases(ns).Get(ctx, leader.MemberLeaseName(moduleName, id), metav1.GetOptions{})
					if err != nil {
						return err
					}
					if l.Spec.RenewTime == nil || !l.Spec.RenewTime.After(restartedWall) {
						return fmt.Errorf("replica %s has not renewed its membership since the restart", id)
					}
				}
				return nil
			})
			t.Logf("API server restarted in %s; %s leads", time.Duration(leader.MonotonicNow()-at).Round(time.Millisecond), current)
		}
		t.Logf("event %d (%c): %s leads", i, ev, current)
		waitWorking(current)
	}

	select {
	case <-produced:
	case <-ctx.Done():
		t.Fatal("signals were still being created when the test ran out of time")
	}
	// Every signal is delivered and deleted; none fails.
	controlplanetest.Eventually(t, 2*time.Minute, func() error {
		var list v1alpha1.TinySignalList
		if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, s := range list.Items {
			if s.Status.Phase == v1alpha1.SignalFailed {
				t.Fatalf("signal %s failed: %s", s.Name, s.Status.LastError)
			}
		}
		if len(list.Items) > 0 {
			return fmt.Errorf("%d signals not delivered yet", len(list.Items))
		}
		return nil
	})
	final := current
	stoppedAt := leader.MonotonicNow()

	// No signal lost; duplicates within the leader deaths during delivery.
	bySignal, ticks := f.delivered()
	var missing []int
	dups := 0
	for i := range p.signals {
		switch n := bySignal[i]; {
		case n == 0:
			missing = append(missing, i)
		case n > 1:
			dups += n - 1
		}
	}
	tenures := leader.Tenures(history.Records())
	deaths := len(tenures) - 1
	if gaps := history.Gaps(); gaps > 0 {
		t.Errorf("the Lease watch could not resume %d times: its history has gaps", gaps)
	}
	if testing.Verbose() || t.Failed() {
		for _, tn := range tenures {
			t.Logf("tenure: %s term %d from %d to %d", tn.Holder, tn.Term, tn.Begin, tn.End)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d signals lost: %v", len(missing), missing[:min(len(missing), 20)])
	}
	if dups > deaths {
		t.Errorf("%d duplicate deliveries, more than the %d leader deaths", dups, deaths)
	}

	// No two replicas did leader-only work at the same instant.
	journals, _ := filepath.Glob(filepath.Join(f.cluster.Dir, "journal-*"))
	claims, err := leader.ReadClaims(journals...)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range leader.CheckClaims(claims, history.Records()) {
		t.Error(err)
	}
	leaders := map[string]bool{}
	for _, c := range claims {
		leaders[c.Identity] = true
	}
	if kills := strings.Count(p.events, "k"); len(leaders) < kills {
		t.Errorf("claims by %d identities, fewer than the %d leaders killed: the journal misses work", len(leaders), kills)
	}

	// A resumed ex-leader does no leader-only work until it wins the lease again.
	termBegin := map[string]map[int32]int64{}
	for _, tn := range tenures {
		if termBegin[tn.Holder] == nil {
			termBegin[tn.Holder] = map[int32]int64{}
		}
		termBegin[tn.Holder][tn.Term] = tn.Begin
	}
	for _, ft := range faults {
		if ft.kind != "stop" {
			continue
		}
		for _, c := range claims {
			// A claim read just before SIGSTOP took effect is the old term's;
			// any claim after SIGCONT must be of a term won since.
			begin, known := termBegin[c.Identity][c.Term] // an unknown term is CheckClaims' to report
			if c.Identity == ft.victim && !c.EndOfTerm && c.Start > int64(ft.resume) && known && begin < int64(ft.resume) {
				t.Errorf("%s, stopped and resumed, claimed %q in term %d at %d, before winning the lease again", c.Identity, c.Action, c.Term, c.Start)
			}
		}
	}

	// Readers wrote no status: every write to tinymod's kinds that took
	// effect falls within a term of the writer, as the watched Lease shows it.
	// (Refused ones, a stale write stopped by its resourceVersion, are counted.)
	writes, refused := 0, 0
	byUser := map[string][]controlplanetest.AuditEvent{}
	for _, w := range env.AllWrites(t, ns) { // the audit log, read once
		byUser[w.User.Username] = append(byUser[w.User.Username], w)
	}
	for _, proc := range f.all {
		for _, w := range byUser[proc.ID] {
			if w.ObjectRef.APIGroup != v1alpha1.GroupVersion.Group || w.Verb == "create" {
				continue // creates are not leader-only: any replica creates a missing TinyModule
			}
			at := int64(w.Received.Sub(wallAtZero))
			inTerm := false
			for _, tn := range tenures {
				if tn.Holder == proc.ID && at >= tn.Begin-int64(250*time.Millisecond) && (tn.End == 0 || at < tn.End) {
					inTerm = true
				}
			}
			switch {
			case w.ResponseStatus.Code >= 300:
				refused++
			case !inTerm:
				t.Errorf("%s wrote %s %s/%s (%s) at %s while not leading", proc.ID, w.Verb, w.ObjectRef.Resource, w.ObjectRef.Name, w.ObjectRef.Subresource, w.Received.Format(time.RFC3339Nano))
			default:
				writes++
			}
		}
	}

	// The ticker still runs, on the last leader.
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		for _, l := range f.byID(final).Lines("debug") {
			if l.Node == "tick-sink" && time.Duration(l.Time.Sub(wallAtZero)) > stoppedAt {
				return nil
			}
		}
		return fmt.Errorf("no tick from the last leader %s", final)
	})

	if path := os.Getenv("TINYMOD_BENCH_ROWS"); path != "" {
		cmd := "go test -run TestChaos ./test/e2e/chaos/"
		if p.name == "long" {
			cmd = "make chaos"
		}
		err := benchutil.WriteRows(path, []benchutil.Row{
			{Figure: fmt.Sprintf("chaos (%s): signals lost, of %d", p.name, p.signals), Value: fmt.Sprint(len(missing)), Goal: "0", Command: cmd},
			{Figure: fmt.Sprintf("chaos (%s): duplicate deliveries", p.name), Value: fmt.Sprint(dups), Anchor: "leader deaths", AnchorValue: fmt.Sprint(deaths),
				Ratio: fmt.Sprintf("%.2f", float64(dups)/float64(max(deaths, 1))), Goal: "≤ leader deaths", Command: cmd},
			{Figure: fmt.Sprintf("chaos (%s): leader-only claims overlapping, or outside the Lease's terms", p.name), Value: fmt.Sprint(len(leader.CheckClaims(claims, history.Records()))),
				Anchor: "claims checked", AnchorValue: fmt.Sprint(len(claims)), Goal: "0", Command: cmd},
		})
		if err != nil {
			t.Error(err)
		}
	}
	actions := map[string]int{}
	for _, c := range claims {
		actions[strings.Fields(c.Action)[0]]++
	}
	tickers := []string{}
	for id := range ticks {
		tickers = append(tickers, id)
	}
	sort.Strings(tickers)
	t.Logf("profile %s: %d signals, %d delivered more than once, %d leader changes (%d kill -9, %d SIGSTOP, %d API-server restart), "+
		"%d incarnations; journal: %d claims by %d identities %v, 0 overlaps; %d writes to tinymod's kinds, all by leaders, and %d refused by the API server (conflicts, gone); ticks from %v",
		p.name, p.signals, dups, deaths, strings.Count(p.events, "k"), strings.Count(p.events, "s"), strings.Count(p.events, "r"),
		len(f.all), len(claims), len(leaders), actions, writes, refused, tickers)
}

// createFlow creates a ticker into a sink, and the sinks signals go to.
func createFlow(t *testing.T, ctx context.Context, c client.Client, ns string) {
	t.Helper()
	settings := func(raw string) []v1alpha1.TinyNodePortConfig {
		return []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: &apiextensionsv1.JSON{Raw: []byte(raw)}}}
	}
	nodes := []*v1alpha1.TinyNode{{
		ObjectMeta: metav1.ObjectMeta{Name: "tick", Namespace: ns},
		Spec: v1alpha1.TinyNodeSpec{Module: moduleName, Component: "ticker", Ports: settings(`{"delay": 200, "context": {"tick": true}}`),
			Edges: []v1alpha1.TinyNodeEdge{{ID: "tick-sink", Port: "out", To: "tick-sink.in"}}},
	}, {
		ObjectMeta: metav1.ObjectMeta{Name: "tick-sink", Namespace: ns},
		Spec:       v1alpha1.TinyNodeSpec{Module: moduleName, Component: "debug"},
	}}
	for i := range sinks {
		nodes = append(nodes, &v1alpha1.TinyNode{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("sink-%d", i), Namespace: ns},
			Spec:       v1alpha1.TinyNodeSpec{Module: moduleName, Component: "debug"},
		})
	}
	for _, n := range nodes {
		if err := c.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
}

func nodesReady(ctx context.Context, c client.Client, ns string) error {
	var list v1alpha1.TinyNodeList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return err
	}
	for _, n := range list.Items {
		if len(n.Status.Conditions) == 0 || n.Status.Conditions[0].Status != metav1.ConditionTrue {
			return fmt.Errorf("node %s not ready: %+v", n.Name, n.Status.Conditions)
		}
	}
	return nil
}

// sendSignal creates a TinySignal, retrying while the API server is away; a
// retry of a create that landed finds it there.
func sendSignal(ctx context.Context, t *testing.T, c client.Client, ns, name, node, port, data string) {
	s := &v1alpha1.TinySignal{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.TinySignalSpec{Node: node, Port: port, Data: &apiextensionsv1.JSON{Raw: []byte(data)}}}
	for ctx.Err() == nil {
		err := c.Create(ctx, s.DeepCopy())
		if err == nil || apierrors.IsAlreadyExists(err) {
			return
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	t.Errorf("signal %s not created before the test ran out of time", name)
}
