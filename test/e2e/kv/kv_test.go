// Package kv_test runs the kv component on three `tinymod run` processes and
// kills the leader with kill -9 in the middle of a stream of stores sent to
// every replica over gRPC: every store that was answered must afterwards be
// read back on every replica, the restarted one too.
package kv_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/components/kv"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/scheduler"
	"github.com/tinymod/tinymod/internal/transport"
	"github.com/tinymod/tinymod/test/bench/benchutil"
	"github.com/tinymod/tinymod/test/e2e/harness"
)

func TestMain(m *testing.M) { controlplanetest.Main(m) }

const (
	moduleName = "kvmod"
	node       = "state"
	// writes is how many stores are sent; the leader is killed once a third
	// of them have been answered.
	writes = 300
	// writers send at once, at about rate stores a second in all, so the
	// stores span the failover.
	writers = 12
	rate    = 80
	// sendTimeout is a sender's deadline for one message: longer than a
	// reader's forwarding (scheduler.ForwardTimeout), so a store waits
	// through the failover rather than give up first.
	sendTimeout = 30 * time.Second
)

// one is a resolver that names one replica: messages go to it alone.
type one string

func (o one) Replicas(context.Context, string) []string     { return []string{string(o)} }
func (o one) Leader(context.Context, string) (string, bool) { return string(o), true }

// replica is one `tinymod run` and a gRPC client that reaches it alone.
type replica struct {
	*harness.Process
	metrics string
	addr    string
	client  *transport.Client
	dead    atomic.Bool
}

func (r *replica) send(ctx context.Context, port string, data any) any {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	return r.client.Send(ctx, moduleName, scheduler.Msg{To: node + "." + port, From: "driver.out", Data: data})
}

// result is an answer decoded into T, or the error the replica gave.
func result[T any](res any) (T, error) {
	var v T
	if err, ok := res.(error); ok {
		return v, err
	}
	raw, err := json.Marshal(res)
	if err == nil {
		err = json.Unmarshal(raw, &v)
	}
	return v, err
}

// write is one store: its key, where it went and how it ended.
type write struct {
	i          int
	key        string
	to         string
	start, end time.Time
	err        error
}

