// Command ui measures the page of tinymod ui in headless Chromium against a
// real local control plane and real replicas, each figure beside what a user
// would otherwise use:
//
//  1. lease: a change of a module's leader Lease until the page shows the new
//     holder, beside a plain client-go watch of the same Lease in this process;
//
//  2. draw: a fresh tab opened on a flow of 200 TinyNodes until all its boxes
//     are in the DOM (and until ELK has placed them), beside `tinymod graph
//     --flow` end to end and a plain List of the same nodes;
//
//  3. memory: the page's JavaScript heap, after a forced GC, over a stretch of
//     live updates (the demo flow's ticker at 100 ms on the replicas, the
//     200-node flow present), beside the same page and data with the ticker
//     stopped over as long, or beside its own start figure with -idle 0.
//
//     go run ./test/bench/ui                                   # all three, 2 min of live updates
//     go run ./test/bench/ui -only memory -duration 1h -idle 0  # the long memory run alone
//
// Every replica is a process of this program (with "run" as its first
// argument it is the standard module, like tinymod; with "graph" it is
// `tinymod graph`). The page's times are taken in the page, by a
// MutationObserver, as performance.timeOrigin + performance.now() (the
// machine's wall clock, as Go's time.Now), never by polling from Go; Go only
// reads them afterwards. It prints markdown tables, and with -rows appends
// the figures as JSON rows for the benchmark report.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/cli"
	"github.com/tinymod/tinymod/components"
	"github.com/tinymod/tinymod/config/samples"
	"github.com/tinymod/tinymod/internal/controlplane"
	"github.com/tinymod/tinymod/internal/manifest"
	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/internal/ui"
	"github.com/tinymod/tinymod/test/bench/benchutil"
)

const (
	ns         = "uibench"
	moduleName = "tinymod"
	// leaseModule is a module of no replicas whose leader Lease the lease
	// figure writes; its TinyModule makes the page show it.
	leaseModule = "uibench"
	chainFlow   = "chain"
	demoFlow    = "demo"
	command     = "go run ./test/bench/ui"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "run":
			cmd := cli.NewRunCommand("bench", components.Standard())
			cmd.SetArgs(os.Args[2:])
			if err := cmd.Execute(); err != nil {
				os.Exit(1)
			}
			return
		case "graph":
			cmd := cli.NewGraphCommand()
			cmd.SetArgs(os.Args[2:])
			if err := cmd.Execute(); err != nil {
				os.Exit(1)
			}
			return
		}
	}
	var o options
	flag.StringVar(&o.only, "only", "lease,draw,memory", "which figures to measure, comma-separated: lease, draw, memory")
	flag.IntVar(&o.leases, "leases", 30, "leader Lease changes to time")
	flag.DurationVar(&o.leaseEvery, "lease-every", 1500*time.Millisecond, "time between two Lease changes")
	flag.IntVar(&o.nodes, "nodes", 200, "TinyNodes of the big flow")
	flag.IntVar(&o.chains, "chains", 20, "chains the big flow is made of (a stopped ticker, delays, a debug sink each)")
	flag.IntVar(&o.draws, "draws", 5, "fresh tabs opened on the big flow")
	flag.IntVar(&o.replicas, "replicas", 3, "replicas of the standard module (for draw and memory)")
	flag.DurationVar(&o.duration, "duration", 2*time.Minute, "how long the page is kept open under live updates")
	flag.DurationVar(&o.idle, "idle", -1, "how long the baseline page is kept open with the ticker stopped before that (negative: as long as -duration; 0: no idle stretch, the live stretch's start is the baseline)")
	flag.DurationVar(&o.sample, "sample", time.Minute, "time between two heap samples")
	flag.DurationVar(&o.tick, "tick", 100*time.Millisecond, "the demo ticker's delay during the live stretch")
	flag.StringVar(&o.memoryFlow, "memory-flow", demoFlow, "the flow the page shows during the memory figure")
	flag.StringVar(&o.rows, "rows", "", "also write the figures as JSON rows to this file (for the benchmark report)")
	flag.Parse()
	if o.idle < 0 {
		o.idle = o.duration
	}
	ctrllog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "ui:", err)
		os.Exit(1)
	}
}

type options struct {
	only                         string
	leases, nodes, chains, draws int
	replicas                     int
	leaseEvery, duration, idle   time.Duration
	sample, tick                 time.Duration
	memoryFlow, rows             string
}

