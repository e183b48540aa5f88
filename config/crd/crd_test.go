package crd_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
)

func TestMain(m *testing.M) { controlplanetest.Main(m) }

func jsonValue(t *testing.T, v any) *apiextensionsv1.JSON {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return &apiextensionsv1.JSON{Raw: raw}
}

// TestKindsCreateReadUpdateStatus creates, reads and updates each kind and
// writes its status through the status subresource.
func TestKindsCreateReadUpdateStatus(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, 30*time.Second)
	c := env.Client

	cases := []struct {
		name   string
		obj    client.Object
		update func(client.Object)
		status func(client.Object)
		check  func(*testing.T, client.Object)
	}{{
		name: "TinyNode",
		obj: &v1alpha1.TinyNode{
			ObjectMeta: metav1.ObjectMeta{Name: "ticker-1", Namespace: ns, Labels: map[string]string{v1alpha1.FlowNameLabel: "demo"}},
			Spec: v1alpha1.TinyNodeSpec{
				Module: "tinymod", Component: "ticker",
				Ports: []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: jsonValue(t, map[string]any{"delay": 1000})}},
				Edges: []v1alpha1.TinyNodeEdge{{ID: "e1", Port: "out", To: "debug-1.in"}},
			},
		},
		update: func(o client.Object) {
			o.(*v1alpha1.TinyNode).Spec.Edges = append(o.(*v1alpha1.TinyNode).Spec.Edges, v1alpha1.TinyNodeEdge{ID: "e2", Port: "out", To: "a.b.c.in"})
		},
		status: func(o client.Object) {
			n := o.(*v1alpha1.TinyNode)
			n.Status.Metadata = map[string]string{"running": "true"}
			n.Status.Ports = []v1alpha1.PortStatus{{Name: "out", Source: true, Position: v1alpha1.PositionRight, Schema: jsonValue(t, map[string]any{"type": "object"})}}
			n.Status.ObservedGeneration = n.Generation
			meta.SetStatusCondition(&n.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Running"})
		},
		check: func(t *testing.T, o client.Object) {
			n := o.(*v1alpha1.TinyNode)
			if len(n.Spec.Edges) != 2 || n.Status.Metadata["running"] != "true" || len(n.Status.Ports) != 1 ||
				!meta.IsStatusConditionTrue(n.Status.Conditions, v1alpha1.ConditionReady) {
				t.Errorf("node after update: %+v", n)
			}
		},
	}, {
		name: "TinySignal",
		obj: &v1alpha1.TinySignal{
			ObjectMeta: metav1.ObjectMeta{Name: "press", Namespace: ns},
			Spec:       v1alpha1.TinySignalSpec{Node: "signal-1", Port: v1alpha1.ControlPort, Data: jsonValue(t, map[string]any{"send": true})},
		},
		update: func(o client.Object) { o.SetLabels(map[string]string{"retried": "yes"}) },
		status: func(o client.Object) {
			s := o.(*v1alpha1.TinySignal)
			s.Status = v1alpha1.TinySignalStatus{Phase: v1alpha1.SignalFailed, Attempts: 3, LastError: "boom"}
		},
		check: func(t *testing.T, o client.Object) {
			s := o.(*v1alpha1.TinySignal)
			if s.Labels["retried"] != "yes" || s.Status.Phase != v1alpha1.SignalFailed || s.Status.Attempts != 3 || s.Status.LastError != "boom" {
				t.Errorf("signal after update: %+v", s)
			}
		},
	}, {
		name:   "TinyModule",
		obj:    &v1alpha1.TinyModule{ObjectMeta: metav1.ObjectMeta{Name: "tinymod", Namespace: ns}},
		update: func(o client.Object) { o.SetAnnotations(map[string]string{"note": "x"}) },
		status: func(o client.Object) {
			m := o.(*v1alpha1.TinyModule)
			m.Status = v1alpha1.TinyModuleStatus{
				Addr: "tinymod.default.svc:8483", Leader: "pod-a", LeaderAddr: "10.0.0.1:8483", Version: "v0.1.0",
				Components: []v1alpha1.ModuleComponent{{ComponentInfo: v1alpha1.ComponentInfo{Name: "ticker", Description: "ticks"},
					Ports: []v1alpha1.PortStatus{{Name: "out", Source: true, Position: v1alpha1.PositionRight}}}},
			}
		},
		check: func(t *testing.T, o client.Object) {
			m := o.(*v1alpha1.TinyModule)
			if m.Annotations["note"] != "x" || m.Status.Leader != "pod-a" || m.Status.LeaderAddr != "10.0.0.1:8483" ||
				len(m.Status.Components) != 1 || m.Status.Components[0].Name != "ticker" {
				t.Errorf("module after update: %+v", m)
			}
		},
	}, {
		name:   "TinyFlow",
		obj:    &v1alpha1.TinyFlow{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: ns}, Spec: v1alpha1.TinyFlowSpec{Description: "first"}},
		update: func(o client.Object) { o.(*v1alpha1.TinyFlow).Spec.Description = "second" },
		status: func(o client.Object) {
			f := o.(*v1alpha1.TinyFlow)
			meta.SetStatusCondition(&f.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "AllNodesReady"})
		},
		check: func(t *testing.T, o client.Object) {
			f := o.(*v1alpha1.TinyFlow)
			if f.Spec.Description != "second" || !meta.IsStatusConditionTrue(f.Status.Conditions, v1alpha1.ConditionReady) {
				t.Errorf("flow after update: %+v", f)
			}
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := tc.obj
			if err := c.Create(ctx, obj); err != nil {
				t.Fatalf("create: %v", err)
			}
			key := client.ObjectKeyFromObject(obj)
			if err := c.Get(ctx, key, obj); err != nil {
				t.Fatalf("get: %v", err)
			}
			tc.update(obj)
			if err := c.Update(ctx, obj); err != nil {
				t.Fatalf("update: %v", err)
			}
			tc.status(obj)
			if err := c.Status().Update(ctx, obj); err != nil {
				t.Fatalf("status update: %v", err)
			}
			fresh := obj.DeepCopyObject().(client.Object)
			if err := c.Get(ctx, key, fresh); err != nil {
				t.Fatalf("get: %v", err)
			}
			tc.check(t, fresh)

			// The main resource ignores status, the status subresource ignores the rest.
			before := fresh.DeepCopyObject().(client.Object)
			tc.update(fresh)
			if err := c.Status().Update(ctx, fresh); err != nil {
				t.Fatalf("status update: %v", err)
			}
			if err := c.Get(ctx, key, fresh); err != nil {
				t.Fatal(err)
			}
			if fresh.GetGeneration() != before.GetGeneration() {
				t.Errorf("a status write changed the generation: %d -> %d", before.GetGeneration(), fresh.GetGeneration())
			}
		})
	}
}

