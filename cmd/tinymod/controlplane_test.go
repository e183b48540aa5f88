package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controlplane"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
)

// buildTinymod builds this command into a temporary folder.
func buildTinymod(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tinymod")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestControlPlaneCommand starts `tinymod controlplane --dir`, uses the API
// server, stops it with SIGTERM, checks that no process is left, then starts it
// again on the same folder and finds the object written by the first run.
func TestControlPlaneCommand(t *testing.T) {
	if err := controlplane.CheckBinaries(controlplane.BinDir()); err != nil {
		t.Fatal(err)
	}
	bin := buildTinymod(t)
	dir := t.TempDir()
	controlplanetest.Lock(t)

	run := func(use func(c client.Client)) {
		t.Helper()
		cmd := exec.Command(bin, "controlplane", "--dir", dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		defer func() { // never leave it running, whatever happens
			_ = cmd.Process.Kill()
		}()

		kubeconfig := waitReady(t, stdout, 60*time.Second)
		if want := filepath.Join(dir, "kubeconfig"); kubeconfig != want {
			t.Errorf("kubeconfig at %s, want %s", kubeconfig, want)
		}
		children := childrenOf(t, cmd.Process.Pid)
		if len(children) < 2 {
			t.Errorf("want etcd and kube-apiserver as children, got pids %v", children)
		}

		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.New(cfg, client.Options{Scheme: controlplanetest.NewScheme()})
		if err != nil {
			t.Fatal(err)
		}
		use(c)

		stopAndWait(t, cmd, exited, syscall.SIGTERM, 45*time.Second)
		for _, pid := range children {
			if alive(pid) {
				t.Errorf("process %d (%s) outlived tinymod controlplane", pid, cmdline(pid))
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}

	flow := &v1alpha1.TinyFlow{
		ObjectMeta: metav1.ObjectMeta{Name: "kept", Namespace: "default"},
		Spec:       v1alpha1.TinyFlowSpec{Description: "survives a restart"},
	}
	run(func(c client.Client) {
		ctx := controlplanetest.Context(t, 20*time.Second)
		if err := c.Create(ctx, flow); err != nil {
			t.Fatalf("create TinyFlow: %v", err)
		}
	})
	run(func(c client.Client) {
		ctx := controlplanetest.Context(t, 20*time.Second)
		got := &v1alpha1.TinyFlow{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(flow), got); err != nil {
			t.Fatalf("TinyFlow from the first run: %v", err)
		}
		if got.Spec.Description != flow.Spec.Description {
			t.Errorf("description %q, want %q", got.Spec.Description, flow.Spec.Description)
		}
	})
}

// TestControlPlaneMissingBinaries checks the error that says how to build them.
func TestControlPlaneMissingBinaries(t *testing.T) {
	bin := buildTinymod(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "controlplane")
	cmd.Env = append(os.Environ(), controlplane.DirEnv+"="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("succeeded without binaries:\n%s", out)
	}
	if !strings.Contains(string(out), "make controlplane") {
		t.Errorf("error does not say `make controlplane`:\n%s", out)
	}
}

// waitReady reads stdout until the ready line and returns the kubeconfig path in it.
func waitReady(t *testing.T, stdout io.Reader, limit time.Duration) string {
	t.Helper()
	lines := make(chan string)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	timeout := time.After(limit)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("stdout closed before the ready line")
			}
			if strings.Contains(line, "ready") {
				fields := strings.Fields(line)
				go func() { // keep draining so the process never blocks on stdout
					for range lines {
					}
				}()
				return fields[len(fields)-1]
			}
		case <-timeout:
			t.Fatalf("no ready line within %s", limit)
		}
	}
}

// childrenOf lists the pids whose parent is pid.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _ := stat(child); ppid == pid {
			out = append(out, child)
		}
	}
	return out
}

// stat returns the parent pid and state of pid from /proc/pid/stat.
func stat(pid int) (ppid int, state string) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, ""
	}
	// pid (comm) state ppid ...; comm may hold spaces, so split after the last ')'.
	rest := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(rest) < 2 {
		return 0, ""
	}
	ppid, _ = strconv.Atoi(rest[1])
	return ppid, rest[0]
}

func alive(pid int) bool {
	_, state := stat(pid)
	return state != "" && state != "Z" && state != "X"
}

func cmdline(pid int) string {
	data, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	return strings.ReplaceAll(string(data), "\x00", " ")
}
