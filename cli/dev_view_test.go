package cli

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
)

// These tests drive dev's view through devRun and devModel as `tinymod dev`
// does, against a real API server, with replicas that are only entries in
// devRun (their metrics addresses answer nothing).

// testDevRun is a devRun of module "tinymod" in ns with replicas ids, none
// of them reachable.
func testDevRun(c client.Client, ns string, ids ...string) *devRun {
	d := &devRun{c: c, ns: ns, kubeconfig: "/work/dev/kubeconfig", events: io.Discard,
		opts: DevOptions{Module: "tinymod"}, replicas: map[string]*devReplica{}}
	for _, id := range ids {
		d.replicas[id] = &devReplica{id: id, metrics: "127.0.0.1:1", exited: make(chan struct{})}
	}
	return d
}

func microAgo(ago time.Duration) *metav1.MicroTime {
	t := metav1.NewMicroTime(time.Now().Add(-ago))
	return &t
}

// putLease creates or updates a Lease held by holder, renewed renewedAgo
// and lasting secs; members are labelled as membership Leases of "tinymod".
func putLease(t *testing.T, c client.Client, ns, name, holder string, member bool, renewedAgo time.Duration, secs int32) {
	t.Helper()
	ctx := controlplanetest.Context(t, 30*time.Second)
	l := &coordinationv1.Lease{}
	err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, l)
	l.Name, l.Namespace = name, ns
	if member {
		l.Labels = map[string]string{leader.ModuleLabel: "tinymod", leader.RoleLabel: "member"}
	}
	l.Spec = coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs,
		AcquireTime: microAgo(renewedAgo + time.Minute), RenewTime: microAgo(renewedAgo)}
	if err == nil {
		err = c.Update(ctx, l)
	} else {
		err = c.Create(ctx, l)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// createModule creates the TinyModule "tinymod" with n nodes, as a running
// module of that name has.
func createModule(t *testing.T, c client.Client, ns string, n int) {
	t.Helper()
	ctx := controlplanetest.Context(t, 30*time.Second)
	if err := c.Create(ctx, &v1alpha1.TinyModule{ObjectMeta: metav1.ObjectMeta{Name: "tinymod", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		node := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%02d", i), Namespace: ns},
			Spec: v1alpha1.TinyNodeSpec{Module: "tinymod", Component: "debug"}}
		if err := c.Create(ctx, node); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDevViewFitsTheTerminal: on an 80×24 terminal (and smaller), the view
// is no taller than the terminal, so the renderer drops nothing from the
// top: the module, leader and replica lines come first; the lists below
// are cut and say how much was left out.
func TestDevViewFitsTheTerminal(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	createModule(t, env.Client, ns, 30)
	putLease(t, env.Client, ns, "tinymod-leader", "dev-1", false, 0, 60)
	for _, id := range []string{"dev-0", "dev-1", "dev-2"} {
		putLease(t, env.Client, ns, leader.MemberLeaseName("tinymod", id), id, true, 0, 60)
	}
	d := testDevRun(env.Client, ns, "dev-0", "dev-1", "dev-2")
	for i := range 8 {
		d.note(fmt.Sprintf("event %d", i))
	}
	for i := range 6 {
		d.logLine("dev-1", fmt.Sprintf(`{"msg":"debug","node":"debug-1","data":{"n":%d}}`, i))
	}
	m := &devModel{d: d, refresh: time.Hour}
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	m.Update(m.Init()())
	for _, height := range []int{24, 12} {
		m.Update(tea.WindowSizeMsg{Width: 80, Height: height})
		out := m.View()
		t.Logf("80×%d:\n%s", height, out)
		lines := strings.Split(out, "\n") // as the renderer counts them
		if len(lines) > height {
			t.Errorf("%d lines on a terminal %d high:\n%s", len(lines), height, out)
			continue
		}
		if !strings.HasPrefix(lines[0], "--- ") || !strings.HasPrefix(lines[1], "module tinymod: leader dev-1") ||
			!strings.Contains(lines[2], "replicas:") || !strings.Contains(lines[2], "dev-1 (LEADER)") {
			t.Errorf("height %d: the module, leader and replicas do not come first:\n%s", height, out)
		}
		if !strings.Contains(out, "node-00") || !strings.Contains(out, "more left out") {
			t.Errorf("height %d: the nodes are not shown cut, saying how many were left out:\n%s", height, out)
		}
		if !strings.Contains(out, "event 7") || !strings.Contains(out, `{"n":5}`) {
			t.Errorf("height %d: the newest event and debug line are not shown:\n%s", height, out)
		}
	}
}

// metricsServer serves a replica's tinymod_messages_total, settable.
type metricsServer struct {
	mu   sync.Mutex
	body string
	srv  *httptest.Server
}

func newMetricsServer(t *testing.T) *metricsServer {
	m := &metricsServer{}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		m.mu.Lock()
		defer m.mu.Unlock()
		io.WriteString(w, m.body)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *metricsServer) set(counts map[string]float64) {
	var b strings.Builder
	b.WriteString("# TYPE tinymod_messages_total counter\n")
	for node, v := range counts {
		fmt.Fprintf(&b, "tinymod_messages_total{node=%q,port=\"in\",result=\"ok\"} %g\n", node, v)
	}
	m.mu.Lock()
	m.body = b.String()
	m.mu.Unlock()
}

func (m *metricsServer) addr() string { return m.srv.Listener.Addr().String() }

// TestDevRatesSurviveFailover: message rates come from the difference per
// replica, so a replica that restarts (its counters back at zero) or
// vanishes does not show as negative or extra traffic.
func TestDevRatesSurviveFailover(t *testing.T) {
	a, b := newMetricsServer(t), newMetricsServer(t)
	d := &devRun{events: io.Discard, replicas: map[string]*devReplica{
		"dev-0": {id: "dev-0", metrics: a.addr()},
		"dev-1": {id: "dev-1", metrics: b.addr()},
	}}
	step := func(what string, want float64) {
		t.Helper()
		// A second between readings, give or take the reading itself.
		d.mu.Lock()
		d.countsAt = d.countsAt.Add(-time.Second)
		d.mu.Unlock()
		d.scrape()
		d.mu.Lock()
		got := d.rates["x"]
		d.mu.Unlock()
		if got > want || got < want/1.5 || (want == 0) != (got == 0) {
			t.Errorf("%s: %.2f msg/s for x, want %.0f", what, got, want)
		}
	}
	a.set(map[string]float64{"x": 100})
	b.set(map[string]float64{"x": 50})
	d.scrape()
	a.set(map[string]float64{"x": 110})
	b.set(map[string]float64{"x": 60})
	step("both grew by 10", 20)
	a.set(map[string]float64{"x": 120})
	b.set(map[string]float64{"x": 5}) // dev-1 restarted
	step("dev-0 grew by 10, dev-1 restarted and counted 5", 15)
	b.srv.Close() // dev-1 is gone
	a.set(map[string]float64{"x": 130})
	step("dev-0 grew by 10, dev-1 vanished", 10)
	a.set(map[string]float64{"x": 130})
	step("nothing moved", 0)
	if math.IsNaN(d.rates["x"]) {
		t.Error("NaN rate")
	}
}

// TestDevLeaderIsTheLeasesTruth: the view names the leader only while its
// Lease is valid, and a replica whose process has exited is gone, whatever
// a Lease still says.
func TestDevLeaderIsTheLeasesTruth(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	createModule(t, env.Client, ns, 1)
	ctx := controlplanetest.Context(t, time.Minute)
	d := testDevRun(env.Client, ns, "dev-0", "dev-1")
	close(d.replicas["dev-0"].exited) // killed
	putLease(t, env.Client, ns, leader.MemberLeaseName("tinymod", "dev-0"), "dev-0", true, 10*time.Second, 4)
	putLease(t, env.Client, ns, leader.MemberLeaseName("tinymod", "dev-1"), "dev-1", true, 0, 60)

	// dev-0 was killed 10 s ago; its 4 s Lease still names it.
	putLease(t, env.Client, ns, "tinymod-leader", "dev-0", false, 10*time.Second, 4)
	out := d.view(ctx, true)
	for _, want := range []string{"leader none (lease expired)", "dev-0 (gone)", "dev-1 (reader)"} {
		if !strings.Contains(out, want) {
			t.Errorf("expired lease of a killed leader: no %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "LEADER") || strings.Contains(out, "leader dev-0") {
		t.Errorf("expired lease of a killed leader: still shown as leader:\n%s", out)
	}

	// dev-0 was killed a moment ago: its Lease is still valid, but it is gone.
	putLease(t, env.Client, ns, "tinymod-leader", "dev-0", false, 0, 60)
	out = d.view(ctx, true)
	if !strings.Contains(out, "leader dev-0") || !strings.Contains(out, "process is gone") || !strings.Contains(out, "dev-0 (gone)") {
		t.Errorf("valid lease of a killed leader: want it named by the lease and gone:\n%s", out)
	}
	if strings.Contains(out, "(LEADER)") {
		t.Errorf("valid lease of a killed leader: a replica is still marked LEADER:\n%s", out)
	}

	// dev-1 took over.
	putLease(t, env.Client, ns, "tinymod-leader", "dev-1", false, 0, 60)
	out = d.view(ctx, true)
	if !strings.Contains(out, "leader dev-1") || !strings.Contains(out, "dev-1 (LEADER)") || !strings.Contains(out, "dev-0 (gone)") {
		t.Errorf("dev-1 leads:\n%s", out)
	}
}
