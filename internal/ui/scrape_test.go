package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/tinymod/tinymod/internal/debugring"
	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/internal/scheduler"
)

// fakeReplica serves what a replica serves on its metrics address: a
// counter that grows by 10 on each read, no failures, and its debug ring.
type fakeReplica struct {
	ring  *debugring.Ring
	reads atomic.Int64
	// restarted, if set, is the ring of the process that replaced it.
	restarted atomic.Pointer[debugring.Ring]
}

func (f *fakeReplica) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/metrics":
		n := f.reads.Add(1)
		fmt.Fprintf(w, "# TYPE tinymod_messages_total counter\ntinymod_messages_total{node=\"a\",port=\"in\",result=\"ok\"} %d\n", 10*n)
	case replica.HealthPath:
		_ = json.NewEncoder(w).Encode(replica.Health{})
	case debugring.Path:
		ring := f.ring
		if r := f.restarted.Load(); r != nil {
			ring = r
		}
		debugring.Handler(ring).ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}

func newFakeReplica(t *testing.T) (*fakeReplica, string) {
	t.Helper()
	f := &fakeReplica{ring: &debugring.Ring{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, strings.TrimPrefix(srv.URL, "http://")
}

// hangingAddr accepts connections and never answers.
func hangingAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() { // until the reader gives up
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// closedAddr is an address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// runScraper scrapes replicas every interval into a hub of its own until
// the test ends, and checks that it then stops.
func runScraper(t *testing.T, cfg *rest.Config, interval time.Duration, replicas ...ReplicaLiveness) *hub {
	t.Helper()
	if cfg == nil {
		cfg = &rest.Config{Host: "http://" + closedAddr(t)}
	}
	h := newHub()
	w := &watcher{opts: Options{Config: cfg, Namespace: "ns", Interval: interval}, hub: h, replicas: replicas}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.scrape(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("the scraper did not stop within 5 s of its context's end")
		}
	})
	return h
}

// collect gathers the events of a hub for d.
func collect(h *hub, d time.Duration) map[string][][]byte {
	sub, _, _, _ := h.subscribe()
	defer h.unsubscribe(sub)
	out := map[string][][]byte{}
	deadline := time.After(d)
	for {
		select {
		case <-sub.wake:
			for _, f := range h.take(sub) {
				name, data, _ := strings.Cut(strings.TrimPrefix(string(f), "event: "), "\ndata: ")
				out[name] = append(out[name], []byte(strings.TrimSpace(data)))
			}
		case <-sub.done:
			return out
		case <-deadline:
			return out
		}
	}
}

// TestScrapeNotStalledByHangingReplicas: replicas are read at once, each
// within the interval, so replicas that hang do not delay the others'
// rates and debug messages.
func TestScrapeNotStalledByHangingReplicas(t *testing.T) {
	good, addr := newFakeReplica(t)
	replicas := []ReplicaLiveness{{Identity: "good", Alive: true, MetricsAddr: addr}}
	for i := range 5 {
		replicas = append(replicas, ReplicaLiveness{Identity: fmt.Sprintf("hung-%d", i), Alive: true, MetricsAddr: hangingAddr(t)})
	}
	h := runScraper(t, nil, 200*time.Millisecond, replicas...)
	go func() {
		for i := range 20 {
			time.Sleep(100 * time.Millisecond)
			good.ring.Add("d", json.RawMessage(fmt.Sprint(i)))
		}
	}()
	got := collect(h, 3*time.Second)
	counted := 0
	for _, b := range got["rates"] {
		var r Rates
		if json.Unmarshal(b, &r) == nil && r.Nodes["a"].Messages > 0 {
			counted++
		}
	}
	// 15 intervals; a round that waits for each hanging replica in turn
	// takes 5 of them.
	if counted < 8 {
		t.Errorf("%d rates events with the good replica's traffic in 3 s at 200 ms, want at least 8 (%d rates events, %d reads)", counted, len(got["rates"]), good.reads.Load())
	}
	if len(got["debug"]) < 15 {
		t.Errorf("%d of 20 debug messages within 3 s", len(got["debug"]))
	}
}

// fakeAPIServer serves the pod proxy of the API server for the replicas
// given by pod name and port, and records the paths asked for.
type fakeAPIServer struct {
	mu    sync.Mutex
	paths []string
	pods  map[string]http.Handler // "<pod>:<port>"
	// redirect, if set, answers every proxied request with a redirect there.
	redirect string
}

func (f *fakeAPIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.paths = append(f.paths, r.URL.RawPath+"|"+r.URL.Path)
	f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer sekrit" {
		http.Error(w, "who?", http.StatusUnauthorized)
		return
	}
	if f.redirect != "" {
		http.Redirect(w, r, f.redirect+r.URL.Path, http.StatusFound)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/namespaces/ns/pods/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	pod, path, _ := strings.Cut(rest, "/proxy")
	h := f.pods[pod]
	if h == nil {
		http.NotFound(w, r)
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = path
	h.ServeHTTP(w, r2)
}

func startFakeAPIServer(t *testing.T, f *fakeAPIServer) *rest.Config {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return &rest.Config{Host: srv.URL, BearerToken: "sekrit"}
}

// TestPodProxyKeepsCredentials: a replica read through the API server's
// pod proxy answers with a redirect to another host; the user's token must
// not follow it there.
func TestPodProxyKeepsCredentials(t *testing.T) {
	var leaked atomic.Value
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "" {
			leaked.Store(a)
		}
		fmt.Fprint(w, "tinymod_messages_total{node=\"a\",port=\"in\",result=\"ok\"} 1\n")
	}))
	defer elsewhere.Close()
	api := &fakeAPIServer{redirect: elsewhere.URL}
	cfg := startFakeAPIServer(t, api)
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := newReader(cfg, "ns", rt)
	rep := ReplicaLiveness{Identity: "pod-1", Alive: true, MetricsAddr: closedAddr(t)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_, _ = r.counters(ctx, rep)
	cancel()
	if a, _ := leaked.Load().(string); a != "" {
		t.Errorf("a redirect from the pod proxy took the user's credentials to another host: %q", a)
	}
}