func (o options) wants(figure string) bool {
	return slices.Contains(strings.Split(o.only, ","), figure)
}

type proc struct {
	id, metrics string
	cmd         *exec.Cmd
	alive       atomic.Bool
	exited      chan struct{}
}

// bench is what the figures share.
type bench struct {
	o          options
	dir        string
	c          client.Client
	cfg        *rest.Config
	kubeconfig string
	page       string // the page's URL
	browser    context.Context
	procs      []*proc
	rows       []benchutil.Row
}

func run(ctx context.Context, o options) error {
	for _, f := range strings.Split(o.only, ",") {
		if f != "lease" && f != "draw" && f != "memory" {
			return fmt.Errorf("-only: no figure %q", f)
		}
	}
	dir, err := os.MkdirTemp("", "tinymod-uibench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cp, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		return err
	}
	defer cp.Stop()
	admin := rest.CopyConfig(cp.Config)
	admin.QPS, admin.Burst = 200, 400
	c, err := client.New(admin, client.Options{Scheme: replica.Scheme()})
	if err != nil {
		return err
	}
	b := &bench{o: o, dir: dir, c: c, cfg: admin, kubeconfig: filepath.Join(dir, "kubeconfig")}
	if err := os.WriteFile(b.kubeconfig, cp.Kubeconfig, 0o600); err != nil {
		return err
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	defer b.stopReplicas()

	fmt.Printf("ui: %s\n\n", machine())
	if o.wants("draw") || o.wants("memory") {
		if err := b.setUp(ctx); err != nil {
			return err
		}
	}

	s, err := ui.New(ui.Options{Config: cp.Config, Namespace: ns, Listen: "127.0.0.1:0", Replicas: b.known})
	if err != nil {
		return err
	}
	sctx, stopServer := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- s.Run(sctx) }()
	defer func() { stopServer(); <-served }()
	b.page = s.URL()

	bctx, closeBrowser, err := browser(ctx, dir)
	if err != nil {
		return err
	}
	defer closeBrowser()
	b.browser = bctx

	var errs []error
	if o.wants("lease") {
		errs = append(errs, wrap("lease", b.leaseFigure(ctx)))
	}
	if o.wants("draw") {
		errs = append(errs, wrap("draw", b.drawFigure(ctx)))
	}
	if o.wants("memory") {
		errs = append(errs, wrap("memory", b.memoryFigure(ctx)))
	}
	b.summary()
	if o.rows != "" {
		for i := range b.rows {
			b.rows[i].Command = command + " -only " + o.only
		}
		errs = append(errs, benchutil.WriteRows(o.rows, b.rows))
	}
	return errors.Join(errs...)
}

func wrap(figure string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", figure, err)
}

// machine says what the figures were taken on.
func machine() string {
	load, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(load))
	if len(f) > 3 {
		f = f[:3]
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s, %d CPUs, load average %s at the start, %s", host, runtime.NumCPU(), strings.Join(f, " "), time.Now().Format(time.RFC3339))
}

