package ui

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
)

func TestMain(m *testing.M) { controlplanetest.Main(m) }

var testPage = fstest.MapFS{
	"index.html":    {Data: []byte(`<!doctype html><html><head><!--tinymod-meta--></head><body></body></html>`)},
	"assets/app.js": {Data: []byte(`console.log(1)`)},
}

// TestGuard: changes need the session's token and this origin; every
// request needs a loopback Host unless the page is exposed.
func TestGuard(t *testing.T) {
	s := &Server{opts: Options{Assets: testPage}, token: "secret"}
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	for _, c := range []struct {
		name, method, host, origin, token string
		expose                            bool
		want                              int
	}{
		{"read", "GET", "127.0.0.1:8090", "", "", false, http.StatusTeapot},
		{"read as localhost", "GET", "localhost:8090", "", "", false, http.StatusTeapot},
		{"read by another name (DNS rebinding)", "GET", "evil.example:8090", "", "", false, http.StatusForbidden},
		{"read by another name, exposed", "GET", "box.lan:8090", "", "", true, http.StatusTeapot},
		{"write with token and origin", "POST", "127.0.0.1:8090", "http://127.0.0.1:8090", "secret", false, http.StatusTeapot},
		{"write with token, no origin (a script)", "DELETE", "127.0.0.1:8090", "", "secret", false, http.StatusTeapot},
		{"write without token", "POST", "127.0.0.1:8090", "http://127.0.0.1:8090", "", false, http.StatusForbidden},
		{"write with a wrong token", "PUT", "127.0.0.1:8090", "http://127.0.0.1:8090", "secreT", false, http.StatusForbidden},
		{"write from another origin", "POST", "127.0.0.1:8090", "http://evil.example", "secret", false, http.StatusForbidden},
		{"write from another port", "POST", "127.0.0.1:8090", "http://127.0.0.1:9999", "secret", false, http.StatusForbidden},
		// Host names are case-insensitive; IPv6 loopback is loopback.
		{"read as [::1]", "GET", "[::1]:8090", "", "", false, http.StatusTeapot},
		{"write as [::1] from its origin", "POST", "[::1]:8090", "http://[::1]:8090", "secret", false, http.StatusTeapot},
		{"read as LOCALHOST", "GET", "LOCALHOST:8090", "", "", false, http.StatusTeapot},
		{"write as Localhost from its origin", "POST", "Localhost:8090", "http://localhost:8090", "secret", false, http.StatusTeapot},
		{"read as localhost.", "GET", "localhost.:8090", "", "", false, http.StatusTeapot},
		{"read by a name that begins as loopback", "GET", "127.0.0.1.evil.example:8090", "", "", false, http.StatusForbidden},
		{"read by a name that ends as localhost", "GET", "evil-localhost:8090", "", "", false, http.StatusForbidden},
		{"write from an origin that begins as this one", "POST", "127.0.0.1:8090", "http://127.0.0.1:8090.evil.example", "secret", false, http.StatusForbidden},
		{"write from a null origin", "POST", "127.0.0.1:8090", "null", "secret", false, http.StatusForbidden},
	} {
		s.opts.Expose = c.expose
		req := httptest.NewRequest(c.method, "http://"+c.host+"/api/nodes", nil)
		req.Host = c.host
		if c.origin != "" {
			req.Header.Set("Origin", c.origin)
		}
		if c.token != "" {
			req.Header.Set(TokenHeader, c.token)
		}
		rec := httptest.NewRecorder()
		s.guard(ok).ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s: %d, want %d (%s)", c.name, rec.Code, c.want, rec.Body)
		}
	}
}

