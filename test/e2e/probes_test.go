package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
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
	dir := t.TempDir()
	bin := filepath.Join(dir, "tinymod")
	bctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(bctx, "go", "build", "-o", bin, "../../cmd/tinymod").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.Kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	health, metrics := freePort(t), freePort(t)
	cmd := exec.Command(bin, "run", "--name", "solo", "--namespace", ns, "--kubeconfig", kubeconfig,
		"--identity", "solo-0", "--grpc-listen", "127.0.0.1:0", "--metrics-bind-address", metrics,
		"--health-probe-bind-address", health, "--lease-duration", "2s", "--renew-deadline", "1500ms", "--retry-period", "500ms")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

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
		return nil
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("still running 20s after SIGTERM")
	}
	// One JSON object a line, with the replica's identity and module.
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !strings.HasPrefix(line, "{") || !strings.Contains(line, `"time":"`) || !strings.Contains(line, `"level":"`) || !strings.Contains(line, `"msg":"`) {
			t.Errorf("log line is not design.md's JSON: %s", line)
			continue
		}
		if strings.Contains(line, `"msg":"became leader"`) && (!strings.Contains(line, `"identity":"solo-0"`) || !strings.Contains(line, `"module":"solo"`)) {
			t.Errorf("leader line without identity and module: %s", line)
		}
	}
	if !strings.Contains(logs.String(), `"msg":"became leader"`) {
		t.Errorf("no became-leader line in the logs:\n%s", logs.String())
	}
}
