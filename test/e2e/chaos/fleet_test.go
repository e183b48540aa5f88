package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/controlplane/faultproxy"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/test/bench/benchutil"
	"github.com/tinymod/tinymod/test/e2e/harness"
)

// world is what every part of the test shares: the control plane, the
// module binary, the proxies' tally and the modules.
type world struct {
	t       *testing.T
	ctx     context.Context
	env     *controlplanetest.Env
	cs      kubernetes.Interface
	cluster *harness.Cluster
	ns      string
	p       profile
	seed    uint64
	tally   *faultproxy.Tally
	// wallAtZero maps wall-clock times (logs, the audit log) to
	// CLOCK_MONOTONIC, the journals' and the Lease histories' clock.
	wallAtZero time.Time

	// done is closed when the test's body ends: the supervisors stop.
	done        chan struct{}
	supervisors sync.WaitGroup
	mods        map[string]*fleet
}

// newWorld builds the module binary, takes the control plane's turn and
// returns a world in a namespace of its own; the caller defers end.
func newWorld(t *testing.T, p profile, seed uint64) *world {
	bin := harness.Build(t, "./test/e2e/chaos/faultymodule") // before taking the control plane's turn
	env := controlplanetest.Start(t)
	w := &world{t: t, ctx: controlplanetest.Context(t, p.limit), env: env, cs: kubernetes.NewForConfigOrDie(env.Config),
		cluster: harness.NewClusterWith(t, env.Kubeconfig, bin), ns: env.Namespace(t), p: p, seed: seed, tally: &faultproxy.Tally{},
		wallAtZero: time.Now().Add(-leader.MonotonicNow()), done: make(chan struct{}), mods: map[string]*fleet{}}
	t.Cleanup(func() { keepLogs(t, w.cluster.Dir) })
	return w
}

// end stops the supervisors: replicas that exit from now on are the test's doing.
func (w *world) end() {
	close(w.done)
	w.supervisors.Wait()
}

// over reports whether the test's body has ended.
func (w *world) over() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// mono returns a wall-clock time on CLOCK_MONOTONIC.
func (w *world) mono(t time.Time) int64 { return int64(t.Sub(w.wallAtZero)) }

// fleet keeps a module's replicas running, each incarnation under an
// identity and an API user of its own, as a Deployment's pods are, and each
// behind a fault-injecting proxy of its own.
type fleet struct {
	w       *world
	name    string
	history *leader.History

	mu       sync.Mutex
	live     []*proc
	gen      []int
	all      []*proc
	down     bool // the whole module is down on purpose: no restarts
	restarts []string
	crashes  int
}

// proc is one incarnation of a replica.
type proc struct {
	*harness.Process
	module  string
	slot    int
	metrics string
	pprof   string // net/http/pprof's address, when the profile asks for it
	started time.Time
	// killed is set before the test kills it: any other exit is the
	// process's own doing.
	killed atomic.Bool
}

func newFleet(w *world, name string, replicas int) *fleet {
	w.t.Helper()
	h, err := leader.WatchHistory(w.ctx, w.cs, w.ns, replica.LeaseName(name))
	if err != nil {
		w.t.Fatal(err)
	}
	f := &fleet{w: w, name: name, history: h, live: make([]*proc, replicas), gen: make([]int, replicas)}
	w.mods[name] = f
	return f
}

// start runs a new incarnation in slot.
func (f *fleet) start(slot int) *proc {
	w := f.w
	f.mu.Lock()
	id := fmt.Sprintf("%s-r%d-%d", f.name, slot, f.gen[slot])
	f.gen[slot]++
	incarnations := len(f.all)
	f.mu.Unlock()
	proxy, proxied, err := faultproxy.New(w.env.UserConfig(w.t, id), faultproxy.Options{
		Rate: w.p.faultRate, Hold: w.p.hold, Tally: w.tally,
		Seed: w.seed + uint64(slot)*1000 + uint64(incarnations)*7 + uint64(len(f.name)),
	})
	if err != nil {
		w.t.Error(err)
		return nil
	}
	w.t.Cleanup(proxy.Close)
	kubeconfig := w.cluster.KubeconfigFor(id, proxied)
	metrics := benchutil.FreeAddr()
	p := &proc{module: f.name, slot: slot, metrics: metrics, started: time.Now()}
	args := []string{"--kubeconfig", kubeconfig,
		"--metrics-bind-address", metrics,
		"--leader-journal", filepath.Join(w.cluster.Dir, "journal-"+id),
		"--lease-duration", w.p.lease.String(), "--renew-deadline", w.p.renew.String(), "--retry-period", w.p.retry.String()}
	if w.p.pprof {
		p.pprof = benchutil.FreeAddr()
		args = append(args, "--pprof-bind-address", p.pprof)
	}
	p.Process = w.cluster.Run(f.name, w.ns, id, args...)
	f.mu.Lock()
	f.live[slot] = p
	f.all = append(f.all, p)
	f.mu.Unlock()
	w.supervisors.Add(1)
	go f.supervise(p)
	return p
}

