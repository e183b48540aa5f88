package collect_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/components/collect"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/module/moduletest"
)

func batches(t *testing.T, got []any) []collect.Batch {
	t.Helper()
	out := make([]collect.Batch, len(got))
	for i, g := range got {
		b, ok := g.(collect.Batch)
		if !ok {
			t.Fatalf("sink got %T, want collect.Batch", g)
		}
		out[i] = b
	}
	return out
}

func TestCount(t *testing.T) {
	f := moduletest.New(t, &collect.Component{})
	f.Add("c", collect.ComponentName, map[string]any{"count": 3}, map[string]string{"out": "sink.in"})
	for i := range 2 {
		if res := f.Send("c.in", map[string]any{"n": i}); res != nil {
			t.Fatalf("a held message answered %v, want nil", res)
		}
	}
	if len(f.Sink.Got()) != 0 {
		t.Fatal("emitted before the count")
	}
	// The message that completes the batch carries it: its sender gets the
	// batch's result.
	if res := f.Send("c.in", "third"); res != "ok" {
		t.Fatalf("the completing message answered %v", res)
	}
	got := batches(t, f.Sink.Got())
	want := collect.Batch{Items: []any{map[string]any{"n": 0.0}, map[string]any{"n": 1.0}, "third"}, Count: 3, Reason: collect.ReasonCount}
	if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Errorf("got %#v\nwant %#v", got, want)
	}
	// The next batch starts empty.
	for range 3 {
		f.Send("c.in", 1)
	}
	if got := batches(t, f.Sink.Got()); len(got) != 2 || got[1].Count != 3 {
		t.Errorf("second batch: %#v", got)
	}
}

func TestWindow(t *testing.T) {
	f := moduletest.New(t, &collect.Component{})
	f.Add("c", collect.ComponentName, map[string]any{"window": "50ms", "count": 100}, map[string]string{"out": "sink.in"})
	start := time.Now()
	f.Send("c.in", "a")
	f.Send("c.in", "b")
	moduletest.Eventually(t, 5*time.Second, func() bool { return len(f.Sink.Got()) == 1 }, "a batch after the window")
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("emitted after %s, before the window", took)
	}
	got := batches(t, f.Sink.Got())
	if !reflect.DeepEqual(got[0], collect.Batch{Items: []any{"a", "b"}, Count: 2, Reason: collect.ReasonWindow}) {
		t.Errorf("got %#v", got[0])
	}
	// A count reached first wins, and its batch's window is off.
	f.Add("d", collect.ComponentName, map[string]any{"window": "50ms", "count": 2}, map[string]string{"out": "sink.in"})
	f.Send("d.in", 1)
	f.Send("d.in", 2)
	time.Sleep(120 * time.Millisecond)
	got = batches(t, f.Sink.Got())
	if len(got) != 2 || got[1].Reason != collect.ReasonCount {
		t.Errorf("count before window: %#v", got)
	}
}

func TestKey(t *testing.T) {
	f := moduletest.New(t, &collect.Component{})
	f.Add("c", collect.ComponentName, map[string]any{"key": "$.user", "count": 2}, map[string]string{"out": "sink.in"})
	f.Send("c.in", map[string]any{"user": "ann", "n": 1})
	f.Send("c.in", map[string]any{"user": "bob", "n": 2})
	f.Send("c.in", map[string]any{"user": "ann", "n": 3})
	got := batches(t, f.Sink.Got())
	if len(got) != 1 || got[0].Key != "ann" || got[0].Count != 2 || got[0].Reason != collect.ReasonCount {
		t.Fatalf("got %#v", got)
	}
	f.Send("c.in", map[string]any{"user": "bob", "n": 4})
	if got := batches(t, f.Sink.Got()); len(got) != 2 || got[1].Key != "bob" || got[1].Items[1].(map[string]any)["n"] != 4.0 {
		t.Errorf("bob's batch: %#v", got)
	}
	// Keys are JSON values: 1 and "1" differ; a missing key is null.
	f.Add("k", collect.ComponentName, map[string]any{"key": "$.k", "count": 2}, map[string]string{"out": "sink.in"})
	f.Send("k.in", map[string]any{"k": 1})
	f.Send("k.in", map[string]any{"k": "1"})
	f.Send("k.in", map[string]any{})
	if n := len(f.Sink.Got()); n != 2 {
		t.Errorf("1, \"1\" and null made a batch: %v", f.Sink.Got()[2:])
	}
}

