package kv_test

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinymod/tinymod/components/kv"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/module/moduletest"
)

// answer fails the test unless res is a T, and returns it.
func answer[T any](t *testing.T, res any) T {
	t.Helper()
	v, ok := res.(T)
	if !ok {
		var zero T
		t.Fatalf("answer %T %v, want a %T", res, res, zero)
	}
	return v
}

// failure fails the test unless res is an error containing want, permanent
// as said, and returns it.
func failure(t *testing.T, res any, permanent bool, want string) error {
	t.Helper()
	err, ok := res.(error)
	if !ok || err == nil {
		t.Fatalf("answer %T %v, want an error with %q", res, res, want)
	}
	if module.IsPermanent(err) != permanent || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q (permanent %v), want one with %q (permanent %v)", err, module.IsPermanent(err), want, permanent)
	}
	return err
}

func keys(q kv.Queried) []string {
	out := []string{}
	for _, e := range q.Entries {
		out = append(out, e.Key)
	}
	return out
}

// TestStoreGetDeleteQuery runs each operation on the leader and checks its
// answer, the node's status metadata and what reads send on out.
func TestStoreGetDeleteQuery(t *testing.T) {
	f := moduletest.New(t, &kv.Component{})
	f.Add("state", kv.ComponentName, nil, map[string]string{kv.OutPort: "sink.in"})

	for _, s := range []kv.Store{
		{Key: "apple", Value: map[string]any{"n": 1}},
		{Key: "avocado", Value: map[string]any{"n": 5, "tags": []string{"green"}}},
		{Key: "banana", Value: map[string]any{"n": 9}},
		{Key: "note", Value: "a string"},
		{Key: "nothing", Value: nil},
	} {
		if got := answer[kv.Stored](t, f.Send("state.store", s)); got != (kv.Stored{Key: s.Key, Stored: true}) {
			t.Fatalf("store %s: %+v", s.Key, got)
		}
	}
	if got := f.Status.Metadata("state", "kv.avocado"); got != `{"n":5,"tags":["green"]}` {
		t.Errorf("metadata kv.avocado = %q", got)
	}
	if got := f.Status.Metadata("state", "kv.nothing"); got != `null` {
		t.Errorf("metadata kv.nothing = %q", got)
	}

	got := answer[kv.Got](t, f.Send("state.get", kv.Get{Key: "avocado"}))
	if want := (kv.Got{Key: "avocado", Value: map[string]any{"n": 5.0, "tags": []any{"green"}}, Found: true}); !reflect.DeepEqual(got, want) {
		t.Errorf("get avocado: %+v, want %+v", got, want)
	}
	if got := answer[kv.Got](t, f.Send("state.get", kv.Get{Key: "nothing"})); got != (kv.Got{Key: "nothing", Found: true}) {
		t.Errorf("get of a stored null: %+v", got)
	}
	if got := answer[kv.Got](t, f.Send("state.get", kv.Get{Key: "cherry"})); got != (kv.Got{Key: "cherry"}) {
		t.Errorf("get of a missing key: %+v", got)
	}

	q := answer[kv.Queried](t, f.Send("state.query", kv.Query{Condition: "$.value.n > 3"}))
	if k := keys(q); !reflect.DeepEqual(k, []string{"avocado", "banana"}) {
		t.Errorf("query n > 3: %v", k)
	}
	// note (a string) and nothing (null) have no n to compare.
	if q.Skipped != 2 || !strings.Contains(q.SkipError, "note") && !strings.Contains(q.SkipError, "nothing") {
		t.Errorf("query n > 3 skipped %d (%s), want note and nothing", q.Skipped, q.SkipError)
	}
	q = answer[kv.Queried](t, f.Send("state.query", kv.Query{Condition: "$.key startsWith 'a'"}))
	if k := keys(q); !reflect.DeepEqual(k, []string{"apple", "avocado"}) || q.Skipped != 0 {
		t.Errorf("query startsWith a: %v, skipped %d", k, q.Skipped)
	}
	if q.Entries[0].Value.(map[string]any)["n"] != 1.0 {
		t.Errorf("query value of apple: %v", q.Entries[0].Value)
	}
	q = answer[kv.Queried](t, f.Send("state.query", kv.Query{Condition: "$.key == 'none'"}))
	if q.Entries == nil || len(q.Entries) != 0 {
		t.Errorf("a query matching nothing: %#v, want an empty list", q.Entries)
	}
	failure(t, f.Send("state.query", kv.Query{Condition: "$.value.n >"}), true, "query condition")
	failure(t, f.Send("state.query", kv.Query{Condition: "$.value"}), true, "not a boolean")

	// Reads also go out on out.
	sunk := f.Sink.Got()
	if len(sunk) != 6 {
		t.Fatalf("out sent %d messages, want 6 (3 gets, 3 queries): %v", len(sunk), sunk)
	}
	if o := answer[kv.Out](t, sunk[0]); o.Get == nil || o.Get.Key != "avocado" || o.Query != nil {
		t.Errorf("out of get: %+v", o)
	}
	if o := answer[kv.Out](t, sunk[3]); o.Query == nil || len(o.Query.Entries) != 2 || o.Get != nil {
		t.Errorf("out of query: %+v", o)
	}

	if got := answer[kv.Deleted](t, f.Send("state.delete", kv.Delete{Key: "apple"})); got != (kv.Deleted{Key: "apple", Deleted: true}) {
		t.Errorf("delete apple: %+v", got)
	}
	if got := answer[kv.Got](t, f.Send("state.get", kv.Get{Key: "apple"})); got.Found {
		t.Errorf("get after delete: %+v", got)
	}
	if got := answer[kv.Deleted](t, f.Send("state.delete", kv.Delete{Key: "apple"})); got != (kv.Deleted{Key: "apple"}) {
		t.Errorf("delete again: %+v", got)
	}
	if _, ok := f.Status.Node("state").Metadata["kv.apple"]; ok {
		t.Error("kv.apple still in metadata")
	}

	failure(t, f.Send("state.store", kv.Store{Key: "", Value: 1}), true, "key is empty")
}

