// Package cron_test runs the cron component on three `tinymod run`
// processes while the test kills and pauses its leaders, and counts, from
// what the debug sink logged on every replica, how often each scheduled
// second fired.
package cron_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/test/e2e/harness"
)

func TestMain(m *testing.M) { controlplanetest.Main(m) }

const (
	moduleName = "tinymod"
	cronNode   = "cron"
	sinkNode   = "sink"
	// lease is the harness's lease duration (harness.Cluster.Run).
	lease = 2 * time.Second
	// events: k kill -9s the leader (a new replica takes its place, as a
	// Deployment's pod would), s SIGSTOPs it past the lease and SIGCONTs it.
	events = "kskkskk"
	// settle is how many firings, after an event, the next event waits for.
	settle = 3
	limit  = 8 * time.Minute
)

// firing is one message the debug sink logged.
type firing struct {
	scheduled, fired, logged time.Time
	identity                 string
}

// fault is one the test caused.
type fault struct {
	kind   string // "kill -9" or "SIGSTOP"
	victim string
	at     time.Time
}

// termLine is an elector's log line: "became leader" or "lost leadership".
type termLine struct {
	Time     time.Time `json:"time"`
	Msg      string    `json:"msg"`
	Identity string    `json:"identity"`
	Term     int64     `json:"term"`
}

type run struct {
	t       *testing.T
	ctx     context.Context
	env     *controlplanetest.Env
	cluster *harness.Cluster
	ns      string
	procs   []*harness.Process // every incarnation, in start order
	live    [3]*harness.Process
	gen     [3]int
}

func (r *run) start(slot int) *harness.Process {
	id := fmt.Sprintf("cron-r%d-%d", slot, r.gen[slot])
	r.gen[slot]++
	p := r.cluster.Run(moduleName, r.ns, id)
	r.live[slot] = p
	r.procs = append(r.procs, p)
	return p
}

func (r *run) byID(id string) (*harness.Process, int) {
	for slot, p := range r.live {
		if p != nil && p.ID == id {
			return p, slot
		}
	}
	return nil, -1
}

// waitLeader waits for a live replica, none of not, to hold the Lease.
func (r *run) waitLeader(not ...string) *harness.Process {
	r.t.Helper()
	var got *harness.Process
	controlplanetest.EventuallyEvery(r.t, 2*lease+30*time.Second, 100*time.Millisecond, func() error {
		id := harness.Holder(r.ctx, r.env.Client, r.ns, moduleName)
		for _, n := range append(not, "") {
			if id == n {
				return fmt.Errorf("lease holder %q", id)
			}
		}
		if got, _ = r.byID(id); got == nil || !got.Alive() {
			return fmt.Errorf("lease holder %q is not a live replica", id)
		}
		return nil
	})
	return got
}

// firings reads the debug sink's lines of every incarnation.
func (r *run) firings() []firing {
	r.t.Helper()
	var out []firing
	for _, p := range r.procs {
		for _, l := range p.Lines("debug") {
			if l.Node != sinkNode {
				continue
			}
			var d struct {
				ScheduledAt time.Time `json:"scheduledAt"`
				FiredAt     time.Time `json:"firedAt"`
				Context     struct {
					Test string `json:"test"`
				} `json:"context"`
			}
			if err := json.Unmarshal(l.Data, &d); err != nil || d.Context.Test != "cron-failover" {
				r.t.Errorf("%s logged a message the cron did not send: %s (%v)", p.ID, l.Data, err)
				continue
			}
			out = append(out, firing{scheduled: d.ScheduledAt, fired: d.FiredAt, logged: l.Time, identity: l.Identity})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].fired.Before(out[j].fired) })
	return out
}

// waitFirings waits until the cron has fired n times after since, on
// whichever replica leads.
func (r *run) waitFirings(since time.Time, n int) {
	r.t.Helper()
	controlplanetest.EventuallyEvery(r.t, 2*lease+30*time.Second, 200*time.Millisecond, func() error {
		got := 0
		for _, f := range r.firings() {
			if f.logged.After(since) {
				got++
			}
		}
		if got < n {
			return fmt.Errorf("%d firings since %s, want %d", got, since.Format("15:04:05.000"), n)
		}
		return nil
	})
}