// setUp starts the replicas, applies the demo flow (its ticker stopped, its
// delay set to -tick) and the big flow, and waits until every node is Ready.
func (b *bench) setUp(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for i := range b.o.replicas {
		p := &proc{id: fmt.Sprintf("r-%d", i), metrics: benchutil.FreeAddr(), exited: make(chan struct{})}
		log, err := os.Create(filepath.Join(b.dir, p.id+".log"))
		if err != nil {
			return err
		}
		p.cmd = exec.Command(self, "run", "--name", moduleName, "--namespace", ns, "--kubeconfig", b.kubeconfig, "--identity", p.id,
			"--grpc-listen", "127.0.0.1:0", "--metrics-bind-address", p.metrics, "--health-probe-bind-address", "0", "--pprof-bind-address", "0")
		p.cmd.Stdout, p.cmd.Stderr = log, log
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := p.cmd.Start(); err != nil {
			return err
		}
		p.alive.Store(true)
		go func() { _ = p.cmd.Wait(); p.alive.Store(false); log.Close(); close(p.exited) }()
		b.procs = append(b.procs, p)
	}
	if _, err := manifest.Apply(ctx, b.c, ns, samples.DemoFlow); err != nil {
		return err
	}
	if err := b.setTickerDelay(ctx, int(b.o.tick/time.Millisecond)); err != nil {
		return err
	}
	if err := b.createChain(ctx); err != nil {
		return err
	}
	start := time.Now()
	err = benchutil.Poll(ctx, 5*time.Minute, 250*time.Millisecond, func() error {
		var list v1alpha1.TinyNodeList
		if err := b.c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		ready := 0
		for _, n := range list.Items {
			if meta.IsStatusConditionTrue(n.Status.Conditions, "Ready") {
				ready++
			}
		}
		if ready < len(list.Items) {
			return fmt.Errorf("%d of %d nodes Ready", ready, len(list.Items))
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("set-up: %d replicas of %s; the demo flow (ticker stopped, delay %s) and %q (%d nodes in %d chains) all Ready %s after the creates\n\n",
		b.o.replicas, moduleName, b.o.tick, chainFlow, b.o.nodes, b.o.chains, time.Since(start).Round(time.Millisecond))
	return nil
}

func (b *bench) known() []ui.Replica {
	var out []ui.Replica
	for _, p := range b.procs {
		out = append(out, ui.Replica{Module: moduleName, Identity: p.id, MetricsAddr: p.metrics, Alive: p.alive.Load()})
	}
	return out
}

func (b *bench) stopReplicas() {
	for _, p := range b.procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range b.procs {
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
}

// createChain creates the big flow: chains of a stopped ticker, delays and a
// debug sink, wired out → in.
func (b *bench) createChain(ctx context.Context) error {
	if err := b.c.Create(ctx, &v1alpha1.TinyFlow{ObjectMeta: metav1.ObjectMeta{Name: chainFlow, Namespace: ns},
		Spec: v1alpha1.TinyFlowSpec{Description: fmt.Sprintf("%d nodes in %d chains, for the page's benchmark", b.o.nodes, b.o.chains)}}); err != nil {
		return err
	}
	chains := max(1, min(b.o.chains, b.o.nodes))
	var nodes []*v1alpha1.TinyNode
	for ch := range chains {
		length := b.o.nodes / chains
		if ch < b.o.nodes%chains {
			length++
		}
		for j := range length {
			name := fmt.Sprintf("c%02d-%03d", ch, j)
			n := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{v1alpha1.FlowNameLabel: chainFlow}},
				Spec: v1alpha1.TinyNodeSpec{Module: moduleName}}
			switch {
			case j == length-1:
				n.Spec.Component = "debug"
			case j == 0:
				n.Spec.Component = "ticker"
				n.Spec.Ports = []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: raw(`{"delay":1000,"context":{"chain":%d}}`, ch)}}
			default:
				n.Spec.Component = "delay"
				n.Spec.Ports = []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: raw(`{"duration":"10ms"}`)}}
			}
			if j < length-1 {
				n.Spec.Edges = []v1alpha1.TinyNodeEdge{{ID: name + "-out", Port: "out", To: fmt.Sprintf("c%02d-%03d.in", ch, j+1)}}
			}
			nodes = append(nodes, n)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(nodes))
	work := make(chan *v1alpha1.TinyNode)
	for range 8 {
		wg.Go(func() {
			for n := range work {
				if err := b.c.Create(ctx, n); err != nil {
					errs <- err
				}
			}
		})
	}
	for _, n := range nodes {
		work <- n
	}
	close(work)
	wg.Wait()
	close(errs)
	return <-errs
}

func raw(format string, args ...any) *apiextensionsv1.JSON {
	return &apiextensionsv1.JSON{Raw: fmt.Appendf(nil, format, args...)}
}

// setTickerDelay sets the demo ticker's settings delay.
func (b *bench) setTickerDelay(ctx context.Context, ms int) error {
	n := &v1alpha1.TinyNode{}
	if err := b.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ticker-1"}, n); err != nil {
		return err
	}
	for i, p := range n.Spec.Ports {
		if p.Port == v1alpha1.SettingsPort && p.From == "" {
			n.Spec.Ports[i].Configuration = raw(`{"delay":%d,"context":{"level":"low","text":"tick"}}`, ms)
		}
	}
	return b.c.Update(ctx, n)
}

// press sends a control message to a node, as `tinymod signal` does.
func (b *bench) press(ctx context.Context, node, data string) error {
	return b.c.Create(ctx, &v1alpha1.TinySignal{ObjectMeta: metav1.ObjectMeta{GenerateName: node + "-", Namespace: ns},
		Spec: v1alpha1.TinySignalSpec{Node: node, Port: v1alpha1.ControlPort, Data: &apiextensionsv1.JSON{Raw: []byte(data)}}})
}

