// Command load pushes a steady stream of messages from one module to another
// on a real local control plane and prints what came through, the CPU it
// cost and how each replica's memory moved, beside the same load over plain
// unary grpc-go calls in the same run.
//
//	go run ./test/bench/load -rate 10000 -duration 60s
//
// Module load-src runs a generator on each of its replicas; its edge goes to
// a counting sink in module load-sink, so every message crosses gRPC to one
// of load-sink's replicas. The baseline runs as many sending and receiving
// processes, a plain unary service that decodes the same JSON message. Every
// process is this program: with "run" as its first argument it is a module
// binary, like tinymod. RSS (VmRSS) and CPU time of each process are read
// from /proc every second. It exits 1 when a message failed or went missing,
// the rate fell short, or a replica's memory grew.
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
	flag.IntVar(&o.replicas, "replicas", 2, "replicas of each module (and baseline processes of each side)")
	flag.DurationVar(&o.warmup, "warmup", 10*time.Second, "leading part of the run left out of the memory slope")
	flag.Float64Var(&o.maxGrowth, "max-growth", 0.10, "largest RSS growth over the run (from the slope) allowed, as a fraction of the mean")
	flag.BoolVar(&o.baseline, "baseline", true, "also run the plain unary gRPC baseline")
	flag.StringVar(&o.rows, "rows", "", "also write the figures as JSON rows to this file (for the benchmark report)")
	flag.StringVar(&o.pprof, "pprof", "", "take a CPU profile of every process over the middle half of each run, into this directory")
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

type options struct {
	rate, replicas   int
	duration, warmup time.Duration
	maxGrowth        float64
	baseline         bool
	rows, pprof      string
}