// TestCronFiresOncePerSecondThroughFailovers: a cron scheduled every second
// on three replicas, its out wired to a debug sink, while the test kills
// the leader with kill -9 five times and pauses it with SIGSTOP past its
// lease twice. Counted from the sink's log lines on every replica: no
// scheduled second fires twice, only the leader fires, and every second
// fires except those that fell due while no replica led (the gaps, defined
// below from the Lease's history), where catchUp "latest" fires the latest
// missed one.
func TestCronFiresOncePerSecondThroughFailovers(t *testing.T) {
	harness.Binary(t) // built before taking the control plane's turn
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, limit)
	r := &run{t: t, ctx: ctx, env: env, cluster: harness.NewCluster(t, env.Kubeconfig), ns: ns}
	t.Cleanup(func() { keepLogs(t, r.cluster.Dir) })
	history, err := leader.WatchHistory(ctx, kubernetes.NewForConfigOrDie(env.Config), ns, replica.LeaseName(moduleName))
	if err != nil {
		t.Fatal(err)
	}
	// The history's times are CLOCK_MONOTONIC; the logs' are wall-clock.
	wallAtZero := time.Now().Add(-leader.MonotonicNow())
	wall := func(mono int64) time.Time { return wallAtZero.Add(time.Duration(mono)) }

	for slot := range r.live {
		r.start(slot)
	}
	createFlow(t, ctx, env.Client, ns)
	r.waitLeader()
	controlplanetest.EventuallyEvery(t, 60*time.Second, 200*time.Millisecond, func() error { return nodesReady(ctx, env.Client, ns) })
	start := &v1alpha1.TinySignal{ObjectMeta: metav1.ObjectMeta{Name: "start-cron", Namespace: ns},
		Spec: v1alpha1.TinySignalSpec{Node: cronNode, Port: v1alpha1.ControlPort, Data: &apiextensionsv1.JSON{Raw: []byte(`{"start": true}`)}}}
	if err := env.Client.Create(ctx, start); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	r.waitFirings(time.Time{}, settle)

	var faults []fault
	for i, ev := range events {
		victim := r.waitLeader()
		var at time.Time // when the signal was sent: the victim logs nothing after it
		switch ev {
		case 'k':
			if err := victim.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			at = time.Now()
			<-victim.Exited
			faults = append(faults, fault{kind: "kill -9", victim: victim.ID, at: at})
			_, slot := r.byID(victim.ID)
			r.start(slot)
		case 's':
			if err := victim.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			at = time.Now()
			faults = append(faults, fault{kind: "SIGSTOP", victim: victim.ID, at: at})
			r.waitLeader(victim.ID)
			// Paused past its lease, whatever the takeover took: the pause
			// is the fault, not a wait for something.
			time.Sleep(lease + 500*time.Millisecond - time.Since(at))
			if err := victim.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
		}
		next := r.waitLeader(victim.ID)
		r.waitFirings(at, settle)
		t.Logf("event %d: %s of %s at %s; %s leads and fires", i, faults[len(faults)-1].kind, victim.ID, at.Format("15:04:05.000"), next.ID)
	}
	// The last leader fires on; the resumed ex-leaders stay quiet.
	r.waitFirings(time.Now(), settle)

	// The leadership terms, in order, as the Lease's history shows them.
	if n := history.Gaps(); n > 0 {
		t.Fatalf("the Lease watch could not resume %d times: its history has gaps", n)
	}
	logged := map[string]time.Time{} // "<msg> <identity> <term>" -> time
	for _, p := range r.procs {
		for _, msg := range []string{"became leader", "lost leadership"} {
			for _, l := range harness.Decode[termLine](p, msg) {
				key := fmt.Sprintf("%s %s %d", msg, p.ID, l.Term)
				if _, ok := logged[key]; !ok {
					logged[key] = l.Time
				}
			}
		}
	}
	// A term begins when its holder logged "became leader" for it (right
	// after its Lease update landed), else when the history showed it. It
	// ends at the kill -9 or SIGSTOP the test sent its holder during it,
	// else at its holder's "lost leadership" line for it, else when the
	// history showed the next term.
	type term struct {
		holder     string
		begin, end time.Time // end zero: still leading
		cause      string    // of its end
	}
	var terms []term
	fromLogs := 0 // terms whose beginning their holder logged
	for _, tn := range leader.Tenures(history.Records()) {
		tm := term{holder: tn.Holder, begin: wall(tn.Begin)}
		if at, ok := logged[fmt.Sprintf("became leader %s %d", tn.Holder, tn.Term)]; ok {
			tm.begin = at
			fromLogs++
		}
		if tn.End != 0 {
			tm.end, tm.cause = wall(tn.End), "the history's next term"
			if at, ok := logged[fmt.Sprintf("lost leadership %s %d", tn.Holder, tn.Term)]; ok && at.Before(tm.end) {
				tm.end, tm.cause = at, "lost its lease"
			}
			for _, f := range faults {
				if f.victim == tn.Holder && f.at.After(tm.begin) && !f.at.After(wall(tn.End)) {
					tm.end, tm.cause = f.at, f.kind
				}
			}
		}
		terms = append(terms, tm)
	}
	type gap struct {
		from, to         string // holders
		cause            string
		start, end       time.Time
		missed           []int64
		catchUp          *firing // the first firing after the gap
		catchUpWasDue    bool    // its second fell due before the new term began
		firstAfterLeader time.Duration
	}
	// A gap is the time between two consecutive terms: from the end of the
	// earlier to the beginning of the later. A scheduled second s counts as
	// missed in a gap when
	//   start - 1s < s < end + 1s:
	// one period before, for the second the old leader was recording or
	// sending when it stopped; one after, for the second that falls due
	// while the new leader's timer starts (with catchUp "latest" it fires
	// the latest missed second as it starts, so this margin is only used
	// when that start comes more than a second after its term began).
	var gaps []gap
	for i := 1; i < len(terms); i++ {
		a, b := terms[i-1], terms[i]
		gaps = append(gaps, gap{from: a.holder, to: b.holder, cause: a.cause, start: a.end, end: b.begin})
	}

	// Count.
	all := r.firings()
	if len(all) == 0 {
		t.Fatal("nothing fired")
	}
	bySecond := map[int64][]firing{}
	lo, hi := all[0].scheduled.Unix(), all[0].scheduled.Unix()
	for _, f := range all {
		s := f.scheduled.Unix()
		if f.scheduled.Nanosecond() != 0 {
			t.Errorf("%s fired %s, not a whole second", f.identity, f.scheduled.Format(time.RFC3339Nano))
		}
		bySecond[s] = append(bySecond[s], f)
		lo, hi = min(lo, s), max(hi, s)
	}
	// Never two firings for one scheduled second.
	duplicated := 0
	for s, fs := range bySecond {
		if len(fs) > 1 {
			duplicated++
			var who []string
			for _, f := range fs {
				who = append(who, fmt.Sprintf("%s at %s", f.identity, f.fired.Format("15:04:05.000")))
			}
			t.Errorf("second %s fired %d times: %s", time.Unix(s, 0).UTC().Format(time.TimeOnly), len(fs), strings.Join(who, ", "))
		}
	}
	// Only the leader fires: each firing was logged in a term of the
	// replica that logged it.
	for _, f := range all {
		in := false
		for _, tm := range terms {
			in = in || tm.holder == f.identity && !f.logged.Before(tm.begin) && (tm.end.IsZero() || !f.logged.After(tm.end))
		}
		if !in {
			t.Errorf("%s fired %s at %s outside its terms", f.identity, f.scheduled.UTC().Format(time.TimeOnly), f.logged.Format("15:04:05.000"))
		}
	}
	// Every second fired but those inside a gap.
	var missed, unexplained []int64
	for s := lo; s <= hi; s++ {
		if len(bySecond[s]) > 0 {
			continue
		}
		missed = append(missed, s)
		due := time.Unix(s, 0)
		explained := false
		for i := range gaps {
			if due.After(gaps[i].start.Add(-time.Second)) && due.Before(gaps[i].end.Add(time.Second)) {
				gaps[i].missed = append(gaps[i].missed, s)
				explained = true
				break
			}
		}
		if !explained {
			unexplained = append(unexplained, s)
		}
	}
	for _, s := range unexplained {
		t.Errorf("second %s did not fire, and no gap explains it", time.Unix(s, 0).UTC().Format(time.TimeOnly))
	}
	// catchUp "latest": after a gap the new leader fires the latest second
	// missed as its timer starts, one that was due before its term began
	// whenever no second falls due between the term's beginning and the
	// timer's start (a few milliseconds). A leader that skipped missed
	// seconds (catchUp "none") would never fire one due before its term.
	catchUps := 0
	for i := range gaps {
		g := &gaps[i]
		for j := range all {
			if all[j].identity == g.to && !all[j].logged.Before(g.end) {
				g.catchUp = &all[j]
				g.catchUpWasDue = all[j].scheduled.Before(g.end)
				g.firstAfterLeader = all[j].logged.Sub(g.end)
				break
			}
		}
		if g.catchUpWasDue {
			catchUps++
		}
	}
	if catchUps == 0 {
		t.Errorf("after none of the %d gaps did the new leader fire a second missed before its term began: no catch-up", len(gaps))
	}

	t.Logf("%d firings of %d distinct seconds from %s to %s (%d seconds), %d seconds fired more than once, %d missed (%d outside any gap); "+
		"%d faults, %d terms (%d begun as their holders logged), %d gaps, %d with a catch-up of a second due before the new term; %s in all",
		len(all), len(bySecond), time.Unix(lo, 0).UTC().Format(time.TimeOnly), time.Unix(hi, 0).UTC().Format(time.TimeOnly), hi-lo+1,
		duplicated, len(missed), len(unexplained), len(faults), len(terms), fromLogs, len(gaps), catchUps, time.Since(began).Round(time.Second))
	for _, g := range gaps {
		first := "none"
		if g.catchUp != nil {
			first = fmt.Sprintf("%s (logged %s after the term began; due before it: %v)", g.catchUp.scheduled.UTC().Format(time.TimeOnly), g.firstAfterLeader.Round(time.Millisecond), g.catchUpWasDue)
		}
		var ms []string
		for _, s := range g.missed {
			ms = append(ms, time.Unix(s, 0).UTC().Format(time.TimeOnly))
		}
		t.Logf("gap %s -> %s (%s): %s to %s, %s without a leader; missed %d %v; first firing after: %s",
			g.from, g.to, g.cause, g.start.UTC().Format("15:04:05.000"), g.end.UTC().Format("15:04:05.000"), g.end.Sub(g.start).Round(time.Millisecond),
			len(g.missed), ms, first)
	}
}

