package kv

import (
	"context"
	"errors"
	"maps"
	"strconv"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
)

// leader is the node as the leader writes it: forwarded changes land here.
type leader struct {
	mu     sync.Mutex
	meta   map[string]string
	rv     int
	writes int
}

func (l *leader) node() *v1alpha1.TinyNode {
	l.mu.Lock()
	defer l.mu.Unlock()
	return &v1alpha1.TinyNode{
		ObjectMeta: metav1.ObjectMeta{Name: "state", ResourceVersion: strconv.Itoa(l.rv + 1)},
		Status:     v1alpha1.TinyNodeStatus{Metadata: maps.Clone(l.meta)},
	}
}

// reader is one replica's instance with its own copy of the node, whose
// metadata writes are forwarded as the runtime forwards them
// (internal/scheduler: forwardMetadata): fn runs on the copy, and only what
// it changed there goes to the leader, which applies it to its node.
type reader struct {
	t    *testing.T
	c    *Component
	l    *leader
	copy *v1alpha1.TinyNode
	mu   sync.Mutex
	now  time.Time
	// fail makes the next writes fail with these errors, one each.
	fail []error
}

func newReader(t *testing.T, l *leader, s Settings) *reader {
	r := &reader{t: t, l: l, copy: l.node(), now: time.Unix(1000, 0)}
	r.c = (&Component{}).Instance().(*Component)
	r.c.now = func() time.Time { r.mu.Lock(); defer r.mu.Unlock(); return r.now }
	if res := r.c.Handle(context.Background(), r.output, v1alpha1.SettingsPort, s); res != nil {
		t.Fatal(res)
	}
	r.sync()
	return r
}

// sync delivers the leader's node to the reader, as its watch would.
func (r *reader) sync() {
	n := r.l.node()
	r.mu.Lock()
	r.copy = n
	r.mu.Unlock()
	r.c.Handle(context.Background(), r.output, v1alpha1.ReconcilePort, n.DeepCopy())
}

func (r *reader) later(d time.Duration) {
	r.mu.Lock()
	r.now = r.now.Add(d)
	r.mu.Unlock()
}

func (r *reader) output(_ context.Context, port string, data any) any {
	if port != v1alpha1.ReconcilePort {
		return nil
	}
	fn := data.(func(*v1alpha1.TinyNode) error)
	r.mu.Lock()
	copied := r.copy.DeepCopy()
	var fail error
	if len(r.fail) > 0 {
		fail, r.fail = r.fail[0], r.fail[1:]
	}
	r.mu.Unlock()
	if copied.Status.Metadata == nil {
		copied.Status.Metadata = map[string]string{}
	}
	before := maps.Clone(copied.Status.Metadata)
	if err := fn(copied); err != nil {
		return err
	}
	after := copied.Status.Metadata
	set, del := map[string]string{}, []string{}
	for k, v := range after {
		if old, ok := before[k]; !ok || old != v {
			set[k] = v
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			del = append(del, k)
		}
	}
	if len(set) == 0 && len(del) == 0 {
		return nil // nothing changed on the copy: nothing is sent
	}
	if fail != nil {
		return fail
	}
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	if r.l.meta == nil {
		r.l.meta = map[string]string{}
	}
	maps.Copy(r.l.meta, set)
	for _, k := range del {
		delete(r.l.meta, k)
	}
	r.l.rv++
	r.l.writes++
	return nil
}

func (r *reader) send(port string, msg any) any {
	return r.c.Handle(context.Background(), r.output, port, msg)
}

func (r *reader) get(key string) Got {
	r.t.Helper()
	g, ok := r.send(GetPort, Get{Key: key}).(Got)
	if !ok {
		r.t.Fatalf("get %s: not a Got", key)
	}
	return g
}

func (l *leader) value(key string) (any, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	raw, ok := l.meta[DefaultPrefix+key]
	if !ok {
		return nil, false
	}
	return decode(raw), true
}

func mustStore(t *testing.T, r *reader, key string, value any) {
	t.Helper()
	if res := r.send(StorePort, Store{Key: key, Value: value}); res != (Stored{Key: key, Stored: true}) {
		t.Fatalf("store %s=%v: %v", key, value, res)
	}
}