// ---- 1. lease

func (b *bench) leaseFigure(ctx context.Context) error {
	if err := b.c.Create(ctx, &v1alpha1.TinyModule{ObjectMeta: metav1.ObjectMeta{Name: leaseModule, Namespace: ns}}); err != nil {
		return err
	}
	holder := func(i int) string { return fmt.Sprintf("holder-%03d", i) }
	now := metav1.NewMicroTime(time.Now())
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: replica.LeaseName(leaseModule), Namespace: ns},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr(holder(0)), LeaseDurationSeconds: ptr(int32(3600)), AcquireTime: &now, RenewTime: &now}}
	if err := b.c.Create(ctx, lease); err != nil {
		return err
	}

	// The anchor: a plain watch of the same Lease, in this process.
	var mu sync.Mutex
	watched := map[string]time.Time{}
	w, err := b.watchLease(ctx, lease, func(h string, at time.Time) {
		mu.Lock()
		if _, ok := watched[h]; !ok {
			watched[h] = at
		}
		mu.Unlock()
	})
	if err != nil {
		return err
	}
	defer w()

	tab, closeTab, err := chromedpTab(b.browser)
	if err != nil {
		return err
	}
	defer closeTab()
	if err := navigate(tab, b.page); err != nil {
		return err
	}
	sel := fmt.Sprintf(`[data-testid="leader-%s"]`, leaseModule)
	if err := waitJS(ctx, tab, 30*time.Second, fmt.Sprintf(`document.querySelector(%q)?.textContent === %q`, sel, holder(0))); err != nil {
		return fmt.Errorf("the page does not show %s: %w", holder(0), err)
	}
	if err := evalVoid(tab, leaseObserver(sel)); err != nil {
		return err
	}
	skew, within, err := clockSkew(tab)
	if err != nil {
		return err
	}

	sent, returned := map[string]time.Time{}, map[string]time.Time{}
	var writes []time.Duration
	start := time.Now()
	for i := 1; i <= b.o.leases; i++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(start.Add(time.Duration(i) * b.o.leaseEvery))):
		}
		h := holder(i)
		now := metav1.NewMicroTime(time.Now())
		lease.Spec.HolderIdentity, lease.Spec.AcquireTime, lease.Spec.RenewTime = ptr(h), &now, &now
		before := time.Now()
		if err := b.c.Update(ctx, lease); err != nil {
			return err
		}
		sent[h], returned[h] = before, time.Now()
		writes = append(writes, returned[h].Sub(before))
	}
	last := holder(b.o.leases)
	if err := waitJS(ctx, tab, 30*time.Second, fmt.Sprintf(`window.__uibench.leases.some(([h]) => h === %q)`, last)); err != nil {
		return fmt.Errorf("the page does not show %s: %w", last, err)
	}
	seen, err := evalJS[[][2]any](tab, `window.__uibench.leases`)
	if err != nil {
		return err
	}
	pageAt := map[string]float64{}
	for _, s := range seen {
		h, _ := s[0].(string)
		t, _ := s[1].(float64)
		if _, ok := pageAt[h]; !ok {
			pageAt[h] = t
		}
	}
	_ = benchutil.Poll(ctx, 10*time.Second, 50*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := watched[last]; !ok {
			return errors.New("not yet")
		}
		return nil
	})

	// Each path's times from the write's return (the figure asked for) and
	// from its start (where the anchor's are all positive, so ratios mean
	// something).
	var page, watch, pageSent, watchSent []float64
	missed := 0
	mu.Lock()
	for i := 1; i <= b.o.leases; i++ {
		h := holder(i)
		r, s := ms(returned[h]), ms(sent[h])
		if t, ok := pageAt[h]; ok {
			page, pageSent = append(page, t-r), append(pageSent, t-s)
		} else {
			missed++ // replaced before the page showed it
		}
		if t, ok := watched[h]; ok {
			watch, watchSent = append(watch, ms(t)-r), append(watchSent, ms(t)-s)
		}
	}
	mu.Unlock()
	if len(page) == 0 || len(watch) == 0 {
		return fmt.Errorf("no change seen: page %d, watch %d", len(page), len(watch))
	}
	fmt.Printf("## 1. Lease change → page (%d changes of %s every %s; module %s has no replicas; %d replicas of %s running, their tickers stopped)\n\n",
		b.o.leases, lease.Name, b.o.leaseEvery, leaseModule, len(b.procs), moduleName)
	fmt.Printf("| path | seen | from | p50 | p99 | max |\n|---|---:|---|---:|---:|---:|\n")
	row := func(name string, xs []float64, from string) {
		fmt.Printf("| %s | %d/%d | %s | %s | %s | %s |\n", name, len(xs), b.o.leases, from, fms(pct(xs, 50)), fms(pct(xs, 99)), fms(slices.Max(xs)))
	}
	pageName := fmt.Sprintf("page: `%s` text (MutationObserver in the page)", sel)
	watchName := "anchor: client-go Watch of the Lease, this process"
	row(pageName, page, "the write's return")
	row(watchName, watch, "the write's return")
	row(pageName, pageSent, "the write's start")
	row(watchName, watchSent, "the write's start")
	fmt.Printf("| page ÷ anchor | | the write's start | %s | %s | %s |\n\n",
		ratio(pct(pageSent, 50), pct(watchSent, 50)), ratio(pct(pageSent, 99), pct(watchSent, 99)), ratio(slices.Max(pageSent), slices.Max(watchSent)))
	wd := durMs(writes)
	fmt.Printf("The Update calls took p50 %s, max %s. The page's clock less Go's: %+.2f ms (±%.2f ms, half the evaluation's round trip). "+
		"The watch event arrives about when the Update's response does (a negative time: before it was read), so the ratio is taken from the write's start.\n\n",
		fms(pct(wd, 50)), fms(slices.Max(wd)), skew, within)
	if missed > 0 {
		fmt.Printf("The page never showed %d holders (a later change replaced them first).\n\n", missed)
	}
	b.rows = append(b.rows, benchutil.Row{
		Figure: "ui: Lease change (write returned) → page shows the new leader, p50 / p99", Value: fms(pct(page, 50)) + " / " + fms(pct(page, 99)),
		Anchor: "client-go Watch of the Lease, same origin", AnchorValue: fms(pct(watch, 50)) + " / " + fms(pct(watch, 99))},
		benchutil.Row{
			Figure: "ui: Lease change (write started) → page shows the new leader, p50 / p99", Value: fms(pct(pageSent, 50)) + " / " + fms(pct(pageSent, 99)),
			Anchor: "client-go Watch of the Lease, same origin", AnchorValue: fms(pct(watchSent, 50)) + " / " + fms(pct(watchSent, 99)),
			Ratio: ratio(pct(pageSent, 50), pct(watchSent, 50))})
	return nil
}

