// Package harness runs real `tinymod run` processes (or `run` of another
// module binary built with package cli) against a test control
// plane and reads what they log, for the end-to-end and chaos suites.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/internal/controlplane"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/replica"
)

// Cluster is a built tinymod binary and a kubeconfig for the test's control plane.
type Cluster struct {
	t          testing.TB
	Dir, Bin   string
	Kubeconfig string
}

var builds struct {
	sync.Mutex
	m map[string]*build
}

type build struct {
	once sync.Once
	bin  string
	err  error
	out  []byte
}

// Binary builds cmd/tinymod once per test process and returns its path.
func Binary(t testing.TB) string { return Build(t, "./cmd/tinymod") }

// Build builds the main package pkg, a path from the repository's root such
// as "./cmd/tinymod", once per test process and returns the binary's path.
// The binary is removed when the package's tests end, through
// controlplanetest.AtExit.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	builds.Lock()
	if builds.m == nil {
		builds.m = map[string]*build{}
	}
	b := builds.m[pkg]
	if b == nil {
		b = &build{}
		builds.m[pkg] = b
	}
	builds.Unlock()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "tinymod-e2e-bin-")
		if err != nil {
			b.err = err
			return
		}
		controlplanetest.AtExit(func() { _ = os.RemoveAll(dir) })
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..", "..")
		b.bin = filepath.Join(dir, filepath.Base(pkg))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.bin, pkg)
		cmd.Dir = root
		b.out, b.err = cmd.CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, b.err, b.out)
	}
	return b.bin
}

// NewCluster builds the binary and writes kubeconfig for processes to use.
func NewCluster(t testing.TB, kubeconfig []byte) *Cluster {
	t.Helper()
	return NewClusterWith(t, kubeconfig, Binary(t))
}

// NewClusterWith is NewCluster for another module binary, bin (from Build),
// which has the same `run` command.
func NewClusterWith(t testing.TB, kubeconfig []byte, bin string) *Cluster {
	t.Helper()
	dir := t.TempDir()
	c := &Cluster{t: t, Dir: dir, Bin: bin, Kubeconfig: filepath.Join(dir, "kubeconfig")}
	if err := os.WriteFile(c.Kubeconfig, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// KubeconfigFor writes a kubeconfig file for cfg (a user of the control plane)
// and returns its path, for a process that runs as that user.
func (c *Cluster) KubeconfigFor(user string, cfg *rest.Config) string {
	c.t.Helper()
	data, err := controlplane.Kubeconfig(user, cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	path := filepath.Join(c.Dir, "kubeconfig-"+user)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// Process is one `tinymod run`.
type Process struct {
	ID  string
	Cmd *exec.Cmd
	Log string
	// Exited is closed when the process has ended; Err is then its exit error.
	Exited chan struct{}
	Err    error
}

// Alive reports whether the process has not exited.
func (p *Process) Alive() bool {
	select {
	case <-p.Exited:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error { return p.Cmd.Process.Signal(sig) }

// Run starts `tinymod run` with short lease durations (2s, 1.5s, 0.5s),
// logging to a file; extra flags come last, so they override.
func (c *Cluster) Run(name, ns, id string, extra ...string) *Process {
	c.t.Helper()
	args := append([]string{"run", "--name", name, "--namespace", ns, "--kubeconfig", c.Kubeconfig,
		"--identity", id, "--grpc-listen", "127.0.0.1:0", "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--lease-duration", "2s", "--renew-deadline", "1500ms", "--retry-period", "500ms"}, extra...)
	cmd := exec.Command(c.Bin, args...)
	p := &Process{ID: id, Cmd: cmd, Log: filepath.Join(c.Dir, id+".log"), Exited: make(chan struct{})}
	f, err := os.Create(p.Log)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { p.Err = cmd.Wait(); f.Close(); close(p.Exited) }()
	c.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT) // a stopped process cannot die
		_ = cmd.Process.Kill()
		select {
		case <-p.Exited:
		case <-time.After(10 * time.Second):
			c.t.Errorf("process %s did not exit", p.ID)
		}
		if c.t.Failed() { // the process's own account of a failure, or its absence
			if b, err := os.ReadFile(p.Log); err == nil {
				c.t.Logf("process %s (%v) logged, at the end:\n%s", p.ID, p.Err, b[max(0, len(b)-4096):])
				if dir := os.Getenv("TINYMOD_E2E_LOGS"); dir != "" {
					// The whole log, kept past the test's temporary directory.
					keep := filepath.Join(dir, strings.ReplaceAll(c.t.Name(), "/", "_")+"-"+p.ID+".log")
					if err := os.WriteFile(keep, b, 0o644); err != nil {
						c.t.Logf("keep the log of %s: %v", p.ID, err)
					}
				}
			}
		}
	})
	return p
}

// LogLine is one JSON log line of a replica.
type LogLine struct {
	Time     time.Time       `json:"time"`
	Msg      string          `json:"msg"`
	Identity string          `json:"identity"`
	Node     string          `json:"node"`
	Data     json.RawMessage `json:"data"`
}

// Lines returns the process's JSON log lines with msg (all when empty).
func (p *Process) Lines(msg string) []LogLine { return Decode[LogLine](p, msg) }

// Decode returns the process's JSON log lines with msg (all when empty),
// each decoded into a T: for lines with fields of their own.
func Decode[T any](p *Process, msg string) []T {
	data, _ := os.ReadFile(p.Log)
	var quoted []byte
	if msg != "" {
		quoted, _ = json.Marshal(msg)
	}
	var out []T
	s := bufio.NewScanner(bytes.NewReader(data))
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Bytes()
		if msg != "" && !bytes.Contains(line, quoted) {
			continue
		}
		var head struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal(line, &head) != nil || msg != "" && head.Msg != msg {
			continue
		}
		var v T
		if json.Unmarshal(line, &v) == nil {
			out = append(out, v)
		}
	}
	return out
}

// Holder returns the holder of the module's leader Lease ("" when none).
func Holder(ctx context.Context, c client.Client, ns, moduleName string) string {
	l := &coordinationv1.Lease{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: replica.LeaseName(moduleName)}, l); err == nil && l.Spec.HolderIdentity != nil {
		return *l.Spec.HolderIdentity
	}
	return ""
}

// WaitLeader waits up to limit until the module's Lease is held, by none of
// not, and returns the holder.
func WaitLeader(t testing.TB, c client.Client, ns, moduleName string, limit time.Duration, not ...string) string {
	t.Helper()
	var got string
	controlplanetest.Eventually(t, limit, func() error {
		got = Holder(context.Background(), c, ns, moduleName)
		for _, n := range append(not, "") {
			if got == n {
				return fmt.Errorf("lease holder %q", got)
			}
		}
		return nil
	})
	return got
}