func createFlow(t *testing.T, ctx context.Context, c client.Client, ns string) {
	t.Helper()
	nodes := []*v1alpha1.TinyNode{
		{ObjectMeta: metav1.ObjectMeta{Name: cronNode, Namespace: ns}, Spec: v1alpha1.TinyNodeSpec{Module: moduleName, Component: "cron",
			Ports: []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: &apiextensionsv1.JSON{
				Raw: []byte(`{"schedule": "* * * * * *", "catchUp": "latest", "context": {"test": "cron-failover"}}`)}}},
			Edges: []v1alpha1.TinyNodeEdge{{ID: "cron-sink", Port: "out", To: sinkNode + ".in"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: sinkNode, Namespace: ns}, Spec: v1alpha1.TinyNodeSpec{Module: moduleName, Component: "debug"}},
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
			return fmt.Errorf("node %s not ready: %+v (%s)", n.Name, n.Status.Conditions, n.Status.Error)
		}
	}
	if len(list.Items) != 2 {
		return fmt.Errorf("%d nodes", len(list.Items))
	}
	return nil
}

// keepLogs copies the replicas' logs of a failed run to a folder that
// outlives the test, and says where.
func keepLogs(t *testing.T, dir string) {
	if !t.Failed() {
		return
	}
	keep, err := os.MkdirTemp("", "tinymod-cron-logs-")
	if err != nil {
		return
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		if data, err := os.ReadFile(f); err == nil {
			_ = os.WriteFile(filepath.Join(keep, filepath.Base(f)), data, 0o644)
		}
	}
	t.Logf("the replicas' logs are kept in %s", keep)
}
