package resources_test

import (
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/resources"
	"github.com/tinymod/tinymod/module"
)

func TestMain(m *testing.M) { controlplanetest.Main(m) }

// TestExposeOnTheLeaderOnly: a reader's ExposePort is refused and makes
// nothing; the leader's makes a Service for the module's pods and an Ingress
// for the hostnames, owned by the node; repeating it changes nothing, a new
// leader adopts instead of duplicating, and disclosing or cleaning up removes
// both.
func TestExposeOnTheLeaderOnly(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, time.Minute)
	node := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "http-server"}}
	if err := env.Client.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	manager := func(leading bool) *resources.Manager {
		return &resources.Manager{Client: env.Client, Read: env.Client, Namespace: ns, Module: "m", Node: "web", Leader: source(leading)}
	}
	count := func() (svcs []corev1.Service, ings []networkingv1.Ingress) {
		t.Helper()
		var sl corev1.ServiceList
		var il networkingv1.IngressList
		if err := env.Client.List(ctx, &sl, client.InNamespace(ns), client.MatchingLabels{resources.NodeLabel: "web"}); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.List(ctx, &il, client.InNamespace(ns), client.MatchingLabels{resources.NodeLabel: "web"}); err != nil {
			t.Fatal(err)
		}
		return sl.Items, il.Items
	}

	if err := manager(false).ExposePort(ctx, 8080, "a.example.com"); !errors.Is(err, module.ErrNotLeader) {
		t.Fatalf("a reader's ExposePort: %v, want ErrNotLeader", err)
	}
	if err := manager(false).DisclosePort(ctx, 8080); !errors.Is(err, module.ErrNotLeader) {
		t.Fatalf("a reader's DisclosePort: %v, want ErrNotLeader", err)
	}
	if s, i := count(); len(s)+len(i) != 0 {
		t.Fatalf("a reader made %d Services and %d Ingresses", len(s), len(i))
	}

	lead := manager(true)
	if err := lead.ExposePort(ctx, 8080, "a.example.com", "b.example.com"); err != nil {
		t.Fatal(err)
	}
	svcs, ings := count()
	if len(svcs) != 1 || len(ings) != 1 {
		t.Fatalf("%d Services, %d Ingresses, want one each", len(svcs), len(ings))
	}
	svc, ing := svcs[0], ings[0]
	if svc.Spec.Selector[resources.ModuleLabel] != "m" || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8080 || svc.Spec.Ports[0].TargetPort.IntValue() != 8080 {
		t.Errorf("service: selector %v, ports %+v", svc.Spec.Selector, svc.Spec.Ports)
	}
	for _, meta := range []metav1.ObjectMeta{svc.ObjectMeta, ing.ObjectMeta} {
		if len(meta.OwnerReferences) != 1 || meta.OwnerReferences[0].UID != node.UID || meta.OwnerReferences[0].Kind != "TinyNode" {
			t.Errorf("%s owners: %+v, want the TinyNode", meta.Name, meta.OwnerReferences)
		}
	}
	if len(ing.Spec.Rules) != 2 || ing.Spec.Rules[0].Host != "a.example.com" || ing.Spec.Rules[1].Host != "b.example.com" {
		t.Fatalf("ingress rules: %+v", ing.Spec.Rules)
	}
	if b := ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service; b.Name != svc.Name || b.Port.Number != 8080 {
		t.Errorf("ingress backend: %+v", b)
	}

	// The same call again writes nothing.
	if err := lead.ExposePort(ctx, 8080, "a.example.com", "b.example.com"); err != nil {
		t.Fatal(err)
	}
	if s, i := count(); s[0].ResourceVersion != svc.ResourceVersion || i[0].ResourceVersion != ing.ResourceVersion {
		t.Errorf("an unchanged ExposePort rewrote its objects")
	}
	// A new leader, with fewer hostnames: it adopts and updates, no duplicate.
	if err := manager(true).ExposePort(ctx, 8080, "a.example.com"); err != nil {
		t.Fatal(err)
	}
	svcs, ings = count()
	if len(svcs) != 1 || len(ings) != 1 || len(ings[0].Spec.Rules) != 1 || len(ings[0].OwnerReferences) != 1 {
		t.Fatalf("after a new leader's ExposePort: %d Services, %d Ingresses, rules %+v", len(svcs), len(ings), ings[0].Spec.Rules)
	}
	// No hostnames: the Service stays, the Ingress goes.
	if err := lead.ExposePort(ctx, 8080); err != nil {
		t.Fatal(err)
	}
	if s, i := count(); len(s) != 1 || len(i) != 0 {
		t.Errorf("without hostnames: %d Services, %d Ingresses", len(s), len(i))
	}
	if err := lead.DisclosePort(ctx, 8080); err != nil {
		t.Fatal(err)
	}
	if s, i := count(); len(s)+len(i) != 0 {
		t.Errorf("after DisclosePort: %d Services, %d Ingresses", len(s), len(i))
	}
	// Cleanup removes everything of the node, whatever its ports.
	for _, p := range []int{8080, 9090} {
		if err := lead.ExposePort(ctx, p, "a.example.com"); err != nil {
			t.Fatal(err)
		}
	}
	if err := resources.Cleanup(ctx, env.Client, env.Client, ns, "web"); err != nil {
		t.Fatal(err)
	}
	if s, i := count(); len(s)+len(i) != 0 {
		t.Errorf("after Cleanup: %d Services, %d Ingresses", len(s), len(i))
	}
	if err := lead.ExposePort(ctx, 0); err == nil || !module.IsPermanent(err) {
		t.Errorf("port 0: %v, want a permanent error", err)
	}
}

func TestNameIsAServiceName(t *testing.T) {
	long := "a-node-whose-name-is-far-longer-than-any-service-name-may-be-in-kubernetes"
	if got := resources.Name("web", 8080); got != "web-8080" {
		t.Errorf("Name(web, 8080) = %q", got)
	}
	seen := map[string]bool{}
	for _, node := range []string{"web", "1web", "web.v1", "web.v2", long, long + "x", "UPPER"} {
		name := resources.Name(node, 8080)
		if errs := validation.IsDNS1035Label(name); len(errs) > 0 {
			t.Errorf("Name(%q) = %q: %v", node, name, errs)
		}
		if seen[name] {
			t.Errorf("Name(%q) = %q, the name of another node too", node, name)
		}
		seen[name] = true
	}
}

func source(leading bool) leader.Source {
	if leading {
		return leader.Always
	}
	return leader.Never
}
