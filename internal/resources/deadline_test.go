package resources_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/resources"
)

// TestExposeAndDiscloseHaveDeadlines: while the API server holds requests,
// ExposePort and DisclosePort return DeadlineExceeded at their bound,
// whichever of their requests is held, even the discovery a new client makes
// first, which heeds no context; once it answers again, the same calls do
// their work.
func TestExposeAndDiscloseHaveDeadlines(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, 3*time.Minute)
	node := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "http-server"}}
	if err := env.Client.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	h := &hang{}
	t.Cleanup(h.answer)
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(h.wrap)
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const bound = 500 * time.Millisecond
	limit := bound + 5*time.Second // what a loaded machine may add to the bound
	m := &resources.Manager{Client: c, Read: c, Namespace: ns, Module: "m", Node: "web", Leader: source(true), RequestTimeout: bound}
	// Answered again, calls have the default bound: a loaded machine may take
	// longer than the short one to answer a write.
	patient := *m
	patient.RequestTimeout = 0
	exists := func(obj client.Object, port int) bool {
		t.Helper()
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: resources.Name("web", port)}, obj)
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}

	steps := []struct {
		what  string
		held  func(*http.Request) bool
		call  func(*resources.Manager) error
		after func() string // what is wrong once the call has succeeded, if anything
	}{
		{"ExposePort, nothing answered (a new client's discovery first)", every,
			func(m *resources.Manager) error { return m.ExposePort(ctx, 8080, "a.example.com") },
			func() string {
				if !exists(&corev1.Service{}, 8080) || !exists(&networkingv1.Ingress{}, 8080) {
					return "no Service or Ingress for 8080"
				}
				return ""
			}},
		{"ExposePort, the node's read held", requests(http.MethodGet, "/tinynodes/"),
			func(m *resources.Manager) error { return m.ExposePort(ctx, 8080, "a.example.com") }, nil},
		{"ExposePort, the Service's create held", requests(http.MethodPost, "/services"),
			func(m *resources.Manager) error { return m.ExposePort(ctx, 9090) },
			func() string {
				if !exists(&corev1.Service{}, 9090) || exists(&networkingv1.Ingress{}, 9090) {
					return "want a Service and no Ingress for 9090"
				}
				return ""
			}},
		{"ExposePort, the Ingress's create held", requests(http.MethodPost, "/ingresses"),
			func(m *resources.Manager) error { return m.ExposePort(ctx, 9090, "b.example.com") },
			func() string {
				if !exists(&networkingv1.Ingress{}, 9090) {
					return "no Ingress for 9090"
				}
				return ""
			}},
		{"DisclosePort, the Ingress's delete held", requests(http.MethodDelete, "/ingresses/"),
			func(m *resources.Manager) error { return m.DisclosePort(ctx, 9090) },
			func() string {
				if exists(&corev1.Service{}, 9090) || exists(&networkingv1.Ingress{}, 9090) {
					return "9090's Service or Ingress is still there"
				}
				return ""
			}},
		{"DisclosePort, the Service's delete held", requests(http.MethodDelete, "/services/"),
			func(m *resources.Manager) error { return m.DisclosePort(ctx, 8080) },
			func() string {
				if exists(&corev1.Service{}, 8080) || exists(&networkingv1.Ingress{}, 8080) {
					return "8080's Service or Ingress is still there"
				}
				return ""
			}},
	}
	for _, s := range steps {
		h.hold(s.held)
		ok, err := h.returns(t, limit, s.what, func() error { return s.call(m) })
		if held := h.heldCount(); held == 0 {
			t.Errorf("%s: no request was held: the step proves nothing", s.what)
		}
		h.answer()
		if ok && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: %v, want DeadlineExceeded", s.what, err)
		}
		// Answered again, the same call does its work.
		if err := s.call(&patient); err != nil {
			t.Errorf("%s, then answered: %v", s.what, err)
			continue
		}
		if s.after != nil {
			if wrong := s.after(); wrong != "" {
				t.Errorf("%s, then answered: %s", s.what, wrong)
			}
		}
	}
}

// hang holds the API requests it is told to, as a hung API server does:
// until it answers again, or until the request's own context ends.
type hang struct {
	mu      sync.Mutex
	match   func(*http.Request) bool
	release chan struct{}
	held    int // requests held since the last hold
}

// hold holds the requests match selects, from now until answer.
func (h *hang) hold(match func(*http.Request) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.match, h.release, h.held = match, make(chan struct{}), 0
}

// answer lets the held requests, and all later ones, through.
func (h *hang) answer() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.match != nil {
		close(h.release)
		h.match = nil
	}
}

func (h *hang) heldCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held
}

func (h *hang) wrap(rt http.RoundTripper) http.RoundTripper {
	return hangTrip(func(req *http.Request) (*http.Response, error) {
		h.mu.Lock()
		release, holding := h.release, h.match != nil && h.match(req)
		if holding {
			h.held++
		}
		h.mu.Unlock()
		if holding {
			select {
			case <-release:
			case <-req.Context().Done():
				return nil, req.Context().Err()
			}
		}
		return rt.RoundTrip(req)
	})
}

// returns runs call and gives its error, or fails the test if call has not
// returned within limit; then it answers, so that call can end.
func (h *hang) returns(t *testing.T, limit time.Duration, what string, call func() error) (bool, error) {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- call() }()
	select {
	case err := <-done:
		t.Logf("%s: returned after %s: %v", what, time.Since(start).Round(time.Millisecond), err)
		return true, err
	case <-time.After(limit):
	}
	h.answer()
	select {
	case err := <-done:
		t.Errorf("%s: still blocked %s after the API server stopped answering (answered, it returned %v)", what, limit, err)
	case <-time.After(time.Minute):
		t.Errorf("%s: still blocked %s after the API server stopped answering, and a minute after it answered again", what, limit)
	}
	return false, nil
}

type hangTrip func(*http.Request) (*http.Response, error)

func (f hangTrip) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func every(*http.Request) bool { return true }

// requests selects the requests of method whose path holds pathPart.
func requests(method, pathPart string) func(*http.Request) bool {
	return func(req *http.Request) bool {
		return req.Method == method && strings.Contains(req.URL.Path, pathPart)
	}
}