// supervise waits for p to end. An end the test did not cause is recorded;
// a crash (a panic or a fatal error in the log) fails the test. The slot
// gets a new incarnation, as a Deployment's pod would, unless the module is
// down on purpose.
func (f *fleet) supervise(p *proc) {
	defer f.w.supervisors.Done()
	select {
	case <-f.w.done:
		return
	case <-p.Exited:
	}
	select {
	case <-f.w.done:
		return
	default:
	}
	if p.killed.Load() {
		return
	}
	tail := logTail(p.Log, 32<<10)
	crash := crashRE.FindIndex(tail)
	var exit *exec.ExitError
	status := fmt.Sprint(p.Err)
	if errors.As(p.Err, &exit) {
		status = exit.String()
	}
	if crash != nil {
		f.mu.Lock()
		f.crashes++
		full := f.crashes <= 2
		f.mu.Unlock()
		what := tail[crash[0]:]
		if !full { // the same story again, most likely: its first line
			what, _, _ = bytes.Cut(what, []byte("\n"))
		}
		f.w.t.Errorf("replica %s (module %s) crashed (%s) after %s:\n%s", p.ID, f.name, status, time.Since(p.started).Round(time.Millisecond), excerpt(what))
	} else {
		f.w.t.Logf("replica %s (module %s) exited by itself (%s) after %s; its log ends:\n%s", p.ID, f.name, status, time.Since(p.started).Round(time.Millisecond), excerpt(lastLines(tail, 8)))
	}
	f.mu.Lock()
	f.restarts = append(f.restarts, fmt.Sprintf("%s (%s)", p.ID, status))
	again := !f.down && f.live[p.slot] == p && len(f.restarts) <= 60
	backoff := min(time.Duration(len(f.restarts))*time.Second, 3*time.Second)
	f.mu.Unlock()
	if !again {
		return
	}
	select {
	case <-f.w.done:
		return
	case <-time.After(backoff): // a kubelet's restart backoff
	}
	f.mu.Lock()
	again = !f.down && f.live[p.slot] == p
	f.mu.Unlock()
	if again {
		f.start(p.slot)
	}
}

// kill ends p with SIGKILL and waits for it to be gone.
func (f *fleet) kill(p *proc) {
	p.killed.Store(true)
	if err := p.Signal(syscall.SIGKILL); err != nil && p.Alive() {
		f.w.t.Fatal(err)
	}
	<-p.Exited
}

// replicas returns the live incarnations.
func (f *fleet) replicas() []*proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*proc
	for _, p := range f.live {
		if p != nil && p.Alive() {
			out = append(out, p)
		}
	}
	return out
}

// incarnations returns every incarnation so far.
func (f *fleet) incarnations() []*proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*proc(nil), f.all...)
}

// live returns the live incarnation with identity id, or nil.
func (f *fleet) liveByID(id string) *proc {
	for _, p := range f.replicas() {
		if p.ID == id {
			return p
		}
	}
	return nil
}

func (f *fleet) byID(id string) *proc {
	for _, p := range f.incarnations() {
		if p.ID == id {
			return p
		}
	}
	return nil
}

// holder returns the live replica that holds the module's Lease, or nil.
func (f *fleet) holder() *proc {
	id := harness.Holder(f.w.ctx, f.w.env.Client, f.w.ns, f.name)
	if id == "" {
		return nil
	}
	return f.liveByID(id)
}

// waitLeader waits for a live replica, none of not, to hold the Lease.
func (f *fleet) waitLeader(limit time.Duration, not ...*proc) *proc {
	f.w.t.Helper()
	var got *proc
	poll(f.w.t, limit, func() error {
		got = f.holder()
		if got == nil {
			return fmt.Errorf("module %s: the lease holder %q is not a live replica", f.name, harness.Holder(f.w.ctx, f.w.env.Client, f.w.ns, f.name))
		}
		for _, n := range not {
			if n != nil && got == n {
				return fmt.Errorf("module %s: lease still held by %s", f.name, n.ID)
			}
		}
		return nil
	})
	return got
}

// poll calls cond every 100 ms until it returns nil, and fails the test with
// its last error once limit has passed. The chaos suite reads whole log files
// in its conditions: 100 ms leaves the machine to the replicas.
func poll(t *testing.T, limit time.Duration, cond func() error) {
	t.Helper()
	controlplanetest.EventuallyEvery(t, limit, 100*time.Millisecond, cond)
}

// wait is poll that fails the test without ending it: what follows still
// runs and reports. It returns whether cond held in time.
func wait(t *testing.T, limit time.Duration, cond func() error) bool {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := cond()
		if err == nil {
			return true
		}
		if time.Now().After(deadline) {
			t.Errorf("not within %s: %v", limit, err)
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logTail returns the last n bytes of a file.
func logTail(path string, n int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(info.Size()-n, 0)
	buf := make([]byte, info.Size()-off)
	_, _ = f.ReadAt(buf, off)
	return buf
}

// lastLines returns the last n lines of b.
func lastLines(b []byte, n int) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return bytes.Join(lines[max(len(lines)-n, 0):], []byte("\n"))
}

// crashRE finds the Go runtime's report of a crash (not a logged error
// that mentions a panic).
var crashRE = regexp.MustCompile(`(?m)^(panic: |fatal error: )`)

// excerpt indents the first lines of text for a test message.
func excerpt(b []byte) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > 20 {
		lines = lines[:20]
	}
	return "    " + string(bytes.Join(lines, []byte("\n    ")))
}
