package ui

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
)

// TestNamesWithDots: node names may have dots (DNS subdomains), and a
// target "<node>.<port>" is split at its last dot, as the runtime and the
// page split it. Deleting node "a" must not touch edges into "a.b".
func TestNamesWithDots(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, time.Minute)
	k := env.Client
	for _, name := range []string{"a", "a.b", "src"} {
		n := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "debug"}}
		if err := k.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	_, api := startServer(t, env.Config, ns)
	get := func(name string) *v1alpha1.TinyNode {
		n := &v1alpha1.TinyNode{}
		if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Deleting node a leaves the edge into a.b.in alone.
	src := get("src")
	src.Spec.Edges = []v1alpha1.TinyNodeEdge{{ID: "e1", Port: "out", To: "a.in"}, {ID: "e2", Port: "out", To: "a.b.in"}}
	if err := k.Update(ctx, src); err != nil {
		t.Fatal(err)
	}
	if code, body := api.do("DELETE", "/api/nodes/a", nil); code != http.StatusNoContent {
		t.Fatalf("delete a: %d %s", code, body)
	}
	if es := get("src").Spec.Edges; len(es) != 1 || es[0].To != "a.b.in" {
		t.Errorf("after deleting a, src's edges are %+v, want only the one into a.b.in", es)
	}

	// An edge into a.b.in has its mapping on a.b's port in, and deleting
	// the edge takes it.
	code, body := api.do("POST", "/api/nodes/src/edges", map[string]any{"port": "out2", "to": "a.b.in", "mapping": map[string]any{"x": "{{$.y}}"}})
	if code != http.StatusCreated {
		t.Errorf("edge into a.b: %d %s", code, body)
	} else {
		if ps := get("a.b").Spec.Ports; len(ps) != 1 || ps[0].Port != "in" || ps[0].From != "src.out2" {
			t.Errorf("the mapping of an edge into a.b.in is not on a.b's port in: %+v", ps)
		}
		var edge struct{ ID string }
		_ = json.Unmarshal(body, &edge)
		if code, body = api.do("DELETE", "/api/nodes/src/edges/"+edge.ID, nil); code != http.StatusNoContent {
			t.Fatalf("delete edge: %d %s", code, body)
		}
		if ps := get("a.b").Spec.Ports; len(ps) != 0 {
			t.Errorf("a.b keeps the mapping of a deleted edge: %+v", ps)
		}
	}
	if code, body := api.do("POST", "/api/signals", map[string]any{"node": "a.b", "port": "_control", "data": map[string]bool{"send": true}}); code != http.StatusCreated {
		t.Errorf("a signal to a.b: %d %s", code, body)
	}
}

// TestBadNamesAreBadRequests: a name that cannot be a node's (a slash, an
// upper-case letter) or a port with a dot is the request's fault, a 400,
// and nothing is written.
func TestBadNamesAreBadRequests(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	_, api := startServer(t, env.Config, ns)
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"PUT", "/api/nodes/a%2Fb/settings", map[string]any{"configuration": 1}},
		{"PUT", "/api/nodes/UPPER/settings", map[string]any{"configuration": 1}},
		{"DELETE", "/api/nodes/a%2Fb", nil},
		{"POST", "/api/nodes/a%2Fb/edges", map[string]any{"port": "out", "to": "x.in"}},
		{"POST", "/api/nodes/src/edges", map[string]any{"port": "out", "to": "x/y.in"}},
		{"POST", "/api/nodes/src/edges", map[string]any{"port": "o.ut", "to": "x.in"}},
		{"POST", "/api/nodes/src/edges", map[string]any{"port": "out", "to": "x."}},
		{"DELETE", "/api/nodes/a%2Fb/edges/e1", nil},
		{"POST", "/api/signals", map[string]any{"node": "a/b", "port": "in"}},
		{"POST", "/api/signals", map[string]any{"node": "a", "port": "i.n"}},
	} {
		code, body := api.do(c.method, c.path, c.body)
		if code != http.StatusBadRequest {
			t.Errorf("%s %s: %d %s, want 400", c.method, c.path, code, body)
		}
	}
	// Bodies: trailing data is malformed; a huge one is too large.
	code, body := api.doRaw("POST", "/api/mapping/check", []byte(`{"mapping":null} {"mapping":1}`))
	if code != http.StatusBadRequest {
		t.Errorf("two JSON values: %d %s", code, body)
	}
	huge := append([]byte(`{"mapping":"`), make([]byte, 2<<20)...)
	for i := 12; i < len(huge); i++ {
		huge[i] = 'x'
	}
	huge = append(huge, `"}`...)
	if code, body = api.doRaw("POST", "/api/mapping/check", huge); code != http.StatusRequestEntityTooLarge {
		t.Errorf("a 2 MiB body: %d %s", code, body)
	}
}

