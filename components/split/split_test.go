package split_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/components/split"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/module/moduletest"
)

func items(t *testing.T, got []any) []split.Item {
	t.Helper()
	out := make([]split.Item, len(got))
	for i, g := range got {
		it, ok := g.(split.Item)
		if !ok {
			t.Fatalf("sink got %T, want split.Item", g)
		}
		out[i] = it
	}
	return out
}

func TestSplitItems(t *testing.T) {
	f := moduletest.New(t, &split.Component{})
	f.Add("s", split.ComponentName, nil, map[string]string{"out": "sink.in"})
	res := f.Send("s.in", map[string]any{"items": []any{"a", map[string]any{"b": 1}, nil}})
	if !reflect.DeepEqual(res, []any{"ok", "ok", "ok"}) {
		t.Fatalf("result %#v, want what each element's send returned", res)
	}
	got := items(t, f.Sink.Got())
	want := []split.Item{
		{Item: "a", Index: 0, Count: 3, ParentID: "moduletest"},
		{Item: map[string]any{"b": 1.0}, Index: 1, Count: 3, ParentID: "moduletest"},
		{Item: nil, Index: 2, Count: 3, ParentID: "moduletest"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v\nwant %#v", got, want)
	}
	// A list itself splits too, with the default path $.
	f.Send("s.in", []any{1, 2})
	if got := items(t, f.Sink.Got()); len(got) != 5 || got[4].Item != 2.0 || got[4].Count != 2 {
		t.Errorf("a list: %#v", got[3:])
	}
	// An empty list sends nothing.
	if res := f.Send("s.in", []any{}); !reflect.DeepEqual(res, []any{}) || len(f.Sink.Got()) != 5 {
		t.Errorf("an empty list: %#v", res)
	}
}

func TestSplitPath(t *testing.T) {
	f := moduletest.New(t, &split.Component{})
	f.Add("s", split.ComponentName, map[string]any{"path": "$.order.lines"}, map[string]string{"out": "sink.in"})
	f.Send("s.in", map[string]any{"order": map[string]any{"lines": []any{"x", "y"}}})
	got := items(t, f.Sink.Got())
	if len(got) != 2 || got[0].Item != "x" || got[1].Item != "y" || got[1].Index != 1 {
		t.Errorf("got %#v", got)
	}
	// A JSONPath query is an expression too.
	f.Add("q", split.ComponentName, map[string]any{"path": "$.items[?(@.price > 10)].name"}, map[string]string{"out": "sink.in"})
	f.Send("q.in", map[string]any{"items": []any{map[string]any{"name": "a", "price": 5}, map[string]any{"name": "b", "price": 15}, map[string]any{"name": "c", "price": 25}}})
	if got := items(t, f.Sink.Got()); len(got) != 4 || got[2].Item != "b" || got[3].Item != "c" {
		t.Errorf("query: %#v", got[2:])
	}
}

// TestMessageIDs: each element carries an ID of its own, derived from the
// parent's, into its receivers' contexts.
func TestMessageIDs(t *testing.T) {
	rec := &recorder{}
	f := moduletest.New(t, &split.Component{}, rec)
	f.Add("r", "recorder", nil, nil)
	f.Add("s", split.ComponentName, nil, map[string]string{"out": "r.in"})
	f.Send("s.in", []any{"a", "b"})
	if got := rec.ids(); !reflect.DeepEqual(got, []string{"moduletest/0", "moduletest/1"}) {
		t.Errorf("receivers' message IDs %v", got)
	}
}

func TestErrorStopsTheSplit(t *testing.T) {
	rec := &recorder{failOn: "b"}
	f := moduletest.New(t, &split.Component{}, rec)
	f.Add("r", "recorder", nil, nil)
	f.Add("s", split.ComponentName, nil, map[string]string{"out": "r.in"})
	err, ok := f.Send("s.in", []any{"a", "b", "c"}).(error)
	if !ok || !strings.Contains(err.Error(), "element 1 of 3") || !strings.Contains(err.Error(), "refused b") {
		t.Fatalf("result %v", err)
	}
	if !module.IsPermanent(err) {
		t.Error("the receiver's permanent error lost its class")
	}
	if got := rec.items(); !reflect.DeepEqual(got, []any{"a", "b"}) {
		t.Errorf("received %v: the split went on after the error", got)
	}
	// A transient error stays transient.
	rec2 := &recorder{failOn: "x", transient: true}
	f2 := moduletest.New(t, &split.Component{}, rec2)
	f2.Add("r", "recorder", nil, nil)
	f2.Add("s", split.ComponentName, nil, map[string]string{"out": "r.in"})
	if err, ok := f2.Send("s.in", []any{"x"}).(error); !ok || module.IsPermanent(err) {
		t.Errorf("transient: %v", err)
	}
}

func TestNotAList(t *testing.T) {
	f := moduletest.New(t, &split.Component{})
	f.Add("s", split.ComponentName, nil, map[string]string{"out": "sink.in"})
	f.Add("p", split.ComponentName, map[string]any{"path": "$.a * 2"}, map[string]string{"out": "sink.in"})
	for _, tc := range []struct {
		to   string
		msg  any
		want string
	}{
		{"s.in", nil, "gave null, not a list"},
		{"s.in", "a string", `gave the string "a string", not a list`},
		{"s.in", 42, "gave a number"},
		{"s.in", true, "gave a boolean"},
		{"s.in", map[string]any{"items": "no"}, "an object without a list in items"},
		{"s.in", map[string]any{"other": []any{1}}, "an object without a list in items"},
		{"p.in", map[string]any{"a": "x"}, "path $.a * 2"},
	} {
		err, ok := f.Send(tc.to, tc.msg).(error)
		if !ok || !module.IsPermanent(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%#v: %v, want a permanent error with %q", tc.msg, err, tc.want)
		}
	}
	if n := len(f.Sink.Got()); n != 0 {
		t.Errorf("%d elements sent from what is not a list", n)
	}
}

func TestMaxItems(t *testing.T) {
	f := moduletest.New(t, &split.Component{})
	f.Add("s", split.ComponentName, map[string]any{"maxItems": 3}, nil)
	if err, ok := f.Send("s.in", []any{1, 2, 3, 4}).(error); !ok || !module.IsPermanent(err) || !strings.Contains(err.Error(), "4 elements, over maxItems (3)") {
		t.Errorf("over maxItems: %v", err)
	}
	if res := f.Send("s.in", []any{1, 2, 3}); !reflect.DeepEqual(res, []any{nil, nil, nil}) {
		t.Errorf("at maxItems, without edges: %#v", res)
	}
	// The default bound.
	f.Add("d", split.ComponentName, nil, nil)
	if err, ok := f.Send("d.in", make([]any, split.DefaultMaxItems+1)).(error); !ok || !strings.Contains(err.Error(), "over maxItems") {
		t.Errorf("over the default: %v", err)
	}
	for _, bad := range []map[string]any{{"path": "$.a >"}, {"maxItems": -1}} {
		if p := f.Problems("bad", split.ComponentName, bad); len(p) != 1 || p[0].Reason != moduletest.ReasonSettingsRejected && p[0].Reason != moduletest.ReasonInvalidSettings {
			t.Errorf("settings %v: %+v", bad, p)
		}
	}
}

func TestCancelStopsTheSplit(t *testing.T) {
	f := moduletest.New(t, &split.Component{})
	f.Sink.Block = true
	f.Add("s", split.ComponentName, nil, map[string]string{"out": "sink.in"})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err, ok := f.SendContext(ctx, "s.in", make([]any, 1000)).(error)
	if !ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a cancelled split: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s", took)
	}
	if n := len(f.Sink.Got()); n != 1 {
		t.Errorf("%d elements sent, want 1: the split stops with its context", n)
	}
}

