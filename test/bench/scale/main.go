// Command scale runs many TinyNodes on three replicas of the standard module
// on a real local control plane and prints: the time until every node runs on
// every replica (and until the leader has written every node's status), the
// API writes each replica made over a steady stretch, counted in the API
// server's audit log, and memory per node.
//
//	go run ./test/bench/scale -nodes 1000 -steady 5m
//
// Every replica is a process of this program (with "run" as its first
// argument it is the standard module, like tinymod), each its own API user.
// It exits 1 when a node does not run everywhere, or a replica wrote anything
// but Leases during the steady stretch.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/go-logr/logr"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/cli"
	"github.com/tinymod/tinymod/components"
	"github.com/tinymod/tinymod/internal/controlplane"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/test/bench/benchutil"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "run" {
		if os.Getenv(profileEnv) != "" {
			// Every allocation of 4 KiB on average sampled, so that the
			// profile tells what a node costs.
			runtime.MemProfileRate = 4096
		}
		cmd := cli.NewRunCommand("scale", components.Standard())
		cmd.SetArgs(os.Args[2:])
		if err := cmd.Execute(); err != nil {
			os.Exit(1)
		}
		return
	}
	nodes := flag.Int("nodes", 1000, "TinyNodes to create")
	replicas := flag.Int("replicas", 3, "replicas of the module")
	steady := flag.Duration("steady", 5*time.Minute, "steady stretch over which API writes are counted")
	rowsFile := flag.String("rows", "", "also write the figures as JSON rows to this file (for the benchmark report)")
	profiles := flag.String("profiles", "", "save each replica's heap profile (after a GC) at the end of the steady stretch to this directory, as <replica>.heap")
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())
	if err := run(*nodes, *replicas, *steady, *rowsFile, *profiles); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

type proc struct {
	id, metrics, pprof string
	cmd                *exec.Cmd
}

// profileEnv tells a replica that its heap will be profiled.
const profileEnv = "TINYMOD_SCALE_PROFILE"

const (
	ns         = "scale"
	moduleName = "scale"
)

