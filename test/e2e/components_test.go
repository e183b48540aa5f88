package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/manifest"
)

// applySample creates every object of a sample file in ns.
func applySample(t *testing.T, c client.Client, ns, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := manifest.Apply(controlplanetest.Context(t, 30*time.Second), c, ns, data); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestStandardComponentsOnThreeProcesses runs the sample flow on three
// `tinymod run` processes: the ticker emits only from the leader, resumes on
// a new leader after kill -9, a paused ex-leader emits nothing once resumed,
// no two replicas' debug lines interleave, and one button press is one flow.
func TestStandardComponentsOnThreeProcesses(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	c := newCluster(t, env.Kubeconfig)
	procs := map[string]*process{}
	for i := range 3 {
		id := fmt.Sprintf("std-%d", i)
		procs[id] = c.Run("tinymod", ns, id)
	}
	applySample(t, env.Client, ns, "../../config/samples/demo-flow.yaml")
	ctx := controlplanetest.Context(t, 3*time.Minute)

	waitLeader := func(not ...string) string { return waitLeader(t, env.Client, ns, "tinymod", not...) }
	signal := func(node string, data string) {
		s := &v1alpha1.TinySignal{ObjectMeta: metav1.ObjectMeta{GenerateName: "sig-", Namespace: ns},
			Spec: v1alpha1.TinySignalSpec{Node: node, Port: "_control", Data: &apiextensionsv1.JSON{Raw: []byte(data)}}}
		if err := env.Client.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	// ticks returns the quiet sink's debug lines of one process after since.
	ticks := func(id string, since time.Time) int {
		n := 0
		for _, l := range procs[id].Lines("debug") {
			if l.Node == "debug-quiet" && l.Time.After(since) {
				n++
			}
		}
		return n
	}
	waitTicks := func(id string, since time.Time, limit time.Duration) {
		controlplanetest.Eventually(t, limit, func() error {
			if ticks(id, since) == 0 {
				return fmt.Errorf("no tick logged by %s since %s", id, since.Format(time.RFC3339Nano))
			}
			return nil
		})
	}

	first := waitLeader()
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		n := &v1alpha1.TinyNode{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "debug-quiet"}, n); err != nil || len(n.Status.Conditions) == 0 || n.Status.Conditions[0].Status != metav1.ConditionTrue {
			return fmt.Errorf("debug-quiet not ready: %v %+v", err, n.Status.Conditions)
		}
		return nil
	})
	signal("ticker-1", `{"start": true}`)
	waitTicks(first, time.Time{}, 20*time.Second)

	// kill -9 the leader: ticks resume on the new leader within lease + 2s.
	killed := time.Now()
	if err := procs[first].Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	second := waitLeader(first)
	waitTicks(second, killed, 2*time.Second+2*time.Second+time.Second)
	for _, l := range procs[second].Lines("debug") {
		if l.Node == "debug-quiet" && l.Time.After(killed) {
			if gap := l.Time.Sub(killed); gap > 4*time.Second {
				t.Errorf("first tick on %s came %s after the kill, want within lease + 2s", second, gap)
			}
			break
		}
	}

	// SIGSTOP the new leader past its lease, then SIGCONT: it emits nothing more.
	stopped := time.Now()
	if err := procs[second].Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	third := waitLeader(second)
	waitTicks(third, stopped, 10*time.Second)
	time.Sleep(3*time.Second - time.Since(stopped)) // paused longer than the lease
	if err := procs[second].Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	// Let the resumed process run a while: it must not tick.
	waitTicks(third, resumed.Add(2*time.Second), 10*time.Second)
	if n := ticks(second, stopped); n > 0 {
		t.Errorf("the paused ex-leader %s logged %d ticks after it was stopped", second, n)
	}

	// One button press, one flow, on the leader.
	press := time.Now()
	out, err := exec.Command(c.Bin, "signal", "--kubeconfig", c.Kubeconfig, "-n", ns,
		"--node", "signal-1", "--port", "_control", "--data", `{"send": true}`).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tinysignal/signal-1-") {
		t.Fatalf("tinymod signal: %v\n%s", err, out)
	}
	if out, err := exec.Command(c.Bin, "signal", "--kubeconfig", c.Kubeconfig, "-n", ns,
		"--node", "signal-1", "--port", "_control", "--data", `{send}`).CombinedOutput(); err == nil || !strings.Contains(string(out), "--data is not JSON") {
		t.Errorf("bad --data: %v\n%s", err, out)
	}
	controlplanetest.Eventually(t, 20*time.Second, func() error {
		n := 0
		for _, p := range procs {
			for _, l := range p.Lines("debug") {
				if l.Node == "debug-signal" && l.Time.After(press) {
					n++
				}
			}
		}
		if n != 1 {
			return fmt.Errorf("%d flows for one press", n)
		}
		return nil
	})
	time.Sleep(1500 * time.Millisecond) // a second flow would show by now
	var flows []logLine
	for _, p := range procs {
		for _, l := range p.Lines("debug") {
			if l.Node == "debug-signal" {
				flows = append(flows, l)
			}
		}
	}
	if len(flows) != 1 || !strings.Contains(string(flows[0].Data), `"hello":"world"`) || flows[0].Identity != third {
		t.Errorf("button press: %d flows %+v, want one with hello=world on %s", len(flows), flows, third)
	}

	// Reset cancels a running flow: the press waits in the delay, reset ends it.
	resetPress := time.Now()
	signal("signal-1", `{"send": true}`)
	controlplanetest.Eventually(t, 10*time.Second, func() error {
		n := &v1alpha1.TinyNode{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "signal-1"}, n); err != nil {
			return err
		}
		if n.Status.Metadata["running"] != "true" {
			return fmt.Errorf("signal-1 not running yet: %v", n.Status.Metadata)
		}
		return nil
	})
	signal("signal-1", `{"reset": true}`)
	controlplanetest.Eventually(t, 10*time.Second, func() error {
		n := &v1alpha1.TinyNode{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "signal-1"}, n); err != nil {
			return err
		}
		if n.Status.Metadata["running"] != "false" {
			return fmt.Errorf("signal-1 still running after reset: %v", n.Status.Metadata)
		}
		return nil
	})
	time.Sleep(1500 * time.Millisecond) // past the delay: a flow reset in time logs nothing
	for _, p := range procs {
		for _, l := range p.Lines("debug") {
			if l.Node == "debug-signal" && l.Time.After(resetPress) {
				t.Errorf("a reset flow still reached debug-signal on %s at %s", p.ID, l.Time)
			}
		}
	}

	// Across the whole run, debug lines of different replicas never interleave.
	var all []logLine
	for _, p := range procs {
		for _, l := range p.Lines("debug") {
			if l.Node == "debug-quiet" {
				all = append(all, l)
			}
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Time.Before(all[j].Time) })
	// The quiet sink's edge mapping shaped every tick.
	for _, l := range all {
		if string(l.Data) != `{"quiet":true,"said":"tick"}` {
			t.Errorf("mapped tick: %s", l.Data)
			break
		}
	}
	runs := []string{}
	for _, l := range all {
		if len(runs) == 0 || runs[len(runs)-1] != l.Identity {
			runs = append(runs, l.Identity)
		}
	}
	seen := map[string]bool{}
	for _, id := range runs {
		if seen[id] {
			t.Errorf("debug lines interleave between replicas: runs %v", runs)
			break
		}
		seen[id] = true
	}
	t.Logf("leaders %s → %s → %s; %d ticks in runs %v", first, second, third, len(all), runs)
}