// TestValidationRejects checks that the CRD schemas turn away malformed objects
// with a message that names the offending field.
func TestValidationRejects(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, 30*time.Second)

	node := func(mutate func(*v1alpha1.TinyNode)) client.Object {
		n := &v1alpha1.TinyNode{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "n-", Namespace: ns},
			Spec:       v1alpha1.TinyNodeSpec{Module: "tinymod", Component: "debug"},
		}
		mutate(n)
		return n
	}
	cases := []struct {
		name  string
		obj   client.Object
		field string
	}{
		{"signal without node", &v1alpha1.TinySignal{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "s-", Namespace: ns},
			Spec:       v1alpha1.TinySignalSpec{Port: v1alpha1.ControlPort},
		}, "spec.node"},
		{"signal port with a dot", &v1alpha1.TinySignal{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "s-", Namespace: ns},
			Spec:       v1alpha1.TinySignalSpec{Node: "n", Port: "a.b"},
		}, "spec.port"},
		{"edge to without a port", node(func(n *v1alpha1.TinyNode) {
			n.Spec.Edges = []v1alpha1.TinyNodeEdge{{ID: "e", Port: "out", To: "debug"}}
		}), "spec.edges[0].to"},
		{"edge to ending in a dot", node(func(n *v1alpha1.TinyNode) {
			n.Spec.Edges = []v1alpha1.TinyNodeEdge{{ID: "e", Port: "out", To: "debug."}}
		}), "spec.edges[0].to"},
		{"edge to with an invalid node name", node(func(n *v1alpha1.TinyNode) {
			n.Spec.Edges = []v1alpha1.TinyNodeEdge{{ID: "e", Port: "out", To: "Debug_1.in"}}
		}), "spec.edges[0].to"},
		{"edge port with a dot", node(func(n *v1alpha1.TinyNode) {
			n.Spec.Edges = []v1alpha1.TinyNodeEdge{{ID: "e", Port: "o.ut", To: "debug.in"}}
		}), "spec.edges[0].port"},
		{"duplicate edge id", node(func(n *v1alpha1.TinyNode) {
			n.Spec.Edges = []v1alpha1.TinyNodeEdge{{ID: "e", Port: "out", To: "a.in"}, {ID: "e", Port: "out", To: "b.in"}}
		}), "spec.edges[1]"},
		{"retry with no attempts", node(func(n *v1alpha1.TinyNode) {
			n.Spec.Edges = []v1alpha1.TinyNodeEdge{{ID: "e", Port: "out", To: "a.in", Retry: &v1alpha1.RetryPolicy{Attempts: 0}}}
		}), "spec.edges[0].retry.attempts"},
		{"retry backoff that is no duration", node(func(n *v1alpha1.TinyNode) {
			n.Spec.Edges = []v1alpha1.TinyNodeEdge{{ID: "e", Port: "out", To: "a.in", Retry: &v1alpha1.RetryPolicy{Attempts: 2, Backoff: "soon"}}}
		}), "spec.edges[0].retry.backoff"},
		{"port name with a dot", node(func(n *v1alpha1.TinyNode) {
			n.Spec.Ports = []v1alpha1.TinyNodePortConfig{{Port: "in.x"}}
		}), "spec.ports[0].port"},
		{"node without component", node(func(n *v1alpha1.TinyNode) { n.Spec.Component = "" }), "spec.component"},
		{"node without module", node(func(n *v1alpha1.TinyNode) { n.Spec.Module = "" }), "spec.module"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := env.Client.Create(ctx, tc.obj)
			if err == nil {
				t.Fatalf("created %+v; want a rejection naming %s", tc.obj, tc.field)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			t.Logf("rejected: %v", err)
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error does not name %s: %v", tc.field, err)
			}
		})
	}

	// Status positions are an enum.
	n := node(func(*v1alpha1.TinyNode) {}).(*v1alpha1.TinyNode)
	if err := env.Client.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	n.Status.Ports = []v1alpha1.PortStatus{{Name: "in", Position: "Middle"}}
	err := env.Client.Status().Update(ctx, n)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "status.ports[0].position") {
		t.Errorf("status with position Middle: want Invalid naming status.ports[0].position, got %v", err)
	}
}