// TestIndexCarriesTheToken: the page gets the token in a meta tag, never
// in a URL, and says whether it is exposed.
func TestIndexCarriesTheToken(t *testing.T) {
	s := &Server{opts: Options{Assets: testPage, Expose: true}, token: "tok123"}
	rec := httptest.NewRecorder()
	s.index(rec, httptest.NewRequest("GET", "/", nil))
	body := rec.Body.String()
	if !strings.Contains(body, `<meta name="tinymod-token" content="tok123">`) || !strings.Contains(body, `<meta name="tinymod-exposed" content="true">`) {
		t.Errorf("page: %s", body)
	}
	if rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("Content-Security-Policy") == "" {
		t.Errorf("headers: %v", rec.Header())
	}
}

func TestListenNeedsExposeOffLoopback(t *testing.T) {
	cfg := &rest.Config{Host: "http://127.0.0.1:1"}
	if _, err := New(Options{Config: cfg, Listen: "0.0.0.0:0", Assets: testPage}); err == nil || !strings.Contains(err.Error(), "--expose") {
		t.Errorf("0.0.0.0 without --expose: %v", err)
	}
	s, err := New(Options{Config: cfg, Listen: "0.0.0.0:0", Expose: true, Assets: testPage})
	if err != nil {
		t.Fatalf("0.0.0.0 with --expose: %v", err)
	}
	s.ln.Close()
}

// TestIncreaseHandlesResets: a restarted replica's counters start again at
// zero, which is new traffic, not negative traffic; a replica counts from
// its second reading, and one that vanished counts nothing.
func TestIncreaseHandlesResets(t *testing.T) {
	r1 := Readings{"a": {"x": 100}}
	if got := Increase(nil, r1); len(got) != 0 {
		t.Errorf("first reading: %v", got)
	}
	r2 := Readings{"a": {"x": 130, "y": 5}, "b": {"x": 1000}}
	if got := Increase(r1, r2); got["x"] != 30 || got["y"] != 5 {
		t.Errorf("second reading: %v", got)
	}
	r3 := Readings{"a": {"x": 7, "y": 5}, "b": {"x": 1001}}
	if got := Increase(r2, r3); got["x"] != 8 || got["y"] != 0 {
		t.Errorf("after a's restart, and b's second reading: %v", got)
	}
	r4 := Readings{"b": {"x": 1002}}
	if got := Increase(r3, r4); got["x"] != 1 {
		t.Errorf("after a vanished: %v", got)
	}
}

// TestRatesCountBusinessPorts: the runtime's own messages are no node's
// traffic, and errors count on any port.
func TestRatesCountBusinessPorts(t *testing.T) {
	r := Rates{Nodes: map[string]NodeRates{}, Ports: map[string]float64{}}
	addRates(&r, map[string]float64{
		"a\x00in\x00ok": 10, "a\x00in\x00error": 2, "a\x00_reconcile\x00ok": 6, "a\x00_control\x00error": 2,
	}, 2)
	if got := r.Nodes["a"]; got.Messages != 6 || got.Errors != 2 {
		t.Errorf("node a: %+v, want 6 msg/s and 2 err/s", got)
	}
	if r.Ports["a.in"] != 6 || r.Ports["a._reconcile"] != 3 {
		t.Errorf("ports: %v", r.Ports)
	}
}

