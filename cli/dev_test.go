package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
)

func TestCounterIncrease(t *testing.T) {
	for _, tc := range []struct {
		name        string
		before, now counterSamples
		want        map[string]float64
	}{
		{"growth per replica, summed",
			counterSamples{"a": {"x": 100}, "b": {"x": 50}},
			counterSamples{"a": {"x": 110}, "b": {"x": 55}},
			map[string]float64{"x": 15}},
		{"a replica restarted: its counter went down, so its new value is the increase",
			counterSamples{"a": {"x": 100}, "b": {"x": 50}},
			counterSamples{"a": {"x": 110}, "b": {"x": 5}},
			map[string]float64{"x": 15}},
		{"a replica vanished: it adds nothing",
			counterSamples{"a": {"x": 100}, "b": {"x": 50}},
			counterSamples{"a": {"x": 110}},
			map[string]float64{"x": 10}},
		{"a replica not read before: no baseline, it adds nothing yet",
			counterSamples{"a": {"x": 100}},
			counterSamples{"a": {"x": 110}, "b": {"x": 500}},
			map[string]float64{"x": 10}},
		{"a series new in a replica read before grew from zero",
			counterSamples{"a": {"x": 100}},
			counterSamples{"a": {"x": 100, "y": 3}},
			map[string]float64{"x": 0, "y": 3}},
		{"per series: one reset does not hide another's growth",
			counterSamples{"a": {"x": 100, "y": 10}},
			counterSamples{"a": {"x": 2, "y": 12}},
			map[string]float64{"x": 2, "y": 2}},
		{"first reading", nil, counterSamples{"a": {"x": 1}}, map[string]float64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := counterIncrease(tc.before, tc.now); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPerSecond(t *testing.T) {
	got := perSecond(map[string]float64{"x": 10, "y": 0}, 2)
	if !reflect.DeepEqual(got, map[string]float64{"x": 5}) {
		t.Errorf("got %v", got)
	}
	if got := perSecond(map[string]float64{"x": 10}, 0); len(got) != 0 {
		t.Errorf("no time passed: got %v", got)
	}
}

func TestMessageSeries(t *testing.T) {
	page := `# HELP tinymod_messages_total Messages handled
# TYPE tinymod_messages_total counter
tinymod_messages_total{node="a",port="in",result="ok"} 7
tinymod_messages_total{node="a",port="in",result="error"} 1 1700000000000
tinymod_messages_total{node="b",port="in",result="ok"} 2e+06
tinymod_module_messages_total{result="ok"} 99
`
	values, node := messageSeries(strings.NewReader(page))
	want := map[string]float64{
		`node="a",port="in",result="ok"`:    7,
		`node="a",port="in",result="error"`: 1,
		`node="b",port="in",result="ok"`:    2e6,
	}
	if !reflect.DeepEqual(values, want) {
		t.Errorf("values %v", values)
	}
	if node[`node="a",port="in",result="error"`] != "a" || node[`node="b",port="in",result="ok"`] != "b" || len(node) != 3 {
		t.Errorf("nodes %v", node)
	}
}

func lease(holder string, renewedAgo time.Duration, secs int32, now time.Time) *coordinationv1.Lease {
	renew := metav1.NewMicroTime(now.Add(-renewedAgo))
	acquired := metav1.NewMicroTime(now.Add(-time.Minute))
	return &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &renew, AcquireTime: &acquired}}
}

func TestLeaseAt(t *testing.T) {
	now := time.Now()
	noRenew := lease("dev-0", 0, 4, now)
	noRenew.Spec.RenewTime = nil
	for _, tc := range []struct {
		name               string
		l                  *coordinationv1.Lease
		holder, why, named string
	}{
		{"no lease", nil, "", "no lease", ""},
		{"valid", lease("dev-0", time.Second, 4, now), "dev-0", "", "dev-0"},
		{"expired", lease("dev-0", 5*time.Second, 4, now), "", "lease expired", "dev-0"},
		{"runs out right now", lease("dev-0", 4*time.Second, 4, now), "", "lease expired", "dev-0"},
		{"released", lease("", 0, 1, now), "", "released", ""},
		{"never renewed", noRenew, "", "lease expired", "dev-0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := leaseAt(tc.l, now)
			if s.Holder != tc.holder || s.Why != tc.why || s.Named != tc.named {
				t.Errorf("got %+v", s)
			}
		})
	}
	if s := leaseAt(lease("dev-0", time.Second, 4, now), now); !s.Expires.Equal(now.Add(3*time.Second)) || !s.Acquired.Equal(now.Add(-time.Minute)) {
		t.Errorf("expires %v, acquired %v", s.Expires, s.Acquired)
	}
}

