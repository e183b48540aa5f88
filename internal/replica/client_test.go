package replica_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/components/httpserver"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/resources"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/pkg/utils"
)

// ExposeSettings is what the exposer exposes.
type ExposeSettings struct {
	Port  int      `json:"port"`
	Hosts []string `json:"hosts"`
}

// exposes records each replica's ExposePort results.
var exposes = struct {
	sync.Mutex
	results map[string][]error
}{results: map[string][]error{}}

// exposer exposes its port from every replica, on its settings and on every
// leadership transition: only the leader's calls may take effect.
type exposer struct {
	identity string
	mu       sync.Mutex
	rm       module.ResourceManager
	settings ExposeSettings
}

func (e *exposer) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "exposer"} }
func (e *exposer) Instance() module.Component    { return &exposer{identity: e.identity} }
func (e *exposer) Ports() []module.Port {
	return []module.Port{{Name: v1alpha1.ClientPort}, {Name: v1alpha1.SettingsPort, Configuration: ExposeSettings{}}}
}

func (e *exposer) Handle(ctx context.Context, _ module.Handler, port string, msg any) any {
	e.mu.Lock()
	switch port {
	case v1alpha1.ClientPort:
		e.rm = msg.(module.ResourceManager)
		e.mu.Unlock()
		return nil
	case v1alpha1.SettingsPort:
		e.settings = msg.(ExposeSettings)
	case v1alpha1.ReconcilePort:
		if !utils.IsLeader(ctx) {
			e.mu.Unlock()
			return nil
		}
	default:
		e.mu.Unlock()
		return nil
	}
	rm, s := e.rm, e.settings
	e.mu.Unlock()
	if rm == nil || s.Port == 0 {
		return nil
	}
	err := rm.ExposePort(ctx, s.Port, s.Hosts...)
	exposes.Lock()
	exposes.results[e.identity] = append(exposes.results[e.identity], err)
	exposes.Unlock()
	return nil
}

// TestClientPortExposesOnTheLeader: a node whose component declares _client
// gets a resource manager on every replica; the reader's ExposePort is
// refused, the leader's makes one Service and one Ingress owned by the node,
// a new leader adopts them without duplicates, and deleting the node removes
// them through its finalizer.
func TestClientPortExposesOnTheLeader(t *testing.T) {
	h := newHarness(t)
	var reps []*testReplica
	for _, id := range []string{"cl-a", "cl-b"} {
		reps = append(reps, h.runWith(id, &exposer{identity: id}))
	}
	first := h.waitHolder()
	raw := []byte(`{"port": 8080, "hosts": ["a.example.com"]}`)
	node := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: h.ns}, Spec: v1alpha1.TinyNodeSpec{Module: moduleName, Component: "exposer",
		Ports: []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: &apiextensionsv1.JSON{Raw: raw}}}}}
	if err := h.c.Create(h.ctx, node); err != nil {
		t.Fatal(err)
	}
	exposed := func() ([]corev1.Service, []networkingv1.Ingress) {
		var sl corev1.ServiceList
		var il networkingv1.IngressList
		sel := client.MatchingLabels{resources.NodeLabel: "web"}
		if err := h.c.List(h.ctx, &sl, client.InNamespace(h.ns), sel); err != nil {
			t.Fatal(err)
		}
		if err := h.c.List(h.ctx, &il, client.InNamespace(h.ns), sel); err != nil {
			t.Fatal(err)
		}
		return sl.Items, il.Items
	}
	waitOne := func() {
		t.Helper()
		controlplanetest.Eventually(t, 30*time.Second, func() error {
			s, i := exposed()
			if len(s) != 1 || len(i) != 1 {
				return fmt.Errorf("%d Services, %d Ingresses", len(s), len(i))
			}
			if o := s[0].OwnerReferences; len(o) != 1 || o[0].Name != "web" {
				return fmt.Errorf("service owners %+v", o)
			}
			return nil
		})
	}
	waitOne()
	reader := "cl-a"
	if first == reader {
		reader = "cl-b"
	}
	controlplanetest.Eventually(t, 10*time.Second, func() error {
		exposes.Lock()
		defer exposes.Unlock()
		for _, err := range exposes.results[reader] {
			if errors.Is(err, module.ErrNotLeader) {
				return nil
			}
		}
		return fmt.Errorf("the reader %s's attempts: %v", reader, exposes.results[reader])
	})

	// Failover: the new leader exposes again, and adopts.
	for _, r := range reps {
		if r.identity == first {
			r.stop(t)
		}
	}
	h.waitHolder(first, "")
	controlplanetest.Eventually(t, 20*time.Second, func() error {
		exposes.Lock()
		defer exposes.Unlock()
		for _, err := range exposes.results[reader] {
			if err == nil {
				return nil
			}
		}
		return fmt.Errorf("the new leader %s has not exposed: %v", reader, exposes.results[reader])
	})
	waitOne()

	// Deleting the node removes what it exposed, then the node.
	if err := h.c.Delete(h.ctx, node); err != nil {
		t.Fatal(err)
	}
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		s, i := exposed()
		err := h.c.Get(h.ctx, client.ObjectKeyFromObject(node), &v1alpha1.TinyNode{})
		if len(s)+len(i) != 0 || !apierrors.IsNotFound(err) {
			return fmt.Errorf("after delete: %d Services, %d Ingresses, node %v", len(s), len(i), err)
		}
		return nil
	})
}