// TestKeyRuns: with a key and neither count nor window, another key closes
// the batch.
func TestKeyRuns(t *testing.T) {
	f := moduletest.New(t, &collect.Component{})
	f.Add("c", collect.ComponentName, map[string]any{"key": "$.day"}, map[string]string{"out": "sink.in"})
	for _, day := range []string{"mon", "mon", "tue"} {
		f.Send("c.in", map[string]any{"day": day})
	}
	got := batches(t, f.Sink.Got())
	if len(got) != 1 || got[0].Key != "mon" || got[0].Count != 2 || got[0].Reason != collect.ReasonKey {
		t.Fatalf("got %#v", got)
	}
	f.Send("c.in", map[string]any{"day": "wed"})
	if got := batches(t, f.Sink.Got()); len(got) != 2 || got[1].Key != "tue" || got[1].Count != 1 {
		t.Errorf("got %#v", got)
	}
}

func TestMaxItems(t *testing.T) {
	f := moduletest.New(t, &collect.Component{})
	f.Add("c", collect.ComponentName, map[string]any{"count": 10, "maxItems": 2}, map[string]string{"out": "sink.in"})
	f.Send("c.in", 1)
	f.Send("c.in", 2)
	err, ok := f.Send("c.in", 3).(error)
	if !ok || !module.IsPermanent(err) || !strings.Contains(err.Error(), "holds 2 messages on this replica, its maxItems") {
		t.Errorf("over maxItems without a window: %v, want a permanent error", err)
	}
	// With a window what is held leaves in time: the refusal is transient.
	f.Add("w", collect.ComponentName, map[string]any{"window": "1h", "maxItems": 1}, map[string]string{"out": "sink.in"})
	f.Send("w.in", 1)
	if err, ok := f.Send("w.in", 2).(error); !ok || module.IsPermanent(err) {
		t.Errorf("over maxItems with a window: %v, want a transient error", err)
	}
	// The default bound.
	f.Add("d", collect.ComponentName, map[string]any{"count": collect.DefaultMaxItems + 5}, nil)
	for i := range collect.DefaultMaxItems {
		if res := f.Send("d.in", i); res != nil {
			t.Fatalf("message %d: %v", i, res)
		}
	}
	if err, ok := f.Send("d.in", "one more").(error); !ok || !strings.Contains(err.Error(), "maxItems") {
		t.Errorf("over the default bound: %v", err)
	}
}

func TestSettingsErrors(t *testing.T) {
	f := moduletest.New(t, &collect.Component{})
	for _, bad := range []map[string]any{
		{},
		{"window": "soon"},
		{"window": "-1s"},
		{"key": "$.a >"},
		{"count": -1},
		{"count": 1, "maxItems": -1},
	} {
		p := f.Problems("bad", collect.ComponentName, bad)
		if len(p) != 1 || p[0].Reason != moduletest.ReasonSettingsRejected && p[0].Reason != moduletest.ReasonInvalidSettings {
			t.Errorf("settings %v: %+v", bad, p)
		}
	}
	if p := f.Problems("none", collect.ComponentName, nil); len(p) != 1 || !strings.Contains(p[0].Message, "set count, window or key") {
		t.Errorf("no settings: %+v", p)
	}
}

// TestEachReplicaCollectsWhatItHandles: two replicas of one module, each
// running the node. Messages spread over them (as requests to an
// http-server or messages from another module do) are collected apart: 4
// messages with count 3 emit nothing, and a count is reached on one
// replica with that replica's own messages.
func TestEachReplicaCollectsWhatItHandles(t *testing.T) {
	leader := moduletest.New(t, &collect.Component{})
	reader := moduletest.New(t, &collect.Component{})
	reader.Leader.Stop()
	for _, r := range []*moduletest.Flow{leader, reader} {
		r.Add("c", collect.ComponentName, map[string]any{"count": 3}, map[string]string{"out": "sink.in"})
	}
	leader.Send("c.in", "l1")
	reader.Send("c.in", "r1")
	leader.Send("c.in", "l2")
	reader.Send("c.in", "r2")
	if n := len(leader.Sink.Got()) + len(reader.Sink.Got()); n != 0 {
		t.Fatalf("4 messages across the module with count 3: %d batches; each replica holds its own 2", n)
	}
	reader.Send("c.in", "r3")
	got := batches(t, reader.Sink.Got())
	if len(got) != 1 || !reflect.DeepEqual(got[0].Items, []any{"r1", "r2", "r3"}) {
		t.Errorf("the reader's batch: %#v", got)
	}
	if len(leader.Sink.Got()) != 0 {
		t.Error("the leader emitted with 2 messages")
	}
	leader.Send("c.in", "l3")
	if got := batches(t, leader.Sink.Got()); len(got) != 1 || !reflect.DeepEqual(got[0].Items, []any{"l1", "l2", "l3"}) {
		t.Errorf("the leader's batch: %#v", got)
	}
	if reader.Status.Writes() != 0 {
		t.Error("a reader wrote status")
	}
}

