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
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/components/httpserver"
	"github.com/tinymod/tinymod/config/samples"
	"github.com/tinymod/tinymod/internal/controlplane"
	"github.com/tinymod/tinymod/internal/manifest"
	"github.com/tinymod/tinymod/internal/replica"
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
	counts   map[string]float64
	countsAt time.Time
	rates    map[string]float64
	// failures per replica and node, as each replica reports them, for
	// error rates that a restarted replica (its counts back at zero) does not
	// skew; and each node's newest failure.
	failures    map[string]map[string]uint64
	failuresAt  time.Time
	errorRates  map[string]float64
	lastFailure map[string]nodeHealth
	stopping    bool
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
	d := &devRun{opts: o, self: self, dir: dir, ns: "default", events: stderr, replicas: map[string]*devReplica{}, counts: map[string]float64{}, rates: map[string]float64{}}
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
	d.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(d.kubeconfig, cp.Kubeconfig, 0o600); err != nil {
		return err
	}
	if d.c, err = client.New(cp.Config, client.Options{Scheme: replica.Scheme()}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "export KUBECONFIG=%s\n", d.kubeconfig)

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

// scrape reads tinymod_messages_total per node from every replica and
// updates the rates.
func (d *devRun) scrape() {
	totals := map[string]float64{}
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
		s := bufio.NewScanner(resp.Body)
		for s.Scan() {
			line := s.Text()
			if !strings.HasPrefix(line, "tinymod_messages_total{") {
				continue
			}
			labels, value, ok := strings.Cut(line[len("tinymod_messages_total{"):], "} ")
			if !ok {
				continue
			}
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				continue
			}
			for _, kv := range strings.Split(labels, ",") {
				if node, ok := strings.CutPrefix(kv, `node="`); ok {
					totals[strings.TrimSuffix(node, `"`)] += v
				}
			}
		}
		resp.Body.Close()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	if !d.countsAt.IsZero() {
		secs := now.Sub(d.countsAt).Seconds()
		d.rates = map[string]float64{}
		for node, v := range totals {
			if delta := v - d.counts[node]; delta > 0 && secs > 0 {
				d.rates[node] = delta / secs
			}
		}
	}
	d.counts, d.countsAt = totals, now
}

// scrapeHealth reads every replica's per-node failures and updates the error
// rates, per replica so that a replica that restarted counts from zero
// rather than look like negative traffic.
func (d *devRun) scrapeHealth(ctx context.Context) {
	d.mu.Lock()
	all := make([]*devReplica, 0, len(d.replicas))
	for _, r := range d.replicas {
		all = append(all, r)
	}
	d.mu.Unlock()
	hr := &HealthReader{Timeout: time.Second}
	now := time.Now()
	counts := map[string]map[string]uint64{}
	last := map[string]nodeHealth{}
	for _, r := range all {
		h, err := hr.Read(ctx, r.id, r.metrics)
		if err != nil {
			continue
		}
		counts[r.id] = map[string]uint64{}
		for node, nh := range h.Nodes {
			counts[r.id][node] = nh.Errors + nh.Panics
			if l := last[node]; nh.LastErrorAt.After(l.lastAt) {
				last[node] = nodeHealth{lastError: nh.LastError, lastAt: nh.LastErrorAt}
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.failuresAt.IsZero() {
		secs := now.Sub(d.failuresAt).Seconds()
		rates := map[string]float64{}
		for id, nodes := range counts {
			for node, n := range nodes {
				before := d.failures[id][node]
				if n < before {
					before = 0 // the replica restarted
				}
				if secs > 0 {
					rates[node] += float64(n-before) / secs
				}
			}
		}
		d.errorRates = rates
	}
	d.failures, d.failuresAt, d.lastFailure = counts, now, last
}

// view renders the current state.
func (d *devRun) view(ctx context.Context, wide bool) string {
	d.scrape()
	d.scrapeHealth(ctx)
	var b strings.Builder
	s, err := GetStatus(ctx, d.c, d.ns)
	fmt.Fprintf(&b, "--- %s  KUBECONFIG=%s\n", time.Now().Format("15:04:05"), d.kubeconfig)
	if err != nil {
		fmt.Fprintf(&b, "status: %v\n", err)
		return b.String()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, m := range s.Modules {
		fmt.Fprintf(&b, "module %s: leader %s for %s\n", m.Name, dash(m.Leader), dash(m.LeaseAge))
		ids := make([]string, 0, len(m.Replicas))
		for _, r := range m.Replicas {
			role := "reader"
			if r.Leader {
				role = "LEADER"
			}
			ids = append(ids, fmt.Sprintf("%s (%s)", r.Identity, role))
		}
		fmt.Fprintf(&b, "  replicas: %s\n", strings.Join(ids, ", "))
		for _, n := range m.Nodes {
			rate := ""
			if r := d.rates[n.Name]; r > 0 {
				rate = fmt.Sprintf("  %.1f msg/s", r)
			}
			status := "ready"
			if n.Ready != "True" {
				status = "NOT READY " + n.Problem()
			}
			failing := ""
			if r := d.errorRates[n.Name]; r > 0 {
				failing = fmt.Sprintf("  %.1f err/s", r)
			}
			if l, ok := d.lastFailure[n.Name]; ok && l.lastError != "" {
				failing += fmt.Sprintf("  last failure %s ago: %s", age(time.Since(l.lastAt)), truncate(l.lastError, 70))
			}
			fmt.Fprintf(&b, "  node %-14s %-8s %s%s%s\n", n.Name, n.Component, status, rate, failing)
		}
	}
	if len(d.debug) > 0 {
		fmt.Fprintln(&b, "last debug messages:")
		for _, l := range d.debug {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	if wide && len(d.log) > 0 {
		fmt.Fprintln(&b, "events:")
		for _, l := range d.log {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	return b.String()
}

// devModel is the terminal view.
type devModel struct {
	d       *devRun
	refresh time.Duration
	text    string
}

type refreshMsg string

func (m *devModel) fetch() tea.Cmd {
	return func() tea.Msg { return refreshMsg(m.d.view(context.Background(), true)) }
}

func (m *devModel) Init() tea.Cmd { return m.fetch() }

func (m *devModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyMsg:
		switch msg.String() {
		case "ctrl+c", "q":
			return m, tea.Quit
		}
	case refreshMsg:
		m.text = string(msg)
		return m, tea.Tick(m.refresh, func(time.Time) tea.Msg { return m.fetch()() })
	}
	return m, nil
}

func (m *devModel) View() string {
	return m.text + "\n(q or Ctrl-C to stop)\n"
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