func ptr[T any](v T) *T { return &v }

// ms is t as milliseconds since the epoch, as the page's clock reads.
func ms(t time.Time) float64 { return float64(t.UnixNano()) / 1e6 }

func durMs(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}

// leaseObserver records, in the page, each new text of sel with the time.
func leaseObserver(sel string) string {
	return fmt.Sprintf(`(() => {
  const sel = %q;
  const r = (window.__uibench ??= {});
  r.leases = [];
  let last = document.querySelector(sel)?.textContent ?? '';
  new MutationObserver(() => {
    const t = document.querySelector(sel)?.textContent ?? '';
    if (t !== last) {
      last = t;
      r.leases.push([t, performance.timeOrigin + performance.now()]);
    }
  }).observe(document.body, { subtree: true, childList: true, characterData: true });
})()`, sel)
}

// clockSkew is the page's clock less Go's, in ms, and how sure that is.
func clockSkew(tab context.Context) (skew, within float64, err error) {
	best := math.Inf(1)
	for range 5 {
		t0 := time.Now()
		v, err := evalJS[float64](tab, `performance.timeOrigin + performance.now()`)
		t1 := time.Now()
		if err != nil {
			return 0, 0, err
		}
		if half := ms(t1) - ms(t0); half/2 < best {
			best = half / 2
			skew = v - (ms(t0)+ms(t1))/2
		}
	}
	return skew, best, nil
}

// ---- 2. draw

