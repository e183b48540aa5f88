package controller_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controller"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/scheduler"
	"github.com/tinymod/tinymod/module"
)

// TestEnsureExistsHasDeadlines: while the API server holds requests,
// EnsureExists returns DeadlineExceeded at its bound, even when its first
// request is a new client's discovery, which heeds no context; start-up's
// RetryStartup keeps trying instead of hanging in one call, and once the API
// server answers again it creates the TinyModule.
func TestEnsureExistsHasDeadlines(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, 3*time.Minute)
	h := &controlplanetest.Hang{}
	t.Cleanup(h.Answer)
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(h.Wrap)
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	sched, err := scheduler.New(scheduler.Options{Module: module.Info{Name: "mine"}, Components: []module.Component{}})
	if err != nil {
		t.Fatal(err)
	}
	const bound = 500 * time.Millisecond
	limit := 2*bound + 5*time.Second // a read and a write, and what a loaded machine may add
	r := &controller.TinyModuleReconciler{Client: c, Reader: c, Scheduler: sched, Leader: leader.Never,
		Namespace: ns, Identity: "mine-0", RequestTimeout: bound}
	// Answered again, calls have the default bound: a loaded machine may take
	// longer than the short one to answer a write.
	patient := &controller.TinyModuleReconciler{Client: c, Reader: c, Scheduler: sched, Leader: leader.Never,
		Namespace: ns, Identity: "mine-0"}
	key := client.ObjectKey{Namespace: ns, Name: "mine"}
	exists := func() bool {
		t.Helper()
		err := env.Client.Get(ctx, key, &v1alpha1.TinyModule{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	remove := func() {
		t.Helper()
		if err := env.Client.Delete(ctx, &v1alpha1.TinyModule{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: ns}}); err != nil {
			t.Fatal(err)
		}
	}

	// Nothing answered, not even the discovery of the kind.
	h.Hold(controlplanetest.Every)
	if ok, err := h.Returns(t, limit, "EnsureExists, nothing answered", func() error { return r.EnsureExists(ctx) }); ok && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("EnsureExists, nothing answered: %v, want DeadlineExceeded", err)
	}
	h.Answer()
	if err := patient.EnsureExists(ctx); err != nil || !exists() {
		t.Fatalf("EnsureExists, answered again: %v; the TinyModule exists: %v", err, exists())
	}
	remove()

	// Start-up: RetryStartup tries again after each call given up at its
	// bound, and succeeds once the API server answers.
	h.Hold(controlplanetest.Every)
	var (
		mu       sync.Mutex
		attempts int
		failures []error
	)
	done := make(chan error, 1)
	go func() {
		done <- controller.RetryStartup(ctx, func() error {
			err := r.EnsureExists(ctx)
			mu.Lock()
			attempts++
			if err != nil {
				failures = append(failures, err)
			}
			mu.Unlock()
			return err
		})
	}()
	retried := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return attempts >= 3
	}
	for deadline := time.Now().Add(3 * limit); !retried() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond) // polling the attempts
	}
	mu.Lock()
	n, failed := attempts, append([]error(nil), failures...)
	mu.Unlock()
	if n < 3 {
		t.Errorf("start-up with a hung API server: %d calls of EnsureExists ended in %s, want 3 or more", n, 3*limit)
	}
	for _, err := range failed {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("start-up with a hung API server: EnsureExists failed with %v, want DeadlineExceeded", err)
		}
	}
	h.Answer()
	select {
	case err := <-done:
		if err != nil || !exists() {
			t.Errorf("start-up, answered again: %v; the TinyModule exists: %v", err, exists())
		}
	case <-time.After(time.Minute):
		t.Fatal("start-up still running a minute after the API server answered again")
	}
	remove()

	// Only the create is held: the read finds nothing, the write is given up.
	h.Hold(controlplanetest.Requests(http.MethodPost, "/tinymodules"))
	if ok, err := h.Returns(t, limit, "EnsureExists, the create held", func() error { return r.EnsureExists(ctx) }); ok && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("EnsureExists, the create held: %v, want DeadlineExceeded", err)
	}
	if h.Held() == 0 {
		t.Error("EnsureExists, the create held: no request was held: the step proves nothing")
	}
	h.Answer()
	if err := patient.EnsureExists(ctx); err != nil || !exists() {
		t.Errorf("EnsureExists, answered again: %v; the TinyModule exists: %v", err, exists())
	}
}