// TestJSONValuesRoundTrip checks that signal data and port configuration take
// any JSON value, scalars included, and come back unchanged.
func TestJSONValuesRoundTrip(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, 30*time.Second)

	values := map[string]any{
		"object": map[string]any{"send": true, "context": map[string]any{"user": "ann", "ids": []any{1.0, 2.0}}},
		"list":   []any{"a", 1.5, false, nil, map[string]any{"k": "v"}},
		"string": "hello",
		"true":   true,
		"number": 42.0,
	}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			s := &v1alpha1.TinySignal{
				ObjectMeta: metav1.ObjectMeta{GenerateName: "s-", Namespace: ns},
				Spec:       v1alpha1.TinySignalSpec{Node: "n", Port: "in", Data: jsonValue(t, v)},
			}
			if err := env.Client.Create(ctx, s); err != nil {
				t.Fatalf("create: %v", err)
			}
			n := &v1alpha1.TinyNode{
				ObjectMeta: metav1.ObjectMeta{GenerateName: "n-", Namespace: ns},
				Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "c",
					Ports: []v1alpha1.TinyNodePortConfig{{Port: "in", From: "other.out", Configuration: jsonValue(t, v)}}},
			}
			if err := env.Client.Create(ctx, n); err != nil {
				t.Fatalf("create: %v", err)
			}

			gotSignal := &v1alpha1.TinySignal{}
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(s), gotSignal); err != nil {
				t.Fatal(err)
			}
			gotNode := &v1alpha1.TinyNode{}
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(n), gotNode); err != nil {
				t.Fatal(err)
			}
			for what, raw := range map[string]*apiextensionsv1.JSON{"signal data": gotSignal.Spec.Data, "port configuration": gotNode.Spec.Ports[0].Configuration} {
				var got any
				if raw == nil {
					t.Fatalf("%s: lost", what)
				}
				if err := json.Unmarshal(raw.Raw, &got); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if !reflect.DeepEqual(got, v) {
					t.Errorf("%s: got %s, want %v", what, raw.Raw, v)
				}
			}
		})
	}
}

