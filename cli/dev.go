package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	coordinationv1 "k8s.io/api/coordination/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/components/httpserver"
	"github.com/tinymod/tinymod/config/samples"
	"github.com/tinymod/tinymod/internal/controlplane"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/manifest"
	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/internal/ui"
)

// DevOptions are the flags of `dev`.
type DevOptions struct {
	Replicas      int
	KillEvery     time.Duration
	Apply, Dir    string
	Module        string
	Plain         bool
	Refresh       time.Duration
	StopTimeout   time.Duration
	LeaseDuration time.Duration
	// UIListen is where the page of tinymod ui is served; "" or "0": not.
	UIListen string
}

// NewDevCommand returns `dev`: control plane, replicas and a flow, live. Its
// replicas run as the module "tinymod" unless --name says otherwise;
// NewRootCommand's `dev` defaults --name to the binary's name instead.
func NewDevCommand() *cobra.Command { return newDevCommand("tinymod") }

// newDevCommand is `dev` with --name defaulting to name.
func newDevCommand(name string) *cobra.Command {
	o := DevOptions{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local control plane, several replicas and a sample flow, with a live view",
		Long: `Starts a real kube-apiserver and etcd, installs the CRDs, starts replicas of
this module as child processes, applies a flow (the built-in sample unless
--apply names a file) and shows, live, which replica leads, the nodes, message
rates and the last debug messages. Ctrl-C stops everything in order; a second
Ctrl-C forces it. When stdout is not a terminal it prints plain lines instead,
with the replicas' logs prefixed by their identity; on a terminal those go to
DIR/logs/<identity>.log.`,
		Example: `  tinymod dev
  tinymod dev --replicas 5 --kill-leader-every 20s
  tinymod dev --apply my-flow.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Replicas, "replicas", 3, "how many replicas to run")
	f.DurationVar(&o.KillEvery, "kill-leader-every", 0, "kill -9 the leader this long after the last restart, and restart it, to watch failover (0: never)")
	f.StringVar(&o.Apply, "apply", "", "apply this YAML file instead of the sample flow")
	f.StringVar(&o.Dir, "dir", "", "keep etcd data and replica logs here (default: a temporary folder removed on exit)")
	f.StringVar(&o.Module, "name", name, "the module name the replicas run as")
	f.BoolVar(&o.Plain, "plain", false, "plain periodic lines even on a terminal")
	f.DurationVar(&o.Refresh, "refresh", 2*time.Second, "how often the view refreshes")
	f.DurationVar(&o.StopTimeout, "stop-timeout", 20*time.Second, "how long replicas get to stop on Ctrl-C")
	f.DurationVar(&o.LeaseDuration, "lease-duration", 4*time.Second, "the replicas' lease duration (short, so failover shows quickly)")
	f.StringVar(&o.UIListen, "ui-listen", ui.DefaultListen, "serve the page of tinymod ui here, on loopback (0: no page)")
	return cmd
}

type devReplica struct {
	id, metrics string
	cmd         *exec.Cmd
	exited      chan struct{}
}

type devRun struct {
	opts       DevOptions
	self       string
	dir        string
	kubeconfig string
	ns         string
	c          client.Client
	events     io.Writer // plain lines: events, views

	mu       sync.Mutex
	replicas map[string]*devReplica
	debug    []string // last debug lines
	log      []string // last events
	signals  signalHistory
	// tinymod_messages_total per replica and series, when read, and the
	// messages per second per node since the previous reading.
	counts   counterSamples
	countsAt time.Time
	rates    map[string]float64
	// failures per replica and node, as each replica reports them, the
	// error rates per node from them, and each node's newest failure.
	failures    counterSamples
	failuresAt  time.Time
	errorRates  map[string]float64
	lastFailure map[string]nodeHealth
	stopping    bool
	pageURL     string // the page of tinymod ui, if served
}

func runDev(ctx context.Context, o DevOptions, stdout, stderr io.Writer) error {
	if o.Replicas < 1 {
		return fmt.Errorf("--replicas must be at least 1")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "tinymod-dev-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	dir, kubeconfig, err := devPaths(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return err
	}
	flow := sampleFlow(o.Module)
	if o.Apply != "" {
		if flow, err = os.ReadFile(o.Apply); err != nil {
			return err
		}
		if _, err := manifest.Objects(flow); err != nil {
			return fmt.Errorf("--apply %s: %w", o.Apply, err)
		}
	}

	// First Ctrl-C stops in order; a second one forces.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d := &devRun{opts: o, self: self, dir: dir, kubeconfig: kubeconfig, ns: "default", events: stderr, replicas: map[string]*devReplica{}}
	go func() {
		<-sigs
		d.note("stopping (Ctrl-C again to force)")
		cancel()
		<-sigs
		d.note("forcing")
		d.killAll()
		os.Exit(130)
	}()

	fmt.Fprintf(stderr, "starting kube-apiserver and etcd (the first run builds them: make controlplane)...\n")
	cp, err := controlplane.Start(controlplane.Options{DataDir: filepath.Join(dir, "etcd")})
	if err != nil {
		return err
	}
	defer cp.Stop()
	if err := os.WriteFile(d.kubeconfig, cp.Kubeconfig, 0o600); err != nil {
		return err
	}
	wc, err := client.NewWithWatch(cp.Config, client.Options{Scheme: replica.Scheme()})
	if err != nil {
		return err
	}
	d.c = wc
	fmt.Fprintf(stdout, "export KUBECONFIG=%s\n", d.kubeconfig)
	go d.watchSignals(ctx, wc)
	if o.UIListen != "" && o.UIListen != "0" {
		opts := ui.Options{Config: cp.Config, Namespace: d.ns, Listen: o.UIListen, Replicas: d.uiReplicas}
		page, err := ui.New(opts)
		if err != nil && o.UIListen == ui.DefaultListen {
			// Another page has the default port: any free one will do.
			opts.Listen = "127.0.0.1:0"
			page, err = ui.New(opts)
		}
		if err != nil {
			return err
		}
		d.pageURL = page.URL()
		fmt.Fprintf(stdout, "the flows, live: %s\n", d.pageURL)
		go func() {
			if err := page.Run(ctx); err != nil {
				d.note("tinymod ui stopped: " + err.Error())
			}
		}()
	}

	for i := range o.Replicas {
		if err := d.start(fmt.Sprintf("dev-%d", i)); err != nil {
			d.stopAll()
			return err
		}
	}
	defer d.stopAll()
	if _, err := manifest.Apply(ctx, d.c, d.ns, flow); err != nil {
		return fmt.Errorf("apply flow: %w", err)
	}
	if o.Apply == "" {
		start := &v1alpha1.TinySignal{ObjectMeta: metav1.ObjectMeta{GenerateName: "start-ticker-", Namespace: d.ns},
			Spec: v1alpha1.TinySignalSpec{Node: "ticker-1", Port: v1alpha1.ControlPort, Data: &apiextensionsv1.JSON{Raw: []byte(`{"start":true}`)}}}
		if err := d.c.Create(ctx, start); err != nil {
			return err
		}
		d.note("applied the sample flow and started ticker-1; press its button with: tinymod signal --node signal-1 --port _control --data '{\"send\":true}'")
	}
	if o.KillEvery > 0 {
		go d.killLeaders(ctx)
	}

	terminal := !o.Plain
	if f, ok := stdout.(*os.File); !ok || !isatty.IsTerminal(f.Fd()) {
		terminal = false
	}
	if terminal {
		d.events = io.Discard
		p := tea.NewProgram(&devModel{d: d, refresh: o.Refresh}, tea.WithContext(ctx), tea.WithAltScreen(), tea.WithOutput(stdout))
		_, err := p.Run()
		cancel()
		if err != nil && ctx.Err() == nil {
			return err
		}
	} else {
		t := time.NewTicker(o.Refresh)
		defer t.Stop()
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-t.C:
				fmt.Fprint(stdout, d.view(ctx, false))
			}
		}
	}
	return nil
}

// devPaths returns dev's folder as an absolute path, and the kubeconfig in
// it: the path dev prints and shows is used from other folders.
func devPaths(dir string) (abs, kubeconfig string, err error) {
	if abs, err = filepath.Abs(dir); err != nil {
		return "", "", err
	}
	return abs, filepath.Join(abs, "kubeconfig"), nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// start runs one replica as a child process.
func (d *devRun) start(id string) error {
	metrics, err := freeAddr()
	if err != nil {
		return err
	}
	lease := d.opts.LeaseDuration
	cmd := exec.Command(d.self, "run", "--name", d.opts.Module, "--namespace", d.ns, "--kubeconfig", d.kubeconfig,
		"--identity", id, "--grpc-listen", "127.0.0.1:0", "--metrics-bind-address", metrics, "--health-probe-bind-address", "0",
		"--lease-duration", lease.String(), "--renew-deadline", (lease * 3 / 4).String(), "--retry-period", (lease / 8).String())
	cmd.SysProcAttr = replicaProcAttr()
	// Replicas share this machine: each http-server node listens on its port
	// plus the replica's number (dev-0 on the port itself, dev-1 on the next).
	if _, n, ok := strings.Cut(id, "-"); ok {
		cmd.Env = append(os.Environ(), httpserver.PortOffsetEnv+"="+n)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	logFile, err := os.OpenFile(filepath.Join(d.dir, "logs", id+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start replica %s: %w", id, err)
	}
	r := &devReplica{id: id, metrics: metrics, cmd: cmd, exited: make(chan struct{})}
	d.mu.Lock()
	d.replicas[id] = r
	d.mu.Unlock()
	go func() {
		defer close(r.exited)
		defer logFile.Close()
		s := bufio.NewScanner(out)
		s.Buffer(make([]byte, 1<<20), 1<<20)
		for s.Scan() {
			line := s.Text()
			fmt.Fprintln(logFile, line)
			d.logLine(id, line)
		}
		_ = cmd.Wait()
	}()
	return nil
}

// logLine keeps debug lines for the view and reports leadership changes.
func (d *devRun) logLine(id, line string) {
	var l struct {
		Msg  string          `json:"msg"`
		Node string          `json:"node"`
		Data json.RawMessage `json:"data"`
	}
	if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "debug" {
		// Plain mode shows the replicas' own logs, prefixed by identity; the
		// terminal view leaves them in the log files.
		d.mu.Lock()
		w := d.events
		d.mu.Unlock()
		fmt.Fprintf(w, "[%s] %s\n", id, line)
	}
	switch l.Msg {
	case "debug":
		d.mu.Lock()
		d.debug = append(d.debug, fmt.Sprintf("[%s] %s %s", id, l.Node, l.Data))
		if len(d.debug) > 6 {
			d.debug = d.debug[len(d.debug)-6:]
		}
		d.mu.Unlock()
	case "became leader", "lost leadership", "stepping down", "released lease":
		d.noteQuiet(fmt.Sprintf("[%s] %s", id, l.Msg))
	}
}

// note records an event for the view and prints it in plain mode.
func (d *devRun) note(s string) {
	fmt.Fprintln(d.noteQuiet(s), "dev: "+time.Now().Format("15:04:05")+" "+s)
}

// noteQuiet records an event for the view and returns where plain lines go.
func (d *devRun) noteQuiet(s string) io.Writer {
	line := time.Now().Format("15:04:05") + " " + s
	d.mu.Lock()
	defer d.mu.Unlock()
	d.log = append(d.log, line)
	if len(d.log) > 8 {
		d.log = d.log[len(d.log)-8:]
	}
	return d.events
}

// killLeaders kills the leader with SIGKILL and restarts it, KillEvery after
// the previous restart: the module runs whole for KillEvery between two
// failovers however long a failover takes (a ticker would kill again as soon
// as a slow failover ended).
func (d *devRun) killLeaders(ctx context.Context) {
	t := time.NewTimer(d.opts.KillEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(d.opts.KillEvery) // a failover below restarts it
		l := &coordinationv1.Lease{}
		if err := d.c.Get(ctx, client.ObjectKey{Namespace: d.ns, Name: replica.LeaseName(d.opts.Module)}, l); err != nil || l.Spec.HolderIdentity == nil {
			continue
		}
		id := *l.Spec.HolderIdentity
		d.mu.Lock()
		r := d.replicas[id]
		d.mu.Unlock()
		if r == nil {
			continue
		}
		d.note(fmt.Sprintf("killed leader %s (kill -9)", id))
		_ = r.cmd.Process.Kill()
		<-r.exited
		// Restart it once another replica leads: restarted at once, it would
		// find its own name on the lease and simply take it back.
		deadline := time.Now().Add(3*d.opts.LeaseDuration + 5*time.Second)
		for ctx.Err() == nil && time.Now().Before(deadline) {
			if err := d.c.Get(ctx, client.ObjectKeyFromObject(l), l); err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != id && *l.Spec.HolderIdentity != "" {
				d.note(fmt.Sprintf("%s took over; restarting %s", *l.Spec.HolderIdentity, id))
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if ctx.Err() != nil {
			return
		}
		if err := d.start(id); err != nil {
			d.note(fmt.Sprintf("restart %s: %v", id, err))
		}
		t.Reset(d.opts.KillEvery)
	}
}

// stopAll sends SIGTERM to every replica and waits, then kills what is left.
func (d *devRun) stopAll() {
	d.mu.Lock()
	d.stopping = true
	all := make([]*devReplica, 0, len(d.replicas))
	for _, r := range d.replicas {
		all = append(all, r)
	}
	d.mu.Unlock()
	for _, r := range all {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(d.opts.StopTimeout)
	for _, r := range all {
		select {
		case <-r.exited:
		case <-deadline:
			d.killAll()
			<-r.exited
		}
	}
}

func (d *devRun) killAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.replicas {
		_ = r.cmd.Process.Kill()
	}
}

// counterSamples are counter values per replica and per series.
type counterSamples map[string]map[string]float64

// counterIncrease is ui.Increase: the page and this view count alike.
func counterIncrease(before, now counterSamples) map[string]float64 {
	return ui.Increase(ui.Readings(before), ui.Readings(now))
}

// perSecond divides each increase by secs, keeping those above zero.
func perSecond(increase map[string]float64, secs float64) map[string]float64 {
	out := map[string]float64{}
	if secs <= 0 {
		return out
	}
	for k, v := range increase {
		if v > 0 {
			out[k] = v / secs
		}
	}
	return out
}

// messageSeries reads the tinymod_messages_total series of a metrics page,
// by their labels, and returns them with the node each counts.
func messageSeries(r io.Reader) (values map[string]float64, node map[string]string) {
	const prefix = "tinymod_messages_total{"
	values, node = map[string]float64{}, map[string]string{}
	s := bufio.NewScanner(r)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		labels, rest, ok := strings.Cut(line[len(prefix):], "} ")
		if !ok {
			continue
		}
		value, _, _ := strings.Cut(rest, " ") // a timestamp may follow
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(labels, ",") {
			if n, ok := strings.CutPrefix(kv, `node="`); ok {
				values[labels] = v
				node[labels] = strings.TrimSuffix(n, `"`)
			}
		}
	}
	return values, node
}