func TestProcessAliveAndRole(t *testing.T) {
	exited := make(chan struct{})
	if !processAlive(exited) || !processAlive(nil) {
		t.Error("a running process is not alive")
	}
	close(exited)
	if processAlive(exited) {
		t.Error("an exited process is alive")
	}
	for _, tc := range []struct {
		id     string
		alive  bool
		leader string
		want   string
	}{
		{"dev-0", true, "dev-0", "LEADER"},
		{"dev-0", false, "dev-0", "gone"},
		{"dev-1", true, "dev-0", "reader"},
		{"dev-1", false, "", "gone"},
		{"", true, "", "reader"},
	} {
		if got := replicaRole(tc.id, tc.alive, tc.leader); got != tc.want {
			t.Errorf("replicaRole(%q, %v, %q) = %q, want %q", tc.id, tc.alive, tc.leader, got, tc.want)
		}
	}
}

func TestLeaderLine(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name  string
		s     leaseState
		alive bool
		want  string
	}{
		{"leads", leaseAt(lease("dev-1", 0, 4, now), now), true, "module m: leader dev-1 for 1m0s"},
		{"leads, process gone", leaseAt(lease("dev-1", time.Second, 4, now), now), false, "module m: leader dev-1 for 1m0s, but its process is gone (the lease runs out in 3s)"},
		{"expired", leaseAt(lease("dev-1", 5*time.Second, 4, now), now), false, "module m: leader none (lease expired), last held by dev-1"},
		{"no lease", leaseAt(nil, now), false, "module m: leader none (no lease)"},
	} {
		if got := leaderLine("m", tc.s, tc.alive, now); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func tinySignal(uid, node string, created time.Time, phase v1alpha1.SignalPhase, lastError string) *v1alpha1.TinySignal {
	return &v1alpha1.TinySignal{
		ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid), Name: node + "-" + uid, CreationTimestamp: metav1.NewTime(created)},
		Spec:       v1alpha1.TinySignalSpec{Node: node, Port: "_control"},
		Status:     v1alpha1.TinySignalStatus{Phase: phase, LastError: lastError},
	}
}

func TestSignalHistory(t *testing.T) {
	t0 := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	h := &signalHistory{Max: 3}
	h.observe(tinySignal("1", "ticker-1", t0, "", ""), false, t0)
	h.observe(tinySignal("2", "signal-1", t0.Add(time.Second), "", ""), false, t0)
	h.observe(tinySignal("2", "signal-1", t0.Add(time.Second), "", ""), true, t0) // delivered
	h.observe(tinySignal("3", "signal-1", t0.Add(time.Second), v1alpha1.SignalDelivering, "no route"), false, t0)
	want := []string{
		"03:04:06  signal-1 _control  Delivering  last error: no route",
		"03:04:06  signal-1 _control  Delivered",
		"03:04:05  ticker-1 _control  Pending",
	}
	if got := h.lines(); !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Newer signals push the oldest out, not the other way round.
	h.observe(tinySignal("4", "signal-1", t0.Add(2*time.Second), v1alpha1.SignalFailed, "boom"), false, t0)
	h.observe(tinySignal("0", "old", t0.Add(-time.Hour), "", ""), false, t0)
	got := h.lines()
	if len(got) != 3 || !strings.HasPrefix(got[0], "03:04:07  signal-1 _control  Failed  last error: boom") || strings.Contains(strings.Join(got, "\n"), "ticker-1") || strings.Contains(strings.Join(got, "\n"), "old") {
		t.Errorf("after two more:\n%s", strings.Join(got, "\n"))
	}
	h.observe(tinySignal("4", "signal-1", t0.Add(2*time.Second), v1alpha1.SignalFailed, "boom"), true, t0)
	if got := h.lines(); !strings.Contains(got[0], "Failed, since deleted") {
		t.Errorf("a failed signal deleted: %q", got[0])
	}
}

