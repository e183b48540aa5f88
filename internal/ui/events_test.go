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
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/replica"
)

// fakeCache stands for the watches' cache: synced, empty, and each List
// may take a while or do something first.
type fakeCache struct {
	cache.Cache
	delay  time.Duration
	onList func(client.ObjectList)

	mu            sync.Mutex
	inList, maxIn int
}

func (f *fakeCache) WaitForCacheSync(context.Context) bool { return true }

func (f *fakeCache) List(ctx context.Context, list client.ObjectList, _ ...client.ListOption) error {
	f.mu.Lock()
	f.inList++
	f.maxIn = max(f.maxIn, f.inList)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inList--
		f.mu.Unlock()
	}()
	if f.onList != nil {
		f.onList(list)
	}
	select {
	case <-time.After(f.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// unitServer serves the page's API from a fake cache.
func unitServer(t *testing.T, fc *fakeCache) (*Server, string) {
	t.Helper()
	h := newHub()
	opts := Options{Namespace: "ns", Assets: testPage, Interval: time.Second}
	s := &Server{opts: opts, token: "tok", hub: h, w: &watcher{opts: opts, hub: h, cache: fc}, snapshots: make(chan struct{}, maxSnapshots)}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		s.hub.closeAll()
		srv.Close()
	})
	return s, srv.URL + "/"
}

// goroutinesIn counts goroutines with fn in their stacks.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<22)
	n := runtime.Stack(buf, true)
	count := 0
	for _, g := range strings.Split(string(buf[:n]), "\n\n") {
		if strings.Contains(g, fn) {
			count++
		}
	}
	return count
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("not within %v: %s", limit, what)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStalledTabIsLetGo: a tab that stops reading (a frozen browser, a
// dead network that has not reset the connection) is dropped: its
// handler ends, and what was queued for it is not kept.
func TestStalledTabIsLetGo(t *testing.T) {
	defer func(d time.Duration) { eventWriteTimeout = d }(eventWriteTimeout)
	eventWriteTimeout = time.Second
	s, url := unitServer(t, &fakeCache{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(strings.TrimSuffix(url, "/"), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	waitFor(t, 5*time.Second, "the tab subscribes", func() bool { return goroutinesIn("(*Server).events") == 1 })

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	blob := strings.Repeat("x", 256<<10)
	for i := range 400 { // 100 MiB for a tab that reads nothing
		s.hub.publish("node", map[string]string{"name": fmt.Sprint(i), "blob": blob})
	}
	waitFor(t, 5*time.Second, "the stalled tab's handler ends", func() bool { return goroutinesIn("(*Server).events") == 0 })
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 32<<20 {
		t.Errorf("the heap grew by %d MiB for one stalled tab", grown>>20)
	}
}

// TestSnapshotHasNoEventTwice: what the hub keeps for snapshots (debug
// messages, rates, leadership) and what it sends after a snapshot do not
// overlap: a debug message published while a snapshot is read shows once.
func TestSnapshotHasNoEventTwice(t *testing.T) {
	fc := &fakeCache{}
	s, url := unitServer(t, fc)
	var once sync.Once
	fc.onList = func(client.ObjectList) {
		once.Do(func() { s.hub.publish("debug", DebugMessage{Node: "d", Data: json.RawMessage(`"only once"`)}) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	events := openEvents(t, ctx, url)
	var snap Snapshot
	if err := json.Unmarshal(events.next(t, 5*time.Second, "snapshot", nil), &snap); err != nil {
		t.Fatal(err)
	}
	seen := len(snap.Debug)
	s.hub.publish("debug", DebugMessage{Node: "d", Data: json.RawMessage(`"marker"`)})
	for {
		var m DebugMessage
		if err := json.Unmarshal(events.next(t, 5*time.Second, "debug", nil), &m); err != nil {
			t.Fatal(err)
		}
		if string(m.Data) == `"marker"` {
			break
		}
		seen++
	}
	if seen != 1 {
		t.Errorf("a debug message published during a snapshot reached the page %d times", seen)
	}
}

// TestSnapshotsAreFew: a snapshot copies the namespace's objects; hundreds
// of tabs connecting at once (a restart of the server, a flapping
// network) build a few at a time, not all at once.
func TestSnapshotsAreFew(t *testing.T) {
	fc := &fakeCache{delay: 20 * time.Millisecond}
	_, url := unitServer(t, fc)
	var wg sync.WaitGroup
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(url + "api/state")
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("state: %s", resp.Status)
			}
		}()
	}
	wg.Wait()
	if fc.maxIn > maxSnapshots {
		t.Errorf("%d snapshots were read at once, want at most %d", fc.maxIn, maxSnapshots)
	}
}

// TestChangesGiveUpOnAHungAPIServer: an API server that does not answer
// (overloaded, a dead connection through a proxy) makes a change fail
// after a bound, with a timeout the page can show, not hang for ever.
func TestChangesGiveUpOnAHungAPIServer(t *testing.T) {
	defer func(d time.Duration) { changeTimeout = d }(changeTimeout)
	changeTimeout = time.Second
	hung := hangingAddr(t)
	c, err := client.New(&rest.Config{Host: "http://" + hung}, client.Options{Scheme: replica.Scheme(), Mapper: testMapper()})
	if err != nil {
		t.Fatal(err)
	}
	s, url := unitServer(t, &fakeCache{})
	s.c = c
	api := pageClient{t: t, url: url, token: s.token}
	for _, call := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/api/signals", map[string]any{"node": "a", "port": "in"}},
		{"PUT", "/api/nodes/a/settings", map[string]any{"configuration": 1}},
		{"POST", "/api/nodes", map[string]any{"module": "m", "component": "c"}},
		{"DELETE", "/api/nodes/a", nil},
	} {
		start := time.Now()
		done := make(chan struct{})
		var code int
		var body []byte
		go func() {
			defer close(done)
			code, body = api.do(call.method, call.path, call.body)
		}()
		select {
		case <-done:
			if code != http.StatusGatewayTimeout {
				t.Errorf("%s %s with a hung API server: %d %s", call.method, call.path, code, body)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s %s with a hung API server: no answer after %v", call.method, call.path, time.Since(start).Round(time.Second))
		}
	}
}

// testMapper knows the kinds the page changes, so that a client needs no
// discovery.
func testMapper() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper(nil)
	for _, kind := range []string{"TinyNode", "TinySignal"} {
		m.Add(v1alpha1.GroupVersion.WithKind(kind), meta.RESTScopeNamespace)
	}
	return m
}

// TestTabsThatGoLeaveNothing: tabs that close, and one that reconnects in
// a loop, leave no handler and no subscription behind.
func TestTabsThatGoLeaveNothing(t *testing.T) {
	s, url := unitServer(t, &fakeCache{})
	var cancels []context.CancelFunc
	for range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		events := openEvents(t, ctx, url)
		events.next(t, 5*time.Second, "snapshot", nil)
	}
	for range 50 { // reconnecting in a loop
		ctx, cancel := context.WithCancel(context.Background())
		openEvents(t, ctx, url).next(t, 5*time.Second, "snapshot", nil)
		cancel()
	}
	for _, cancel := range cancels {
		cancel()
	}
	waitFor(t, 5*time.Second, "every handler ends", func() bool { return goroutinesIn("(*Server).events") == 0 })
	s.hub.mu.Lock()
	left := len(s.hub.subs)
	s.hub.mu.Unlock()
	if left != 0 {
		t.Errorf("%d subscriptions left", left)
	}
}
