package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
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