// TestGetOfEmptyKeyIsNotFound: reads take any key; only writes check them.
func TestGetOfEmptyKeyIsNotFound(t *testing.T) {
	f := moduletest.New(t, &kv.Component{})
	f.Add("state", kv.ComponentName, nil, nil)
	if got := answer[kv.Got](t, f.Send("state.get", kv.Get{})); got.Found {
		t.Errorf("get of the empty key: %+v", got)
	}
}

// TestBounds: a store past maxEntries or maxBytes fails for good, naming
// the bound, and leaves every stored entry as it was; replacing an entry
// with one no larger is always allowed.
func TestBounds(t *testing.T) {
	f := moduletest.New(t, &kv.Component{})
	f.Add("small", kv.ComponentName, kv.Settings{MaxEntries: 2}, nil)
	for _, k := range []string{"a", "b"} {
		answer[kv.Stored](t, f.Send("small.store", kv.Store{Key: k, Value: k}))
	}
	writes := f.Status.Writes()
	failure(t, f.Send("small.store", kv.Store{Key: "c", Value: "c"}), true, "over maxEntries 2")
	if n := f.Status.Writes(); n != writes {
		t.Errorf("a refused store wrote status (%d writes, had %d)", n, writes)
	}
	answer[kv.Stored](t, f.Send("small.store", kv.Store{Key: "a", Value: "A"})) // replaces
	for k, want := range map[string]any{"a": "A", "b": "b"} {
		if got := answer[kv.Got](t, f.Send("small.get", kv.Get{Key: k})); got.Value != want {
			t.Errorf("after the refused store, %s = %+v", k, got)
		}
	}
	answer[kv.Deleted](t, f.Send("small.delete", kv.Delete{Key: "b"}))
	answer[kv.Stored](t, f.Send("small.store", kv.Store{Key: "c", Value: "c"}))

	// maxBytes counts each entry's metadata key and value: "kv.a" + `"A"` is 7.
	f.Add("tiny", kv.ComponentName, kv.Settings{MaxBytes: 20}, nil)
	answer[kv.Stored](t, f.Send("tiny.store", kv.Store{Key: "a", Value: "A"}))
	answer[kv.Stored](t, f.Send("tiny.store", kv.Store{Key: "b", Value: "0123456"})) // 4 + 9: 20 in all
	err := failure(t, f.Send("tiny.store", kv.Store{Key: "c", Value: 1}), true, "over maxBytes 20")
	t.Logf("refused: %v", err)
	failure(t, f.Send("tiny.store", kv.Store{Key: "b", Value: "01234567"}), true, "over maxBytes 20") // grows b
	answer[kv.Stored](t, f.Send("tiny.store", kv.Store{Key: "b", Value: "x"}))                        // shrinks b
	if got := answer[kv.Got](t, f.Send("tiny.get", kv.Get{Key: "b"})); got.Value != "x" {
		t.Errorf("b = %+v", got)
	}

	// One value larger than the bound on its own.
	f.Add("one", kv.ComponentName, kv.Settings{MaxBytes: 1000}, nil)
	failure(t, f.Send("one.store", kv.Store{Key: "big", Value: strings.Repeat("x", 1000)}), true, "over maxBytes 1000")

	// Bounds the settings refuse.
	if p := f.Problems("huge", kv.ComponentName, kv.Settings{MaxBytes: 2 << 20}); len(p) == 0 {
		t.Error("maxBytes of 2 MiB accepted")
	}
	if p := f.Problems("negative", kv.ComponentName, map[string]any{"maxEntries": -1}); len(p) == 0 || p[0].Reason != moduletest.ReasonInvalidSettings {
		t.Errorf("maxEntries -1: %+v", p)
	}
}

