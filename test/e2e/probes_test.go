package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/cli"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/replica"
)

// freePorts returns n loopback addresses free at the time, all different:
// each is held until all are taken, so the kernel cannot hand one out twice.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

func get(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// TestRunProbesAndMetrics: a lone `tinymod run` becomes ready once its caches
// have synced and its lease has been seen, leads, and says so in its metrics
// and JSON logs; SIGTERM ends it cleanly.
func TestRunProbesAndMetrics(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	c := newCluster(t, env.Kubeconfig)
	ports := freePorts(t, 2)
	health, metrics := ports[0], ports[1]
	p := c.Run("solo", ns, "solo-0", "--metrics-bind-address", metrics, "--health-probe-bind-address", health)
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		code, body, err := get("http://" + health + "/readyz")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("readyz: %d %v %s", code, err, body)
		}
		return nil
	})
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		_, body, err := get("http://" + metrics + "/metrics")
		if err != nil {
			return err
		}
		if !strings.Contains(body, `tinymod_leader{identity="solo-0",module="solo"} 1`) {
			return fmt.Errorf("no leader gauge of 1 in the metrics")
		}
		for _, series := range []string{
			`tinymod_transport_frames_total{direction="sent",module="solo",side="client"}`,
			`tinymod_transport_envelopes_total{direction="received",module="solo",side="server"}`,
			`tinymod_transport_streams{module="solo",side="server"}`,
			`tinymod_transport_unavailable_total{module="solo"}`,
		} {
			if !strings.Contains(body, series) {
				return fmt.Errorf("no %s in the metrics", series)
			}
		}
		return nil
	})
	// A failed delivery shows in the replica's per-node health, which no
	// replica writes to the API server.
	cl := env.Client
	if err := cl.Create(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "d", Namespace: ns},
		Spec: v1alpha1.TinyNodeSpec{Module: "solo", Component: "debug"}}); err != nil {
		t.Fatal(err)
	}
	if err := cl.Create(context.Background(), &v1alpha1.TinySignal{ObjectMeta: metav1.ObjectMeta{Name: "to-nowhere", Namespace: ns},
		Spec: v1alpha1.TinySignalSpec{Node: "d", Port: "nope"}}); err != nil {
		t.Fatal(err)
	}
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		_, body, err := get("http://" + metrics + replica.HealthPath)
		if err != nil {
			return err
		}
		var h replica.Health
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			return fmt.Errorf("%v: %s", err, body)
		}
		if d := h.Nodes["d"]; h.Identity != "solo-0" || d.Errors == 0 || !strings.Contains(d.LastError, "no such port") {
			return fmt.Errorf("health: %s", body)
		}
		return nil
	})
	// tinymod status reads it through the replica's membership Lease.
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		s, err := cli.GetStatus(context.Background(), cl, ns)
		if err != nil {
			return err
		}
		if notes := cli.AddHealth(context.Background(), &cli.HealthReader{Config: env.Config, Namespace: ns}, s, 0); len(notes) > 0 {
			return fmt.Errorf("%v", notes)
		}
		for _, m := range s.Modules {
			for _, n := range m.Nodes {
				if n.Name == "d" && n.Errors > 0 && strings.Contains(n.LastError, "no such port") && n.LastErrorAge != "" {
					return nil
				}
			}
		}
		return fmt.Errorf("status shows no failure of d: %+v", s.Modules)
	})
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Exited:
		if err := p.Err; err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("still running 20s after SIGTERM")
	}
	// One JSON object a line, with the replica's identity and module.
	raw, err := os.ReadFile(p.Log)
	if err != nil {
		t.Fatal(err)
	}
	logs := string(raw)
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !strings.HasPrefix(line, "{") || !strings.Contains(line, `"time":"`) || !strings.Contains(line, `"level":"`) || !strings.Contains(line, `"msg":"`) {
			t.Errorf("log line is not design.md's JSON: %s", line)
			continue
		}
		if strings.Contains(line, `"msg":"became leader"`) && (!strings.Contains(line, `"identity":"solo-0"`) || !strings.Contains(line, `"module":"solo"`)) {
			t.Errorf("leader line without identity and module: %s", line)
		}
	}
	if !strings.Contains(logs, `"msg":"became leader"`) {
		t.Errorf("no became-leader line in the logs:\n%s", logs)
	}
}

// TestRunRefusesOpenGRPCWithoutToken: reachable beyond loopback with no token
// is refused at start-up, with a message saying what to do.
func TestRunRefusesOpenGRPCWithoutToken(t *testing.T) {
	env := controlplanetest.Start(t)
	c := newCluster(t, env.Kubeconfig)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, c.Bin, "run", "--name", "open", "--kubeconfig", c.Kubeconfig, "--grpc-listen", "0.0.0.0:0",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--grpc-token-file") || !strings.Contains(string(out), "--insecure-grpc") {
		t.Errorf("open gRPC without a token: %v\n%s", err, out)
	}
}