// answerer answers HTTP requests from its replica; /slow takes a second.
type answerer struct{ identity string }

func (a *answerer) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "answerer"} }
func (a *answerer) Instance() module.Component    { return a }
func (a *answerer) Ports() []module.Port {
	return []module.Port{{Name: "in", Configuration: httpserver.Request{}}}
}
func (a *answerer) Handle(ctx context.Context, _ module.Handler, port string, msg any) any {
	req := msg.(httpserver.Request)
	if req.Path == "/slow" {
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return httpserver.Response{Status: 201, Headers: map[string]string{"X-Replica": a.identity}, Body: req.Method + " " + req.Path + " " + req.Body}
}

// TestHTTPServerOnEveryReplica: every replica serves the node's port and
// answers with what its flow returns; a slow flow gets a 504, an oversized
// body a 413; the leader exposes the port as a Service and an Ingress.
func TestHTTPServerOnEveryReplica(t *testing.T) {
	h := newHarness(t)
	port := twoFreePorts(t)
	ids := []string{"http-a", "http-b"}
	for i, id := range ids {
		h.runWith(id, &httpserver.Component{PortOffset: i}, &answerer{identity: id})
	}
	h.waitHolder()
	settings := fmt.Sprintf(`{"port": %d, "hostnames": ["web.example.com"], "timeout": "300ms", "maxBodyBytes": 64}`, port)
	for _, n := range []*v1alpha1.TinyNode{
		{ObjectMeta: metav1.ObjectMeta{Name: "answer", Namespace: h.ns}, Spec: v1alpha1.TinyNodeSpec{Module: moduleName, Component: "answerer"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: h.ns}, Spec: v1alpha1.TinyNodeSpec{Module: moduleName, Component: httpserver.ComponentName,
			Ports: []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: &apiextensionsv1.JSON{Raw: []byte(settings)}}},
			Edges: []v1alpha1.TinyNodeEdge{{ID: "web-answer", Port: httpserver.RequestPort, To: "answer.in"}}}},
	} {
		if err := h.c.Create(h.ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	do := func(i int, method, path, body string) (int, string, string) {
		req, _ := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", port+i, path), strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error(), ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("X-Replica")
	}
	for i, id := range ids {
		controlplanetest.Eventually(t, 30*time.Second, func() error {
			code, body, replica := do(i, "POST", "/hi", "there")
			if code != 201 || body != "POST /hi there" || replica != id {
				return fmt.Errorf("replica %s: %d %q from %q", id, code, body, replica)
			}
			return nil
		})
		if code, body, _ := do(i, "GET", "/slow", ""); code != http.StatusGatewayTimeout || !strings.Contains(body, "did not answer within 300ms") {
			t.Errorf("replica %s, slow flow: %d %q, want 504", id, code, body)
		}
		if code, body, _ := do(i, "POST", "/big", strings.Repeat("x", 65)); code != http.StatusRequestEntityTooLarge {
			t.Errorf("replica %s, 65-byte body: %d %q, want 413", id, code, body)
		}
	}
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		ing := &networkingv1.Ingress{}
		if err := h.c.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: resources.Name("web", port)}, ing); err != nil {
			return err
		}
		if len(ing.Spec.Rules) != 1 || ing.Spec.Rules[0].Host != "web.example.com" {
			return fmt.Errorf("ingress rules %+v", ing.Spec.Rules)
		}
		return nil
	})
}

// twoFreePorts returns a port p such that p and p+1 are both free: each
// replica's http-server listens on the settings' port plus its offset.
func twoFreePorts(t *testing.T) int {
	t.Helper()
	for range 100 {
		a, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		p := a.Addr().(*net.TCPAddr).Port
		b, err := net.Listen("tcp", fmt.Sprintf(":%d", p+1))
		a.Close()
		if err == nil {
			b.Close()
			return p
		}
	}
	t.Fatal("no two free ports in a row")
	return 0
}