// TestReadLeadership: the Lease is the truth; an expired Lease has no
// leader, and a replica whose process is gone is neither alive nor leader.
func TestReadLeadership(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	lease := func(name, holder string, renewed time.Duration, labels map[string]string) coordinationv1.Lease {
		return coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(holder), LeaseDurationSeconds: ptr.To[int32](4),
				AcquireTime: &metav1.MicroTime{Time: now.Add(-time.Minute)}, RenewTime: &metav1.MicroTime{Time: now.Add(renewed)}}}
	}
	member := func(module, id string, renewed time.Duration) coordinationv1.Lease {
		return lease(leader.MemberLeaseName(module, id), id, renewed, map[string]string{leader.RoleLabel: "member", leader.ModuleLabel: module})
	}
	modules := []v1alpha1.TinyModule{{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, {ObjectMeta: metav1.ObjectMeta{Name: "b"}}, {ObjectMeta: metav1.ObjectMeta{Name: "c"}}}
	leases := []coordinationv1.Lease{
		lease("a-leader", "a-1", -time.Second, nil), member("a", "a-1", -time.Second), member("a", "a-2", -10*time.Second),
		lease("b-leader", "b-1", -5*time.Second, nil), member("b", "b-1", -time.Second),
		lease("c-leader", "c-1", -time.Second, nil), member("c", "c-1", -time.Second), member("c", "c-2", 0),
	}
	known := []Replica{{Module: "c", Identity: "c-1", Alive: false}, {Module: "c", Identity: "c-2", Alive: true}, {Module: "c", Identity: "c-3", Alive: false}}
	got := ReadLeadership(modules, leases, known, now)
	a, b, c := got.Modules["a"], got.Modules["b"], got.Modules["c"]
	if a.Leader != "a-1" || a.Expired || len(a.Replicas) != 2 || !a.Replicas[0].Alive || !a.Replicas[0].Leader || a.Replicas[1].Alive {
		t.Errorf("a: %+v", a)
	}
	if b.Leader != "" || !b.Expired {
		t.Errorf("b (lease expired): %+v", b)
	}
	if c.Leader != "" || !c.Expired || len(c.Replicas) != 3 || c.Replicas[0].Alive || c.Replicas[0].Leader || !c.Replicas[1].Alive || c.Replicas[2].Alive {
		t.Errorf("c (leader's process gone): %+v", c)
	}
}

// TestParseMessages reads the counters a replica serves.
func TestParseMessages(t *testing.T) {
	body := []byte(`# HELP tinymod_messages_total x
# TYPE tinymod_messages_total counter
tinymod_messages_total{node="a",port="in",result="ok"} 12
tinymod_messages_total{node="a",port="in",result="error"} 2
# TYPE other counter
other 5
`)
	got, err := parseMessages(body)
	if err != nil {
		t.Fatal(err)
	}
	if got["a\x00in\x00ok"] != 12 || got["a\x00in\x00error"] != 2 || len(got) != 2 {
		t.Errorf("%v", got)
	}
}

// sse reads server-sent events.
type sse struct {
	r  *bufio.Reader
	ch chan event
}

type event struct {
	name string
	data []byte
}

func openEvents(t *testing.T, ctx context.Context, url string) *sse {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("events: %s %s", resp.Status, b)
	}
	s := &sse{r: bufio.NewReader(resp.Body), ch: make(chan event, 4096)}
	go func() {
		defer resp.Body.Close()
		var e event
		for {
			line, err := s.r.ReadString('\n')
			if err != nil {
				close(s.ch)
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "event: "):
				e.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				e.data = []byte(line[len("data: "):])
			case line == "" && e.name != "":
				s.ch <- e
				e = event{}
			}
		}
	}()
	return s
}

// next waits for the first event named name that ok accepts.
func (s *sse) next(t *testing.T, limit time.Duration, name string, ok func([]byte) bool) []byte {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case e, open := <-s.ch:
			if !open {
				t.Fatalf("event stream ended waiting for %s", name)
			}
			if e.name == name && (ok == nil || ok(e.data)) {
				return e.data
			}
		case <-deadline:
			t.Fatalf("no %s event within %v", name, limit)
		}
	}
}

type pageClient struct {
	t     *testing.T
	url   string
	token string
}

func (c pageClient) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	return c.doRaw(method, path, b)
}