// TestPodProxyPathIsThePods: an identity is a pod's name; one that is not
// (a membership Lease anyone may write) must not lead the user's
// credentials to another path of the API server.
func TestPodProxyPathIsThePods(t *testing.T) {
	api := &fakeAPIServer{pods: map[string]http.Handler{}}
	cfg := startFakeAPIServer(t, api)
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := newReader(cfg, "ns", rt)
	port := closedAddr(t)
	for _, id := range []string{"../../../../api/v1/namespaces/kube-system/secrets/x?", "a/b", "a%2Fb", "pod-1"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = r.counters(ctx, ReplicaLiveness{Identity: id, Alive: true, MetricsAddr: port})
		cancel()
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.paths) == 0 {
		t.Error("pod-1 was not read through the pod proxy")
	}
	for _, p := range api.paths {
		raw, path, _ := strings.Cut(p, "|")
		if !strings.HasPrefix(path, "/api/v1/namespaces/ns/pods/") || strings.Count(strings.TrimPrefix(path, "/api/v1/namespaces/ns/pods/"), "/") != 2 || strings.Contains(raw+path, "..") {
			t.Errorf("the pod proxy was asked for %q (raw %q)", path, raw)
		}
	}
}

// TestPodProxyWhenDirectHangs: in a cluster, a replica's pod address may
// not answer from where tinymod ui runs; reading it directly must leave
// time to read it through the pod proxy.
func TestPodProxyWhenDirectHangs(t *testing.T) {
	f := &fakeReplica{ring: &debugring.Ring{}}
	direct := hangingAddr(t)
	_, port, _ := net.SplitHostPort(direct)
	api := &fakeAPIServer{pods: map[string]http.Handler{"pod-1:" + port: f}}
	cfg := startFakeAPIServer(t, api)
	h := runScraper(t, cfg, 200*time.Millisecond, ReplicaLiveness{Identity: "pod-1", Alive: true, MetricsAddr: direct})
	f.ring.Add("d", json.RawMessage(`"hi"`))
	got := collect(h, 2*time.Second)
	counted := 0
	for _, b := range got["rates"] {
		var r Rates
		if json.Unmarshal(b, &r) == nil && r.Nodes["a"].Messages > 0 {
			counted++
		}
	}
	if counted < 5 || len(got["debug"]) != 1 {
		t.Errorf("through the pod proxy: %d rates events with traffic in 2 s at 200 ms (want at least 5), %d debug messages (want 1); %d reads", counted, len(got["debug"]), f.reads.Load())
	}
}

