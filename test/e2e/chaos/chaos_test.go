// Package chaos breaks two modules that share a namespace on purpose, while
// they work, and checks the leader-reader guarantees against records the
// replicas and the test keep. Every replica reaches the API server through a
// proxy that fails a share of its requests (503, 429, requests held and
// dropped, 409 conflicts, answers lost after the write); meanwhile the test
// kill -9s and SIGSTOPs leaders, takes a whole module down and back, restarts
// kube-apiserver, and finally makes a component panic in every entry point,
// while TinySignals arrive for both modules, a ticker runs, and messages
// with deadlines cross from one module to the other over gRPC.
//
// The short profile runs in `make test`; the long one, with the default lease
// durations, under `make chaos` (TINYMOD_CHAOS=long). TINYMOD_CHAOS_SEED
// repeats a run's fault draws.
package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/controlplane/faultproxy"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/test/bench/benchutil"
	"github.com/tinymod/tinymod/test/e2e/harness"
)

func TestMain(m *testing.M) { controlplanetest.Main(m) }

// profile is how hard and how long the suite pushes.
type profile struct {
	name                string
	lease, renew, retry time.Duration
	// Each module gets a signal every signalEvery until the events are
	// over, and at least minSignals.
	signalEvery time.Duration
	minSignals  int
	// events is the order of faults: k and K kill -9 the leader of alpha and
	// of beta, s and S SIGSTOP it past its lease, D takes every replica of
	// beta down for downFor and back, r restarts kube-apiserver.
	events  string
	downFor time.Duration
	// faultRate is the share of each replica's API requests the proxies
	// fail; hold is how long a timeout holds one.
	faultRate float64
	hold      time.Duration
	// pacerRate is the messages a second each replica of alpha sends to
	// beta, each with a deadline.
	pacerRate int
	// pprof serves net/http/pprof on every replica, for heaps after a
	// collection.
	pprof bool
	// panicWait bounds how long a panic may take to show in status and
	// Events (the Event recorder waits 10 s between its retries).
	panicWait time.Duration
	// limit bounds the whole test.
	limit time.Duration
}

var profiles = map[string]profile{
	"short": {name: "short", lease: 2 * time.Second, renew: 1500 * time.Millisecond, retry: 500 * time.Millisecond,
		signalEvery: 100 * time.Millisecond, minSignals: 300, events: "DkKsSkrKksKk", downFor: 15 * time.Second,
		faultRate: 0.05, hold: time.Second, pacerRate: 40, panicWait: 30 * time.Second, limit: 8 * time.Minute},
	"long": {name: "long", lease: leader.DefaultLeaseDuration, renew: leader.DefaultRenewDeadline, retry: leader.DefaultRetryPeriod,
		signalEvery: 500 * time.Millisecond, minSignals: 600, events: "kKskSDkKrsKkSksK", downFor: 30 * time.Second,
		faultRate: 0.05, hold: 5 * time.Second, pacerRate: 20, panicWait: 60 * time.Second, limit: 60 * time.Minute},
}

// The two modules and their replicas. Alpha runs a ticker into a sink, a
// probe for its signals and a pacer whose messages, each with a deadline, go
// to beta's hold node over gRPC; beta runs a probe for its signals and the
// hold node, and, at the end, the nodes that panic.
const (
	alphaName, betaName = "alpha", "beta"
	replicasPerModule   = 3
)

