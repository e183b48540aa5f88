// Command load pushes a steady stream of messages from one module to another
// on a real local control plane and prints what came through, the CPU it
// cost and how each replica's memory moved, beside the same load over plain
// unary grpc-go calls and over NATS request-reply in the same run.
//
//	go run ./test/bench/load -rate 10000 -duration 60s
//	go run ./test/bench/load -knee     # raise the rate until p99 passes 50 ms or sends fail
//
// Module load-src runs a generator on each of its replicas; its edge goes to
// a counting sink in module load-sink, so every message crosses gRPC to one
// of load-sink's replicas. Each anchor runs as many sending and receiving
// processes: a plain unary gRPC service, and a NATS queue group behind one
// NATS server, each decoding the same JSON message. Every process is this
// program: with "run" as its first argument it is a module binary, like
// tinymod. RSS (VmRSS) and CPU time of each process are read from /proc
// every second. It exits 1 when a message failed or went missing, the rate
// fell short, or a replica's memory grew.
//
// With -knee each system runs a series of short steps from -knee-from
// messages a second, each -knee-factor times the last, until a step's p99
// passes -knee-p99, a send fails, or the rate falls short (the senders could
// not keep up), twice in a row; its knee is the last rate that passed.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/go-logr/logr"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/cli"
	"github.com/tinymod/tinymod/internal/controlplane"
	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/test/bench/benchutil"
)

var subcommands = map[string]func(args []string) error{
	"run": func(args []string) error {
		cmd := cli.NewRunCommand("load", []module.Component{&generator{}, counter{}})
		cmd.SetArgs(args)
		return cmd.Execute()
	},
	"baseline-serve": baselineServe,
	"baseline-send":  baselineSend,
	"nats-server":    natsServe,
	"nats-receive":   natsReceive,
	"nats-send":      natsSend,
}

