package resources_test

import (
	"context"
	"errors"
	"net/http"
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
	h := &controlplanetest.Hang{}
	t.Cleanup(h.Answer)
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(h.Wrap)
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
		{"ExposePort, nothing answered (a new client's discovery first)", controlplanetest.Every,
			func(m *resources.Manager) error { return m.ExposePort(ctx, 8080, "a.example.com") },
			func() string {
				if !exists(&corev1.Service{}, 8080) || !exists(&networkingv1.Ingress{}, 8080) {
					return "no Service or Ingress for 8080"
				}
				return ""
			}},
		{"ExposePort, the node's read held", controlplanetest.Requests(http.MethodGet, "/tinynodes/"),
			func(m *resources.Manager) error { return m.ExposePort(ctx, 8080, "a.example.com") }, nil},
		{"ExposePort, the Service's create held", controlplanetest.Requests(http.MethodPost, "/services"),
			func(m *resources.Manager) error { return m.ExposePort(ctx, 9090) },
			func() string {
				if !exists(&corev1.Service{}, 9090) || exists(&networkingv1.Ingress{}, 9090) {
					return "want a Service and no Ingress for 9090"
				}
				return ""
			}},
		{"ExposePort, the Ingress's create held", controlplanetest.Requests(http.MethodPost, "/ingresses"),
			func(m *resources.Manager) error { return m.ExposePort(ctx, 9090, "b.example.com") },
			func() string {
				if !exists(&networkingv1.Ingress{}, 9090) {
					return "no Ingress for 9090"
				}
				return ""
			}},
		{"DisclosePort, the Ingress's delete held", controlplanetest.Requests(http.MethodDelete, "/ingresses/"),
			func(m *resources.Manager) error { return m.DisclosePort(ctx, 9090) },
			func() string {
				if exists(&corev1.Service{}, 9090) || exists(&networkingv1.Ingress{}, 9090) {
					return "9090's Service or Ingress is still there"
				}
				return ""
			}},
		{"DisclosePort, the Service's delete held", controlplanetest.Requests(http.MethodDelete, "/services/"),
			func(m *resources.Manager) error { return m.DisclosePort(ctx, 8080) },
			func() string {
				if exists(&corev1.Service{}, 8080) || exists(&networkingv1.Ingress{}, 8080) {
					return "8080's Service or Ingress is still there"
				}
				return ""
			}},
	}
	for _, s := range steps {
		h.Hold(s.held)
		ok, err := h.Returns(t, limit, s.what, func() error { return s.call(m) })
		if held := h.Held(); held == 0 {
			t.Errorf("%s: no request was held: the step proves nothing", s.what)
		}
		h.Answer()
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