// fault is one fault the test caused, on CLOCK_MONOTONIC.
type fault struct {
	kind, module, victim string // kind: kill, stop, restart, down
	at, resume           time.Duration
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
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("TINYMOD_CHAOS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("TINYMOD_CHAOS_SEED: %v", err)
		}
	}
	t.Logf("profile %s, fault seed %d (TINYMOD_CHAOS_SEED=%d repeats the draws)", p.name, seed, seed)
	began := time.Now()
	w := newWorld(t, p, seed)
	defer w.end()
	ctx, env, ns := w.ctx, w.env, w.ns

	alpha, beta := newFleet(w, alphaName, replicasPerModule), newFleet(w, betaName, replicasPerModule)
	createFlow(t, ctx, env.Client, ns, p)
	for i := range replicasPerModule {
		beta.start(i)
		alpha.start(i)
	}
	alpha.waitLeader(60 * time.Second)
	beta.waitLeader(60 * time.Second)
	poll(t, 90*time.Second, func() error { return nodesReady(ctx, env.Client, ns) })
	w.createSignal("start-ticker", "tick", v1alpha1.ControlPort, `{"start": true}`)
	t.Logf("set up in %s", time.Since(began).Round(time.Millisecond))

	scr := w.scrape(2*time.Second, "b-hold")
	prA, prB := w.produce("a", "a-sink"), w.produce("b", "b-sink")
	var ghosts []string
	ghost := func() {
		name := fmt.Sprintf("ghost-%d", len(ghosts))
		w.createSignal(name, "no-such-node", "in", `{"ghost": true}`)
		ghosts = append(ghosts, name)
	}
	ghost()

	// waitWorking waits until m's leader has delivered a signal since since
	// and, for alpha, logged a tick.
	waitWorking := func(m *fleet, since time.Time) {
		t.Helper()
		sink := map[string]string{alphaName: "a-sink", betaName: "b-sink"}[m.name]
		poll(t, 2*p.lease+40*time.Second, func() error {
			l := m.holder()
			if l == nil {
				return fmt.Errorf("module %s has no live leader", m.name)
			}
			sank := false
			for _, pl := range harness.Decode[probeLine](l.Process, "probe") {
				sank = sank || pl.Node == sink && pl.Time.After(since)
			}
			ticked := m.name != alphaName
			for _, dl := range l.Lines("debug") {
				ticked = ticked || dl.Node == "tick-sink" && dl.Time.After(since)
			}
			if !ticked || !sank {
				return fmt.Errorf("module %s leader %s: delivered a signal %v, ticked %v, since %s", m.name, l.ID, sank, ticked, since.Format("15:04:05.000"))
			}
			return nil
		})
	}

	failover := 2*p.lease + 20*time.Second // generous: a correctness bound, not a measurement
	var faults []fault
	var downFailed []string
	waitWorking(alpha, began)
	waitWorking(beta, began)
	for i, ev := range p.events {
		m := alpha
		if ev == 'K' || ev == 'S' || ev == 'D' {
			m = beta
		}
		evStart := time.Now()
		switch ev {
		case 'k', 'K':
			victim := m.waitLeader(failover)
			m.kill(victim)
			faults = append(faults, fault{kind: "kill", module: m.name, victim: victim.ID, at: leader.MonotonicNow()})
			m.start(victim.slot) // a new pod, a new identity
			m.waitLeader(failover, victim)
		case 's', 'S':
			victim := m.waitLeader(failover)
			stopped := leader.MonotonicNow()
			if err := victim.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			m.waitLeader(failover, victim)
			// Paused for longer than the lease, whatever the takeover took:
			// the pause is the fault, not a wait for something.
			time.Sleep(p.lease + 500*time.Millisecond - (leader.MonotonicNow() - stopped))
			if err := victim.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			faults = append(faults, fault{kind: "stop", module: m.name, victim: victim.ID, at: stopped, resume: leader.MonotonicNow()})
		case 'D':
			downFailed = append(downFailed, w.moduleDown(beta, ghost)...)
			faults = append(faults, fault{kind: "down", module: beta.name, at: leader.MonotonicNow()})
		case 'r':
			w.restartAPIServer(failover)
			faults = append(faults, fault{kind: "restart", at: leader.MonotonicNow()})
		}
		l := m.waitLeader(failover)
		t.Logf("event %d (%c) on %s took %s; %s leads", i, ev, m.name, time.Since(evStart).Round(time.Millisecond), l.ID)
		if ev == 'r' {
			waitWorking(beta, time.Now())
		}
		waitWorking(m, time.Now())
	}
	ghost()
	prA.finish(t)
	prB.finish(t)
	eventsEnded := time.Now()

	// Every numbered signal is delivered and deleted; none fails.
	failed := map[string]string{}
	poll(t, 3*time.Minute, func() error {
		list, err := w.listSignals(ctx)
		if err != nil {
			return err
		}
		pending := 0
		for name, s := range list {
			if !numbered(name) && name != "start-ticker" {
				continue
			}
			if s.Status.Phase == v1alpha1.SignalFailed {
				failed[name] = s.Status.LastError
				continue
			}
			pending++
		}
		if pending > 0 {
			return fmt.Errorf("%d signals not delivered yet", pending)
		}
		return nil
	})
	for _, name := range keys(failed) {
		t.Errorf("signal %s failed: %s", name, failed[name])
	}
	for _, msg := range downFailed {
		t.Error(msg)
	}
	t.Logf("signals drained %s after the last event", time.Since(eventsEnded).Round(time.Millisecond))
	var reports []*signalReport
	for _, c := range []struct {
		f    *fleet
		pr   *producer
		node string
	}{{alpha, prA, "a-sink"}, {beta, prB, "b-sink"}} {
		rep := &signalReport{}
		for _, ft := range faults {
			if ft.module == c.f.name {
				switch ft.kind {
				case "kill":
					rep.kills++
				case "stop":
					rep.stops++
				case "down":
					rep.downs++
				}
			}
		}
		for name := range failed {
			if strings.HasPrefix(name, c.pr.prefix+"-") {
				rep.failed++
			}
		}
		w.checkDeliveries(c.f, c.pr, c.node, rep)
		reports = append(reports, rep)
	}

	// A panic in component code, anywhere, takes no replica down, and the
	// other nodes keep working.
	pr := w.injectPanics(alpha, beta)

	// The receiving replicas' heap and goroutines stay flat under messages
	// with deadlines, over the run.
	scr.finish()
	growths := w.checkGrowth(scr, beta)

	// Signals for a node that does not exist fail after the retry budget;
	// the panics' signals end too, one way or the other.
	ghostAttempts := w.checkGhosts(ghosts)

	final := alpha.waitLeader(failover)
	for _, m := range []*fleet{alpha, beta} {
		if gaps := m.history.Gaps(); gaps > 0 {
			t.Errorf("the Lease watch of %s could not resume %d times: its history has gaps", m.name, gaps)
		}
	}
	claims := w.checkJournals(faults)
	writes, refused := w.checkAudit()

	// The ticker still runs, on alpha's last leader.
	stoppedAt := time.Now()
	poll(t, 30*time.Second, func() error {
		for _, l := range final.Lines("debug") {
			if l.Node == "tick-sink" && l.Time.After(stoppedAt) {
				return nil
			}
		}
		return fmt.Errorf("no tick from alpha's last leader %s", final.ID)
	})

	// The proxies failed requests of every kind, TinySignal status writes and
	// deletes among them: otherwise the run did not test what it claims to.
	faultsByKind, faultsOnSignals := map[faultproxy.Kind]int{}, map[string]int{}
	for f, n := range w.tally.Faults() {
		faultsByKind[f.Kind] += n
		if f.Target == "tinysignals/status" || f.Target == "tinysignals" && f.Verb == "delete" {
			faultsOnSignals[f.Verb+" "+f.Target] += n
		}
	}
	if p.faultRate > 0 {
		for _, k := range faultproxy.Kinds {
			if faultsByKind[k] == 0 {
				t.Errorf("the proxies injected no %s fault", k)
			}
		}
		for _, key := range []string{"update tinysignals/status", "delete tinysignals"} {
			if faultsOnSignals[key] == 0 {
				t.Errorf("the proxies failed no %s: the run did not test it", key)
			}
		}
	}

	// The report.
	for _, r := range reports {
		t.Logf("module %s: %d signals sent, %d delivered, %d failed, %d lost, %d delivered more than once (%d extra runs; %d without a leader death), "+
			"%d runs with IsLeader false, %d with a wrong idempotency key; %d leader changes (%d kill -9, %d SIGSTOP, %d whole-module down, the rest lost leases)",
			r.module, r.sent, r.delivered, r.failed, r.lost, r.duplicated, r.duplicates, r.unjustified, r.notLeader, r.wrongKey, r.leaderChanges, r.kills, r.stops, r.downs)
	}
	t.Logf("signals for a missing node: %d, attempts before Failed %v", len(ghosts), ghostAttempts)
	t.Logf("API faults injected: %s", w.tally.Summary())
	t.Logf("API faults on TinySignal writes: %v", faultsOnSignals)
	t.Logf("panics: %d injected, %d recovered into status.error and an Event, replicas survived: %v", pr.injected, pr.contained, pr.pidsKept)
	for _, f := range pr.failures {
		t.Logf("  not contained: %s", f)
	}
	for _, g := range growths {
		t.Logf("receiver %s", g)
	}
	for _, m := range []*fleet{alpha, beta} {
		m.mu.Lock()
		if len(m.restarts) > 0 {
			t.Logf("module %s: replicas that ended by themselves and were started again: %v", m.name, m.restarts)
		}
		m.mu.Unlock()
	}
	t.Logf("journal: %d claims, 0 overlaps unless reported above; %d writes to tinymod's kinds by leaders, %d refused by the API server; %d incarnations; %s in all",
		claims, writes, refused, len(alpha.incarnations())+len(beta.incarnations()), time.Since(began).Round(time.Second))

	if path := os.Getenv("TINYMOD_BENCH_ROWS"); path != "" {
		cmd := "go test -run TestChaos ./test/e2e/chaos/"
		if p.name == "long" {
			cmd = "make chaos"
		}
		var rows []benchutil.Row
		for _, r := range reports {
			rows = append(rows,
				benchutil.Row{Figure: fmt.Sprintf("chaos (%s), module %s: signals lost, of %d", p.name, r.module, r.sent), Value: fmt.Sprint(r.lost), Goal: "0", Command: cmd},
				benchutil.Row{Figure: fmt.Sprintf("chaos (%s), module %s: duplicate deliveries", p.name, r.module), Value: fmt.Sprint(r.duplicates), Anchor: "leader changes", AnchorValue: fmt.Sprint(r.leaderChanges),
					Ratio: fmt.Sprintf("%.2f", float64(r.duplicates)/float64(max(r.leaderChanges, 1))), Goal: "≤ leader changes, each after one", Command: cmd})
		}
		rows = append(rows, benchutil.Row{Figure: fmt.Sprintf("chaos (%s): panics recovered into status and an Event", p.name), Value: fmt.Sprint(pr.contained),
			Anchor: "panics injected", AnchorValue: fmt.Sprint(pr.injected), Goal: "all", Command: cmd})
		if err := benchutil.WriteRows(path, rows); err != nil {
			t.Error(err)
		}
	}
}