// scrape reads tinymod_messages_total from every replica and updates the
// messages per second per node.
func (d *devRun) scrape() {
	samples := counterSamples{}
	nodeOf := map[string]string{}
	d.mu.Lock()
	all := make([]*devReplica, 0, len(d.replicas))
	for _, r := range d.replicas {
		all = append(all, r)
	}
	d.mu.Unlock()
	hc := http.Client{Timeout: time.Second}
	for _, r := range all {
		resp, err := hc.Get("http://" + r.metrics + "/metrics")
		if err != nil {
			continue
		}
		values, node := messageSeries(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			continue
		}
		samples[r.id] = values
		for series, n := range node {
			nodeOf[series] = n
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	if !d.countsAt.IsZero() {
		byNode := map[string]float64{}
		for series, v := range counterIncrease(d.counts, samples) {
			byNode[nodeOf[series]] += v
		}
		d.rates = perSecond(byNode, now.Sub(d.countsAt).Seconds())
	}
	d.counts, d.countsAt = samples, now
}

// scrapeHealth reads every replica's per-node failures and updates the error
// rates and each node's newest failure.
func (d *devRun) scrapeHealth(ctx context.Context) {
	d.mu.Lock()
	all := make([]*devReplica, 0, len(d.replicas))
	for _, r := range d.replicas {
		all = append(all, r)
	}
	d.mu.Unlock()
	hr := &HealthReader{Timeout: time.Second}
	now := time.Now()
	counts := counterSamples{}
	last := map[string]nodeHealth{}
	for _, r := range all {
		h, err := hr.Read(ctx, r.id, r.metrics)
		if err != nil {
			continue
		}
		counts[r.id] = map[string]float64{}
		for node, nh := range h.Nodes {
			counts[r.id][node] = float64(nh.Errors + nh.Panics)
			if l := last[node]; nh.LastErrorAt.After(l.lastAt) {
				last[node] = nodeHealth{lastError: nh.LastError, lastAt: nh.LastErrorAt}
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.failuresAt.IsZero() {
		d.errorRates = perSecond(counterIncrease(d.failures, counts), now.Sub(d.failuresAt).Seconds())
	}
	d.failures, d.failuresAt, d.lastFailure = counts, now, last
}

// watchSignals keeps d.signals up to date with the namespace's TinySignals
// until ctx ends: from a watch, since a delivered signal is deleted within
// moments, long before the next refresh.
func (d *devRun) watchSignals(ctx context.Context, c client.WithWatch) {
	pause := func() {
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	for ctx.Err() == nil {
		var list v1alpha1.TinySignalList
		listedAt := time.Now()
		if err := c.List(ctx, &list, client.InNamespace(d.ns)); err != nil {
			pause()
			continue
		}
		d.mu.Lock()
		d.signals.sync(list.Items, listedAt, time.Now())
		d.mu.Unlock()
		w, err := c.Watch(ctx, &v1alpha1.TinySignalList{}, &client.ListOptions{Namespace: d.ns, Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
		if err != nil {
			pause()
			continue
		}
		for ev := range w.ResultChan() {
			sig, ok := ev.Object.(*v1alpha1.TinySignal)
			if !ok {
				break // an error (the version is too old, say): list again
			}
			d.mu.Lock()
			d.signals.observe(sig, ev.Type == watch.Deleted, time.Now())
			d.mu.Unlock()
		}
		w.Stop()
	}
}

// uiReplicas are the replicas this run's processes are, for the page: it
// learns that one died when its process does, not when its Lease expires.
func (d *devRun) uiReplicas() []ui.Replica {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]ui.Replica, 0, len(d.replicas))
	for id, r := range d.replicas {
		out = append(out, ui.Replica{Module: d.opts.Module, Identity: id, MetricsAddr: r.metrics, Alive: processAlive(r.exited)})
	}
	return out
}

// view renders the current state as text.
func (d *devRun) view(ctx context.Context, wide bool) string {
	return d.screen(ctx, wide).String()
}

// screen reads the current state: each module with its leader, by its
// Lease, and its replicas, by their processes and membership Leases; then
// the nodes, the signals, the events (wide only: plain output prints them
// as they come) and the last debug messages.
func (d *devRun) screen(ctx context.Context, wide bool) devScreen {
	d.scrape()
	d.scrapeHealth(ctx)
	now := time.Now()
	sc := devScreen{head: []string{fmt.Sprintf("--- %s  KUBECONFIG=%s", now.Format("15:04:05"), d.kubeconfig)}}
	if d.pageURL != "" {
		sc.head = append(sc.head, "page: "+d.pageURL)
	}
	s, err := GetStatus(ctx, d.c, d.ns)
	if err != nil {
		sc.head = append(sc.head, fmt.Sprintf("status: %v", err))
		s = &Status{}
	}
	var leases coordinationv1.LeaseList
	if err := d.c.List(ctx, &leases, client.InNamespace(d.ns)); err != nil {
		sc.head = append(sc.head, fmt.Sprintf("leases: %v", err))
	}
	byName := map[string]*coordinationv1.Lease{}
	members := map[string]map[string]*coordinationv1.Lease{} // module, identity
	for i := range leases.Items {
		l := &leases.Items[i]
		byName[l.Name] = l
		if module := l.Labels[leader.ModuleLabel]; module != "" && l.Labels[leader.RoleLabel] == "member" && l.Spec.HolderIdentity != nil {
			if members[module] == nil {
				members[module] = map[string]*coordinationv1.Lease{}
			}
			members[module][*l.Spec.HolderIdentity] = l
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, m := range s.Modules {
		// A replica is dev's own process, whose exit says it is gone, or
		// one known only by its membership Lease, gone once that expired.
		alive := map[string]bool{}
		for id, l := range members[m.Name] {
			alive[id] = !leader.MemberExpired(l, now, 0)
		}
		if m.Name == d.opts.Module {
			for id, r := range d.replicas {
				alive[id] = processAlive(r.exited)
			}
		}
		lease := leaseAt(byName[replica.LeaseName(m.Name)], now)
		holderAlive, known := alive[lease.Holder]
		sc.head = append(sc.head, leaderLine(m.Name, lease, holderAlive || !known, now))
		ids := make([]string, 0, len(alive))
		for id := range alive {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		shown := make([]string, 0, len(ids))
		for _, id := range ids {
			shown = append(shown, fmt.Sprintf("%s (%s)", id, replicaRole(id, alive[id], lease.Holder)))
		}
		sc.head = append(sc.head, "  replicas: "+dash(strings.Join(shown, ", ")))
	}
	for _, m := range s.Modules {
		nodes := devSection{title: fmt.Sprintf("nodes of module %s:", m.Name)}
		for _, n := range m.Nodes {
			rate := ""
			if r := d.rates[n.Name]; r > 0 {
				rate = fmt.Sprintf("  %.1f msg/s", r)
			}
			status := "ready"
			if n.Ready != "True" {
				status = strings.TrimSpace("NOT READY " + n.Problem())
			}
			failing := ""
			if r := d.errorRates[n.Name]; r > 0 {
				failing = fmt.Sprintf("  %.1f err/s", r)
			}
			if l, ok := d.lastFailure[n.Name]; ok && l.lastError != "" {
				failing += fmt.Sprintf("  last failure %s ago: %s", age(now.Sub(l.lastAt)), truncate(l.lastError, 70))
			}
			nodes.lines = append(nodes.lines, fmt.Sprintf("%-14s %-8s %s%s%s", n.Name, n.Component, status, rate, failing))
		}
		sc.sections = append(sc.sections, nodes)
	}
	sc.sections = append(sc.sections, devSection{title: "signals, newest first:", lines: d.signals.lines()})
	if wide {
		sc.sections = append(sc.sections, devSection{title: "events:", lines: append([]string(nil), d.log...), tail: true})
	}
	sc.sections = append(sc.sections, devSection{title: "last debug messages:", lines: append([]string(nil), d.debug...), tail: true})
	return sc
}

// truncate shortens s to at most n runes, marking the cut.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// sampleFlow is the built-in sample flow with its nodes in module, so a
// module author's binary runs it too (given the standard components).
func sampleFlow(module string) []byte {
	return bytes.ReplaceAll(samples.DemoFlow, []byte("module: tinymod"), []byte("module: "+module))
}