// doRaw sends body as it is (none if nil).
func (c pageClient) doRaw(method, path string, body []byte) (int, []byte) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, c.url+strings.TrimPrefix(path, "/"), r)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(TokenHeader, c.token)
	req.Header.Set("Origin", strings.TrimSuffix(c.url, "/"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func startServer(t *testing.T, cfg *rest.Config, ns string) (*Server, pageClient) {
	t.Helper()
	s, err := New(Options{Config: cfg, Namespace: ns, Listen: "127.0.0.1:0", Assets: testPage, Interval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not end within 10 s")
		}
	})
	return s, pageClient{t: t, url: s.URL(), token: s.token}
}

func hasName(name string) func([]byte) bool {
	return func(b []byte) bool {
		var c struct {
			Type   string `json:"type"`
			Object struct {
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
			} `json:"object"`
		}
		return json.Unmarshal(b, &c) == nil && c.Object.Metadata.Name == name
	}
}

// TestPageWritesAndEvents: what the page does goes to the API server as
// ordinary writes, and comes back to it as events.
func TestPageWritesAndEvents(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, 2*time.Minute)
	k := env.Client
	_, api := startServer(t, env.Config, ns)
	events := openEvents(t, ctx, api.url)
	events.next(t, 30*time.Second, "snapshot", nil)

	// Add a node.
	code, body := api.do("POST", "/api/nodes", map[string]string{"module": "m", "component": "debug", "flow": "f1"})
	if code != http.StatusCreated {
		t.Fatalf("create node: %d %s", code, body)
	}
	var created v1alpha1.TinyNode
	if err := json.Unmarshal(body, &created); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created.Name, "debug-") || created.Labels[v1alpha1.FlowNameLabel] != "f1" {
		t.Errorf("created %s with labels %v", created.Name, created.Labels)
	}
	events.next(t, 10*time.Second, "node", hasName(created.Name))

	// A second node to wire to it, made directly.
	src := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "src", Namespace: ns}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "ticker"}}
	if err := k.Create(ctx, src); err != nil {
		t.Fatal(err)
	}

	// Settings.
	code, body = api.do("PUT", "/api/nodes/src/settings", map[string]any{"configuration": map[string]any{"period": "1s"}})
	if code != http.StatusOK {
		t.Fatalf("settings: %d %s", code, body)
	}
	get := func(name string) *v1alpha1.TinyNode {
		n := &v1alpha1.TinyNode{}
		if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if ps := get("src").Spec.Ports; len(ps) != 1 || ps[0].Port != v1alpha1.SettingsPort || string(ps[0].Configuration.Raw) != `{"period":"1s"}` {
		t.Errorf("settings written: %+v", ps)
	}

	// A mapping that does not compile is refused, and nothing is written.
	if code, body = api.do("POST", "/api/mapping/check", map[string]any{"mapping": map[string]any{"a": "{{$.x +}}"}}); code != 200 || !strings.Contains(string(body), `"ok":false`) {
		t.Errorf("check of a bad mapping: %d %s", code, body)
	}
	if code, body = api.do("POST", "/api/nodes/src/edges", map[string]any{"port": "out", "to": created.Name + ".in", "mapping": map[string]any{"a": "{{$.x +}}"}}); code != http.StatusBadRequest {
		t.Errorf("edge with a bad mapping: %d %s", code, body)
	}
	if len(get("src").Spec.Edges) != 0 {
		t.Error("an edge was written with a bad mapping")
	}

	// An edge with a mapping: the edge on its source, the mapping on its target.
	code, body = api.do("POST", "/api/nodes/src/edges", map[string]any{"port": "out", "to": created.Name + ".in", "mapping": map[string]any{"n": "{{$.count}}"}})
	if code != http.StatusCreated {
		t.Fatalf("edge: %d %s", code, body)
	}
	var edge struct{ ID string }
	_ = json.Unmarshal(body, &edge)
	if es := get("src").Spec.Edges; len(es) != 1 || es[0].ID != edge.ID || es[0].To != created.Name+".in" {
		t.Errorf("edges: %+v", es)
	}
	if ps := get(created.Name).Spec.Ports; len(ps) != 1 || ps[0].From != "src.out" || ps[0].Port != "in" {
		t.Errorf("target's ports: %+v", ps)
	}

	// A press.
	code, body = api.do("POST", "/api/signals", map[string]any{"node": "src", "port": "_control", "data": map[string]bool{"start": true}})
	if code != http.StatusCreated {
		t.Fatalf("signal: %d %s", code, body)
	}
	var sig struct{ Name string }
	_ = json.Unmarshal(body, &sig)
	events.next(t, 10*time.Second, "signal", hasName(sig.Name))

	// Deleting the edge takes its mapping; deleting the node, edges into it.
	if code, body = api.do("DELETE", "/api/nodes/src/edges/"+edge.ID, nil); code != http.StatusNoContent {
		t.Fatalf("delete edge: %d %s", code, body)
	}
	if n := get(created.Name); len(n.Spec.Ports) != 0 || len(get("src").Spec.Edges) != 0 {
		t.Errorf("after deleting the edge: target ports %+v, source edges %+v", n.Spec.Ports, get("src").Spec.Edges)
	}
	if code, _ = api.do("POST", "/api/nodes/src/edges", map[string]any{"port": "out", "to": created.Name + ".in"}); code != http.StatusCreated {
		t.Fatalf("edge again: %d", code)
	}
	if code, body = api.do("DELETE", "/api/nodes/"+created.Name, nil); code != http.StatusNoContent {
		t.Fatalf("delete node: %d %s", code, body)
	}
	if es := get("src").Spec.Edges; len(es) != 0 {
		t.Errorf("edges into a deleted node remain: %+v", es)
	}
	events.next(t, 10*time.Second, "node", func(b []byte) bool { return hasName(created.Name)(b) && strings.Contains(string(b), `"type":"delete"`) })
}