// keepLogs copies the replicas' logs and journals of a failed run to a
// folder that outlives the test, and says where.
func keepLogs(t *testing.T, dir string) {
	if !t.Failed() {
		return
	}
	keep, err := os.MkdirTemp("", "tinymod-chaos-logs-")
	if err != nil {
		return
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		if base := filepath.Base(f); strings.HasSuffix(base, ".log") || strings.HasPrefix(base, "journal-") {
			if data, err := os.ReadFile(f); err == nil {
				_ = os.WriteFile(filepath.Join(keep, base), data, 0o644)
			}
		}
	}
	t.Logf("the replicas' logs and journals are kept in %s", keep)
}

// numbered reports whether a signal is one of the producers'.
func numbered(name string) bool {
	return strings.HasPrefix(name, "a-") || strings.HasPrefix(name, "b-")
}

// moduleDown kills every replica of m, keeps it down for downFor while its
// signals keep arriving (and one for a missing node), and starts it again.
// It returns the signals of m that failed meanwhile: they must wait.
func (w *world) moduleDown(m *fleet, ghost func()) []string {
	t := w.t
	m.mu.Lock()
	m.down = true
	m.mu.Unlock()
	down := time.Now()
	for _, p := range m.replicas() {
		m.kill(p)
	}
	ghost()
	failed := map[string]string{}
	for time.Since(down) < w.p.downFor {
		list, err := w.listSignals(w.ctx)
		if err == nil {
			for name, s := range list {
				if strings.HasPrefix(name, "b-") && s.Status.Phase == v1alpha1.SignalFailed && failed[name] == "" {
					failed[name] = fmt.Sprintf("signal %s for module %s failed while the module was down (%s after it went down): %s",
						name, m.name, time.Since(down).Round(time.Millisecond), s.Status.LastError)
				}
			}
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-w.ctx.Done():
			t.Fatal("the test ran out of time while a module was down")
		}
	}
	pending := 0
	if list, err := w.listSignals(w.ctx); err == nil {
		for name, s := range list {
			if strings.HasPrefix(name, "b-") && s.Status.Phase != v1alpha1.SignalFailed {
				pending++
			}
		}
	}
	t.Logf("module %s down for %s; %d of its signals waiting, %d failed", m.name, time.Since(down).Round(time.Millisecond), pending, len(failed))
	m.mu.Lock()
	m.down = false
	m.mu.Unlock()
	for i := range m.live {
		m.start(i)
	}
	out := make([]string, 0, len(failed))
	for _, name := range keys(failed) {
		out = append(out, failed[name])
	}
	return out
}