func main() {
	if len(os.Args) > 1 {
		if sub, ok := subcommands[os.Args[1]]; ok {
			if err := sub(os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			return
		}
	}
	o := options{}
	flag.IntVar(&o.rate, "rate", 10000, "messages a second, in all")
	flag.DurationVar(&o.duration, "duration", 60*time.Second, "how long to send")
	flag.IntVar(&o.replicas, "replicas", 2, "replicas of each module (and anchor processes of each side)")
	flag.IntVar(&o.workers, "workers", 32, "concurrent sends in each sending process")
	flag.DurationVar(&o.warmup, "warmup", 10*time.Second, "leading part of the run left out of the memory slope")
	flag.Float64Var(&o.maxGrowth, "max-growth", 0.10, "largest RSS growth over the run (from the slope) allowed, as a fraction of the mean")
	flag.BoolVar(&o.baseline, "baseline", true, "also run the plain unary gRPC anchor")
	flag.BoolVar(&o.nats, "nats", true, "also run the NATS request-reply anchor")
	flag.StringVar(&o.rows, "rows", "", "also write the figures as JSON rows to this file (for the benchmark report)")
	flag.StringVar(&o.pprof, "pprof", "", "take a CPU profile of every process over the middle half of each run, into this directory")
	flag.BoolVar(&o.knee, "knee", false, "find each system's knee instead of one steady run")
	flag.IntVar(&o.kneeFrom, "knee-from", 8000, "the knee's first rate, messages a second in all")
	flag.Float64Var(&o.kneeFactor, "knee-factor", 1.25, "each knee step's rate over the last one's")
	flag.DurationVar(&o.kneeStep, "knee-duration", 10*time.Second, "how long each knee step sends")
	flag.DurationVar(&o.kneeP99, "knee-p99", 50*time.Millisecond, "the p99 send latency past which a knee step fails")
	flag.IntVar(&o.kneeWorkers, "knee-workers", 512, "concurrent sends in each sending process during knee steps, so that latency, not the senders, bounds the rate")
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

type options struct {
	rate, replicas, workers int
	duration, warmup        time.Duration
	maxGrowth               float64
	baseline, nats          bool
	rows, pprof             string

	knee                  bool
	kneeFrom, kneeWorkers int
	kneeFactor            float64
	kneeStep, kneeP99     time.Duration
}

type proc struct {
	id, role, metrics, log string
	pprof                  string // its net/http/pprof address, if it serves one
	line                   int    // a sender: which of its result lines is this step's
	cmd                    *exec.Cmd
	rss                    []float64 // KiB, one a second
	cpu0, cpu1             float64   // seconds of CPU at the start and end of sending
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Wait()
}

func start(dir, id, role string, args ...string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p := &proc{id: id, role: role, log: filepath.Join(dir, id+".log")}
	f, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(self, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return p, p.cmd.Start()
}

// system is one way of carrying the load: tinymod, or an anchor.
type system interface {
	name() string
	// up starts the receiving side and whatever it needs.
	up(ctx context.Context) error
	// send starts a paced run of every sender with s (s.Rate each) and
	// returns every process taking part, senders with role "sender".
	send(ctx context.Context, s Settings) ([]*proc, error)
	// received is how many messages the receivers have handled so far;
	// false when a send that returned without error is the count.
	received() (int64, bool, error)
	// down stops every process.
	down()
}

// phase is one load run's figures.
type phase struct {
	name                      string
	rate                      int // offered, in all
	sent, failed, missed, got int64
	latency                   []result
	cpu                       float64
	procs                     []*proc
}

func (ph *phase) p(q func(result) string) string {
	var out []string
	for _, r := range ph.latency {
		out = append(out, q(r))
	}
	return strings.Join(out, ", ")
}

// p99 is the largest of the senders' p99s.
func (ph *phase) p99() time.Duration {
	var worst time.Duration
	for _, r := range ph.latency {
		d, _ := time.ParseDuration(r.P99)
		worst = max(worst, d)
	}
	return worst
}

// sample reads every process's RSS each second and its CPU time at the start
// and the end, from startAt for duration.
func sample(procs []*proc, startAt time.Time, duration time.Duration) {
	time.Sleep(time.Until(startAt))
	for _, p := range procs {
		p.cpu0 = benchutil.CPUSeconds(p.cmd.Process.Pid)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	end := startAt.Add(duration)
	for now := range tick.C {
		for _, p := range procs {
			p.rss = append(p.rss, benchutil.RSSKiB(p.cmd.Process.Pid))
		}
		if now.After(end) {
			break
		}
	}
	for _, p := range procs {
		p.cpu1 = benchutil.CPUSeconds(p.cmd.Process.Pid)
	}
}

// measure samples the processes over the run and, with -pprof, profiles them
// over its middle half into dir.
func measure(dir string, procs []*proc, startAt time.Time, duration time.Duration) {
	if dir == "" {
		sample(procs, startAt, duration)
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "load: -pprof:", err)
	}
	done := make(chan []error, 1)
	go func() { done <- profileAll(dir, procs, startAt.Add(duration/4), max(1, int(duration/2/time.Second))) }()
	sample(procs, startAt, duration)
	for _, err := range <-done {
		if err != nil {
			fmt.Fprintln(os.Stderr, "load: profile:", err)
		}
	}
}

// pprofArgs gives a process a pprof address when profiles are asked for.
func pprofArgs(o options, p *string, flag string) []string {
	if o.pprof == "" {
		return nil
	}
	*p = benchutil.FreeAddr()
	return []string{flag, *p}
}

// collect waits for every sender's result line and adds them up.
func collect(ctx context.Context, ph *phase) error {
	return benchutil.Poll(ctx, 30*time.Second, 50*time.Millisecond, func() error {
		ph.sent, ph.failed, ph.missed, ph.latency, ph.cpu = 0, 0, 0, nil, 0
		for _, p := range ph.procs {
			if p.role != "sender" {
				continue
			}
			r, ok := finished(p.log, p.line)
			if !ok {
				return fmt.Errorf("%s has not finished sending", p.id)
			}
			ph.sent += r.Sent
			ph.failed += r.Failed
			ph.missed += r.Missed
			ph.latency = append(ph.latency, r)
		}
		for _, p := range ph.procs {
			ph.cpu += p.cpu1 - p.cpu0
		}
		return nil
	})
}

// step runs one paced run of sys at rate (in all) for duration.
func step(ctx context.Context, o options, sys system, rate, workers int, duration time.Duration, pprofDir string) (*phase, error) {
	before, counted, err := sys.received()
	if err != nil {
		return nil, err
	}
	// Start a little ahead, so that every sender starts together.
	startAt := time.Now().Add(3 * time.Second)
	procs, err := sys.send(ctx, Settings{Rate: rate / o.replicas, Seconds: int(duration / time.Second), StartAt: startAt.UnixMilli(), Workers: workers})
	if err != nil {
		return nil, err
	}
	ph := &phase{name: sys.name(), rate: rate, procs: procs}
	measure(pprofDir, procs, startAt, duration)
	if err := collect(ctx, ph); err != nil {
		return nil, err
	}
	after, _, err := sys.received()
	if err != nil {
		return nil, err
	}
	ph.got = after - before
	if !counted {
		ph.got = ph.sent // a call that returned without error was received and decoded
	}
	return ph, nil
}

func run(o options) error {
	dir, err := os.MkdirTemp("", "tinymod-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	budget := 2*o.duration + 5*time.Minute
	if o.knee {
		budget = 3 * 20 * (o.kneeStep + 10*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()

	systems := []system{&tinymodSystem{dir: dir, o: o}}
	if o.baseline {
		systems = append(systems, &grpcSystem{dir: dir, o: o})
	}
	if o.nats {
		systems = append(systems, &natsSystem{dir: dir, o: o})
	}
	// The anchors first, as before tinymod's control plane starts.
	order := append(slices.Clone(systems[1:]), systems[0])
	if o.knee {
		knees := map[system]*knee{}
		for _, sys := range order {
			k, err := findKnee(ctx, o, sys)
			if err != nil {
				return fmt.Errorf("%s: %w", sys.name(), err)
			}
			knees[sys] = k
		}
		var out []*knee
		for _, sys := range systems {
			out = append(out, knees[sys])
		}
		return reportKnees(o, out)
	}
	phases := map[system]*phase{}
	for _, sys := range order {
		if err := sys.up(ctx); err != nil {
			sys.down()
			return fmt.Errorf("%s: %w", sys.name(), err)
		}
		ph, err := step(ctx, o, sys, o.rate, o.workers, o.duration, o.pprof)
		sys.down()
		if err != nil {
			return fmt.Errorf("%s: %w", sys.name(), err)
		}
		phases[sys] = ph
	}
	var out []*phase
	for _, sys := range systems {
		out = append(out, phases[sys])
	}
	return report(o, out)
}

// grpcSystem is the plain unary gRPC anchor.
type grpcSystem struct {
	dir       string
	o         options
	receivers []*proc
	senders   []*proc
	addrs     []string
	steps     int
}

func (g *grpcSystem) name() string { return "plain unary gRPC" }

func (g *grpcSystem) up(context.Context) error {
	for i := range g.o.replicas {
		addr := benchutil.FreeAddr()
		var pp string
		p, err := start(g.dir, fmt.Sprintf("baseline-receiver-%d", i), "receiver", append([]string{"baseline-serve", "--listen", addr}, pprofArgs(g.o, &pp, "--pprof")...)...)
		if err != nil {
			return err
		}
		p.pprof = pp
		g.receivers = append(g.receivers, p)
		g.addrs = append(g.addrs, addr)
	}
	return nil
}

func (g *grpcSystem) send(_ context.Context, s Settings) ([]*proc, error) {
	g.steps++
	procs := slices.Clone(g.receivers)
	for i := range g.o.replicas {
		var pp string
		args := append([]string{"baseline-send", "--targets", strings.Join(g.addrs, ",")}, senderArgs(s)...)
		p, err := start(g.dir, stepID(fmt.Sprintf("baseline-sender-%d", i), g.steps), "sender", append(args, pprofArgs(g.o, &pp, "--pprof")...)...)
		if err != nil {
			return nil, err
		}
		p.pprof = pp
		g.senders = append(g.senders, p)
		procs = append(procs, p)
	}
	return procs, nil
}

func (g *grpcSystem) received() (int64, bool, error) { return 0, false, nil }

func (g *grpcSystem) down() {
	for _, p := range append(g.senders, g.receivers...) {
		p.stop()
	}
}

// stepID names a sending process of a step: the first step's keeps the plain name.
func stepID(id string, step int) string {
	if step <= 1 {
		return id
	}
	return fmt.Sprintf("%s-step%d", id, step)
}

func senderArgs(s Settings) []string {
	return []string{"--rate", fmt.Sprint(s.Rate), "--seconds", fmt.Sprint(s.Seconds), "--start-at", fmt.Sprint(s.StartAt), "--workers", fmt.Sprint(s.Workers)}
}

// natsSystem is the NATS request-reply anchor.
type natsSystem struct {
	dir       string
	o         options
	url       string
	receivers []*proc // the NATS server first
	senders   []*proc
	steps     int
}

func (n *natsSystem) name() string { return "NATS request-reply" }

func (n *natsSystem) up(ctx context.Context) error {
	addr := benchutil.FreeAddr()
	n.url = "nats://" + addr
	var pp string
	srv, err := start(n.dir, "nats-server", "server", append([]string{"nats-server", "--listen", addr}, pprofArgs(n.o, &pp, "--pprof")...)...)
	if err != nil {
		return err
	}
	srv.pprof = pp
	n.receivers = append(n.receivers, srv)
	if err := waitLine(ctx, srv.log, "nats server ready"); err != nil {
		return err
	}
	for i := range n.o.replicas {
		var pp string
		p, err := start(n.dir, fmt.Sprintf("nats-receiver-%d", i), "receiver", append([]string{"nats-receive", "--url", n.url}, pprofArgs(n.o, &pp, "--pprof")...)...)
		if err != nil {
			return err
		}
		p.pprof = pp
		n.receivers = append(n.receivers, p)
	}
	for _, p := range n.receivers[1:] {
		if err := waitLine(ctx, p.log, "subscribed"); err != nil {
			return err
		}
	}
	return nil
}

func (n *natsSystem) send(_ context.Context, s Settings) ([]*proc, error) {
	n.steps++
	procs := slices.Clone(n.receivers)
	for i := range n.o.replicas {
		var pp string
		args := append([]string{"nats-send", "--url", n.url}, senderArgs(s)...)
		p, err := start(n.dir, stepID(fmt.Sprintf("nats-sender-%d", i), n.steps), "sender", append(args, pprofArgs(n.o, &pp, "--pprof")...)...)
		if err != nil {
			return nil, err
		}
		p.pprof = pp
		n.senders = append(n.senders, p)
		procs = append(procs, p)
	}
	return procs, nil
}

func (n *natsSystem) received() (int64, bool, error) { return 0, false, nil }

func (n *natsSystem) down() {
	// Senders, then receivers, then the server.
	for _, p := range n.senders {
		p.stop()
	}
	for i := len(n.receivers) - 1; i >= 0; i-- {
		n.receivers[i].stop()
	}
}

// waitLine waits for a process to log a JSON line whose msg is msg.
func waitLine(ctx context.Context, path, msg string) error {
	return benchutil.Poll(ctx, 30*time.Second, 20*time.Millisecond, func() error {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !strings.Contains(string(data), `"msg":"`+msg+`"`) {
			return fmt.Errorf("%s has not logged %q", filepath.Base(path), msg)
		}
		return nil
	})
}

// tinymodSystem is two modules of tinymod on a local control plane.
type tinymodSystem struct {
	dir   string
	o     options
	cp    *controlplane.ControlPlane
	c     client.Client
	procs []*proc
	gen   *v1alpha1.TinyNode
	steps int
}

func (t *tinymodSystem) name() string { return "tinymod" }

const loadNamespace = "load"

func generatorSettings(s Settings) []v1alpha1.TinyNodePortConfig {
	raw, _ := json.Marshal(s)
	return []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: &apiextensionsv1.JSON{Raw: raw}}}
}

func (t *tinymodSystem) up(ctx context.Context) error {
	cp, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		return err
	}
	t.cp = cp
	c, err := client.New(cp.Config, client.Options{Scheme: replica.Scheme()})
	if err != nil {
		return err
	}
	t.c = c
	ns := loadNamespace
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	kubeconfig := filepath.Join(t.dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, cp.Kubeconfig, 0o600); err != nil {
		return err
	}
	for _, mod := range []string{"load-src", "load-sink"} {
		role := map[string]string{"load-src": "sender", "load-sink": "receiver"}[mod]
		for i := range t.o.replicas {
			id := fmt.Sprintf("%s-%d", mod, i)
			metrics := benchutil.FreeAddr()
			var pp string
			args := []string{"run", "--name", mod, "--namespace", ns, "--kubeconfig", kubeconfig, "--identity", id,
				"--grpc-listen", "127.0.0.1:0", "--metrics-bind-address", metrics, "--health-probe-bind-address", "0"}
			p, err := start(t.dir, id, role, append(args, pprofArgs(t.o, &pp, "--pprof-bind-address")...)...)
			if err != nil {
				return err
			}
			p.metrics, p.pprof = metrics, pp
			t.procs = append(t.procs, p)
		}
	}

	gen := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "gen", Namespace: ns}, Spec: v1alpha1.TinyNodeSpec{
		Module: "load-src", Component: "generator", Ports: generatorSettings(Settings{}),
		Edges: []v1alpha1.TinyNodeEdge{{ID: "gen-sink", Port: "out", To: "sink.in"}}}}
	sink := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "sink", Namespace: ns}, Spec: v1alpha1.TinyNodeSpec{Module: "load-sink", Component: "counter"}}
	for _, n := range []*v1alpha1.TinyNode{sink, gen} {
		if err := c.Create(ctx, n); err != nil {
			return err
		}
	}
	t.gen = gen
	return benchutil.Poll(ctx, time.Minute, 50*time.Millisecond, func() error {
		for _, name := range []string{"gen", "sink"} {
			n := &v1alpha1.TinyNode{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, n); err != nil {
				return err
			}
			if len(n.Status.Conditions) == 0 || n.Status.Conditions[0].Status != metav1.ConditionTrue {
				return fmt.Errorf("node %s not ready", name)
			}
		}
		m := &v1alpha1.TinyModule{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "load-sink"}, m); err != nil || m.Status.Addr == "" {
			return fmt.Errorf("load-sink has no address yet: %v", err)
		}
		for _, p := range t.procs {
			if _, err := benchutil.Scrape(p.metrics); err != nil {
				return err
			}
		}
		return nil
	})
}