// drawObserver, installed before the page's own scripts, notes when all n
// boxes are in the DOM and when none is left unplaced (ELK has laid them out:
// an unplaced box is transparent), as performance.now(): ms from navigation
// start.
func drawObserver(n int) string {
	return fmt.Sprintf(`(() => {
  const want = %d;
  const boxes = '[data-testid^="node-"]:not([data-testid^="node-status-"]):not([data-testid^="node-rate-"]):not([data-testid^="node-module-"])';
  const r = (window.__uibench = { inDom: null, placed: null, painted: null });
  const obs = new MutationObserver(() => {
    if (r.inDom === null && document.querySelectorAll(boxes).length >= want) r.inDom = performance.now();
    if (r.inDom !== null && r.placed === null &&
        document.querySelectorAll('.react-flow__node').length >= want && !document.querySelector('.react-flow__node.unplaced')) {
      r.placed = performance.now();
      obs.disconnect();
      requestAnimationFrame(() => { r.painted = performance.now(); });
    }
  });
  obs.observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ['class'] });
})()`, n)
}

func (b *bench) drawFigure(ctx context.Context) error {
	type draw struct{ InDom, Placed, Painted float64 }
	var draws []draw
	for i := range b.o.draws {
		tab, closeTab, err := chromedpTab(b.browser)
		if err != nil {
			return err
		}
		d, err := func() (draw, error) {
			defer closeTab()
			if err := addScript(tab, drawObserver(b.o.nodes)); err != nil {
				return draw{}, err
			}
			if err := navigate(tab, b.page+"#flow="+chainFlow); err != nil {
				return draw{}, err
			}
			if err := waitJS(ctx, tab, 2*time.Minute, `window.__uibench?.painted != null`); err != nil {
				n, _ := evalJS[int](tab, `document.querySelectorAll('.react-flow__node').length`)
				return draw{}, fmt.Errorf("draw %d: %d boxes: %w", i+1, n, err)
			}
			return evalJS[draw](tab, `({InDom: window.__uibench.inDom, Placed: window.__uibench.placed, Painted: window.__uibench.painted})`)
		}()
		if err != nil {
			return err
		}
		draws = append(draws, d)
	}

	// The anchors: `tinymod graph --flow` as a process, and a plain List.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var cliTimes, listTimes []float64
	for range b.o.draws {
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, self, "graph", "--flow", chainFlow, "--kubeconfig", b.kubeconfig, "-n", ns)
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("graph: %w: %s", err, out.String())
		}
		cliTimes = append(cliTimes, float64(time.Since(start))/float64(time.Millisecond))
		if got := strings.Count(out.String(), "[label="); got < b.o.nodes {
			return fmt.Errorf("graph printed %d labels, want at least %d", got, b.o.nodes)
		}
		var list v1alpha1.TinyNodeList
		start = time.Now()
		if err := b.c.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{v1alpha1.FlowNameLabel: chainFlow}); err != nil {
			return err
		}
		listTimes = append(listTimes, float64(time.Since(start))/float64(time.Millisecond))
		if len(list.Items) != b.o.nodes {
			return fmt.Errorf("listed %d nodes, want %d", len(list.Items), b.o.nodes)
		}
	}

	col := func(f func(draw) float64) []float64 {
		var out []float64
		for _, d := range draws {
			out = append(out, f(d))
		}
		return out
	}
	inDom, placed, painted := col(func(d draw) float64 { return d.InDom }), col(func(d draw) float64 { return d.Placed }), col(func(d draw) float64 { return d.Painted })
	fmt.Printf("## 2. Time to first draw of a %d-node flow (%d chains; %d replicas running, every node Ready, tickers stopped)\n\n", b.o.nodes, b.o.chains, b.o.replicas)
	fmt.Printf("A fresh tab each time, opened on `#flow=%s`; times from navigation start, in the page. The first tab loads the bundle cold; the others from the browser's cache.\n\n", chainFlow)
	fmt.Printf("| measure | median | each |\n|---|---:|---|\n")
	fmt.Printf("| page: all %d boxes in the DOM | %s | %s |\n", b.o.nodes, fms(pct(inDom, 50)), list(inDom))
	fmt.Printf("| page: all %d laid out by ELK (none transparent) | %s | %s |\n", b.o.nodes, fms(pct(placed, 50)), list(placed))
	fmt.Printf("| page: the frame after that | %s | %s |\n", fms(pct(painted, 50)), list(painted))
	fmt.Printf("| anchor: `tinymod graph --flow %s` (process start to exit) | %s | %s |\n", chainFlow, fms(pct(cliTimes, 50)), list(cliTimes))
	fmt.Printf("| anchor: List of the %d TinyNodes (warm client) | %s | %s |\n\n", b.o.nodes, fms(pct(listTimes, 50)), list(listTimes))
	fmt.Printf("In the DOM ÷ graph CLI: %s; laid out ÷ graph CLI: %s; in the DOM ÷ List: %s.\n\n",
		ratio(pct(inDom, 50), pct(cliTimes, 50)), ratio(pct(placed, 50), pct(cliTimes, 50)), ratio(pct(inDom, 50), pct(listTimes, 50)))
	b.rows = append(b.rows,
		benchutil.Row{Figure: fmt.Sprintf("ui: fresh tab → all %d boxes in the DOM, median of %d", b.o.nodes, b.o.draws), Value: fms(pct(inDom, 50)),
			Anchor: "tinymod graph --flow, end to end", AnchorValue: fms(pct(cliTimes, 50)), Ratio: ratio(pct(inDom, 50), pct(cliTimes, 50))},
		benchutil.Row{Figure: fmt.Sprintf("ui: fresh tab → all %d boxes laid out, median of %d", b.o.nodes, b.o.draws), Value: fms(pct(placed, 50)),
			Anchor: "List of the TinyNodes", AnchorValue: fms(pct(listTimes, 50)), Ratio: ratio(pct(placed, 50), pct(listTimes, 50))})
	return nil
}