// restartAPIServer restarts kube-apiserver and checks that every replica
// recovers by itself: the same process renews its membership Lease.
func (w *world) restartAPIServer(failover time.Duration) {
	t := w.t
	before := map[*proc]int{}
	for _, f := range w.mods {
		for _, p := range f.replicas() {
			before[p] = p.Cmd.Process.Pid
		}
	}
	at := time.Now()
	if err := w.env.RestartAPIServer(); err != nil {
		t.Fatal(err)
	}
	poll(t, failover, func() error {
		for p, pid := range before {
			if !p.Alive() || p.Cmd.Process.Pid != pid {
				return fmt.Errorf("replica %s did not survive the API-server restart: %v", p.ID, p.Err)
			}
			l, err := w.cs.CoordinationV1().Leases(w.ns).Get(w.ctx, leader.MemberLeaseName(p.module, p.ID), metav1.GetOptions{})
			if err != nil {
				return err
			}
			if l.Spec.RenewTime == nil || !l.Spec.RenewTime.After(at) {
				return fmt.Errorf("replica %s has not renewed its membership since the restart", p.ID)
			}
		}
		return nil
	})
	t.Logf("API server restarted; every replica renewed its membership within %s", time.Since(at).Round(time.Millisecond))
}

// checkGrowth bounds the growth of the heap and goroutines of m's replicas
// over their lives, loosely: a leak per message shows, noise does not.
func (w *world) checkGrowth(s *scraper, m *fleet) []growth {
	t := w.t
	gs := s.growths(m, 10*time.Second, 8*time.Second)
	if len(gs) == 0 {
		t.Errorf("no replica of %s lived long enough to measure its heap and goroutines", m.name)
	}
	for _, g := range gs {
		if g.heapEnd > 1.5*g.heapStart+8<<20 {
			t.Errorf("replica %s's heap grew from %.1f to %.1f MiB over %s (%0.f messages handled)", g.p.ID, g.heapStart/(1<<20), g.heapEnd/(1<<20), g.span.Round(time.Second), g.handled)
		}
		if g.goroutineEnd > 1.25*g.goroutineStart+30 {
			t.Errorf("replica %s's goroutines grew from %.0f to %.0f over %s (%0.f messages handled)", g.p.ID, g.goroutineStart, g.goroutineEnd, g.span.Round(time.Second), g.handled)
		}
	}
	return gs
}

