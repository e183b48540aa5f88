// Command failover measures leader failover and signal latency on a real local
// control plane and prints a table: tinymod's elector beside client-go's stock
// leaderelection (ReleaseOnCancel: true) at the same durations, and TinySignal
// create-to-Handle latency beside a bare watch of the same creates.
//
//	go run ./test/bench/failover -trials 20 -default-trials 5
//
// A crash is made real for both electors the same way: the leader's TCP
// connection to the API server is cut (a proxy stops forwarding), so it can
// neither renew nor release. A graceful stop cancels the leader's context.
// Each time is measured from the cut or the cancel to the moment the other
// candidate's OnStartedLeading runs.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controlplane"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/test/bench/benchutil"
)

func main() {
	trials := flag.Int("trials", 20, "trials per elector and scenario at the short durations")
	defaultTrials := flag.Int("default-trials", 5, "trials per elector and scenario at the default durations (0 skips them)")
	signals := flag.Int("signals", 200, "signals for the latency measurement")
	flag.StringVar(&rowsFile, "rows", "", "also write the figures as JSON rows to this file (for the benchmark report)")
	flag.Parse()
	if err := run(*trials, *defaultTrials, *signals); err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(1)
	}
}

// rowsFile, if set, receives the figures as report rows.
var rowsFile string

func addRow(r benchutil.Row) {
	if rowsFile == "" {
		return
	}
	r.Command = "go run ./test/bench/failover -trials 20 -default-trials 5"
	if err := benchutil.WriteRows(rowsFile, []benchutil.Row{r}); err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
	}
}

func run(trials, defaultTrials, signals int) error {
	cp, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		return err
	}
	defer cp.Stop()
	ctx := context.Background()
	ctrllog.SetLogger(logr.Discard())
	klog.SetLogger(logr.Discard())
	c, err := client.NewWithWatch(cp.Config, client.Options{Scheme: replica.Scheme()})
	if err != nil {
		return err
	}

	short := leader.Config{LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 500 * time.Millisecond}
	type durations struct {
		name   string
		cfg    leader.Config
		trials int
	}
	configs := []durations{{"2s/1.5s/0.5s", short, trials}}
	if defaultTrials > 0 {
		configs = append(configs, durations{"15s/10s/2s (defaults)", leader.Config{}.WithDefaults(), defaultTrials})
	}

	fmt.Printf("%-22s %-9s %-9s %7s %10s %10s %10s\n", "durations", "scenario", "elector", "trials", "p50", "p99", "max")
	ns := 0
	for _, conf := range configs {
		for _, scenario := range []string{"crash", "graceful"} {
			results := map[string][]time.Duration{}
			for _, kind := range []string{"tinymod", "client-go"} {
				for range conf.trials {
					ns++
					namespace := fmt.Sprintf("bench-%d", ns)
					if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
						return err
					}
					d, err := trial(cp, kind, scenario, namespace, conf.cfg)
					if err != nil {
						return fmt.Errorf("%s %s: %w", kind, scenario, err)
					}
					results[kind] = append(results[kind], d)
				}
			}
			for _, kind := range []string{"tinymod", "client-go"} {
				p50, p99, mx := stats(results[kind])
				fmt.Printf("%-22s %-9s %-9s %7d %10s %10s %10s\n", conf.name, scenario, kind, len(results[kind]), round(p50), round(p99), round(mx))
			}
			t50, t99, _ := stats(results["tinymod"])
			c50, c99, _ := stats(results["client-go"])
			fmt.Printf("%-22s %-9s %-9s %7s %9.2fx %9.2fx\n", conf.name, scenario, "ratio", "", float64(t50)/float64(c50), float64(t99)/float64(c99))
			goal := "≤ 250 ms"
			if scenario == "crash" {
				goal = fmt.Sprintf("≤ %s", conf.cfg.LeaseDuration+250*time.Millisecond)
			}
			addRow(benchutil.Row{Figure: fmt.Sprintf("failover p99, %s, %s (%d trials)", scenario, conf.name, conf.trials),
				Value: round(t99).String(), Anchor: "client-go leaderelection", AnchorValue: round(c99).String(),
				Ratio: benchutil.Ratio(float64(t99) / float64(c99)), Goal: goal})
		}
	}
	return signalLatency(cp, c, signals)
}