func TestSignalHistorySync(t *testing.T) {
	t0 := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	h := &signalHistory{}
	h.observe(tinySignal("gone", "a", t0, "", ""), false, t0)
	h.observe(tinySignal("late", "b", t0, "", ""), false, t0.Add(2*time.Second)) // seen after the list began
	listed := []v1alpha1.TinySignal{*tinySignal("kept", "c", t0, v1alpha1.SignalPending, "")}
	h.sync(listed, t0.Add(time.Second), t0.Add(3*time.Second))
	byNode := map[string]string{}
	for _, r := range h.recs {
		byNode[r.node] = r.phaseShown()
	}
	want := map[string]string{"a": "Delivered", "b": "Pending", "c": "Pending"}
	if !reflect.DeepEqual(byNode, want) {
		t.Errorf("got %v, want %v", byNode, want)
	}
}

func section(title string, n int, tail bool) devSection {
	s := devSection{title: title, tail: tail}
	for i := range n {
		s.lines = append(s.lines, fmt.Sprintf("%s %d", title, i))
	}
	return s
}

func TestFitScreen(t *testing.T) {
	head := []string{"--- 12:00:00", "module m: leader dev-0 for 1s", "  replicas: dev-0 (LEADER), dev-1 (reader)"}
	s := devScreen{head: head, sections: []devSection{section("nodes:", 30, false), section("signals:", 2, false), section("events:", 8, true), section("debug:", 0, true)}}

	all := fitScreen(s, 0, 0)
	if len(all) != 3+31+3+9 {
		t.Errorf("unlimited: %d lines", len(all))
	}
	for height := 1; height <= 50; height++ {
		got := fitScreen(s, 80, height)
		text := strings.Join(got, "\n")
		if len(got) > height {
			t.Errorf("height %d: %d lines", height, len(got))
		}
		for i := 0; i < min(height, 3); i++ {
			if got[i] != head[i] {
				t.Errorf("height %d: line %d is %q, want the head's %q", height, i, got[i], head[i])
			}
		}
		if height >= 3+3 && (!strings.Contains(text, "nodes:") || !strings.Contains(text, "signals:") || !strings.Contains(text, "events:")) {
			t.Errorf("height %d: a section is missing:\n%s", height, text)
		}
		if strings.Contains(text, "debug:") {
			t.Errorf("height %d: an empty section is shown", height)
		}
		if height >= 3+3+2 && !strings.Contains(text, "signals: first") && !strings.Contains(text, "signals: 1") {
			t.Errorf("height %d: the signals are crowded out by the nodes:\n%s", height, text)
		}
		// Whatever was left out is counted.
		if height > 3 && height < len(all) && !strings.Contains(text, "left out") {
			t.Errorf("height %d: lines left out without a word:\n%s", height, text)
		}
	}
	got := fitScreen(s, 80, 3+12)
	want := []string{
		"nodes: first 4 of 30 shown, 26 more left out", "  nodes: 0", "  nodes: 1", "  nodes: 2", "  nodes: 3",
		"signals:", "  signals: 0", "  signals: 1",
		"events: newest 3 of 8 shown, 5 more left out", "  events: 5", "  events: 6", "  events: 7",
	}
	if !reflect.DeepEqual(got[3:], want) {
		t.Errorf("height 15:\n%s\nwant\n%s", strings.Join(got[3:], "\n"), strings.Join(want, "\n"))
	}
	if got := fitScreen(s, 80, 3+2); !reflect.DeepEqual(got[3:], []string{"… 43 more lines left out"}) {
		t.Errorf("room for fewer lines than sections: %q", got[3:])
	}
}

