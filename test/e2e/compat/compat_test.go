// Package compat runs a module binary whose components are written in the
// TinySystems SDK's style (test/e2e/compat/sdkstyle, registered through
// compat/tinysystems) on three replicas against a real API server, and checks
// the SDK's contract where only real processes show it: a start and a stop
// through a _control port declared as a source, the running state restored
// by the next leader after a kill -9, and a metadata write that arrives on a
// reader persisted once, by the leader.
package compat

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/test/bench/benchutil"
	"github.com/tinymod/tinymod/test/e2e/harness"
)

func TestMain(m *testing.M) { controlplanetest.Main(m) }

const moduleName = "sdkmodule"

// event is a component's "sdk event" log line.
type event struct {
	Time     time.Time      `json:"time"`
	Identity string         `json:"identity"`
	Node     string         `json:"node"`
	Event    string         `json:"event"`
	Data     map[string]any `json:"data"`
}

type replica struct {
	*harness.Process
	metrics string
}

func (r replica) events(node, kind string) []event {
	var out []event
	for _, e := range harness.Decode[event](r.Process, "sdk event") {
		if e.Node == node && e.Event == kind {
			out = append(out, e)
		}
	}
	return out
}

func TestSDKComponentsOnThreeReplicas(t *testing.T) {
	bin := harness.Build(t, "./test/e2e/compat/sdkmodule")
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, 8*time.Minute)
	c := env.Client
	cluster := harness.NewClusterWith(t, env.Kubeconfig, bin)
	replicas := map[string]replica{}
	for i := range 3 {
		id := fmt.Sprintf("sdk-%d", i)
		metrics := benchutil.FreeAddr()
		replicas[id] = replica{Process: cluster.Run(moduleName, ns, id, "--metrics-bind-address", metrics), metrics: metrics}
	}
	first := harness.WaitLeader(t, c, ns, moduleName, 60*time.Second)

	settings := func(v any) []v1alpha1.TinyNodePortConfig {
		raw, _ := json.Marshal(v)
		return []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: &apiextensionsv1.JSON{Raw: raw}}}
	}
	for _, n := range []*v1alpha1.TinyNode{
		{ObjectMeta: metav1.ObjectMeta{Name: "rec"}, Spec: v1alpha1.TinyNodeSpec{Component: "recorder"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "em"}, Spec: v1alpha1.TinyNodeSpec{Component: "emitter",
			Ports: settings(map[string]any{"periodMs": 100, "label": "e2e"}),
			Edges: []v1alpha1.TinyNodeEdge{{ID: "em-rec", Port: "out", To: "rec.in"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "kv"}, Spec: v1alpha1.TinyNodeSpec{Component: "store"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "ann"}, Spec: v1alpha1.TinyNodeSpec{Component: "announcer",
			Ports: settings(map[string]any{"who": "ann"}),
			Edges: []v1alpha1.TinyNodeEdge{{ID: "ann-kv", Port: "out", To: "kv.put"}}}},
	} {
		n.Namespace, n.Spec.Module = ns, moduleName
		if err := c.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	metadata := func(node string) map[string]string {
		n := &v1alpha1.TinyNode{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: node}, n); err != nil {
			return nil
		}
		return n.Status.Metadata
	}

	// Each replica's announcer puts once, on its own replica: a reader's put
	// is forwarded to the leader, which writes it, once.
	var kv map[string]string
	controlplanetest.Eventually(t, 120*time.Second, func() error {
		kv = metadata("kv")
		for id := range replicas {
			if kv["kv-"+id] == "" {
				return fmt.Errorf("kv metadata %v: no kv-%s", kv, id)
			}
		}
		return nil
	})
	fromReaders := 0
	for id := range replicas {
		if strings.HasSuffix(kv["kv-"+id], "@reader") {
			fromReaders++
		}
	}
	if fromReaders == 0 {
		t.Fatalf("kv metadata %v: no put was made on a reader", kv)
	}
	forwards := func(side string) float64 {
		total := 0.0
		for _, r := range replicas {
			m, err := benchutil.Scrape(r.metrics)
			if err != nil {
				t.Fatalf("metrics of %s: %v", r.ID, err)
			}
			total += m[fmt.Sprintf(`tinymod_metadata_forwards_total{module="%s",side="%s"}`, moduleName, side)]
		}
		return total
	}
	if w, s := forwards("written"), forwards("sent"); w != float64(fromReaders) || s != float64(fromReaders) {
		t.Errorf("%d puts made on readers: the leader wrote %v forwarded writes and readers saw %v land; want %d each", fromReaders, w, s, fromReaders)
	}

	// Start the emitter on its _control port, declared as a source.
	signal := func(name, data string) {
		t.Helper()
		s := &v1alpha1.TinySignal{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: v1alpha1.TinySignalSpec{Node: "em", Port: v1alpha1.ControlPort, Data: &apiextensionsv1.JSON{Raw: []byte(data)}}}
		if err := c.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	leaderNow := harness.Holder(ctx, c, ns, moduleName)
	if leaderNow != first {
		t.Logf("leadership moved from %s to %s during set-up", first, leaderNow)
	}
	signal("start", `{"start": true}`)
	samplesOn := func(id string) int { return len(replicas[id].events("rec", "sample")) }
	controlplanetest.Eventually(t, 60*time.Second, func() error {
		if md := metadata("em"); md["running"] != "true" {
			return fmt.Errorf("em metadata %v", md)
		}
		if n := samplesOn(leaderNow); n < 3 {
			return fmt.Errorf("%d samples on the leader %s", n, leaderNow)
		}
		return nil
	})
	for id := range replicas {
		if id != leaderNow && samplesOn(id) > 0 {
			t.Errorf("reader %s sent ticks: only the leader runs the emitter", id)
		}
	}
	// The published control is the running one: a stop button.
	controlplanetest.Eventually(t, 60*time.Second, func() error {
		return controlSchemaHas(ctx, c, ns, "stop")
	})

	// kill -9 the leader: the next one restores "running" and ticks on.
	if err := replicas[leaderNow].Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	next := harness.WaitLeader(t, c, ns, moduleName, 60*time.Second, leaderNow)
	controlplanetest.Eventually(t, 60*time.Second, func() error {
		if n := samplesOn(next); n < 3 {
			return fmt.Errorf("%d samples on the new leader %s", n, next)
		}
		return nil
	})
	// The killed replica comes back: its new instance learns from
	// _reconcile, before its settings, that the emitter runs, so the
	// settings do not clear the running flow.
	back := leaderNow + "-back"
	metrics := benchutil.FreeAddr()
	replicas[back] = replica{Process: cluster.Run(moduleName, ns, back, "--metrics-bind-address", metrics), metrics: metrics}
	controlplanetest.Eventually(t, 60*time.Second, func() error {
		if len(replicas[back].events("em", "settings")) == 0 {
			return fmt.Errorf("no settings on %s yet", back)
		}
		return nil
	})
	if e := replicas[back].events("em", "settings")[0]; e.Data["running"] != true {
		t.Errorf("on the restarted replica the settings arrived before the running state was restored: %+v", e)
	}
	if md := metadata("em"); md["running"] != "true" {
		t.Errorf("em metadata %v after a replica restarted: the running flow was cleared", md)
	}
	delete(replicas, leaderNow)

	// Stop it, again through _control: the stop is decoded into the
	// running control's type.
	signal("stop", `{"stop": true}`)
	controlplanetest.Eventually(t, 60*time.Second, func() error {
		if md := metadata("em"); md["running"] != "" {
			return fmt.Errorf("em metadata %v", md)
		}
		return controlSchemaHas(ctx, c, ns, "start")
	})
	stoppedAt := samplesOn(next)
	// A window, not a synchronisation: no tick may follow the stop.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if n := samplesOn(next); n > stoppedAt+1 {
			t.Fatalf("%d ticks after the stop", n-stoppedAt)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// controlSchemaHas checks that em's published _control schema has property.
func controlSchemaHas(ctx context.Context, c client.Client, ns, property string) error {
	n := &v1alpha1.TinyNode{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "em"}, n); err != nil {
		return err
	}
	for _, p := range n.Status.Ports {
		if p.Name != v1alpha1.ControlPort || p.Schema == nil {
			continue
		}
		var s struct {
			Properties map[string]any `json:"properties"`
		}
		if err := json.Unmarshal(p.Schema.Raw, &s); err != nil {
			return err
		}
		if _, ok := s.Properties[property]; ok {
			return nil
		}
		return fmt.Errorf("_control schema %s: no %q", p.Schema.Raw, property)
	}
	return fmt.Errorf("no _control port published: %+v", n.Status.Ports)
}