// checkGhosts checks that signals for a node that does not exist end Failed,
// after more than one attempt, with an error and an Event; and that the
// panics' signals end, delivered or failed. It returns the ghosts' attempts.
func (w *world) checkGhosts(ghosts []string) []int32 {
	t := w.t
	var attempts []int32
	wait(t, 60*time.Second, func() error {
		list, err := w.listSignals(w.ctx)
		if err != nil {
			return err
		}
		attempts = attempts[:0]
		for _, name := range ghosts {
			s, ok := list[name]
			if !ok {
				return fmt.Errorf("signal %s for a node that does not exist is gone: delivered, or deleted without failing", name)
			}
			if s.Status.Phase != v1alpha1.SignalFailed {
				return fmt.Errorf("signal %s for a node that does not exist is %q after %d attempts, not Failed", name, s.Status.Phase, s.Status.Attempts)
			}
			attempts = append(attempts, s.Status.Attempts)
		}
		for name, s := range list {
			if strings.HasPrefix(name, "panic-") && s.Status.Phase != v1alpha1.SignalFailed {
				return fmt.Errorf("signal %s is still %q after %d attempts (%s)", name, s.Status.Phase, s.Status.Attempts, s.Status.LastError)
			}
		}
		return nil
	})
	list, _ := w.listSignals(w.ctx)
	for _, name := range ghosts {
		s := list[name]
		if s.Status.Attempts < 2 || s.Status.LastError == "" {
			t.Errorf("signal %s for a node that does not exist failed after %d attempts, with error %q: not after the retry budget", name, s.Status.Attempts, s.Status.LastError)
		}
	}
	// Each has its Warning Event, written although the API server fails
	// requests (the writer tries again for several seconds).
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		events, err := w.cs.CoreV1().Events(w.ns).List(w.ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, name := range ghosts {
			found := false
			for _, e := range events.Items {
				found = found || e.InvolvedObject.Name == name && e.Type == "Warning" && e.Reason == "DeliveryFailed"
			}
			if !found {
				return fmt.Errorf("no Warning Event for the failed signal %s", name)
			}
		}
		return nil
	})
	return attempts
}