// TestReadYourWritesBeforeTheCopy: after a store is answered, a get on the
// replica that took it sees it, though its copy of the node does not show
// it yet; the overlay's entry ends when the copy shows the write.
func TestReadYourWritesBeforeTheCopy(t *testing.T) {
	l := &leader{}
	r := newReader(t, l, Settings{})
	mustStore(t, r, "a", 1)
	if v, _ := l.value("a"); v != 1.0 {
		t.Fatalf("the leader has a = %v", v)
	}
	if g := r.get("a"); g.Value != 1.0 {
		t.Errorf("get before the copy shows the store: %+v", g)
	}
	q, _ := r.send(QueryPort, Query{Condition: "$.value == 1"}).(Queried)
	if len(q.Entries) != 1 {
		t.Errorf("query before the copy shows the store: %+v", q)
	}
	r.sync()
	if len(r.c.overlay) != 0 {
		t.Errorf("overlay after the copy shows the write: %v", r.c.overlay)
	}
	if g := r.get("a"); g.Value != 1.0 {
		t.Errorf("get from the copy: %+v", g)
	}

	// A delete likewise.
	if res := r.send(DeletePort, Delete{Key: "a"}); res != (Deleted{Key: "a", Deleted: true}) {
		t.Fatalf("delete: %v", res)
	}
	if g := r.get("a"); g.Found {
		t.Errorf("get after the delete, before the copy shows it: %+v", g)
	}
	r.sync()
	if g := r.get("a"); g.Found || len(r.c.overlay) != 0 {
		t.Errorf("after the copy shows the delete: %+v, overlay %v", g, r.c.overlay)
	}
}

// TestStaleCopyDoesNotSwallowAStore: a reader sends only what its change
// altered on its copy. A store of the value its stale copy happens to show
// must still reach the leader, or a later store is silently lost.
func TestStaleCopyDoesNotSwallowAStore(t *testing.T) {
	l := &leader{}
	r := newReader(t, l, Settings{})
	mustStore(t, r, "k", 0)
	r.sync() // the copy shows k = 0
	mustStore(t, r, "k", 1)
	mustStore(t, r, "k", 0) // the copy still shows 0
	if v, _ := l.value("k"); v != 0.0 {
		t.Errorf("the leader has k = %v after stores of 0, 1, 0", v)
	}
	if g := r.get("k"); g.Value != 0.0 {
		t.Errorf("get on the writer: %+v", g)
	}
	r.sync()
	if g := r.get("k"); g.Value != 0.0 || len(r.c.overlay) != 0 {
		t.Errorf("after sync: %+v, overlay %v", g, r.c.overlay)
	}

	// Another replica's store that this one has not seen yet.
	other := newReader(t, l, Settings{})
	mustStore(t, other, "k", 5)
	mustStore(t, r, "k", 0) // r's copy shows 0
	if v, _ := l.value("k"); v != 0.0 {
		t.Errorf("the leader has k = %v after the later store of 0", v)
	}
}