type proc struct {
	id, role, metrics, log string
	pprof                  string // its net/http/pprof address, if it serves one
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

// phase is one load run's figures.
type phase struct {
	name                      string
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
// over its middle half.
func measure(o options, procs []*proc, startAt time.Time) {
	if o.pprof == "" {
		sample(procs, startAt, o.duration)
		return
	}
	if err := os.MkdirAll(o.pprof, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "load: -pprof:", err)
	}
	done := make(chan []error, 1)
	go func() {
		done <- profileAll(o.pprof, procs, startAt.Add(o.duration/4), max(1, int(o.duration/2/time.Second)))
	}()
	sample(procs, startAt, o.duration)
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
		ph.sent, ph.failed, ph.missed, ph.latency = 0, 0, 0, nil
		for _, p := range ph.procs {
			if p.role != "sender" {
				continue
			}
			r, ok := finished(p.log)
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

func run(o options) error {
	dir, err := os.MkdirTemp("", "tinymod-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*o.duration+5*time.Minute)
	defer cancel()

	var phases []*phase
	if o.baseline {
		ph, err := runBaseline(ctx, dir, o)
		if err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		phases = append(phases, ph)
	}
	ph, err := runTinymod(ctx, dir, o)
	if err != nil {
		return err
	}
	phases = append([]*phase{ph}, phases...)
	return report(o, phases)
}

func runBaseline(ctx context.Context, dir string, o options) (*phase, error) {
	ph := &phase{name: "plain unary gRPC"}
	defer func() {
		for _, p := range ph.procs {
			p.stop()
		}
	}()
	var addrs []string
	for i := range o.replicas {
		addr := benchutil.FreeAddr()
		var pp string
		p, err := start(dir, fmt.Sprintf("baseline-receiver-%d", i), "receiver", append([]string{"baseline-serve", "--listen", addr}, pprofArgs(o, &pp, "--pprof")...)...)
		if err != nil {
			return nil, err
		}
		p.pprof = pp
		ph.procs = append(ph.procs, p)
		addrs = append(addrs, addr)
	}
	startAt := time.Now().Add(3 * time.Second)
	for i := range o.replicas {
		var pp string
		args := []string{"baseline-send", "--targets", strings.Join(addrs, ","),
			"--rate", fmt.Sprint(o.rate / o.replicas), "--seconds", fmt.Sprint(int(o.duration / time.Second)), "--start-at", fmt.Sprint(startAt.UnixMilli())}
		p, err := start(dir, fmt.Sprintf("baseline-sender-%d", i), "sender", append(args, pprofArgs(o, &pp, "--pprof")...)...)
		if err != nil {
			return nil, err
		}
		p.pprof = pp
		ph.procs = append(ph.procs, p)
	}
	measure(o, ph.procs, startAt)
	if err := collect(ctx, ph); err != nil {
		return nil, err
	}
	ph.got = ph.sent // a call that returned without error was received and decoded
	return ph, nil
}

func runTinymod(ctx context.Context, dir string, o options) (*phase, error) {
	ph := &phase{name: "tinymod"}
	cp, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		return nil, err
	}
	defer cp.Stop()
	c, err := client.New(cp.Config, client.Options{Scheme: replica.Scheme()})
	if err != nil {
		return nil, err
	}
	const ns = "load"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return nil, err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, cp.Kubeconfig, 0o600); err != nil {
		return nil, err
	}
	defer func() {
		for _, p := range ph.procs {
			p.stop()
		}
	}()
	for _, mod := range []string{"load-src", "load-sink"} {
		role := map[string]string{"load-src": "sender", "load-sink": "receiver"}[mod]
		for i := range o.replicas {
			id := fmt.Sprintf("%s-%d", mod, i)
			metrics := benchutil.FreeAddr()
			var pp string
			args := []string{"run", "--name", mod, "--namespace", ns, "--kubeconfig", kubeconfig, "--identity", id,
				"--grpc-listen", "127.0.0.1:0", "--metrics-bind-address", metrics, "--health-probe-bind-address", "0"}
			p, err := start(dir, id, role, append(args, pprofArgs(o, &pp, "--pprof-bind-address")...)...)
			if err != nil {
				return nil, err
			}
			p.pprof = pp
			p.metrics = metrics
			ph.procs = append(ph.procs, p)
		}
	}

	settings := func(s Settings) []v1alpha1.TinyNodePortConfig {
		raw, _ := json.Marshal(s)
		return []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: &apiextensionsv1.JSON{Raw: raw}}}
	}
	gen := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "gen", Namespace: ns}, Spec: v1alpha1.TinyNodeSpec{
		Module: "load-src", Component: "generator", Ports: settings(Settings{}),
		Edges: []v1alpha1.TinyNodeEdge{{ID: "gen-sink", Port: "out", To: "sink.in"}}}}
	sink := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "sink", Namespace: ns}, Spec: v1alpha1.TinyNodeSpec{Module: "load-sink", Component: "counter"}}
	for _, n := range []*v1alpha1.TinyNode{sink, gen} {
		if err := c.Create(ctx, n); err != nil {
			return nil, err
		}
	}
	if err := benchutil.Poll(ctx, time.Minute, 50*time.Millisecond, func() error {
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
		for _, p := range ph.procs {
			if _, err := benchutil.Scrape(p.metrics); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}

	// Start a little ahead, so that every generator replica starts together.
	startAt := time.Now().Add(3 * time.Second)
	if err := c.Get(ctx, client.ObjectKeyFromObject(gen), gen); err != nil {
		return nil, err
	}
	gen.Spec.Ports = settings(Settings{Rate: o.rate / o.replicas, Seconds: int(o.duration / time.Second), StartAt: startAt.UnixMilli()})
	if err := c.Update(ctx, gen); err != nil {
		return nil, err
	}
	before, err := received(ph.procs)
	if err != nil {
		return nil, err
	}
	measure(o, ph.procs, startAt)
	if err := collect(ctx, ph); err != nil {
		return nil, err
	}
	after, err := received(ph.procs)
	if err != nil {
		return nil, err
	}
	ph.got = after - before
	return ph, nil
}

func report(o options, phases []*phase) error {
	tm := phases[0]
	base := &phase{name: "(not run)"}
	if len(phases) > 1 {
		base = phases[1]
	}
	rate := func(ph *phase) float64 { return float64(ph.got) / o.duration.Seconds() }
	cpu := func(ph *phase) float64 { return ph.cpu / float64(max(ph.got, 1)) * 1e6 }
	fmt.Printf("load: %d msg/s target for %s, %d sending → %d receiving processes\n\n", o.rate, o.duration, o.replicas, o.replicas)
	fmt.Printf("| figure | tinymod (module → module) | %s | ratio |\n|---|---:|---:|---:|\n", base.name)
	fmt.Printf("| messages received / sent | %d / %d | %d / %d | |\n", tm.got, tm.sent, base.got, base.sent)
	fmt.Printf("| rate | %.0f msg/s | %.0f msg/s | %.3f |\n", rate(tm), rate(base), ratio(rate(tm), rate(base)))
	fmt.Printf("| send errors | %d | %d | |\n", tm.failed, base.failed)
	fmt.Printf("| sends the pacer could not start in time | %d | %d | |\n", tm.missed, base.missed)
	fmt.Printf("| CPU per message, all processes | %.1f µs | %.1f µs | %.2f× |\n", cpu(tm), cpu(base), ratio(cpu(tm), cpu(base)))
	fmt.Printf("| send latency p50, per sender | %s | %s | |\n", tm.p(func(r result) string { return r.P50 }), base.p(func(r result) string { return r.P50 }))
	fmt.Printf("| send latency p99, per sender | %s | %s | |\n\n", tm.p(func(r result) string { return r.P99 }), base.p(func(r result) string { return r.P99 }))

	fmt.Printf("| process | RSS first | RSS last | RSS mean | slope (after %s) | growth over the run |\n|---|---:|---:|---:|---:|---:|\n", o.warmup)
	var problems []error
	skip := int(o.warmup / time.Second)
	var rows []benchutil.Row
	for _, ph := range phases {
		for _, p := range ph.procs {
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
	rows = append([]benchutil.Row{
		{Figure: fmt.Sprintf("load: rate across two modules for %s", o.duration), Value: fmt.Sprintf("%.0f msg/s", rate(tm)), Anchor: "target", AnchorValue: fmt.Sprint(o.rate), Ratio: fmt.Sprintf("%.3f", rate(tm)/float64(o.rate)), Goal: fmt.Sprintf("%d msg/s", o.rate)},
		{Figure: "load: send errors, messages lost", Value: fmt.Sprintf("%d, %d", tm.failed, tm.sent-tm.got), Goal: "0, 0"},
		{Figure: "load: CPU per message, all processes", Value: fmt.Sprintf("%.1f µs", cpu(tm)), Anchor: base.name, AnchorValue: fmt.Sprintf("%.1f µs", cpu(base)), Ratio: fmt.Sprintf("%.2f×", ratio(cpu(tm), cpu(base)))},
		{Figure: "load: send latency p50 / p99 (first sender)", Value: latencyOf(tm), Anchor: base.name, AnchorValue: latencyOf(base)},
	}, rows...)
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

func latencyOf(ph *phase) string {
	if len(ph.latency) == 0 {
		return ""
	}
	return ph.latency[0].P50 + " / " + ph.latency[0].P99
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

// finished returns the result line a sender logs when done.
func finished(path string) (result, bool) {
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
			return r, true
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