// checkJournals holds every replica's leader journal against its module's
// Lease history, and checks that a resumed ex-leader did no leader-only work
// until it won the lease again. It returns the claims checked.
func (w *world) checkJournals(faults []fault) int {
	t := w.t
	total := 0
	for _, m := range []*fleet{w.mods[alphaName], w.mods[betaName]} {
		var paths []string
		for _, p := range m.incarnations() {
			paths = append(paths, filepath.Join(w.cluster.Dir, "journal-"+p.ID))
		}
		claims, err := leader.ReadClaims(paths...)
		if err != nil {
			t.Fatal(err)
		}
		total += len(claims)
		records := m.history.Records()
		for _, err := range leader.CheckClaims(claims, records) {
			t.Errorf("module %s: %v", m.name, err)
		}
		leaders := map[string]bool{}
		for _, c := range claims {
			leaders[c.Identity] = true
		}
		kills := 0
		for _, f := range faults {
			if f.kind == "kill" && f.module == m.name {
				kills++
			}
		}
		if len(leaders) < kills {
			t.Errorf("module %s: claims by %d identities, fewer than the %d leaders killed: the journal misses work", m.name, len(leaders), kills)
		}
		termBegin := map[string]map[int32]int64{}
		for _, tn := range leader.Tenures(records) {
			if termBegin[tn.Holder] == nil {
				termBegin[tn.Holder] = map[int32]int64{}
			}
			termBegin[tn.Holder][tn.Term] = tn.Begin
		}
		for _, ft := range faults {
			if ft.kind != "stop" || ft.module != m.name {
				continue
			}
			for _, c := range claims {
				// A claim read just before SIGSTOP took effect is the old
				// term's; any claim after SIGCONT must be of a term won since.
				begin, known := termBegin[c.Identity][c.Term] // an unknown term is CheckClaims' to report
				if c.Identity == ft.victim && !c.EndOfTerm && c.Start > int64(ft.resume) && known && begin < int64(ft.resume) {
					t.Errorf("%s, stopped and resumed, claimed %q in term %d at %d, before winning the lease again", c.Identity, c.Action, c.Term, c.Start)
				}
			}
		}
		actions := map[string]int{}
		for _, c := range claims {
			if f := strings.Fields(c.Action); len(f) > 0 {
				actions[f[0]]++
			}
		}
		t.Logf("module %s journal: %d claims by %d identities %v", m.name, len(claims), len(leaders), actions)
	}
	return total
}