func TestPorts(t *testing.T) {
	f := moduletest.New(t, &split.Component{})
	f.Add("s", split.ComponentName, nil, nil)
	for _, p := range f.Ports("s") {
		switch p.Name {
		case split.OutPort:
			if p.Position != module.Right || !strings.Contains(string(p.Schema.Raw), `"title":"Parent ID"`) {
				t.Errorf("out: %s %s", p.Position, p.Schema.Raw)
			}
		case split.InPort:
			if p.Position != module.Left {
				t.Errorf("in drawn %s", p.Position)
			}
		case v1alpha1.SettingsPort:
			if !strings.Contains(string(p.Schema.Raw), `"default":{"path":"$","maxItems":10000}`) {
				t.Errorf("settings %s", p.Schema.Raw)
			}
		}
	}
}

// recorder records what arrives on in with the message ID of its context,
// and refuses failOn.
type recorder struct {
	failOn    any
	transient bool
	mu        sync.Mutex
	got       []any
	idList    []string
}

func (r *recorder) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "recorder"} }
func (r *recorder) Instance() module.Component    { return r }
func (r *recorder) Ports() []module.Port {
	return []module.Port{{Name: "in", Configuration: split.Item{}}}
}
func (r *recorder) Handle(ctx context.Context, _ module.Handler, port string, msg any) any {
	if port != "in" {
		return nil
	}
	it := msg.(split.Item)
	r.mu.Lock()
	r.got = append(r.got, it.Item)
	r.idList = append(r.idList, module.MessageID(ctx))
	r.mu.Unlock()
	if r.failOn != nil && it.Item == r.failOn {
		err := errors.New("refused " + it.Item.(string))
		if r.transient {
			return err
		}
		return module.Permanent(err)
	}
	return nil
}

func (r *recorder) items() []any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]any(nil), r.got...)
}

func (r *recorder) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.idList...)
}