// TestPrefix: entries live under the prefix; other metadata is not an entry.
func TestPrefix(t *testing.T) {
	f := moduletest.New(t, &kv.Component{})
	f.Add("p", kv.ComponentName, kv.Settings{Prefix: "cart/"}, nil)
	answer[kv.Stored](t, f.Send("p.store", kv.Store{Key: "item", Value: 3}))
	if got := f.Status.Metadata("p", "cart/item"); got != "3" {
		t.Errorf("metadata cart/item = %q", got)
	}
	q := answer[kv.Queried](t, f.Send("p.query", kv.Query{Condition: "true"}))
	if k := keys(q); !reflect.DeepEqual(k, []string{"item"}) {
		t.Errorf("query: %v", k)
	}
}

// TestStoringTheSameValueWritesAgain: every store writes, so a reader whose
// copy still shows the value never takes the store for a change of nothing.
func TestStoringTheSameValueWritesAgain(t *testing.T) {
	f := moduletest.New(t, &kv.Component{})
	f.Add("s", kv.ComponentName, nil, nil)
	answer[kv.Stored](t, f.Send("s.store", kv.Store{Key: "k", Value: 1}))
	n := f.Status.Writes()
	answer[kv.Stored](t, f.Send("s.store", kv.Store{Key: "k", Value: 1}))
	if f.Status.Writes() != n+1 {
		t.Errorf("the second store of the same value wrote %d times", f.Status.Writes()-n)
	}
	if got := answer[kv.Got](t, f.Send("s.get", kv.Get{Key: "k"})); got.Value != 1.0 {
		t.Errorf("k = %+v", got)
	}
}

// TestStateSurvivesFailoverAndRestart: a new term and a new instance (a
// restarted replica) read what was written from the node's metadata.
func TestStateSurvivesFailoverAndRestart(t *testing.T) {
	f := moduletest.New(t, &kv.Component{})
	f.Add("s", kv.ComponentName, nil, nil)
	answer[kv.Stored](t, f.Send("s.store", kv.Store{Key: "k", Value: "v"}))
	f.Leader.Stop()
	f.Leader.Start()
	if got := answer[kv.Got](t, f.Send("s.get", kv.Get{Key: "k"})); got.Value != "v" {
		t.Errorf("after a new term: %+v", got)
	}
	f.Remove("s")
	f.Add("s", kv.ComponentName, nil, nil)
	if got := answer[kv.Got](t, f.Send("s.get", kv.Get{Key: "k"})); got.Value != "v" {
		t.Errorf("after a restart: %+v", got)
	}
}