// checkAudit reads the audit log once: every write to tinymod's kinds that
// took effect falls within a term of the writer, as its module's Lease
// shows it, and a signal is written (delivered or failed) only by the module
// its node belongs to. It returns the writes and the refused ones.
func (w *world) checkAudit() (writes, refused int) {
	t := w.t
	owner := func(signal string) string {
		switch {
		case strings.HasPrefix(signal, "a-") || signal == "start-ticker":
			return alphaName
		case strings.HasPrefix(signal, "b-"):
			return betaName
		}
		// A node that does not exist: any module's leader. So are the
		// panic rounds' nodes once a round removes them, and a signal for
		// one of them may still be pending then.
		return ""
	}
	byUser := map[string][]controlplanetest.AuditEvent{}
	for _, ev := range w.env.AllWrites(t, w.ns) {
		byUser[ev.User.Username] = append(byUser[ev.User.Username], ev)
	}
	foreign := 0
	for _, m := range w.mods {
		tenures := leader.Tenures(m.history.Records())
		for _, p := range m.incarnations() {
			for _, ev := range byUser[p.ID] {
				if ev.ObjectRef.APIGroup != v1alpha1.GroupVersion.Group || ev.Verb == "create" {
					continue // creates are not leader-only: any replica creates a missing TinyModule
				}
				if ev.ObjectRef.Resource == "tinysignals" && ev.ResponseStatus.Code < 300 {
					if o := owner(ev.ObjectRef.Name); o != "" && o != m.name {
						foreign++
						if foreign <= 10 {
							t.Errorf("%s of module %s wrote %s %s/%s (%s) at %s: a signal for a node of module %s",
								p.ID, m.name, ev.Verb, ev.ObjectRef.Resource, ev.ObjectRef.Name, ev.ObjectRef.Subresource, ev.Received.Format(time.RFC3339Nano), o)
						}
					}
				}
				at := w.mono(ev.Received.Time)
				inTerm := false
				for _, tn := range tenures {
					if tn.Holder == p.ID && at >= tn.Begin-int64(250*time.Millisecond) && (tn.End == 0 || at < tn.End) {
						inTerm = true
					}
				}
				switch {
				case ev.ResponseStatus.Code >= 300:
					refused++
				case !inTerm:
					t.Errorf("%s wrote %s %s/%s (%s) at %s while not leading module %s", p.ID, ev.Verb, ev.ObjectRef.Resource, ev.ObjectRef.Name, ev.ObjectRef.Subresource, ev.Received.Format(time.RFC3339Nano), m.name)
				default:
					writes++
				}
			}
		}
	}
	if foreign > 10 {
		t.Errorf("%d writes in all to signals of another module's node", foreign)
	}
	return writes, refused
}

// createFlow creates both modules' nodes.
func settings(raw string) []v1alpha1.TinyNodePortConfig {
	return []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: &apiextensionsv1.JSON{Raw: []byte(raw)}}}
}

func node(name, module, component string, ports []v1alpha1.TinyNodePortConfig, edges ...v1alpha1.TinyNodeEdge) *v1alpha1.TinyNode {
	return &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.TinyNodeSpec{Module: module, Component: component, Ports: ports, Edges: edges}}
}

// pacerSettings sends rate messages a second from each replica, each with a
// deadline of timeoutMs, every tenth one short enough to expire on its way.
func pacerSettings(rate, inFlight, holdMs int) []v1alpha1.TinyNodePortConfig {
	return settings(fmt.Sprintf(`{"rate": %d, "timeoutMs": 2000, "shortEvery": 10, "inFlight": %d, "holdMs": %d}`, rate, inFlight, holdMs))
}

func createNodes(t *testing.T, ctx context.Context, c client.Client, ns string, nodes ...*v1alpha1.TinyNode) {
	t.Helper()
	for _, n := range nodes {
		n.Namespace = ns
		if err := c.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
}

func createFlow(t *testing.T, ctx context.Context, c client.Client, ns string, p profile) {
	t.Helper()
	createNodes(t, ctx, c, ns,
		node("b-sink", betaName, "probe", nil),
		node("b-hold", betaName, "hold", nil),
		node("tick", alphaName, "ticker", settings(`{"delay": 200, "context": {"tick": true}}`),
			v1alpha1.TinyNodeEdge{ID: "tick-sink", Port: "out", To: "tick-sink.in"}),
		node("tick-sink", alphaName, "debug", nil),
		node("a-sink", alphaName, "probe", nil),
		// Every replica of alpha sends to beta: business traffic, with
		// deadlines, every tenth one short enough to expire on its way.
		node("a-pacer", alphaName, "pacer", pacerSettings(p.pacerRate, 8, 5),
			v1alpha1.TinyNodeEdge{ID: "to-beta", Port: "out", To: "b-hold.in"}),
	)
}

func nodesReady(ctx context.Context, c client.Client, ns string) error {
	var list v1alpha1.TinyNodeList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return err
	}
	var notReady []string
	for _, n := range list.Items {
		if len(n.Status.Conditions) == 0 || n.Status.Conditions[0].Status != metav1.ConditionTrue {
			notReady = append(notReady, fmt.Sprintf("%s %+v", n.Name, n.Status.Conditions))
		}
	}
	sort.Strings(notReady)
	if len(notReady) > 0 {
		return fmt.Errorf("nodes not ready: %v", notReady)
	}
	return nil
}