func round(d time.Duration) time.Duration { return d.Round(time.Millisecond / 10) }

func stats(ds []time.Duration) (p50, p99, mx time.Duration) {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return at(0.5), at(0.99), s[len(s)-1]
}

// candidate is one elector under test.
type candidate struct {
	proxy   *controlplane.Proxy
	cancel  context.CancelFunc
	done    chan struct{}
	started chan time.Time
}

func newCandidate(cp *controlplane.ControlPlane, kind, ns, id string, cfg leader.Config) (*candidate, error) {
	proxy, pcfg, err := controlplane.NewProxy(cp.Config)
	if err != nil {
		return nil, err
	}
	pcfg = rest.CopyConfig(pcfg)
	pcfg.QPS, pcfg.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(pcfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &candidate{proxy: proxy, cancel: cancel, done: make(chan struct{}), started: make(chan time.Time, 4)}
	onStart := func() { c.started <- time.Now() }
	switch kind {
	case "tinymod":
		e, err := leader.New(leader.Options{Config: cfg, Client: cs, Namespace: ns, Name: "bench", Identity: id,
			OnStartedLeading: func(*leader.Term) { onStart() }})
		if err != nil {
			return nil, err
		}
		go func() { defer close(c.done); _ = e.Run(ctx) }()
	case "client-go":
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: &resourcelock.LeaseLock{
				LeaseMeta:  metav1.ObjectMeta{Namespace: ns, Name: "bench"},
				Client:     cs.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: id},
			},
			LeaseDuration: cfg.LeaseDuration, RenewDeadline: cfg.RenewDeadline, RetryPeriod: cfg.RetryPeriod,
			ReleaseOnCancel: true,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) { onStart() },
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			return nil, err
		}
		go func() { defer close(c.done); le.Run(ctx) }()
	}
	return c, nil
}

func (c *candidate) stop() {
	c.cancel()
	c.proxy.Restore()
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
	}
	c.proxy.Close()
}

// trial runs two candidates, waits for one to lead, then crashes or stops it
// and returns how long the other took to lead.
func trial(cp *controlplane.ControlPlane, kind, scenario, ns string, cfg leader.Config) (time.Duration, error) {
	a, err := newCandidate(cp, kind, ns, "a", cfg)
	if err != nil {
		return 0, err
	}
	defer a.stop()
	if _, err := wait(a.started, 60*time.Second); err != nil {
		return 0, fmt.Errorf("first leader: %w", err)
	}
	b, err := newCandidate(cp, kind, ns, "b", cfg)
	if err != nil {
		return 0, err
	}
	defer b.stop()
	time.Sleep(cfg.RetryPeriod * 2) // b is campaigning and has seen a's lease
	start := time.Now()
	if scenario == "crash" {
		a.proxy.Cut()
	} else {
		a.cancel()
	}
	at, err := wait(b.started, 3*cfg.LeaseDuration+10*time.Second)
	if err != nil {
		return 0, fmt.Errorf("second leader: %w", err)
	}
	return at.Sub(start), nil
}

func wait(ch chan time.Time, limit time.Duration) (time.Time, error) {
	select {
	case t := <-ch:
		return t, nil
	case <-time.After(limit):
		return time.Time{}, fmt.Errorf("no leader within %s", limit)
	}
}

// stamp records when each message ID reached Handle.
type stamp struct {
	mu   sync.Mutex
	seen map[string]chan time.Time
}

func (s *stamp) wait(id string) chan time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.seen[id]
	if !ok {
		ch = make(chan time.Time, 1)
		s.seen[id] = ch
	}
	return ch
}

type stamper struct{ s *stamp }

func (c stamper) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "stamper"} }
func (c stamper) Instance() module.Component    { return c }
func (c stamper) Ports() []module.Port          { return []module.Port{{Name: "in"}} }
func (c stamper) Handle(ctx context.Context, _ module.Handler, port string, _ any) any {
	if port == "in" {
		c.s.wait(module.MessageID(ctx)) <- time.Now()
	}
	return nil
}