// TestForbiddenIsShownAsSuch: the page writes with the user's credentials;
// a user RBAC does not let write gets the API server's 403 as it was.
func TestForbiddenIsShownAsSuch(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, time.Minute)
	viewer, err := env.AddUser("viewer-" + ns)
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "view", Namespace: ns}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch"}},
	}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "view", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "view"},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: "viewer-" + ns, APIGroup: "rbac.authorization.k8s.io"}}}
	for _, o := range []client.Object{role, binding} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	_, api := startServer(t, viewer, ns)
	events := openEvents(t, ctx, api.url)
	events.next(t, 30*time.Second, "snapshot", nil)
	code, body := api.do("POST", "/api/nodes", map[string]string{"module": "m", "component": "debug"})
	var e apiError
	_ = json.Unmarshal(body, &e)
	if code != http.StatusForbidden || e.Status != 403 || e.Reason != "Forbidden" || !strings.Contains(e.Message, "forbidden") {
		t.Errorf("create as a viewer: %d %s", code, body)
	}
}

// TestLeaderChangeIsPushed: a change of the leader Lease reaches the page
// as a leadership event.
func TestLeaderChangeIsPushed(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, time.Minute)
	_, api := startServer(t, env.Config, ns)
	events := openEvents(t, ctx, api.url)
	events.next(t, 30*time.Second, "snapshot", nil)
	now := metav1.NowMicro()
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "mod-leader", Namespace: ns},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("r-1"), LeaseDurationSeconds: ptr.To[int32](15), AcquireTime: &now, RenewTime: &now}}
	if err := env.Client.Create(ctx, l); err != nil {
		t.Fatal(err)
	}
	leaderIs := func(id string) func([]byte) bool {
		return func(b []byte) bool {
			var got Leadership
			return json.Unmarshal(b, &got) == nil && got.Modules["mod"].Leader == id
		}
	}
	// A module appears with its first Lease of a member; its leader Lease
	// alone names no module, so add one.
	member := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: leader.MemberLeaseName("mod", "r-1"), Namespace: ns,
		Labels: map[string]string{leader.RoleLabel: "member", leader.ModuleLabel: "mod"}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("r-1"), LeaseDurationSeconds: ptr.To[int32](15), RenewTime: &now}}
	if err := env.Client.Create(ctx, member); err != nil {
		t.Fatal(err)
	}
	events.next(t, 10*time.Second, "leadership", leaderIs("r-1"))
	l.Spec.HolderIdentity = ptr.To("r-2")
	if err := env.Client.Update(ctx, l); err != nil {
		t.Fatal(err)
	}
	events.next(t, 10*time.Second, "leadership", leaderIs("r-2"))
}
