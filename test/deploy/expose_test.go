package deploy

import (
	"context"
	"fmt"
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
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/internal/resources"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/pkg/utils"
)

// exposer exposes port 8080 at web.example.com while it leads.
type exposer struct {
	mu sync.Mutex
	rm module.ResourceManager
}

func (e *exposer) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "exposer"} }
func (e *exposer) Instance() module.Component    { return &exposer{} }
func (e *exposer) Ports() []module.Port          { return []module.Port{{Name: v1alpha1.ClientPort}} }
func (e *exposer) Handle(ctx context.Context, _ module.Handler, port string, msg any) any {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch port {
	case v1alpha1.ClientPort:
		e.rm = msg.(module.ResourceManager)
	case v1alpha1.ReconcilePort:
		if e.rm != nil && utils.IsLeader(ctx) {
			return e.rm.ExposePort(ctx, 8080, "web.example.com")
		}
	}
	return nil
}

// TestExposeUnderChartRBAC: a replica running as the chart's service account
// exposes a node's port (Service and Ingress) and removes both with the node,
// and the API server refuses none of it.
func TestExposeUnderChartRBAC(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, 2*time.Minute)
	user, cfg, _ := underChartRBAC(t, env, ns)
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- replica.Run(runCtx, replica.Options{Module: module.Info{Name: "edge"}, Components: []module.Component{&exposer{}},
			Config: cfg, Namespace: ns, Identity: "edge-0",
			Election: leader.Config{LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 500 * time.Millisecond}})
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("replica: %v", err)
		}
	}()
	node := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: v1alpha1.TinyNodeSpec{Module: "edge", Component: "exposer", Ports: []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: &apiextensionsv1.JSON{Raw: []byte(`{}`)}}}}}
	if err := env.Client.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	count := func() (int, int) {
		var sl corev1.ServiceList
		var il networkingv1.IngressList
		sel := client.MatchingLabels{resources.NodeLabel: "web"}
		if err := env.Client.List(ctx, &sl, client.InNamespace(ns), sel); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.List(ctx, &il, client.InNamespace(ns), sel); err != nil {
			t.Fatal(err)
		}
		return len(sl.Items), len(il.Items)
	}
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		if s, i := count(); s != 1 || i != 1 {
			return fmt.Errorf("%d Services, %d Ingresses", s, i)
		}
		return nil
	})
	if err := env.Client.Delete(ctx, node); err != nil {
		t.Fatal(err)
	}
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		s, i := count()
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(node), &v1alpha1.TinyNode{})
		if s+i != 0 || !apierrors.IsNotFound(err) {
			return fmt.Errorf("after delete: %d Services, %d Ingresses, node %v", s, i, err)
		}
		return nil
	})
	for _, w := range env.Writes(t, user, ns) {
		if w.ResponseStatus.Code == 403 {
			t.Errorf("refused under the chart's RBAC: %s %s/%s", w.Verb, w.ObjectRef.Resource, w.ObjectRef.Name)
		}
	}
}
