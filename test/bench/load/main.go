// Command load pushes a steady stream of messages from one module to another
// on a real local control plane and prints what came through, the CPU it
// cost and how each replica's memory moved.
//
//	go run ./test/bench/load -rate 10000 -duration 60s
//
// Module load-src runs a generator on each of its replicas; its edge goes to
// a counting sink in module load-sink, so every message crosses gRPC to one
// of load-sink's replicas. Every replica is a process of this program (run
// with "run" as its first argument it is a module binary, like tinymod).
// RSS (VmRSS) and CPU time of each process are read from /proc every second.
// It exits 1 when a message failed or went missing, the rate fell short, or
// a replica's memory grew.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
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

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/cli"
	"github.com/tinymod/tinymod/internal/controlplane"
	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/test/bench/benchutil"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "run" {
		cmd := cli.NewRunCommand("load", []module.Component{&generator{}, counter{}})
		cmd.SetArgs(os.Args[2:])
		if err := cmd.Execute(); err != nil {
			os.Exit(1)
		}
		return
	}
	rate := flag.Int("rate", 10000, "messages a second, in all")
	duration := flag.Duration("duration", 60*time.Second, "how long to send")
	replicas := flag.Int("replicas", 2, "replicas of each module")
	warmup := flag.Duration("warmup", 10*time.Second, "leading part of the run left out of the memory slope")
	maxGrowth := flag.Float64("max-growth", 0.10, "largest RSS growth over the run (from the slope) allowed, as a fraction of the mean")
	flag.Parse()
	if err := run(*rate, *duration, *replicas, *warmup, *maxGrowth); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

type proc struct {
	id, module, metrics, log string
	cmd                      *exec.Cmd
	rss                      []float64 // KiB, one a second
	cpu0, cpu1               float64   // seconds of CPU at the start and end of sending
}