func run(nodes, replicas int, steady time.Duration, rowsFile, profiles string) error {
	dir, err := os.MkdirTemp("", "tinymod-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cp, err := controlplane.Start(controlplane.Options{Audit: true})
	if err != nil {
		return err
	}
	defer cp.Stop()
	admin := rest.CopyConfig(cp.Config)
	admin.QPS, admin.Burst = 500, 1000
	c, err := client.New(admin, client.Options{Scheme: replica.Scheme()})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), steady+15*time.Minute)
	defer cancel()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
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
	for i := range replicas {
		p := &proc{id: fmt.Sprintf("scale-%d", i), metrics: benchutil.FreeAddr(), pprof: "0"}
		if profiles != "" {
			p.pprof = benchutil.FreeAddr()
		}
		cfg, err := cp.AddUser(p.id, "system:masters")
		if err != nil {
			return err
		}
		kc, err := controlplane.Kubeconfig(p.id, cfg)
		if err != nil {
			return err
		}
		kubeconfig := filepath.Join(dir, "kubeconfig-"+p.id)
		if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
			return err
		}
		log, err := os.Create(filepath.Join(dir, p.id+".log"))
		if err != nil {
			return err
		}
		p.cmd = exec.Command(self, "run", "--name", moduleName, "--namespace", ns, "--kubeconfig", kubeconfig, "--identity", p.id,
			"--grpc-listen", "127.0.0.1:0", "--metrics-bind-address", p.metrics, "--health-probe-bind-address", "0", "--pprof-bind-address", p.pprof)
		p.cmd.Stdout, p.cmd.Stderr = log, log
		if profiles != "" {
			p.cmd.Env = append(os.Environ(), profileEnv+"=1")
		}
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := p.cmd.Start(); err != nil {
			return err
		}
		procs = append(procs, p)
	}
	if err := benchutil.Poll(ctx, time.Minute, 100*time.Millisecond, func() error {
		l := leaseHolder(ctx, c)
		if l == "" {
			return errors.New("no leader yet")
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
	// Memory with no nodes, settled.
	time.Sleep(5 * time.Second)
	empty := memory(procs)

	// Create the nodes: chains of a ticker (stopped) into a debug sink, the
	// shape of a real flow, created as fast as the API server takes them.
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, nodes)
	names := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range names {
				if err := c.Create(ctx, node(i)); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := range nodes {
		names <- i
	}
	close(names)
	wg.Wait()
	close(errs)
	for err := range errs {
		return fmt.Errorf("create: %w", err)
	}
	created := time.Since(start)

	runningAt := map[string]time.Duration{}
	var readyAt time.Duration
	if err := benchutil.Poll(ctx, 10*time.Minute, 100*time.Millisecond, func() error {
		for _, p := range procs {
			if _, done := runningAt[p.id]; done {
				continue
			}
			m, err := benchutil.Scrape(p.metrics)
			if err != nil {
				return err
			}
			if int(m[fmt.Sprintf(`tinymod_node_instances{module=%q}`, moduleName)]) >= nodes {
				runningAt[p.id] = time.Since(start)
			}
		}
		if readyAt == 0 {
			var list v1alpha1.TinyNodeList
			if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
				return err
			}
			ready := 0
			for _, n := range list.Items {
				if len(n.Status.Conditions) > 0 && n.Status.Conditions[0].Status == metav1.ConditionTrue {
					ready++
				}
			}
			if ready >= nodes {
				readyAt = time.Since(start)
			}
		}
		if len(runningAt) < len(procs) || readyAt == 0 {
			return fmt.Errorf("%d of %d replicas run every node; status ready: %v", len(runningAt), len(procs), readyAt > 0)
		}
		return nil
	}); err != nil {
		return err
	}

	// Let the start-up writes finish, then count a steady stretch.
	time.Sleep(15 * time.Second)
	steadyFrom := time.Now()
	time.Sleep(steady)
	steadyTo := time.Now()
	full := memory(procs)
	writes, err := auditWrites(cp.AuditLogPath, ns, steadyFrom, steadyTo)
	if err != nil {
		return err
	}
	startup, err := auditWrites(cp.AuditLogPath, ns, start, start.Add(readyAt))
	if err != nil {
		return err
	}
	if profiles != "" {
		if err := saveProfiles(profiles, procs); err != nil {
			return err
		}
	}

	fmt.Printf("scale: %d TinyNodes (%d tickers into %d debug sinks) on %d replicas\n\n", nodes, nodes/2, nodes-nodes/2, replicas)
	fmt.Printf("| figure | value |\n|---|---:|\n")
	fmt.Printf("| all nodes created | %s |\n", created.Round(time.Millisecond))
	for _, p := range procs {
		fmt.Printf("| every node running on %s | %s |\n", p.id, runningAt[p.id].Round(time.Millisecond))
	}
	fmt.Printf("| every node's status Ready (written by the leader) | %s |\n\n", readyAt.Round(time.Millisecond))
	var slowest time.Duration
	for _, d := range runningAt {
		slowest = max(slowest, d)
	}
	rows := []benchutil.Row{
		{Figure: fmt.Sprintf("scale: %d nodes running on all %d replicas, from the first create", nodes, replicas), Value: slowest.Round(time.Millisecond).String()},
		{Figure: fmt.Sprintf("scale: %d nodes' status Ready (leader's writes, client limit 40/s)", nodes), Value: readyAt.Round(time.Millisecond).String()},
	}

	holder := leaseHolder(ctx, c)
	fmt.Printf("API writes from the first create until every status was Ready, by replica and resource:\n\n")
	fmt.Printf("| replica | resource | writes |\n|---|---|---:|\n")
	for _, p := range procs {
		byResource := startup[p.id]
		keys := make([]string, 0, len(byResource))
		for k := range byResource {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Printf("| %s | %s | %d |\n", p.id, k, byResource[k])
		}
	}
	fmt.Println()
	retry := leader.DefaultRetryPeriod
	fmt.Printf("API writes over %s of steady state (audit log), by replica and resource:\n\n", steady)
	fmt.Printf("| replica | role | resource | writes | anchor: one renewal per retry period (%s) | ratio |\n|---|---|---|---:|---:|---:|\n", retry)
	var problems []error
	expected := float64(steadyTo.Sub(steadyFrom)) / float64(retry)
	other, leases := 0, 0
	for _, p := range procs {
		role := "reader"
		if p.id == holder {
			role = "leader"
		}
		byResource := writes[p.id]
		keys := make([]string, 0, len(byResource))
		for k := range byResource {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			n := byResource[k]
			anchor, ratio := "", ""
			if strings.HasPrefix(k, "leases ") {
				anchor, ratio = fmt.Sprintf("%.0f", expected), fmt.Sprintf("%.2f", float64(n)/expected)
				leases += n
			} else {
				other += n
				problems = append(problems, fmt.Errorf("%s (%s) wrote %d × %s in the steady stretch", p.id, role, n, k))
			}
			fmt.Printf("| %s | %s | %s | %d | %s | %s |\n", p.id, role, k, n, anchor, ratio)
		}
	}
	rows = append(rows, benchutil.Row{Figure: fmt.Sprintf("scale: API writes in %s of steady state, all replicas", steady),
		Value: fmt.Sprintf("%d Lease renewals, %d other", leases, other), Goal: "Lease renewals only"})
	fmt.Printf("\nmemory, with no nodes and with %d (RSS; Go heap in use):\n\n", nodes)
	fmt.Printf("| replica | RSS empty | RSS full | RSS per node | heap empty | heap full | heap per node |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range procs {
		e, f := empty[p.id], full[p.id]
		fmt.Printf("| %s | %.1f MiB | %.1f MiB | %.1f KiB | %.1f MiB | %.1f MiB | %.1f KiB |\n", p.id,
			e.rss/(1<<20), f.rss/(1<<20), (f.rss-e.rss)/float64(nodes)/1024,
			e.heap/(1<<20), f.heap/(1<<20), (f.heap-e.heap)/float64(nodes)/1024)
		rows = append(rows, benchutil.Row{Figure: "scale: memory per node on " + p.id,
			Value: fmt.Sprintf("%.1f KiB RSS, %.1f KiB Go heap", (f.rss-e.rss)/float64(nodes)/1024, (f.heap-e.heap)/float64(nodes)/1024)})
	}
	if rowsFile != "" {
		for i := range rows {
			rows[i].Command = "make scale"
		}
		if err := benchutil.WriteRows(rowsFile, rows); err != nil {
			return err
		}
	}
	return errors.Join(problems...)
}

func node(i int) *v1alpha1.TinyNode {
	name := fmt.Sprintf("n-%04d", i)
	n := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{v1alpha1.FlowNameLabel: "scale"}},
		Spec: v1alpha1.TinyNodeSpec{Module: moduleName, Component: "debug"}}
	if i%2 == 0 {
		n.Spec.Component = "ticker"
		n.Spec.Edges = []v1alpha1.TinyNodeEdge{{ID: name + "-out", Port: "out", To: fmt.Sprintf("n-%04d.in", i+1)}}
	}
	return n
}