// TestEdgesLeaveNoMappingsBehind: an edge's mapping lives on its target
// (spec.ports, at most 128). When the edge cannot be written, its mapping
// does not stay, and a mapping it replaced comes back; when its source
// node is deleted, its mapping goes too.
func TestEdgesLeaveNoMappingsBehind(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, time.Minute)
	k := env.Client
	for _, name := range []string{"src", "t"} {
		n := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "debug"}}
		if err := k.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	_, api := startServer(t, env.Config, ns)
	ports := func(name string) []v1alpha1.TinyNodePortConfig {
		n := &v1alpha1.TinyNode{}
		if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, n); err != nil {
			t.Fatal(err)
		}
		return n.Spec.Ports
	}

	// From a node that does not exist: refused, and t keeps nothing.
	if code, body := api.do("POST", "/api/nodes/ghost/edges", map[string]any{"port": "out", "to": "t.in", "mapping": map[string]any{"a": 1}}); code != http.StatusNotFound {
		t.Errorf("an edge from a node that does not exist: %d %s", code, body)
	}
	if ps := ports("t"); len(ps) != 0 {
		t.Errorf("t keeps the mapping of an edge that was not written: %+v", ps)
	}

	// A mapping replaced by an edge that cannot be written comes back:
	// ghost.out's mapping on t is {"a":1}; a second edge from ghost.out,
	// which fails, must not leave {"a":2} in its place.
	n := &v1alpha1.TinyNode{}
	if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: "t"}, n); err != nil {
		t.Fatal(err)
	}
	n.Spec.Ports = []v1alpha1.TinyNodePortConfig{{Port: "in", From: "ghost.out", Configuration: rawJSON(json.RawMessage(`{"a":1}`))}}
	if err := k.Update(ctx, n); err != nil {
		t.Fatal(err)
	}
	if code, body := api.do("POST", "/api/nodes/ghost/edges", map[string]any{"port": "out", "to": "t.in", "mapping": map[string]any{"a": 2}}); code != http.StatusNotFound {
		t.Errorf("an edge from a node that does not exist: %d %s", code, body)
	}
	if ps := ports("t"); len(ps) != 1 || string(ps[0].Configuration.Raw) != `{"a":1}` {
		t.Errorf("t's mapping from ghost.out after a failed edge: %+v", ps)
	}

	// Deleting a node takes the mappings of its edges from their targets.
	if code, body := api.do("POST", "/api/nodes/src/edges", map[string]any{"port": "out", "to": "t.in", "mapping": map[string]any{"b": 1}}); code != http.StatusCreated {
		t.Fatalf("edge: %d %s", code, body)
	}
	if code, body := api.do("DELETE", "/api/nodes/src", nil); code != http.StatusNoContent {
		t.Fatalf("delete src: %d %s", code, body)
	}
	for _, p := range ports("t") {
		if p.From == "src.out" {
			t.Errorf("t keeps the mapping of an edge of deleted node src: %+v", p)
		}
	}
}
