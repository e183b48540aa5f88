package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
)

// userWithoutLeases may read tinymod's kinds but not Leases: the watch of
// Leases fails for as long as the server runs, and the watches never sync.
func userWithoutLeases(t *testing.T) (*rest.Config, string) {
	t.Helper()
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, time.Minute)
	user, err := env.AddUser("noleases-" + ns)
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "view", Namespace: ns}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch"}},
	}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "view", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "view"},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: "noleases-" + ns, APIGroup: "rbac.authorization.k8s.io"}}}
	for _, o := range []client.Object{role, binding} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	return user, ns
}

// ourGoroutines lists the goroutines running this package's code (not its
// tests'), and those of informers.
func ourGoroutines() (ours, informers []string) {
	buf := make([]byte, 1<<22)
	n := runtime.Stack(buf, true)
	for _, g := range strings.Split(string(buf[:n]), "\n\n") {
		switch {
		case hasNonTestFrame(g):
			ours = append(ours, g)
		case strings.Contains(g, "client-go/tools/cache.(*sharedIndexInformer).Run"), strings.Contains(g, "client-go/tools/cache.(*sharedProcessor).run"):
			informers = append(informers, g)
		}
	}
	return ours, informers
}

// hasNonTestFrame says whether a goroutine runs this package's code (not
// its tests'): where it was created does not count.
func hasNonTestFrame(g string) bool {
	frames, _, _ := strings.Cut(g, "\ncreated by ")
	for _, line := range strings.Split(frames, "\n") {
		if strings.Contains(line, "/internal/ui/") && strings.Contains(line, ".go:") && !strings.Contains(line, "_test.go:") {
			return true
		}
	}
	return false
}

// noneLeft fails t if this package's goroutines outlived Run, or
// informers' outlived it by more than a moment.
func noneLeft(t *testing.T, what string) {
	t.Helper()
	ours, _ := ourGoroutines()
	if len(ours) > 0 {
		t.Errorf("%s: %d goroutines outlived Run:\n%s", what, len(ours), strings.Join(ours, "\n\n"))
	}
	var informers []string
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, informers = ourGoroutines(); len(informers) == 0 {
			return
		}
	}
	t.Errorf("%s: %d goroutines of informers outlived Run by 2 s:\n%s", what, len(informers), strings.Join(informers, "\n\n"))
}

// TestRunEndsWhatItStarted: when Run returns, so have its requests (one
// waiting for watches that never sync, here), its watches and its
// scraper, and it returns nil when its context was cancelled, even
// before the watches synced.
func TestRunEndsWhatItStarted(t *testing.T) {
	user, ns := userWithoutLeases(t)
	for i := range 3 {
		s, err := New(Options{Config: user, Namespace: ns, Listen: "127.0.0.1:0", Assets: testPage, Interval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		requestDone := make(chan struct{})
		go func() {
			defer close(requestDone)
			resp, err := http.Get(s.URL() + "api/events")
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		time.Sleep(time.Second)
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run %d: Run cancelled before the watches synced: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("run %d: Run did not return within 10 s of its context's end", i)
		}
		select {
		case <-requestDone:
		case <-time.After(time.Second):
			t.Errorf("run %d: a request waiting for the watches outlived Run", i)
		}
		noneLeft(t, fmt.Sprintf("run %d", i))
	}
}

// TestRunWithContextDone: Run with a context already done returns nil at
// once, and frees its address.
func TestRunWithContextDone(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	for i := range 5 {
		s, err := New(Options{Config: env.Config, Namespace: ns, Listen: "127.0.0.1:0", Assets: testPage})
		if err != nil {
			t.Fatal(err)
		}
		addr := s.ln.Addr().String()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.Run(ctx); err != nil {
			t.Errorf("run %d: Run with its context done: %v", i, err)
		}
		// Its address is free again.
		again, err := New(Options{Config: env.Config, Namespace: ns, Listen: addr, Assets: testPage})
		if err != nil {
			t.Errorf("run %d: the address of a Run that returned: %v", i, err)
			continue
		}
		again.ln.Close()
	}
	noneLeft(t, "after Run")
}

// TestRunTwice: a Server runs once; a second Run says so, and starts
// nothing.
func TestRunTwice(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	s, err := New(Options{Config: env.Config, Namespace: ns, Listen: "127.0.0.1:0", Assets: testPage})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	time.Sleep(500 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("first Run: %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = s.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "once") {
		t.Errorf("second Run: %v, want an error that says a Server runs once", err)
	}
	noneLeft(t, "after Run")
}

// TestStateSaysWhyWatchesDoNotSync: a user who may not list one of the
// kinds the page shows (here Leases) gets, after a few seconds, the API
// server's refusal rather than a page that waits for ever.
func TestStateSaysWhyWatchesDoNotSync(t *testing.T) {
	user, ns := userWithoutLeases(t)
	_, api := startServer(t, user, ns)
	c := &http.Client{Timeout: 30 * time.Second}
	start := time.Now()
	resp, err := c.Get(api.url + "api/state")
	if err != nil {
		t.Fatalf("state, with watches that cannot sync: %v after %v", err, time.Since(start).Round(time.Second))
	}
	defer resp.Body.Close()
	var e apiError
	_ = json.NewDecoder(resp.Body).Decode(&e)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(e.Message, "leases") {
		t.Errorf("state, with watches that cannot sync: %s %+v", resp.Status, e)
	}
}