func leaseHolder(ctx context.Context, c client.Client) string {
	l := &coordinationv1.Lease{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: replica.LeaseName(moduleName)}, l); err == nil && l.Spec.HolderIdentity != nil {
		return *l.Spec.HolderIdentity
	}
	return ""
}

// saveProfiles writes each replica's heap profile, taken after a GC, to dir.
func saveProfiles(dir string, procs []*proc) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range procs {
		resp, err := http.Get("http://" + p.pprof + "/debug/pprof/heap?gc=1")
		if err != nil {
			return fmt.Errorf("heap profile of %s: %w", p.id, err)
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("heap profile of %s: %w", p.id, err)
		}
		if err := os.WriteFile(filepath.Join(dir, p.id+".heap"), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

type mem struct{ rss, heap float64 }

func memory(procs []*proc) map[string]mem {
	out := map[string]mem{}
	for _, p := range procs {
		m, _ := benchutil.Scrape(p.metrics)
		out[p.id] = mem{rss: m["process_resident_memory_bytes"], heap: m["go_memstats_heap_inuse_bytes"]}
	}
	return out
}

// auditWrites counts, per user and "resource verb", the writes in namespace
// ns received between from and to.
func auditWrites(path, namespace string, from, to time.Time) (map[string]map[string]int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]int{}
	for _, line := range bytes.Split(data, []byte("\n")) {
		var ev struct {
			Verb string `json:"verb"`
			User struct {
				Username string `json:"username"`
			} `json:"user"`
			ObjectRef struct {
				Resource, Namespace, Subresource string
			} `json:"objectRef"`
			Received metav1.MicroTime `json:"requestReceivedTimestamp"`
		}
		if json.Unmarshal(line, &ev) != nil || ev.ObjectRef.Namespace != namespace || ev.Received.Time.Before(from) || ev.Received.Time.After(to) {
			continue
		}
		key := ev.ObjectRef.Resource + " " + ev.Verb
		if ev.ObjectRef.Subresource != "" {
			key = ev.ObjectRef.Resource + "/" + ev.ObjectRef.Subresource + " " + ev.Verb
		}
		if out[ev.User.Username] == nil {
			out[ev.User.Username] = map[string]int{}
		}
		out[ev.User.Username][key]++
	}
	return out, nil
}
