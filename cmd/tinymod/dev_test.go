package main

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tinymod/tinymod/internal/controlplane"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
)

// lineLog collects the lines of a process's output.
type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) read(r io.Reader) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		l.mu.Lock()
		l.lines = append(l.lines, s.Text())
		l.mu.Unlock()
	}
}

// find returns the first line after from matching re, and its index.
func (l *lineLog) find(re *regexp.Regexp, from int) (string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := from; i < len(l.lines); i++ {
		if re.MatchString(l.lines[i]) {
			return l.lines[i], i
		}
	}
	return "", -1
}

func (l *lineLog) wait(t *testing.T, re *regexp.Regexp, from int, limit time.Duration) (string, int) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if line, i := l.find(re, from); i >= 0 {
			return line, i
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.mu.Lock()
	tail := l.lines[max(0, len(l.lines)-30):]
	l.mu.Unlock()
	t.Fatalf("no line matching %s within %s; last lines:\n%s", re, limit, strings.Join(tail, "\n"))
	return "", -1
}

// TestDevShowsFlowAndFailover runs `tinymod dev` without a terminal: it shows
// a leader and a ticking flow, survives a forced leader kill, and stops on
// Ctrl-C leaving no process behind.
func TestDevShowsFlowAndFailover(t *testing.T) {
	if err := controlplane.CheckBinaries(controlplane.BinDir()); err != nil {
		t.Fatal(err)
	}
	bin := buildTinymod(t)
	controlplanetest.Lock(t)
	cmd := exec.Command(bin, "dev", "--plain", "--replicas", "3", "--kill-leader-every", "6s", "--refresh", "1s", "--dir", t.TempDir())
	out := &lineLog{}
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go out.read(stdout)
	go out.read(stderr)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	export, _ := out.wait(t, regexp.MustCompile(`^export KUBECONFIG=`), 0, 90*time.Second)
	// The page of tinymod ui, served by dev.
	pageRE := regexp.MustCompile(`^the flows, live: (http://127\.0\.0\.1:\d+/)$`)
	pageLine, _ := out.wait(t, pageRE, 0, 30*time.Second)
	resp, err := http.Get(pageRE.FindStringSubmatch(pageLine)[1])
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), `<meta name="tinymod-token"`) {
		t.Errorf("the page: %s: %.300s", resp.Status, page)
	}
	_, i := out.wait(t, regexp.MustCompile(`^module tinymod: leader dev-\d`), 0, 60*time.Second)
	// A message the node cannot take: the view shows the failure, read from
	// the replicas.
	press := exec.Command(bin, "signal", "--node", "debug-quiet", "--port", "nope", "--data", "{}")
	press.Env = append(os.Environ(), strings.TrimPrefix(export, "export "))
	if b, err := press.CombinedOutput(); err != nil {
		t.Fatalf("tinymod signal: %v: %s", err, b)
	}
	out.wait(t, regexp.MustCompile(`^\s*debug-quiet\s+debug\s+ready.*last failure .* ago: .*no such port`), i, 30*time.Second)
	out.wait(t, regexp.MustCompile(`^\s*debug-quiet\s+debug\s+ready\s+[0-9.]+ msg/s`), i, 30*time.Second)
	out.wait(t, regexp.MustCompile(`\[dev-\d\] debug-quiet \{"quiet":true,"said":"tick"\}`), 0, 30*time.Second)
	// The replicas' own logs, prefixed by identity.
	out.wait(t, regexp.MustCompile(`^\[dev-\d\] \{.*"msg":"became leader"`), 0, 30*time.Second)

	killedRE := regexp.MustCompile(`killed leader (dev-\d) \(kill -9\)`)
	killed, k := out.wait(t, killedRE, 0, 30*time.Second)
	victim := killedRE.FindStringSubmatch(killed)[1]
	tookRE := regexp.MustCompile(`(dev-\d) took over; restarting ` + victim)
	took, k := out.wait(t, tookRE, k, 30*time.Second)
	if tookRE.FindStringSubmatch(took)[1] == victim {
		t.Errorf("the killed leader took over from itself: %s", took)
	}
	// Ticks go on after the failover.
	out.wait(t, regexp.MustCompile(`^\s*debug-quiet\s+debug\s+ready\s+[0-9.]+ msg/s`), k+1, 30*time.Second)

	// Three replicas, etcd and kube-apiserver are children whenever no
	// failover is under way. Leaders go on being killed meanwhile, and a
	// killed one is missing until another takes over and it is restarted:
	// look until all five are there.
	children := waitChildren(t, cmd.Process.Pid, 5, 30*time.Second)
	if len(children) < 5 {
		t.Errorf("want 3 replicas, etcd and kube-apiserver as children, got %d", len(children))
	}
	stopAndWait(t, cmd, exited, syscall.SIGINT, 60*time.Second)
	for _, pid := range children {
		if alive(pid) {
			t.Errorf("process %d (%s) outlived tinymod dev", pid, cmdline(pid))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// waitChildren returns the children of pid once there are at least n of them,
// or the last ones seen when limit passes first.
func waitChildren(t *testing.T, pid, n int, limit time.Duration) []int {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		children := childrenOf(t, pid)
		if len(children) >= n || time.Now().After(deadline) {
			return children
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stopAndWait sends sig to cmd and fails the test unless it exits cleanly
// (exited carries cmd.Wait's result) within limit.
func stopAndWait(t *testing.T, cmd *exec.Cmd, exited <-chan error, sig syscall.Signal, limit time.Duration) {
	t.Helper()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after %s: %v", sig, err)
		}
	case <-time.After(limit):
		t.Fatalf("still running %s after %s", limit, sig)
	}
}
