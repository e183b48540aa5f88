package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/replica"
)

// cluster is a built tinymod binary and a kubeconfig for the test's control plane.
type cluster struct {
	t          *testing.T
	dir, bin   string
	kubeconfig string
}

var buildOnce struct {
	sync.Once
	bin string
	err error
	out []byte
}

func newCluster(t *testing.T, kubeconfig []byte) *cluster {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tinymod-e2e-bin-")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.bin = filepath.Join(dir, "tinymod")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		buildOnce.out, buildOnce.err = exec.CommandContext(ctx, "go", "build", "-o", buildOnce.bin, "../../cmd/tinymod").CombinedOutput()
	})
	if buildOnce.err != nil {
		t.Fatalf("build: %v\n%s", buildOnce.err, buildOnce.out)
	}
	dir := t.TempDir()
	c := &cluster{t: t, dir: dir, bin: buildOnce.bin, kubeconfig: filepath.Join(dir, "kubeconfig")}
	if err := os.WriteFile(c.kubeconfig, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// process is one `tinymod run`.
type process struct {
	id  string
	cmd *exec.Cmd
	log string
	// exited is closed when the process has ended; err is then its exit error.
	exited chan struct{}
	err    error
}

// run starts `tinymod run` with short lease durations, logging to a file.
func (c *cluster) run(name, ns, id string, extra ...string) *process {
	c.t.Helper()
	args := append([]string{"run", "--name", name, "--namespace", ns, "--kubeconfig", c.kubeconfig,
		"--identity", id, "--grpc-listen", "127.0.0.1:0", "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--lease-duration", "2s", "--renew-deadline", "1500ms", "--retry-period", "500ms"}, extra...)
	cmd := exec.Command(c.bin, args...)
	p := &process{id: id, cmd: cmd, log: filepath.Join(c.dir, id+".log"), exited: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); f.Close(); close(p.exited) }()
	c.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT) // a stopped process cannot die
		_ = cmd.Process.Kill()
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			c.t.Errorf("process %s did not exit", p.id)
		}
	})
	return p
}

// logLine is one JSON log line of a replica.
type logLine struct {
	Time     time.Time       `json:"time"`
	Msg      string          `json:"msg"`
	Identity string          `json:"identity"`
	Node     string          `json:"node"`
	Data     json.RawMessage `json:"data"`
}

// lines returns the process's JSON log lines with msg (all when empty).
func (p *process) lines(msg string) []logLine {
	data, _ := os.ReadFile(p.log)
	var out []logLine
	s := bufio.NewScanner(bytes.NewReader(data))
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		var l logLine
		if json.Unmarshal(s.Bytes(), &l) != nil {
			continue
		}
		if msg == "" || l.Msg == msg {
			out = append(out, l)
		}
	}
	return out
}

// waitLeader waits until the module's Lease is held, by none of not, and
// returns the holder.
func waitLeader(t *testing.T, c client.Client, ns, moduleName string, not ...string) string {
	t.Helper()
	var got string
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		l := &coordinationv1.Lease{}
		got = ""
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: replica.LeaseName(moduleName)}, l); err == nil && l.Spec.HolderIdentity != nil {
			got = *l.Spec.HolderIdentity
		}
		for _, n := range append(not, "") {
			if got == n {
				return fmt.Errorf("lease holder %q", got)
			}
		}
		return nil
	})
	return got
}
