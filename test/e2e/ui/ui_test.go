// Package ui_test drives the page of tinymod ui in a real headless Chromium
// against real replicas on a real control plane.
package ui_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/config/samples"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/manifest"
	"github.com/tinymod/tinymod/internal/ui"
	"github.com/tinymod/tinymod/test/e2e/harness"
)

func TestMain(m *testing.M) { controlplanetest.Main(m) }

// lease is the replicas' lease duration (harness.Cluster.Run's).
const lease = 2 * time.Second

var demoNodes = []string{"ticker-1", "router-1", "debug-loud", "debug-quiet", "signal-1", "delay-1", "debug-signal"}
var demoEdges = []string{"ticker-1-ticker-router", "router-1-router-loud", "router-1-router-quiet", "signal-1-signal-delay"}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// browser starts headless Chromium (Debian's, as `make browser` installs it).
func browser(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (make browser installs it): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 900))
	actx, cancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancel)
	bctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(cancelB)
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

func tid(id string) chromedp.CSS { return chromedp.CSS(fmt.Sprintf(`[data-testid=%q]`, id)) }

// screenshot saves the page as docs/ui/<name>.png when
// TINYMOD_UI_SCREENSHOTS names the folder.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("TINYMOD_UI_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Error(err)
	}
}

// waitText polls until sel's text satisfies ok, within limit.
func waitText(t *testing.T, ctx context.Context, limit time.Duration, sel chromedp.CSS, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		c, cancel := context.WithTimeout(ctx, time.Second)
		nodes, err := chromedp.Run(c, chromedp.Evaluate[[]string](fmt.Sprintf(`Array.from(document.querySelectorAll(%q)).map(e => e.textContent)`, string(sel))))
		cancel()
		if err == nil {
			for _, s := range nodes {
				last = s
				if ok(s) {
					return s
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: no text as wanted within %v; last %q", sel, limit, last)
	return ""
}

// present tells whether sel matches an element now.
func present(t *testing.T, ctx context.Context, sel chromedp.CSS) bool {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ok, err := chromedp.Run(c, chromedp.Evaluate[bool](fmt.Sprintf(`document.querySelector(%q) !== null`, string(sel))))
	if err != nil {
		t.Fatalf("%s: %v", sel, err)
	}
	return ok
}

// waitGone polls until sel matches no element, within limit.
func waitGone(t *testing.T, ctx context.Context, limit time.Duration, sel chromedp.CSS) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		c, cancel := context.WithTimeout(ctx, time.Second)
		gone, err := chromedp.Run(c, chromedp.Evaluate[bool](fmt.Sprintf(`document.querySelector(%q) === null`, string(sel))))
		cancel()
		if err == nil && gone {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: still there after %v", sel, limit)
}

// center returns the middle of the first element sel matches.
func center(ctx context.Context, sel string) (x, y float64, err error) {
	r, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](fmt.Sprintf(`(() => { const b = document.querySelector(%q).getBoundingClientRect(); return [b.x + b.width/2, b.y + b.height/2]; })()`, sel)))
	if err != nil {
		return 0, 0, err
	}
	return r[0], r[1], nil
}

// drag presses the mouse on from, moves to to in steps, and releases.
func drag(ctx context.Context, from, to string) error {
	x1, y1, err := center(ctx, from)
	if err != nil {
		return fmt.Errorf("%s: %w", from, err)
	}
	x2, y2, err := center(ctx, to)
	if err != nil {
		return fmt.Errorf("%s: %w", to, err)
	}
	steps := []chromedp.Action[chromedp.Void]{chromedp.MouseEvent(chromedp.MousePressed, x1, y1, chromedp.ButtonLeft, chromedp.ClickCount(1))}
	for i := 1; i <= 10; i++ {
		x, y := x1+(x2-x1)*float64(i)/10, y1+(y2-y1)*float64(i)/10
		steps = append(steps, chromedp.MouseEvent(chromedp.MouseMoved, x, y, chromedp.ButtonLeft))
	}
	steps = append(steps, chromedp.MouseEvent(chromedp.MouseReleased, x2, y2, chromedp.ButtonLeft, chromedp.ClickCount(1)))
	return chromedp.Do(ctx, steps...)
}

// TestPage runs the demo flow on three replicas and uses the page as a
// person would: it is drawn, a press reaches a debug node, a killed leader's
// successor shows, settings are saved and refused, the ticker's buttons
// follow its state, and a node added and wired in the page runs.
func TestPage(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, 6*time.Minute)
	k := env.Client
	cluster := harness.NewCluster(t, env.Kubeconfig)
	procs := map[string]*harness.Process{}
	metrics := map[string]string{}
	for i := range 3 {
		id := fmt.Sprintf("r-%d", i)
		metrics[id] = freePort(t)
		procs[id] = cluster.Run("tinymod", ns, id, "--metrics-bind-address", metrics[id])
	}
	if _, err := manifest.Apply(ctx, k, ns, samples.DemoFlow); err != nil {
		t.Fatal(err)
	}
	first := harness.WaitLeader(t, k, ns, "tinymod", time.Minute)

	s, err := ui.New(ui.Options{Config: env.Config, Namespace: ns, Listen: "127.0.0.1:0", Replicas: func() []ui.Replica {
		var out []ui.Replica
		for id, p := range procs {
			out = append(out, ui.Replica{Module: "tinymod", Identity: id, MetricsAddr: metrics[id], Alive: p.Alive()})
		}
		return out
	}})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- s.Run(sctx) }()
	t.Cleanup(func() { stop(); <-served })

	b := browser(t, ctx)
	step := func(limit time.Duration, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		c, cancel := context.WithTimeout(b, limit)
		defer cancel()
		if err := chromedp.Do(c, actions...); err != nil {
			t.Fatal(err)
		}
	}
	step(30*time.Second, chromedp.Navigate(s.URL()), chromedp.WaitVisible(tid("flow-item-demo")), chromedp.Click(tid("flow-item-demo")))

	t.Run("the demo flow is drawn", func(t *testing.T) {
		for _, n := range demoNodes {
			step(30*time.Second, chromedp.WaitVisible(tid("node-"+n)))
		}
		for _, e := range demoEdges {
			step(10*time.Second, chromedp.WaitReady(tid("edge-"+e)))
		}
		waitText(t, b, 30*time.Second, tid("leader-tinymod"), func(s string) bool { return s == first })
		waitText(t, b, 30*time.Second, tid("node-status-signal-1"), func(s string) bool { return strings.Contains(s, "Ready") && !strings.Contains(s, "Not ready") })
		screenshot(t, b, "flow")
	})

	t.Run("pressing Send shows the debug message", func(t *testing.T) {
		step(30*time.Second, chromedp.WaitVisible(tid("control-signal-1-send")), chromedp.Click(tid("control-signal-1-send")))
		waitText(t, b, 30*time.Second, tid("signal-phase-signal-1"), func(s string) bool { return strings.Contains(s, "Delivered") })
		waitText(t, b, 30*time.Second, tid("debug-message"), func(s string) bool { return strings.Contains(s, "debug-signal") })
		screenshot(t, b, "debug")
	})

	t.Run("a killed leader's successor shows within lease + 2 s", func(t *testing.T) {
		old := harness.Holder(ctx, k, ns, "tinymod")
		if err := procs[old].Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		next := waitText(t, b, lease+2*time.Second, tid("leader-tinymod"), func(s string) bool { return s != old && s != "none" && s != "" })
		t.Logf("leader %s killed; the page showed %s after %v", old, next, time.Since(killed).Round(time.Millisecond))
		step(10*time.Second, chromedp.WaitReady(chromedp.CSS(string(tid("replica-tinymod-"+old))+`[data-alive="false"]`)))
		screenshot(t, b, "failover")
	})

	t.Run("settings are saved, and invalid ones refused in the page", func(t *testing.T) {
		delay := chromedp.CSS(string(tid("settings-form-ticker-1")) + ` input#root_delay`)
		step(20*time.Second, chromedp.Click(tid("node-ticker-1")), chromedp.WaitVisible(delay))
		type_ := func(v string) chromedp.Action[chromedp.Void] {
			return chromedp.SendKeys(delay, kb.End+strings.Repeat(kb.Backspace, 12)+v)
		}
		step(10*time.Second, type_("0"), chromedp.Click(tid("settings-save")))
		waitText(t, b, 10*time.Second, tid("settings-error"), func(s string) bool { return s != "" })
		screenshot(t, b, "settings-invalid")
		n := &v1alpha1.TinyNode{}
		if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ticker-1"}, n); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(settingsOf(n)), `"delay":0`) {
			t.Fatalf("an invalid delay reached the node: %s", settingsOf(n))
		}
		step(10*time.Second, type_("750"), chromedp.Click(tid("settings-save")))
		controlplanetest.Eventually(t, 10*time.Second, func() error {
			if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ticker-1"}, n); err != nil {
				return err
			}
			if !strings.Contains(string(settingsOf(n)), `"delay":750`) {
				return fmt.Errorf("settings %s", settingsOf(n))
			}
			return nil
		})
	})

	t.Run("the ticker's buttons follow its state", func(t *testing.T) {
		start, stop, state := "control-ticker-1-start", "control-ticker-1-stop", "control-state-ticker-1"
		waitText(t, b, 30*time.Second, tid(state), func(s string) bool { return s == "running" || s == "stopped" })
		if present(t, b, tid(start)) {
			step(10*time.Second, chromedp.Click(tid(start)))
		}
		step(30*time.Second, chromedp.WaitVisible(tid(stop)))
		waitGone(t, b, 30*time.Second, tid(start))
		waitText(t, b, 10*time.Second, tid(state), func(s string) bool { return s == "running" })
		screenshot(t, b, "ticker-running")
		step(10*time.Second, chromedp.Click(tid(stop)))
		step(30*time.Second, chromedp.WaitVisible(tid(start)))
		waitGone(t, b, 30*time.Second, tid(stop))
		waitText(t, b, 10*time.Second, tid(state), func(s string) bool { return s == "stopped" })
	})

	t.Run("a node added and wired in the page runs", func(t *testing.T) {
		var before v1alpha1.TinyNodeList
		if err := k.List(ctx, &before, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		step(20*time.Second, chromedp.WaitVisible(tid("palette-tinymod-debug")), chromedp.Click(tid("palette-tinymod-debug")))
		var added string
		controlplanetest.Eventually(t, 10*time.Second, func() error {
			var after v1alpha1.TinyNodeList
			if err := k.List(ctx, &after, client.InNamespace(ns)); err != nil {
				return err
			}
			for _, n := range after.Items {
				if strings.HasPrefix(n.Name, "debug-") && !has(before.Items, n.Name) {
					added = n.Name
					return nil
				}
			}
			return fmt.Errorf("no new node")
		})
		step(30*time.Second, chromedp.WaitVisible(tid("node-"+added)))
		src := string(tid("node-signal-1")) + ` .react-flow__handle.source[data-handleid="out"]`
		dst := string(tid("node-"+added)) + ` .react-flow__handle.target[data-handleid="in"]`
		c, cancel := context.WithTimeout(b, 20*time.Second)
		if err := drag(c, src, dst); err != nil {
			cancel()
			t.Fatal(err)
		}
		cancel()
		step(10*time.Second, chromedp.WaitVisible(tid("mapping-dialog")), chromedp.Click(tid("mapping-save")))
		controlplanetest.Eventually(t, 10*time.Second, func() error {
			n := &v1alpha1.TinyNode{}
			if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: "signal-1"}, n); err != nil {
				return err
			}
			for _, e := range n.Spec.Edges {
				if e.To == added+".in" {
					return nil
				}
			}
			return fmt.Errorf("no edge to %s: %+v", added, n.Spec.Edges)
		})
		step(30*time.Second, chromedp.Click(tid("control-signal-1-send")))
		waitText(t, b, 30*time.Second, tid("debug-message"), func(s string) bool { return strings.Contains(s, added) })
		screenshot(t, b, "added")
	})
}

func settingsOf(n *v1alpha1.TinyNode) []byte {
	for _, p := range n.Spec.Ports {
		if p.Port == v1alpha1.SettingsPort && p.Configuration != nil {
			return p.Configuration.Raw
		}
	}
	return nil
}

func has(nodes []v1alpha1.TinyNode, name string) bool {
	for _, n := range nodes {
		if n.Name == name {
			return true
		}
	}
	return false
}