// TestReaderAnswersReadsAndForwardsWrites: a reader answers reads from its
// copy. Its writes go to the leader over the transport, which moduletest
// does not have: there the write fails for good, saying so, and nothing is
// written (the forwarding runs in test/e2e/kv).
func TestReaderAnswersReadsAndForwardsWrites(t *testing.T) {
	f := moduletest.New(t, &kv.Component{})
	f.Add("s", kv.ComponentName, nil, nil)
	answer[kv.Stored](t, f.Send("s.store", kv.Store{Key: "k", Value: "v"}))
	moduletest.Eventually(t, 5*time.Second, func() bool {
		return f.Status.Metadata("s", "kv.k") != ""
	}, "the write")
	f.Leader.Stop()
	// A replica started while another leads: its copy comes on _reconcile.
	f.Remove("s")
	f.Add("s", kv.ComponentName, nil, nil)
	if got := answer[kv.Got](t, f.Send("s.get", kv.Get{Key: "k"})); got.Value != "v" {
		t.Errorf("the reader reads %+v", got)
	}
	if q := answer[kv.Queried](t, f.Send("s.query", kv.Query{Condition: "$.value == 'v'"})); len(q.Entries) != 1 {
		t.Errorf("the reader's query: %+v", q)
	}
	writes := f.Status.Writes()
	failure(t, f.Send("s.store", kv.Store{Key: "k2", Value: 1}), true, "transport to the leader")
	failure(t, f.Send("s.delete", kv.Delete{Key: "k"}), true, "transport to the leader")
	if f.Status.Writes() != writes {
		t.Error("a reader wrote status")
	}
	if got := answer[kv.Got](t, f.Send("s.get", kv.Get{Key: "k2"})); got.Found {
		t.Errorf("a failed store is read: %+v", got)
	}
	if got := answer[kv.Got](t, f.Send("s.get", kv.Get{Key: "k"})); !got.Found {
		t.Errorf("a failed delete removed k: %+v", got)
	}
}

// TestConcurrentStores: stores of many keys at once on the leader all land
// and are all read back.
func TestConcurrentStores(t *testing.T) {
	f := moduletest.New(t, &kv.Component{})
	f.Add("s", kv.ComponentName, nil, nil)
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan any, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res := f.Send("s.store", kv.Store{Key: fmt.Sprintf("k%03d", i), Value: i}); !reflect.DeepEqual(res, kv.Stored{Key: fmt.Sprintf("k%03d", i), Stored: true}) {
				errs <- res
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("store: %v", e)
	}
	for i := range n {
		if got := answer[kv.Got](t, f.Send("s.get", kv.Get{Key: fmt.Sprintf("k%03d", i)})); got.Value != float64(i) {
			t.Errorf("k%03d = %+v", i, got)
		}
	}
	if q := answer[kv.Queried](t, f.Send("s.query", kv.Query{Condition: "$.value >= 50"})); len(q.Entries) != n/2 {
		t.Errorf("query value >= 50: %d entries", len(q.Entries))
	}
}

// TestPorts: the ports and their schemas are published.
func TestPorts(t *testing.T) {
	f := moduletest.New(t, &kv.Component{})
	f.Add("s", kv.ComponentName, nil, nil)
	names := map[string]bool{}
	for _, p := range f.Ports("s") {
		names[p.Name] = true
	}
	for _, want := range []string{"_settings", kv.StorePort, kv.GetPort, kv.DeletePort, kv.QueryPort, kv.OutPort} {
		if !names[want] {
			t.Errorf("no port %s among %v", want, names)
		}
	}
}