func run(rate int, duration time.Duration, replicas int, warmup time.Duration, maxGrowth float64) error {
	dir, err := os.MkdirTemp("", "tinymod-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cp, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		return err
	}
	defer cp.Stop()
	c, err := client.New(cp.Config, client.Options{Scheme: replica.Scheme()})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), duration+5*time.Minute)
	defer cancel()
	const ns = "load"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, cp.Kubeconfig, 0o600); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	var procs []*proc
	defer func() {
		for _, p := range procs {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			_ = p.cmd.Wait()
		}
	}()
	for _, mod := range []string{"load-src", "load-sink"} {
		for i := range replicas {
			p := &proc{id: fmt.Sprintf("%s-%d", mod, i), module: mod, metrics: benchutil.FreeAddr()}
			p.log = filepath.Join(dir, p.id+".log")
			f, err := os.Create(p.log)
			if err != nil {
				return err
			}
			p.cmd = exec.Command(self, "run", "--name", mod, "--namespace", ns, "--kubeconfig", kubeconfig, "--identity", p.id,
				"--grpc-listen", "127.0.0.1:0", "--metrics-bind-address", p.metrics, "--health-probe-bind-address", "0")
			p.cmd.Stdout, p.cmd.Stderr = f, f
			p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			if err := p.cmd.Start(); err != nil {
				return err
			}
			procs = append(procs, p)
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
			return err
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
		// Every sink replica has published its address: both get traffic.
		m := &v1alpha1.TinyModule{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "load-sink"}, m); err != nil || m.Status.Addr == "" {
			return fmt.Errorf("load-sink has no address yet: %v", err)
		}
		for _, p := range procs {
			if _, err := benchutil.Scrape(p.metrics); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}

	// Start sending a little ahead, so that every generator replica starts together.
	startAt := time.Now().Add(3 * time.Second)
	if err := c.Get(ctx, client.ObjectKeyFromObject(gen), gen); err != nil {
		return err
	}
	gen.Spec.Ports = settings(Settings{Rate: rate / replicas, Seconds: int(duration / time.Second), StartAt: startAt.UnixMilli()})
	if err := c.Update(ctx, gen); err != nil {
		return err
	}
	before, err := received(procs)
	if err != nil {
		return err
	}
	time.Sleep(time.Until(startAt))
	for _, p := range procs {
		p.cpu0 = benchutil.CPUSeconds(p.cmd.Process.Pid)
	}
	sample := time.NewTicker(time.Second)
	end := startAt.Add(duration)
	for now := range sample.C {
		for _, p := range procs {
			p.rss = append(p.rss, benchutil.RSSKiB(p.cmd.Process.Pid))
		}
		if now.After(end) {
			break
		}
	}
	sample.Stop()
	for _, p := range procs {
		p.cpu1 = benchutil.CPUSeconds(p.cmd.Process.Pid)
	}
	// The generators log their totals once their last send has returned.
	var sent, failed, missed int64
	var latency []string
	if err := benchutil.Poll(ctx, 30*time.Second, 50*time.Millisecond, func() error {
		sent, failed, missed, latency = 0, 0, 0, nil
		for _, p := range procs {
			if p.module != "load-src" {
				continue
			}
			line, ok := finished(p.log)
			if !ok {
				return fmt.Errorf("%s has not finished sending", p.id)
			}
			sent += line.Sent
			failed += line.Failed
			missed += line.Missed
			latency = append(latency, fmt.Sprintf("%s p50 %s p99 %s p99.9 %s", p.id, line.P50, line.P99, line.P999))
		}
		return nil
	}); err != nil {
		return err
	}
	after, err := received(procs)
	if err != nil {
		return err
	}
	got := after - before
	var cpu float64
	for _, p := range procs {
		cpu += p.cpu1 - p.cpu0
	}

	fmt.Printf("load: %d msg/s target for %s, %d replicas of load-src → %d of load-sink over gRPC\n\n", rate, duration, replicas, replicas)
	fmt.Printf("| figure | value | anchor | ratio |\n|---|---:|---:|---:|\n")
	achieved := float64(got) / duration.Seconds()
	fmt.Printf("| messages received | %d | %d sent | %.4f |\n", got, sent, ratio(float64(got), float64(sent)))
	fmt.Printf("| rate | %.0f msg/s | %d target | %.3f |\n", achieved, rate, achieved/float64(rate))
	fmt.Printf("| send errors | %d | 0 | |\n", failed)
	fmt.Printf("| sends missed by the pacer | %d | 0 | |\n", missed)
	fmt.Printf("| CPU per message, all replicas | %.1f µs | | |\n", cpu/float64(max(got, 1))*1e6)
	fmt.Printf("\nsend latency (generator output → sink handled → result back): %s\n\n", strings.Join(latency, "; "))
	fmt.Printf("| replica | RSS first | RSS last | RSS mean | slope (after %s) | growth over the run |\n|---|---:|---:|---:|---:|---:|\n", warmup)
	var problems []error
	skip := int(warmup / time.Second)
	for _, p := range procs {
		samples := p.rss[min(skip, len(p.rss)):]
		slope, mean := fit(samples)
		growth := slope * float64(len(samples)) / mean
		fmt.Printf("| %s | %.1f MiB | %.1f MiB | %.1f MiB | %+.1f KiB/s | %+.1f%% |\n", p.id, p.rss[0]/1024, p.rss[len(p.rss)-1]/1024, mean/1024, slope, growth*100)
		if growth > maxGrowth {
			problems = append(problems, fmt.Errorf("%s: RSS grew %.1f%% over the run", p.id, growth*100))
		}
	}
	if failed > 0 {
		problems = append(problems, fmt.Errorf("%d sends failed", failed))
	}
	if got != sent {
		problems = append(problems, fmt.Errorf("%d sent but %d received", sent, got))
	}
	if achieved < 0.95*float64(rate) {
		problems = append(problems, fmt.Errorf("%.0f msg/s is short of %d", achieved, rate))
	}
	return errors.Join(problems...)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
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

type finishLine struct {
	Msg                  string `json:"msg"`
	Sent, Failed, Missed int64
	P50, P99, P999       string
}

func finished(path string) (finishLine, bool) {
	f, err := os.Open(path)
	if err != nil {
		return finishLine{}, false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		var l finishLine
		if json.Unmarshal(s.Bytes(), &l) == nil && l.Msg == "load finished" {
			return l, true
		}
	}
	return finishLine{}, false
}

// received sums what the sink replicas handled, from their metrics.
func received(procs []*proc) (int64, error) {
	var total int64
	for _, p := range procs {
		if p.module != "load-sink" {
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