// signalLatency measures create → Handle for signals sent one at a time to a
// leading replica, beside create → event of a bare watch on the same creates.
func signalLatency(cp *controlplane.ControlPlane, c client.WithWatch, n int) error {
	ctx := context.Background()
	ns := "bench-signals"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	st := &stamp{seen: map[string]chan time.Time{}}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_ = replica.Run(rctx, replica.Options{
			Module: module.Info{Name: "bench"}, Components: []module.Component{stamper{st}},
			Config: cp.Config, Namespace: ns, Identity: "bench-0",
			Election: leader.Config{LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 500 * time.Millisecond},
		})
	}()
	node := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "target", Namespace: ns},
		Spec: v1alpha1.TinyNodeSpec{Module: "bench", Component: "stamper"}}
	if err := c.Create(ctx, node); err != nil {
		return err
	}
	// Wait until the replica leads and the node runs.
	deadline := time.Now().Add(60 * time.Second)
	for {
		l := &coordinationv1.Lease{}
		n := &v1alpha1.TinyNode{}
		if c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "bench-leader"}, l) == nil &&
			c.Get(ctx, client.ObjectKeyFromObject(node), n) == nil && len(n.Status.Conditions) > 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}

	var watchList v1alpha1.TinySignalList
	w, err := c.Watch(ctx, &watchList, client.InNamespace(ns))
	if err != nil {
		return err
	}
	defer w.Stop()
	events := make(chan string, 16)
	go func() {
		for ev := range w.ResultChan() {
			if ev.Type == watch.Added {
				events <- ev.Object.(*v1alpha1.TinySignal).Name
			}
		}
	}()

	var handled, watched, spaced []time.Duration
	data, _ := json.Marshal("ping")
	// Back to back: each signal is created as soon as the last one's Handle
	// ran, while the leader is still deleting it. Then spaced: a pause
	// before each, as between presses of a button.
	for i := range 2 * n {
		if i >= n {
			time.Sleep(20 * time.Millisecond)
		}
		name := fmt.Sprintf("s-%d", i)
		sig := &v1alpha1.TinySignal{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: v1alpha1.TinySignalSpec{Node: "target", Port: "in", Data: &apiextensionsv1.JSON{Raw: data}}}
		start := time.Now()
		if err := c.Create(ctx, sig); err != nil {
			return err
		}
		select {
		case got := <-events:
			if got == name {
				watched = append(watched, time.Since(start))
			}
		case <-time.After(10 * time.Second):
			return fmt.Errorf("watch missed %s", name)
		}
		at, err := wait(st.wait(string(sig.UID)), 10*time.Second)
		if err != nil {
			return fmt.Errorf("signal %s: %w", name, err)
		}
		if i < n {
			handled = append(handled, at.Sub(start))
		} else {
			spaced = append(spaced, at.Sub(start))
		}
	}
	fmt.Println()
	fmt.Printf("%-34s %7s %10s %10s %10s\n", "signal latency", "signals", "p50", "p99", "max")
	for _, row := range []struct {
		name string
		ds   []time.Duration
	}{{"create → watch event (baseline)", watched}, {"create → Handle, back to back", handled}, {"create → Handle, 20 ms apart", spaced}} {
		p50, p99, mx := stats(row.ds)
		fmt.Printf("%-34s %7d %10s %10s %10s\n", row.name, len(row.ds), round(p50), round(p99), round(mx))
	}
	w50, w99, _ := stats(watched)
	for _, row := range []struct {
		figure string
		ds     []time.Duration
	}{{"signal create → Handle on the leader, 20 ms apart, p50 / p99", spaced}, {"signal create → Handle on the leader, back to back, p50 / p99", handled}} {
		h50, h99, _ := stats(row.ds)
		addRow(benchutil.Row{Figure: row.figure, Value: round(h50).String() + " / " + round(h99).String(),
			Anchor: "bare watch of the same creates", AnchorValue: round(w50).String() + " / " + round(w99).String(),
			Ratio: fmt.Sprintf("%.2f×", float64(h50)/float64(w50)), Goal: "p50 ≤ 1.5× the watch"})
	}
	return nil
}
