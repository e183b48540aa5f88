package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
)

func TestMain(m *testing.M) { controlplanetest.Main(m) }

const lease = 2 * time.Second

// TestRunProcessesFailover starts three `tinymod run` processes, kills the
// leader with SIGKILL and expects a new one within lease + 1s, then stops the
// next leader with SIGTERM and expects a handover within a second and a clean exit.
func TestRunProcessesFailover(t *testing.T) {
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

	procs := map[string]*exec.Cmd{}
	exited := map[string]chan error{}
	for i := range 3 {
		id := fmt.Sprintf("proc-%d", i)
		cmd := exec.Command(bin, "run", "--name", "e2e", "--namespace", ns, "--kubeconfig", kubeconfig,
			"--identity", id, "--grpc-listen", "127.0.0.1:0", "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
			"--lease-duration", "2s", "--renew-deadline", "1500ms", "--retry-period", "500ms")
		logFile, err := os.Create(filepath.Join(dir, id+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[id] = cmd
		done := make(chan error, 1)
		exited[id] = done
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); logFile.Close() })
	}
	ctx := controlplanetest.Context(t, 2*time.Minute)
	holder := func() string {
		l := &coordinationv1.Lease{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "e2e-leader"}, l); err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	waitOther := func(not string) string {
		var got string
		controlplanetest.Eventually(t, 30*time.Second, func() error {
			got = holder()
			if got == "" || got == not {
				return fmt.Errorf("holder %q", got)
			}
			return nil
		})
		return got
	}

	first := waitOther("")
	killed := time.Now()
	if err := procs[first].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	second := waitOther(first)
	if took := time.Since(killed); took > lease+time.Second {
		t.Errorf("after kill -9 of %s, %s led after %s; want within %s", first, second, took, lease+time.Second)
	}

	stopped := time.Now()
	if err := procs[second].Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	third := waitOther(second)
	if took := time.Since(stopped); took > time.Second {
		t.Errorf("graceful handover from %s to %s took %s; want under 1s", second, third, took)
	}
	select {
	case err := <-exited[second]:
		if err != nil {
			t.Errorf("%s exited with %v after SIGTERM", second, err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("%s still running 20s after SIGTERM", second)
	}
	if third == first {
		t.Errorf("the killed process %s leads again", first)
	}
}