// TestDestroyDrops: what a node holds when it goes is dropped; its window
// never fires.
func TestDestroyDrops(t *testing.T) {
	f := moduletest.New(t, &collect.Component{})
	f.Add("c", collect.ComponentName, map[string]any{"window": "30ms"}, map[string]string{"out": "sink.in"})
	f.Send("c.in", "held")
	f.Remove("c")
	time.Sleep(100 * time.Millisecond)
	if got := f.Sink.Got(); len(got) != 0 {
		t.Errorf("a removed node emitted %v", got)
	}
}

// TestBatchOutlivesItsCompletingSender: a batch holds other senders'
// messages, so the sender of the last one giving up does not cancel its
// delivery.
func TestBatchOutlivesItsCompletingSender(t *testing.T) {
	g := &gate{release: make(chan struct{}), entered: make(chan struct{}), done: make(chan error, 1)}
	f := moduletest.New(t, &collect.Component{}, g)
	f.Add("g", "gate", nil, nil)
	f.Add("c", collect.ComponentName, map[string]any{"count": 2}, map[string]string{"out": "g.in"})
	f.Send("c.in", 1)
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan any, 1)
	go func() { res <- f.SendContext(ctx, "c.in", 2) }()
	<-g.entered
	cancel()
	time.Sleep(20 * time.Millisecond)
	close(g.release)
	if err := <-g.done; err != nil {
		t.Errorf("the batch's delivery ended with its completing sender: %v", err)
	}
	<-res
}

func TestOddMessages(t *testing.T) {
	f := moduletest.New(t, &collect.Component{})
	f.Add("c", collect.ComponentName, map[string]any{"count": 4}, map[string]string{"out": "sink.in"})
	for _, msg := range []any{nil, "s", []any{1}, strings.Repeat("x", 1<<20)} {
		if res := f.Send("c.in", msg); res != nil && res != "ok" {
			t.Errorf("%.20v: %v", msg, res)
		}
	}
	if got := batches(t, f.Sink.Got()); len(got) != 1 || got[0].Items[0] != nil || len(got[0].Items[3].(string)) != 1<<20 {
		t.Errorf("odd messages: %.200v", got)
	}
	// A key that cannot be read from a message fails that message.
	f.Add("k", collect.ComponentName, map[string]any{"key": "$.a.b", "count": 2}, nil)
	if err, ok := f.Send("k.in", "a string").(error); !ok || !module.IsPermanent(err) || !strings.Contains(err.Error(), "key $.a.b") {
		t.Errorf("a key of a string: %v", err)
	}
	// A cancelled message is not collected.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err, ok := f.SendContext(ctx, "c.in", "late").(error); !ok || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	for range 4 {
		f.Send("c.in", "next")
	}
	if got := batches(t, f.Sink.Got()); len(got) != 2 || !reflect.DeepEqual(got[1].Items, []any{"next", "next", "next", "next"}) {
		t.Errorf("a cancelled message was collected: %.200v", got)
	}
}

func TestPorts(t *testing.T) {
	f := moduletest.New(t, &collect.Component{})
	f.Add("c", collect.ComponentName, map[string]any{"count": 1}, nil)
	for _, p := range f.Ports("c") {
		switch p.Name {
		case collect.OutPort:
			if p.Position != module.Right || !strings.Contains(string(p.Schema.Raw), `"enum":["count","window","key"]`) {
				t.Errorf("out: %s %s", p.Position, p.Schema.Raw)
			}
		case collect.InPort:
			if p.Position != module.Left {
				t.Errorf("in drawn %s", p.Position)
			}
		case v1alpha1.SettingsPort:
			if !strings.Contains(string(p.Schema.Raw), `"title":"Window"`) {
				t.Errorf("settings %s", p.Schema.Raw)
			}
		}
	}
}

// gate holds a message until released and reports whether its context
// ended meanwhile.
type gate struct {
	once    sync.Once
	entered chan struct{}
	release chan struct{}
	done    chan error
}

func (g *gate) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "gate"} }
func (g *gate) Instance() module.Component    { return g }
func (g *gate) Ports() []module.Port          { return []module.Port{{Name: "in"}} }
func (g *gate) Handle(ctx context.Context, _ module.Handler, port string, _ any) any {
	if port != "in" {
		return nil
	}
	g.once.Do(func() { close(g.entered) })
	<-g.release
	g.done <- ctx.Err()
	return nil
}