// TestDebugAfterAReplicaRestarts: a restarted replica's ring numbers its
// messages from 1 again; none of them may be lost because the cursor of
// the process before was further on.
func TestDebugAfterAReplicaRestarts(t *testing.T) {
	f, addr := newFakeReplica(t)
	for i := range 10 {
		f.ring.Add("d", json.RawMessage(fmt.Sprint(i)))
	}
	h := runScraper(t, nil, 100*time.Millisecond, ReplicaLiveness{Identity: "r", Alive: true, MetricsAddr: addr})
	if got := collect(h, time.Second)["debug"]; len(got) != 10 {
		t.Fatalf("%d debug messages before the restart, want 10", len(got))
	}
	// The new process handled 15 messages before it was read again.
	next := &debugring.Ring{}
	for i := range 15 {
		next.Add("d", json.RawMessage(fmt.Sprintf(`"new %d"`, i)))
	}
	f.restarted.Store(next)
	got := collect(h, time.Second)["debug"]
	if len(got) != 15 {
		t.Errorf("%d debug messages after the restart, want the new process's 15: %s", len(got), got)
	}
}

// endless serves a body that never ends: metric lines of another program.
type endless struct{}

func (endless) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	line := []byte("other_program_metric{label=\"some value\"} 12345\n")
	for r.Context().Err() == nil {
		if _, err := w.Write(line); err != nil {
			return
		}
	}
}

// TestHugeMetricsAreNotHeld: a replica's /metrics is read as it streams,
// keeping only tinymod's counters, and one that goes on past the bound is
// an error, not a partial reading (whose series would come and go and
// count as traffic each time they came back).
func TestHugeMetricsAreNotHeld(t *testing.T) {
	srv := httptest.NewServer(endless{})
	defer srv.Close()
	r := newReader(&rest.Config{Host: "http://" + closedAddr(t)}, "ns", nil)
	rep := ReplicaLiveness{Identity: "r", Alive: true, MetricsAddr: strings.TrimPrefix(srv.URL, "http://")}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := r.counters(ctx, rep)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Error("an endless /metrics was read as counters")
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
		t.Errorf("reading an endless /metrics allocated %d MiB", alloc>>20)
	}
}