func (t *tinymodSystem) send(ctx context.Context, s Settings) ([]*proc, error) {
	if err := t.c.Get(ctx, client.ObjectKeyFromObject(t.gen), t.gen); err != nil {
		return nil, err
	}
	t.gen.Spec.Ports = generatorSettings(s)
	if err := t.c.Update(ctx, t.gen); err != nil {
		return nil, err
	}
	for _, p := range t.procs {
		p.line = t.steps
	}
	t.steps++
	return t.procs, nil
}

func (t *tinymodSystem) received() (int64, bool, error) {
	n, err := received(t.procs)
	return n, true, err
}

func (t *tinymodSystem) down() {
	for _, p := range t.procs {
		p.stop()
	}
	if t.cp != nil {
		t.cp.Stop()
	}
}

func report(o options, phases []*phase) error {
	tm := phases[0]
	anchors := phases[1:]
	rate := func(ph *phase) float64 { return float64(ph.got) / o.duration.Seconds() }
	cpu := func(ph *phase) float64 { return ph.cpu / float64(max(ph.got, 1)) * 1e6 }
	fmt.Printf("load: %d msg/s target for %s, %d sending → %d receiving processes\n\n", o.rate, o.duration, o.replicas, o.replicas)
	head, sep := "| figure | tinymod (module → module) |", "|---|---:|"
	for _, a := range anchors {
		head += " " + a.name + " | ratio |"
		sep += "---:|---:|"
	}
	fmt.Println(head)
	fmt.Println(sep)
	line := func(figure string, f func(ph *phase) string, r func(ph *phase) float64) {
		out := "| " + figure + " | " + f(tm) + " |"
		for _, a := range anchors {
			ratioCell := ""
			if r != nil {
				ratioCell = fmt.Sprintf("%.2f×", ratio(r(tm), r(a)))
			}
			out += " " + f(a) + " | " + ratioCell + " |"
		}
		fmt.Println(out)
	}
	line("messages received / sent", func(ph *phase) string { return fmt.Sprintf("%d / %d", ph.got, ph.sent) }, nil)
	line("rate", func(ph *phase) string { return fmt.Sprintf("%.0f msg/s", rate(ph)) }, rate)
	line("send errors", func(ph *phase) string { return fmt.Sprint(ph.failed) }, nil)
	line("sends the pacer could not start in time", func(ph *phase) string { return fmt.Sprint(ph.missed) }, nil)
	line("CPU per message, all processes", func(ph *phase) string { return fmt.Sprintf("%.1f µs", cpu(ph)) }, cpu)
	line("send latency p50, per sender", func(ph *phase) string { return ph.p(func(r result) string { return r.P50 }) }, func(ph *phase) float64 { return float64(ph.meanOver(0.50)) })
	line("send latency p99, per sender", func(ph *phase) string { return ph.p(func(r result) string { return r.P99 }) }, func(ph *phase) float64 { return float64(ph.meanOver(0.99)) })
	fmt.Println()

	fmt.Printf("| process | RSS first | RSS last | RSS mean | slope (after %s) | growth over the run |\n|---|---:|---:|---:|---:|---:|\n", o.warmup)
	var problems []error
	skip := int(o.warmup / time.Second)
	var rows []benchutil.Row
	for _, ph := range phases {
		for _, p := range ph.procs {
			if len(p.rss) == 0 {
				continue
			}
			samples := p.rss[min(skip, len(p.rss)-1):]
			slope, mean := fit(samples)
			growth := slope * float64(len(samples)) / mean
			fmt.Printf("| %s | %.1f MiB | %.1f MiB | %.1f MiB | %+.1f KiB/s | %+.1f%% |\n", p.id, p.rss[0]/1024, p.rss[len(p.rss)-1]/1024, mean/1024, slope, growth*100)
			if ph == tm {
				if growth > o.maxGrowth {
					problems = append(problems, fmt.Errorf("%s: RSS grew %.1f%% over the run", p.id, growth*100))
				}
				rows = append(rows, benchutil.Row{Figure: "load: RSS slope of " + p.id, Value: fmt.Sprintf("%+.1f KiB/s (%+.1f%% over the run)", slope, growth*100), Goal: "flat"})
			}
		}
	}
	if tm.failed > 0 {
		problems = append(problems, fmt.Errorf("%d sends failed", tm.failed))
	}
	if tm.got != tm.sent {
		problems = append(problems, fmt.Errorf("%d sent but %d received", tm.sent, tm.got))
	}
	if rate(tm) < 0.95*float64(o.rate) {
		problems = append(problems, fmt.Errorf("%.0f msg/s is short of %d", rate(tm), o.rate))
	}
	head2 := []benchutil.Row{
		{Figure: fmt.Sprintf("load: rate across two modules for %s", o.duration), Value: fmt.Sprintf("%.0f msg/s", rate(tm)), Anchor: "target", AnchorValue: fmt.Sprint(o.rate), Ratio: fmt.Sprintf("%.3f", rate(tm)/float64(o.rate)), Goal: fmt.Sprintf("%d msg/s", o.rate)},
		{Figure: "load: send errors, messages lost", Value: fmt.Sprintf("%d, %d", tm.failed, tm.sent-tm.got), Goal: "0, 0"},
	}
	for i, a := range anchors {
		goal := [2]string{}
		if i == 0 {
			goal = [2]string{"≤ 0.6×", "p50 ≤ the anchor's"}
		}
		head2 = append(head2,
			benchutil.Row{Figure: "load: CPU per message, all processes", Value: fmt.Sprintf("%.1f µs", cpu(tm)), Anchor: a.name, AnchorValue: fmt.Sprintf("%.1f µs", cpu(a)), Ratio: fmt.Sprintf("%.2f×", ratio(cpu(tm), cpu(a))), Goal: goal[0]},
			benchutil.Row{Figure: "load: send latency p50 / p99 (mean of the senders)", Value: latencyOf(tm), Anchor: a.name, AnchorValue: latencyOf(a),
				Ratio: fmt.Sprintf("%.2f× (p50)", ratio(float64(tm.meanOver(0.50)), float64(a.meanOver(0.50)))), Goal: goal[1]})
	}
	rows = append(head2, rows...)
	if o.rows != "" {
		for i := range rows {
			rows[i].Command = "make load"
		}
		if err := benchutil.WriteRows(o.rows, rows); err != nil {
			return err
		}
	}
	return errors.Join(problems...)
}