func list(xs []float64) string {
	var out []string
	for _, x := range xs {
		out = append(out, fmt.Sprintf("%.0f", x))
	}
	return strings.Join(out, ", ") + " ms"
}

// ---- 3. memory

// eventCounter, installed before the page's scripts, counts the events the
// page's stream delivers.
const eventCounter = `(() => {
  const ES = window.EventSource;
  const r = (window.__uibenchEvents = { n: 0 });
  window.EventSource = class extends ES {
    constructor(...args) {
      super(...args);
      for (const name of ['snapshot', 'node', 'module', 'flow', 'signal', 'leadership', 'rates', 'debug']) this.addEventListener(name, () => { r.n++; });
    }
  };
})()`

type heapSample struct {
	at        time.Duration
	used      float64 // MiB of JS heap in use after a GC
	domNodes  int64
	listeners int64
	events    int
}

type stretch struct {
	name    string
	samples []heapSample
	rate    string // what a node of the demo flow showed at the end
}

func (s stretch) first() heapSample { return s.samples[0] }
func (s stretch) last() heapSample  { return s.samples[len(s.samples)-1] }
func (s stretch) max() float64 {
	m := 0.0
	for _, x := range s.samples {
		m = math.Max(m, x.used)
	}
	return m
}

// slope is the least-squares growth of the heap, MiB a minute.
func (s stretch) slope() float64 {
	n := float64(len(s.samples))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for _, x := range s.samples {
		t := x.at.Minutes()
		sx, sy, sxx, sxy = sx+t, sy+x.used, sxx+t*t, sxy+t*x.used
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

func (s stretch) eventsPerSecond() float64 {
	f, l := s.first(), s.last()
	if l.at <= f.at {
		return 0
	}
	return float64(l.events-f.events) / (l.at - f.at).Seconds()
}

// keepOpen opens a fresh tab on the memory flow and samples its heap, after
// a forced GC, at once and every -sample for d.
func (b *bench) keepOpen(ctx context.Context, name string, d time.Duration) (stretch, error) {
	s := stretch{name: name}
	tab, closeTab, err := chromedpTab(b.browser)
	if err != nil {
		return s, err
	}
	defer closeTab()
	if err := addScript(tab, eventCounter); err != nil {
		return s, err
	}
	if err := navigate(tab, b.page+"#flow="+b.o.memoryFlow); err != nil {
		return s, err
	}
	if err := waitJS(ctx, tab, time.Minute, `document.querySelector('.react-flow__node') !== null && !document.querySelector('.react-flow__node.unplaced')`); err != nil {
		return s, fmt.Errorf("flow %s not drawn: %w", b.o.memoryFlow, err)
	}
	start := time.Now()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * b.o.sample)
		if at.After(start.Add(d)) {
			at = start.Add(d)
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(time.Until(at)):
		}
		h, err := heap(tab)
		if err != nil {
			return s, err
		}
		h.at = time.Since(start)
		s.samples = append(s.samples, h)
		fmt.Printf("  %s %6s: %.2f MiB JS heap, %d DOM nodes, %d listeners, %d events\n", name, h.at.Round(time.Second), h.used, h.domNodes, h.listeners, h.events)
		if !at.Before(start.Add(d)) {
			break
		}
	}
	s.rate, _ = evalJS[string](tab, `document.querySelector('[data-testid="node-rate-debug-quiet"]')?.textContent ?? ''`)
	return s, nil
}