// TestDeleteWaitsForItsOwnStore: a delete of a key this replica stored but
// its copy does not show yet waits for the copy, then removes the key at the
// leader; without the wait, nothing would be sent and the store would stay.
func TestDeleteWaitsForItsOwnStore(t *testing.T) {
	l := &leader{}
	r := newReader(t, l, Settings{})
	mustStore(t, r, "a", 1)
	done := make(chan any, 1)
	go func() { done <- r.send(DeletePort, Delete{Key: "a"}) }()
	select {
	case res := <-done:
		t.Fatalf("the delete answered %v before the copy showed the store", res)
	case <-time.After(100 * time.Millisecond):
	}
	r.sync()
	select {
	case res := <-done:
		if res != (Deleted{Key: "a", Deleted: true}) {
			t.Fatalf("delete: %v", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the delete still waits after the copy caught up")
	}
	if _, ok := l.value("a"); ok {
		t.Error("the leader still has a")
	}

	// A delete whose copy never catches up gives up with a transient error
	// (here, the sender's deadline).
	mustStore(t, r, "b", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res := r.c.Handle(ctx, r.output, DeletePort, Delete{Key: "b"})
	if err, _ := res.(error); !errors.Is(err, context.DeadlineExceeded) || module.IsPermanent(err) {
		t.Errorf("delete without catch-up: %v", res)
	}

	// A key nobody stored: nothing to write.
	writes := l.writes
	if res := r.send(DeletePort, Delete{Key: "never"}); res != (Deleted{Key: "never"}) || l.writes != writes {
		t.Errorf("delete of a missing key: %v, %d writes", res, l.writes-writes)
	}
}

// TestOverlayEndsAfterItsHold: when the copy never shows this replica's own
// write (another replica's write of the key came right after, and the copy
// went straight to it), the overlay gives way after OverlayHold.
func TestOverlayEndsAfterItsHold(t *testing.T) {
	l := &leader{}
	r := newReader(t, l, Settings{})
	other := newReader(t, l, Settings{})
	mustStore(t, r, "k", 1)
	mustStore(t, other, "k", 2)
	r.sync() // shows 2, never 1
	if g := r.get("k"); g.Value != 1.0 {
		t.Errorf("within the hold, the writer reads %+v, want its own 1", g)
	}
	r.later(OverlayHold + time.Second)
	if g := r.get("k"); g.Value != 2.0 {
		t.Errorf("after the hold: %+v, want 2", g)
	}
	r.sync()
	if len(r.c.overlay) != 0 {
		t.Errorf("overlay after the hold: %v", r.c.overlay)
	}
}

// TestBoundsCountAcknowledgedWrites: a reader's bound counts its own
// acknowledged writes that its copy does not show yet.
func TestBoundsCountAcknowledgedWrites(t *testing.T) {
	l := &leader{}
	r := newReader(t, l, Settings{MaxEntries: 2})
	mustStore(t, r, "a", 1)
	mustStore(t, r, "b", 1)
	res := r.send(StorePort, Store{Key: "c", Value: 1})
	if err, _ := res.(error); err == nil || !module.IsPermanent(err) {
		t.Errorf("a third store on a copy that shows none: %v", res)
	}
	if _, ok := l.value("c"); ok {
		t.Error("the refused store reached the leader")
	}
}

// TestOlderCopiesAreIgnored: a copy of the node older than the last one
// taken (the runtime delivers the node it holds on a leadership change, from
// a goroutine of its own) does not take the replica back in time.
func TestOlderCopiesAreIgnored(t *testing.T) {
	l := &leader{}
	r := newReader(t, l, Settings{})
	old := l.node()
	mustStore(t, r, "a", 1)
	r.sync()
	if len(r.c.overlay) != 0 {
		t.Fatalf("overlay after the copy shows the write: %v", r.c.overlay)
	}
	r.c.Handle(context.Background(), r.output, v1alpha1.ReconcilePort, old)
	if g := r.get("a"); g.Value != 1.0 {
		t.Errorf("after an older copy: %+v", g)
	}
}

// TestWritesTryAgainAfterTransientErrors: a write that fails for a reason
// that may pass (a write conflict the status writer gave up on) is tried
// again; a permanent failure is answered at once.
func TestWritesTryAgainAfterTransientErrors(t *testing.T) {
	l := &leader{}
	r := newReader(t, l, Settings{})
	conflict := errors.New("write status of node state: the object has been modified")
	r.fail = []error{conflict, conflict}
	mustStore(t, r, "a", 1)
	if v, _ := l.value("a"); v != 1.0 || l.writes != 1 {
		t.Errorf("after two conflicts: a = %v, %d writes", v, l.writes)
	}
	r.sync()
	r.fail = []error{conflict}
	if res := r.send(DeletePort, Delete{Key: "a"}); res != (Deleted{Key: "a", Deleted: true}) {
		t.Errorf("delete after a conflict: %v", res)
	}
	r.fail = []error{module.Permanent(errors.New("refused"))}
	start := time.Now()
	if res := r.send(StorePort, Store{Key: "b", Value: 1}); res == nil || !module.IsPermanent(res.(error)) {
		t.Errorf("store after a permanent failure: %v", res)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a permanent failure was tried again for %s", d)
	}
	if _, ok := l.value("b"); ok {
		t.Error("b was written")
	}
}