func TestStoresSurviveALeaderKill(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, 8*time.Minute)
	c := env.Client
	cluster := harness.NewCluster(t, env.Kubeconfig)

	// Replicas are added before the stores start and after they end.
	replicas := map[string]*replica{}
	start := func(id string) {
		r := &replica{metrics: benchutil.FreeAddr()}
		r.Process = cluster.Run(moduleName, ns, id, "--metrics-bind-address", r.metrics)
		replicas[id] = r
	}
	for i := range 3 {
		start(fmt.Sprintf("kv-%d", i))
	}
	first := harness.WaitLeader(t, c, ns, moduleName, 60*time.Second)

	raw, _ := json.Marshal(kv.Settings{MaxEntries: 2 * writes, MaxBytes: kv.MaxMaxBytes})
	if err := c.Create(ctx, &v1alpha1.TinyNode{
		ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: ns},
		Spec: v1alpha1.TinyNodeSpec{Module: moduleName, Component: kv.ComponentName,
			Ports: []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: &apiextensionsv1.JSON{Raw: raw}}}},
	}); err != nil {
		t.Fatal(err)
	}
	// connect finds a replica's gRPC address in its membership Lease and
	// waits until its node answers.
	connect := func(id string) {
		t.Helper()
		r := replicas[id]
		controlplanetest.Eventually(t, 60*time.Second, func() error {
			var leases coordinationv1.LeaseList
			if err := c.List(ctx, &leases, client.InNamespace(ns), client.MatchingLabels{leader.ModuleLabel: moduleName, leader.RoleLabel: "member"}); err != nil {
				return err
			}
			for _, l := range leases.Items {
				if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == id && l.Annotations[leader.AddressAnnotation] != "" {
					r.addr = l.Annotations[leader.AddressAnnotation]
					return nil
				}
			}
			return fmt.Errorf("no address for %s yet", id)
		})
		r.client = transport.NewClientWith(one(r.addr), "", transport.ClientConfig{ResolveTTL: -1})
		t.Cleanup(r.client.Close)
		controlplanetest.EventuallyEvery(t, 60*time.Second, 100*time.Millisecond, func() error {
			_, err := result[kv.Got](r.send(ctx, kv.GetPort, kv.Get{Key: "warm-up"}))
			return err
		})
	}
	for id := range replicas {
		connect(id)
	}
	t.Logf("3 replicas answer; %s leads", first)

	// The stores, round robin over the replicas alive, at about rate a second.
	all := make([]*write, writes)
	var next, acked atomic.Int64
	var rywChecked, rywMissed atomic.Int64
	ids := []string{"kv-0", "kv-1", "kv-2"}
	pace := time.NewTicker(time.Second / rate)
	defer pace.Stop()
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= writes || ctx.Err() != nil {
					return
				}
				select {
				case <-pace.C:
				case <-ctx.Done():
					return
				}
				var r *replica
				var id string
				for j := range len(ids) {
					id = ids[(i+j)%len(ids)]
					if r = replicas[id]; !r.dead.Load() {
						break
					}
				}
				w := &write{i: i, key: fmt.Sprintf("w-%04d", i), to: id, start: time.Now()}
				all[i] = w
				stored, err := result[kv.Stored](r.send(ctx, kv.StorePort, kv.Store{Key: w.key, Value: map[string]any{"n": i, "to": id}}))
				w.end = time.Now()
				if err == nil && (!stored.Stored || stored.Key != w.key) {
					err = fmt.Errorf("answer %+v", stored)
				}
				w.err = err
				if err != nil {
					continue
				}
				acked.Add(1)
				// Read your writes: the replica that answered the store reads it.
				got, err := result[kv.Got](r.send(ctx, kv.GetPort, kv.Get{Key: w.key}))
				if err != nil {
					continue // the replica is gone
				}
				rywChecked.Add(1)
				if !got.Found || got.Value.(map[string]any)["n"] != float64(i) {
					rywMissed.Add(1)
					t.Errorf("%s answered the store of %s, then read %+v", id, w.key, got)
				}
			}
		}()
	}

	// kill -9 the leader once a third of the stores are answered.
	controlplanetest.Eventually(t, 2*time.Minute, func() error {
		if n := acked.Load(); n < writes/3 {
			return fmt.Errorf("%d stores answered", n)
		}
		return nil
	})
	killed := harness.Holder(ctx, c, ns, moduleName)
	victim := replicas[killed]
	if victim == nil {
		t.Fatalf("the lease holder %q is none of the replicas", killed)
	}
	victim.dead.Store(true)
	killedAt := time.Now()
	if err := victim.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-victim.Exited
	t.Logf("killed the leader %s after %d stores answered", killed, acked.Load())
	second := harness.WaitLeader(t, c, ns, moduleName, 60*time.Second, killed)
	electedAt := time.Now()
	t.Logf("%s leads %s after the kill", second, time.Since(killedAt).Round(time.Millisecond))

	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(3 * time.Minute):
		t.Fatal("the stores did not end within 3 minutes")
	}

	// The killed replica comes back, as its pod would, under a new name.
	back := killed + "-back"
	start(back)
	connect(back)

	var ok, failed, across, during, onLeader []*write
	for _, w := range all {
		switch {
		case w == nil:
			t.Fatal("a store was never sent")
		case w.err != nil:
			failed = append(failed, w)
		default:
			ok = append(ok, w)
			if w.start.Before(killedAt) && w.end.After(killedAt) {
				across = append(across, w)
			}
			if w.start.After(killedAt) && w.start.Before(electedAt) {
				during = append(during, w)
			}
			if w.to == killed && w.end.Before(killedAt) || w.to == second && w.start.After(killedAt) {
				onLeader = append(onLeader, w)
			}
		}
	}
	t.Logf("stores: %d sent, %d answered, %d failed; of those answered, %d were in flight across the kill and %d sent while no leader was seen, %d sent to the leader of the time and %d to readers, which forward",
		writes, len(ok), len(failed), len(across), len(during), len(onLeader), len(ok)-len(onLeader))
	for _, w := range failed {
		t.Logf("  failed: %s to %s after %s: %v", w.key, w.to, w.end.Sub(w.start).Round(time.Millisecond), w.err)
	}
	t.Logf("read your writes: %d checked on the replica that answered, %d missed", rywChecked.Load(), rywMissed.Load())
	if len(ok) < writes/2 {
		t.Errorf("only %d of %d stores answered", len(ok), writes)
	}
	if len(across)+len(during) == 0 {
		t.Errorf("no answered store was in flight across the kill or sent before the next leader: the kill did not land in the middle of the writes")
	}

	// Every answered store is read back on every replica alive.
	live := []string{}
	for id, r := range replicas {
		if !r.dead.Load() {
			live = append(live, id)
		}
	}
	sort.Strings(live)
	for _, id := range live {
		r := replicas[id]
		missing := map[string]int{}
		for _, w := range ok {
			missing[w.key] = w.i
		}
		readFrom := time.Now()
		controlplanetest.EventuallyEvery(t, 60*time.Second, 200*time.Millisecond, func() error {
			for key, i := range missing {
				got, err := result[kv.Got](r.send(ctx, kv.GetPort, kv.Get{Key: key}))
				if err != nil {
					return fmt.Errorf("get %s on %s: %v", key, id, err)
				}
				if got.Found {
					if n := got.Value.(map[string]any)["n"]; n != float64(i) {
						t.Fatalf("%s reads %s = %v, stored %d", id, key, got.Value, i)
					}
					delete(missing, key)
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("%s does not read %d answered stores", id, len(missing))
			}
			return nil
		})
		q, err := result[kv.Queried](r.send(ctx, kv.QueryPort, kv.Query{Condition: "$.key startsWith 'w-'"}))
		if err != nil {
			t.Fatalf("query on %s: %v", id, err)
		}
		role := "reader"
		if id == second {
			role = "leader"
		}
		if id == back {
			role = "restarted reader"
		}
		t.Logf("%s (%s): reads back %d of %d answered stores by get (all within %s); its query finds %d entries",
			id, role, len(ok), len(ok), time.Since(readFrom).Round(time.Millisecond), len(q.Entries))
		if len(q.Entries) < len(ok) || len(q.Entries) > writes {
			t.Errorf("%s: query finds %d entries, want between %d and %d", id, len(q.Entries), len(ok), writes)
		}
	}

	// The node in the API server holds them all; a failed store may or may
	// not have landed (its answer, not its write, may be what was lost).
	n := &v1alpha1.TinyNode{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: node}, n); err != nil {
		t.Fatal(err)
	}
	for _, w := range ok {
		if _, found := n.Status.Metadata[kv.DefaultPrefix+w.key]; !found {
			t.Errorf("%s is answered but not in the node's status", w.key)
		}
	}
	landed := 0
	for _, w := range failed {
		if _, found := n.Status.Metadata[kv.DefaultPrefix+w.key]; found {
			landed++
		}
	}
	t.Logf("of %d failed stores, %d landed all the same", len(failed), landed)

	// Stores from another module's node along an edge, which the sender
	// spreads over kvmod's replicas: a signal node of module kvdriver.
	driver := cluster.Run("kvdriver", ns, "driver-0")
	if err := c.Create(ctx, &v1alpha1.TinyNode{
		ObjectMeta: metav1.ObjectMeta{Name: "press", Namespace: ns},
		Spec: v1alpha1.TinyNodeSpec{Module: "kvdriver", Component: "signal",
			Edges: []v1alpha1.TinyNodeEdge{{ID: "press-store", Port: "out", To: node + "." + kv.StorePort}}},
	}); err != nil {
		t.Fatal(err)
	}
	const viaEdge = 6
	for i := range viaEdge {
		data, _ := json.Marshal(map[string]any{"send": true, "context": kv.Store{Key: fmt.Sprintf("edge-%d", i), Value: i}})
		if err := c.Create(ctx, &v1alpha1.TinySignal{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("press-%d", i), Namespace: ns},
			Spec: v1alpha1.TinySignalSpec{Node: "press", Port: v1alpha1.ControlPort, Data: &apiextensionsv1.JSON{Raw: data}}}); err != nil {
			t.Fatal(err)
		}
	}
	controlplanetest.EventuallyEvery(t, 2*time.Minute, 200*time.Millisecond, func() error {
		var signals v1alpha1.TinySignalList
		if err := c.List(ctx, &signals, client.InNamespace(ns)); err != nil {
			return err
		}
		if len(signals.Items) > 0 {
			return fmt.Errorf("%d signals not delivered yet (%s: %s)", len(signals.Items), signals.Items[0].Name, signals.Items[0].Status.LastError)
		}
		return nil
	})
	for _, id := range live {
		controlplanetest.EventuallyEvery(t, 30*time.Second, 100*time.Millisecond, func() error {
			q, err := result[kv.Queried](replicas[id].send(ctx, kv.QueryPort, kv.Query{Condition: "$.key startsWith 'edge-'"}))
			if err != nil {
				return err
			}
			if len(q.Entries) != viaEdge {
				return fmt.Errorf("%s reads %d of the %d stores along the edge", id, len(q.Entries), viaEdge)
			}
			return nil
		})
	}
	t.Logf("%d stores along an edge from module kvdriver: read on every replica", viaEdge)
	if tail := crashed(driver); tail != "" {
		t.Errorf("driver-0 crashed:\n%s", tail)
	}

	// What the survivors' runtimes counted of the forwarding.
	for _, id := range live {
		m, err := benchutil.Scrape(replicas[id].metrics)
		if err != nil {
			t.Errorf("metrics of %s: %v", id, err)
			continue
		}
		side := func(s string) float64 {
			return m[fmt.Sprintf(`tinymod_metadata_forwards_total{module="%s",side="%s"}`, moduleName, s)]
		}
		t.Logf("%s forwards: sent %v, failed %v, written %v", id, side("sent"), side("failed"), side("written"))
	}
	for _, id := range live {
		if !replicas[id].Alive() {
			t.Errorf("%s exited: %v", id, replicas[id].Err)
		}
		if tail := crashed(replicas[id].Process); tail != "" {
			t.Errorf("%s crashed:\n%s", id, tail)
		}
	}
}

// crashed returns the lines of p's log from a Go panic or fatal error on.
func crashed(p *harness.Process) string {
	data, _ := os.ReadFile(p.Log)
	for _, mark := range []string{"\npanic: ", "\nfatal error: ", "WARNING: DATA RACE"} {
		if i := strings.Index(string(data), mark); i >= 0 {
			return string(data[i:min(len(data), i+4000)])
		}
	}
	return ""
}