func heap(tab context.Context) (heapSample, error) {
	if err := collectGarbage(tab); err != nil {
		return heapSample{}, err
	}
	used, dom, listeners, err := heapUsage(tab)
	if err != nil {
		return heapSample{}, err
	}
	events, err := evalJS[int](tab, `window.__uibenchEvents?.n ?? 0`)
	if err != nil {
		return heapSample{}, err
	}
	return heapSample{used: used / (1 << 20), domNodes: dom, listeners: listeners, events: events}, nil
}

func (b *bench) memoryFigure(ctx context.Context) error {
	fmt.Printf("## 3. Page memory under live updates (the page on %q; %d replicas; %q with %d nodes present)\n\n", b.o.memoryFlow, b.o.replicas, chainFlow, b.o.nodes)
	var idle stretch
	if b.o.idle > 0 {
		fmt.Printf("baseline: a fresh tab, the ticker stopped, for %s\n", b.o.idle)
		var err error
		if idle, err = b.keepOpen(ctx, "idle", b.o.idle); err != nil {
			return err
		}
	}
	if err := b.press(ctx, "ticker-1", `{"start":true}`); err != nil {
		return err
	}
	if err := benchutil.Poll(ctx, time.Minute, 100*time.Millisecond, func() error {
		n := &v1alpha1.TinyNode{}
		if err := b.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ticker-1"}, n); err != nil {
			return err
		}
		if n.Status.Metadata["running"] != "true" {
			return errors.New("ticker-1 has not started")
		}
		return nil
	}); err != nil {
		return err
	}
	fmt.Printf("live: a fresh tab, ticker-1 running every %s, for %s\n", b.o.tick, b.o.duration)
	live, err := b.keepOpen(ctx, "live", b.o.duration)
	if err != nil {
		return err
	}
	_ = b.press(ctx, "ticker-1", `{"stop":true}`)
	fmt.Println()

	fmt.Printf("| stretch | length | events/s | start | end | max | slope | DOM nodes start → end | debug-quiet shown at the end |\n|---|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, s := range []stretch{idle, live} {
		if len(s.samples) == 0 {
			continue
		}
		fmt.Printf("| %s | %s | %.1f | %.2f MiB | %.2f MiB | %.2f MiB | %+.3f MiB/min | %d → %d | %s |\n", s.name, s.last().at.Round(time.Second), s.eventsPerSecond(),
			s.first().used, s.last().used, s.max(), s.slope(), s.first().domNodes, s.last().domNodes, s.rate)
	}
	base, baseName := live.first().used, "the live page's start figure"
	if len(idle.samples) > 0 {
		base, baseName = idle.last().used, fmt.Sprintf("the idle page's end figure (after %s)", idle.last().at.Round(time.Second))
	}
	fmt.Printf("\nLive end ÷ baseline (%s): %s. JS heap of the page's isolate (Runtime.getHeapUsage after HeapProfiler.collectGarbage); the layout and validation workers are isolates of their own and not in it.\n\n",
		baseName, benchutil.Ratio(live.last().used/base))
	b.rows = append(b.rows, benchutil.Row{
		Figure: fmt.Sprintf("ui: page JS heap after %s of live updates (ticker %s), end / max / slope", live.last().at.Round(time.Second), b.o.tick),
		Value:  fmt.Sprintf("%.2f / %.2f MiB / %+.3f MiB/min", live.last().used, live.max(), live.slope()),
		Anchor: baseName, AnchorValue: fmt.Sprintf("%.2f MiB", base), Ratio: benchutil.Ratio(live.last().used / base)})
	return nil
}

// ---- report

func (b *bench) summary() {
	if len(b.rows) == 0 {
		return
	}
	fmt.Printf("## Summary\n\n| figure | value | anchor | anchor value | ratio |\n|---|---:|---|---:|---:|\n")
	for _, r := range b.rows {
		fmt.Printf("| %s | %s | %s | %s | %s |\n", r.Figure, r.Value, r.Anchor, r.AnchorValue, r.Ratio)
	}
	fmt.Println()
}

// pct is the p-th percentile (nearest rank) of xs.
func pct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func fms(v float64) string {
	if math.Abs(v) < 10 {
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func ratio(a, b float64) string {
	if b <= 0 {
		return "–"
	}
	return benchutil.Ratio(a / b)
}