// TestHugeDebugMessagesAreBounded: a replica (of another version, or
// another program) may serve debug messages of any size; the page is sent,
// and the server keeps, at most debugring.MaxData bytes of each.
func TestHugeDebugMessagesAreBounded(t *testing.T) {
	page := debugring.Page{Entries: []debugring.Entry{{Seq: 1, Node: "d", Data: json.RawMessage(`"` + strings.Repeat("x", 1<<20) + `"`)}}, Last: 1}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == debugring.Path {
			_ = json.NewEncoder(w).Encode(page)
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	h := runScraper(t, nil, time.Second, ReplicaLiveness{Identity: "r", Alive: true, MetricsAddr: strings.TrimPrefix(srv.URL, "http://")})
	got := collect(h, 3500*time.Millisecond)["debug"]
	if len(got) != 1 {
		t.Errorf("%d debug messages, want 1", len(got))
	}
	if len(got) > 0 && len(got[0]) > debugring.MaxData+200 {
		t.Errorf("a 1 MiB debug message was sent on as %d bytes", len(got[0]))
	}
	if _, _, kept := h.latest(); len(kept) > 0 && len(kept[0].Data) > debugring.MaxData+100 {
		t.Errorf("the hub keeps %d messages, the first of %d bytes", len(kept), len(kept[0].Data))
	}
}

// TestNewestFailureAcrossReplicas: a node's newest failure is the latest
// by time over the replicas, also when one happened on a whole second
// (whose RFC 3339 text sorts after the same second's fractions).
func TestNewestFailureAcrossReplicas(t *testing.T) {
	second := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	serve := func(at time.Time, msg string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != replica.HealthPath {
				http.NotFound(w, r)
				return
			}
			_ = json.NewEncoder(w).Encode(replica.Health{Nodes: map[string]scheduler.NodeHealth{"a": {Errors: 1, LastError: msg, LastErrorAt: at}}})
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	h := runScraper(t, nil, 100*time.Millisecond,
		ReplicaLiveness{Identity: "r1", Alive: true, MetricsAddr: serve(second, "older")},
		ReplicaLiveness{Identity: "r2", Alive: true, MetricsAddr: serve(second.Add(100*time.Millisecond), "newer")})
	got := collect(h, time.Second)["rates"]
	if len(got) == 0 {
		t.Fatal("no rates")
	}
	var r Rates
	if err := json.Unmarshal(got[len(got)-1], &r); err != nil {
		t.Fatal(err)
	}
	if a := r.Nodes["a"]; a.LastError != "newer" {
		t.Errorf("node a's newest failure: %+v", a)
	}
}

// TestManyHangingReplicas: past the replicas read at once, those that
// answered go first, so a module with a hundred replicas that hang (a
// wedged metrics server, addresses that do not answer) does not keep the
// others from being read.
func TestManyHangingReplicas(t *testing.T) {
	good, addr := newFakeReplica(t)
	var replicas []ReplicaLiveness
	hung := hangingAddr(t)
	for i := range 100 {
		replicas = append(replicas, ReplicaLiveness{Identity: fmt.Sprintf("a-hung-%03d", i), Alive: true, MetricsAddr: hung})
	}
	replicas = append(replicas, ReplicaLiveness{Identity: "z-good", Alive: true, MetricsAddr: addr})
	h := runScraper(t, nil, 500*time.Millisecond, replicas...)
	got := collect(h, 6*time.Second)["rates"]
	// Its first turn may take a few rounds (a hundred replicas, listed
	// before it, with no past); from then on it is read every round.
	var traffic []bool
	for _, b := range got {
		var r Rates
		traffic = append(traffic, json.Unmarshal(b, &r) == nil && r.Nodes["a"].Messages > 0)
	}
	if len(traffic) < 8 || slices.Contains(traffic[len(traffic)-4:], false) {
		t.Errorf("rates events in 6 s with the good replica's traffic: %v, want the last 4 at least (%d reads)", traffic, good.reads.Load())
	}
}

// TestGarbageCountersSpoilNothing: a replica (or another program at its
// address) whose counters are not finite, or go below zero, must not keep
// the page from the other replicas' rates: rates with NaN in them cannot
// be sent at all.
func TestGarbageCountersSpoilNothing(t *testing.T) {
	_, addr := newFakeReplica(t)
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, "# TYPE tinymod_messages_total counter\n"+
			"tinymod_messages_total{node=\"b\",port=\"in\",result=\"ok\"} NaN\n"+
			"tinymod_messages_total{node=\"c\",port=\"in\",result=\"ok\"} +Inf\n"+
			"tinymod_messages_total{node=\"d\",port=\"in\",result=\"ok\"} -5\n")
	}))
	defer garbage.Close()
	h := runScraper(t, nil, 100*time.Millisecond,
		ReplicaLiveness{Identity: "good", Alive: true, MetricsAddr: addr},
		ReplicaLiveness{Identity: "garbage", Alive: true, MetricsAddr: strings.TrimPrefix(garbage.URL, "http://")})
	got := collect(h, 1500*time.Millisecond)["rates"]
	counted := 0
	for _, b := range got {
		var r Rates
		if json.Unmarshal(b, &r) == nil && r.Nodes["a"].Messages > 0 {
			counted++
		}
	}
	if counted < 5 {
		t.Errorf("%d rates events with the good replica's traffic in 1.5 s at 100 ms", counted)
	}
	for _, b := range got {
		var r Rates
		if json.Unmarshal(b, &r) == nil && (r.Nodes["b"].Messages != 0 || r.Nodes["c"].Messages != 0 || r.Nodes["d"].Messages != 0) {
			t.Errorf("garbage counted as traffic: %s", b)
			break
		}
	}
}