func TestWrapList(t *testing.T) {
	line := "  replicas: dev-0 (reader), dev-1 (LEADER), dev-2 (reader), dev-3 (gone)"
	if got := wrapList(line, 0); !reflect.DeepEqual(got, []string{line}) {
		t.Errorf("no width: %q", got)
	}
	got := wrapList(line, 45)
	want := []string{"  replicas: dev-0 (reader), dev-1 (LEADER),", "    dev-2 (reader), dev-3 (gone)"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	// The head wraps in fitScreen, and counts its wrapped lines.
	if got := fitScreen(devScreen{head: []string{line}, sections: []devSection{section("nodes:", 5, false)}}, 45, 4); len(got) != 4 || got[1] != want[1] {
		t.Errorf("fitScreen: %q", got)
	}
}

// TestDevPathsAreAbsolute: the KUBECONFIG dev prints and shows works from
// any folder, whatever --dir was.
func TestDevPathsAreAbsolute(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir, kubeconfig, err := devPaths(filepath.Join("rel", "dev"))
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(wd, "rel", "dev") || kubeconfig != filepath.Join(wd, "rel", "dev", "kubeconfig") {
		t.Errorf("got %s and %s", dir, kubeconfig)
	}
	if _, kubeconfig, _ := devPaths("/abs/dev"); kubeconfig != filepath.FromSlash("/abs/dev/kubeconfig") {
		t.Errorf("an absolute --dir: %s", kubeconfig)
	}
}

// TestDevShowsSignals: the view lists the recent TinySignals in a section
// of their own, a delivered one (deleted at once) included, however many
// events came after them.
func TestDevShowsSignals(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	d := testDevRun(wc, ns)
	ctx, cancel := context.WithCancel(controlplanetest.Context(t, time.Minute))
	done := make(chan struct{})
	go func() { defer close(done); d.watchSignals(ctx, wc) }()
	t.Cleanup(func() { cancel(); <-done })

	// Once a first signal shows, the watch's list is done, and the watch
	// delivers all that follows, however short-lived.
	first := &v1alpha1.TinySignal{ObjectMeta: metav1.ObjectMeta{GenerateName: "first-", Namespace: ns},
		Spec: v1alpha1.TinySignalSpec{Node: "first", Port: v1alpha1.ControlPort}}
	if err := env.Client.Create(ctx, first); err != nil {
		t.Fatal(err)
	}
	controlplanetest.Eventually(t, 10*time.Second, func() error {
		d.mu.Lock()
		defer d.mu.Unlock()
		if len(d.signals.recs) == 0 {
			return fmt.Errorf("no signal seen")
		}
		return nil
	})

	press := &v1alpha1.TinySignal{ObjectMeta: metav1.ObjectMeta{GenerateName: "signal-1-", Namespace: ns},
		Spec: v1alpha1.TinySignalSpec{Node: "signal-1", Port: v1alpha1.ControlPort}}
	if err := env.Client.Create(ctx, press); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, press); err != nil { // as the leader does once delivered
		t.Fatal(err)
	}
	failing := &v1alpha1.TinySignal{ObjectMeta: metav1.ObjectMeta{GenerateName: "ticker-1-", Namespace: ns},
		Spec: v1alpha1.TinySignalSpec{Node: "ticker-1", Port: v1alpha1.ControlPort}}
	if err := env.Client.Create(ctx, failing); err != nil {
		t.Fatal(err)
	}
	failing.Status = v1alpha1.TinySignalStatus{Phase: v1alpha1.SignalFailed, Attempts: 3, LastError: "no such port"}
	if err := env.Client.Status().Update(ctx, failing); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		d.note(fmt.Sprintf("event %d", i))
	}
	controlplanetest.Eventually(t, 10*time.Second, func() error {
		out := d.view(ctx, true)
		_, signals, _ := strings.Cut(out, "signals, newest first:\n")
		signals, _, _ = strings.Cut(signals, "events:")
		lines := strings.Split(strings.TrimSpace(signals), "\n")
		if len(lines) != 3 ||
			!strings.Contains(lines[0], "ticker-1 _control  Failed after 3 attempts  last error: no such port") ||
			!strings.Contains(lines[1], "signal-1 _control  Delivered") ||
			!strings.Contains(lines[2], "first _control  Pending") {
			return fmt.Errorf("no signals, newest first, in\n%s", out)
		}
		return nil
	})
}