// meanOver is the mean over the senders of their p50 (q 0.50) or p99 (q 0.99).
func (ph *phase) meanOver(q float64) time.Duration {
	if len(ph.latency) == 0 {
		return 0
	}
	var sum time.Duration
	for _, r := range ph.latency {
		s := r.P50
		if q > 0.5 {
			s = r.P99
		}
		d, _ := time.ParseDuration(s)
		sum += d
	}
	return sum / time.Duration(len(ph.latency))
}

func latencyOf(ph *phase) string {
	return fmt.Sprintf("%s / %s", ph.meanOver(0.50).Round(time.Microsecond), ph.meanOver(0.99).Round(time.Microsecond))
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// fit returns the least-squares slope (per sample) and the mean of ys.
func fit(ys []float64) (slope, mean float64) {
	n := float64(len(ys))
	if n < 2 {
		return 0, ys[0]
	}
	var sx, sy, sxx, sxy float64
	for i, y := range ys {
		x := float64(i)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx), sy / n
}

// finished returns the nth (from 0) result line a sender logs when done.
func finished(path string, nth int) (result, bool) {
	f, err := os.Open(path)
	if err != nil {
		return result{}, false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		var r result
		if json.Unmarshal(s.Bytes(), &r) == nil && r.Msg == "load finished" {
			if nth == 0 {
				return r, true
			}
			nth--
		}
	}
	return result{}, false
}

// received sums what the sink replicas handled, from their metrics.
func received(procs []*proc) (int64, error) {
	var total int64
	for _, p := range procs {
		if p.role != "receiver" {
			continue
		}
		m, err := benchutil.Scrape(p.metrics)
		if err != nil {
			return 0, err
		}
		total += int64(m[`tinymod_messages_total{node="sink",port="in",result="ok"}`])
	}
	return total, nil
}
