// Package controlplanetest gives a test package one real control plane shared by
// its tests, and each test a namespace of its own.
//
//	func TestMain(m *testing.M) { controlplanetest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		env := controlplanetest.Start(t)
//		ns := env.Namespace(t)
//		...
//	}
//
// The control plane starts with the first test that asks for it and stops when
// the package's tests end. Packages started by one `go test ./...` take turns
// through a lock file, so that on a small machine their API servers do not
// starve each other.
package controlplanetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/internal/controlplane"
	"github.com/tinymod/tinymod/internal/replica"
)

// Env is a running control plane and a client for it.
type Env struct {
	*controlplane.ControlPlane
	// Client is a controller-runtime client that knows tinymod's kinds.
	Client client.Client
	// Scheme holds client-go's kinds and tinymod's.
	Scheme *runtime.Scheme
}

var (
	mu       sync.Mutex
	shared   *Env
	startErr error
	lockFile *os.File
	atExit   []func()
)

// Main runs the package's tests, then stops the shared control plane and runs
// what AtExit registered.
func Main(m *testing.M) { os.Exit(run(m)) }

func run(m interface{ Run() int }) int {
	code := m.Run()
	stop()
	RunAtExit()
	return code
}

// AtExit registers f to run once the package's tests have ended, for what they
// share beyond a single test, such as a binary built for them. The functions
// run in the reverse order of their registration.
func AtExit(f func()) {
	mu.Lock()
	defer mu.Unlock()
	atExit = append(atExit, f)
}

// RunAtExit runs and forgets the functions AtExit registered. Main calls it; a
// package with a TestMain of its own calls it after m.Run.
func RunAtExit() {
	mu.Lock()
	fs := atExit
	atExit = nil
	mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// Start returns the package's control plane, starting it on first use. The test
// fails, saying how to build them, when the binaries are missing.
func Start(t testing.TB) *Env {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if shared == nil && startErr == nil {
		shared, startErr = start()
	}
	if startErr != nil {
		t.Fatalf("control plane: %v", startErr)
	}
	return shared
}

func start() (*Env, error) {
	if err := controlplane.CheckBinaries(controlplane.BinDir()); err != nil {
		return nil, err
	}
	if err := lock(); err != nil {
		return nil, err
	}
	cp, err := controlplane.Start(controlplane.Options{Audit: true})
	if err != nil {
		unlock()
		return nil, err
	}
	scheme := NewScheme()
	c, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		_ = cp.Stop()
		unlock()
		return nil, err
	}
	return &Env{ControlPlane: cp, Client: c, Scheme: scheme}, nil
}

func stop() {
	mu.Lock()
	defer mu.Unlock()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "controlplanetest: stop: %v\n", err)
		}
		shared = nil
	}
	unlock()
}

// Lock holds, until the test ends, the machine-wide lock that lets one test
// control plane run at a time; for a test that starts a control plane of its
// own (a `tinymod controlplane` process, say) instead of calling Start. A
// package uses one or the other: the lock is not reentrant.
func Lock(t testing.TB) {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if err := lock(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		unlock()
	})
}

// lock waits for the machine-wide lock that lets one test control plane run at a time.
func lock() error {
	path := filepath.Join(os.TempDir(), "tinymod-controlplanetest.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return fmt.Errorf("lock %s: %w", path, err)
	}
	lockFile = f
	return nil
}

func unlock() {
	if lockFile != nil {
		_ = lockFile.Close() // closing releases the flock
		lockFile = nil
	}
}

// NewScheme returns a scheme with client-go's kinds and tinymod's.
func NewScheme() *runtime.Scheme { return replica.Scheme() }

// Namespace creates a namespace for the test alone, named after it, and deletes
// it when the test ends.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	name := strings.ToLower(t.Name())
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, name)
	if len(name) > 40 {
		name = name[:40]
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: strings.Trim(name, "-") + "-"}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Client.Create(ctx, ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Client.Delete(ctx, ns)
	})
	return ns.Name
}

// Context returns a context bounded by the test's deadline, or by limit if sooner.
func Context(t testing.TB, limit time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	t.Cleanup(cancel)
	return ctx
}

// UserConfig returns a config for a new cluster-admin user named name, so that
// a replica runs as itself and the audit log tells its requests apart.
func (e *Env) UserConfig(t testing.TB, name string) *rest.Config {
	t.Helper()
	cfg, err := e.AddUser(name, "system:masters")
	if err != nil {
		t.Fatalf("add user %s: %v", name, err)
	}
	return cfg
}

// AuditEvent is one write the API server logged.
type AuditEvent struct {
	Verb string `json:"verb"`
	User struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef struct {
		Resource    string `json:"resource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		Subresource string `json:"subresource"`
		APIGroup    string `json:"apiGroup"`
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	// UserAgent of the client; a tinymod replica's names its identity.
	UserAgent string `json:"userAgent"`
	// Received is when the API server received the request.
	Received metav1.MicroTime `json:"requestReceivedTimestamp"`
}

// Writes returns the writes user made in namespace ns, as the API server's
// audit log records them.
func (e *Env) Writes(t testing.TB, user, ns string) []AuditEvent {
	t.Helper()
	var out []AuditEvent
	for _, ev := range e.AllWrites(t, ns) {
		if ev.User.Username == user {
			out = append(out, ev)
		}
	}
	return out
}

// AllWrites returns every write in namespace ns, as the API server's audit
// log records them.
func (e *Env) AllWrites(t testing.TB, ns string) []AuditEvent {
	t.Helper()
	data, err := os.ReadFile(e.AuditLogPath)
	if err != nil {
		t.Fatalf("read audit log: %v", err)
	}
	var out []AuditEvent
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var ev AuditEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			continue // a line being written
		}
		if ev.ObjectRef.Namespace == ns {
			out = append(out, ev)
		}
	}
	return out
}

// Eventually polls cond every 20ms until it returns nil, and fails the test
// with cond's last error once limit has passed.
func Eventually(t testing.TB, limit time.Duration, cond func() error) {
	t.Helper()
	EventuallyEvery(t, limit, 20*time.Millisecond, cond)
}

// EventuallyEvery is Eventually, polling every interval: for conditions that
// cost the machine something to check.
func EventuallyEvery(t testing.TB, limit, interval time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", limit, err)
		}
		time.Sleep(interval)
	}
}

// NewProxy starts a TCP proxy to the API server of cfg, closed when the test
// ends, and returns it with a copy of cfg that goes through it: cutting it
// stalls a replica's requests for real, as a network partition does.
func NewProxy(t testing.TB, cfg *rest.Config) (*controlplane.Proxy, *rest.Config) {
	t.Helper()
	p, proxied, err := controlplane.NewProxy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, proxied
}