// TestKubectl applies YAML with nested data as a user writes it and checks the
// printer columns of `kubectl get`, with the kubectl built beside the API server.
func TestKubectl(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.Kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl := func(stdin string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, env.Kubectl(), append([]string{"--kubeconfig", kubeconfig, "-n", ns}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	kubectl(`
apiVersion: operator.tinysystems.io/v1alpha1
kind: TinyNode
metadata:
  name: ticker-1
  labels:
    tinysystems.io/flow-name: demo
spec:
  module: tinymod
  component: ticker
  ports:
    - port: _settings
      configuration:
        delay: 500
        context:
          greeting: hello
          tags: [a, b]
  edges:
    - id: e1
      port: out
      to: debug-1.in
---
apiVersion: operator.tinysystems.io/v1alpha1
kind: TinySignal
metadata:
  name: start
spec:
  node: ticker-1
  port: _control
  data: {start: true}
`, "apply", "-f", "-")

	// The samples apply as written.
	samples := env.Namespace(t)
	kubectl("", "apply", "-n", samples, "-f", "../samples/demo-flow.yaml")
	kubectl("", "create", "-n", samples, "-f", "../samples/signals.yaml")

	n := &v1alpha1.TinyNode{}
	ctx := controlplanetest.Context(t, 30*time.Second)
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ticker-1"}, n); err != nil {
		t.Fatal(err)
	}
	var settings map[string]any
	if err := json.Unmarshal(n.Spec.Ports[0].Configuration.Raw, &settings); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"delay": 500.0, "context": map[string]any{"greeting": "hello", "tags": []any{"a", "b"}}}
	if !reflect.DeepEqual(settings, want) {
		t.Errorf("applied settings: got %v, want %v", settings, want)
	}
	n.Status.Error = "unknown component"
	meta.SetStatusCondition(&n.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: "UnknownComponent"})
	if err := env.Client.Status().Update(ctx, n); err != nil {
		t.Fatal(err)
	}

	assertTable(t, kubectl("", "get", "tinynodes"),
		[]string{"NAME", "MODULE", "COMPONENT", "READY", "ERROR", "AGE"},
		[]string{"ticker-1", "tinymod", "ticker", "False", "unknown", "component"})
	assertTable(t, kubectl("", "get", "tinysignals"),
		[]string{"NAME", "NODE", "PORT", "PHASE", "AGE"},
		[]string{"start", "ticker-1", "_control"})
	assertTable(t, kubectl("", "get", "tinysignals", "-o", "wide"),
		[]string{"NAME", "NODE", "PORT", "PHASE", "ATTEMPTS", "ERROR", "AGE"}, nil)

	mod := &v1alpha1.TinyModule{ObjectMeta: metav1.ObjectMeta{Name: "tinymod", Namespace: ns}}
	if err := env.Client.Create(ctx, mod); err != nil {
		t.Fatal(err)
	}
	mod.Status = v1alpha1.TinyModuleStatus{Addr: "tinymod:8483", Leader: "pod-a", Version: "v1.2.3"}
	if err := env.Client.Status().Update(ctx, mod); err != nil {
		t.Fatal(err)
	}
	assertTable(t, kubectl("", "get", "tinymodules"),
		[]string{"NAME", "ADDRESS", "LEADER", "VERSION", "AGE"},
		[]string{"tinymod", "tinymod:8483", "pod-a", "v1.2.3"})

	flow := &v1alpha1.TinyFlow{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: ns}, Spec: v1alpha1.TinyFlowSpec{Description: "ticks"}}
	if err := env.Client.Create(ctx, flow); err != nil {
		t.Fatal(err)
	}
	assertTable(t, kubectl("", "get", "tinyflows"), []string{"NAME", "DESCRIPTION", "AGE"}, []string{"demo", "ticks"})
}

// assertTable checks the header of kubectl's table and that its first row starts with row.
func assertTable(t *testing.T, out string, header, row []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if got := strings.Fields(lines[0]); !reflect.DeepEqual(got, header) {
		t.Errorf("header: got %q, want %q\n%s", got, header, out)
	}
	if row == nil {
		return
	}
	if len(lines) < 2 {
		t.Fatalf("no rows:\n%s", out)
	}
	got := strings.Fields(lines[1])
	if len(got) < len(row) || !reflect.DeepEqual(got[:len(row)], row) {
		t.Errorf("row: got %q, want it to start with %q\n%s", got, row, out)
	}
}
