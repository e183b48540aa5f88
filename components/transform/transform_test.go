package transform_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/components/transform"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/module/moduletest"
)

func TestTransform(t *testing.T) {
	f := moduletest.New(t, &transform.Component{})
	f.Add("t", transform.ComponentName, map[string]any{"mapping": map[string]any{
		"who":   "{{$.user.name}}",
		"twice": "{{$.n * 2}}",
		"line":  "hello {{$.user.name}}, {{$.n}} new",
		"big":   "{{$.n > 10}}",
		"tags":  "{{length($.tags)}}",
		"fixed": []any{1, "a", nil},
		"anon":  "{{$.missing ?? 'anonymous'}}",
	}}, map[string]string{"out": "sink.in"})
	if res := f.Send("t.in", map[string]any{"user": map[string]any{"name": "ann"}, "n": 21, "tags": []string{"a", "b"}}); res != "ok" {
		t.Fatalf("transform: %v", res)
	}
	want := map[string]any{"who": "ann", "twice": 42.0, "line": "hello ann, 21 new", "big": true, "tags": 2.0, "fixed": []any{1.0, "a", nil}, "anon": "anonymous"}
	if got := f.Sink.Got(); len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Errorf("sink got %#v\nwant %#v", got, want)
	}
}

func TestDefaultPassesThrough(t *testing.T) {
	f := moduletest.New(t, &transform.Component{})
	f.Add("t", transform.ComponentName, nil, map[string]string{"out": "sink.in"})
	f.Add("u", transform.ComponentName, map[string]any{"mapping": nil}, map[string]string{"out": "sink.in"})
	f.Send("t.in", map[string]any{"a": 1})
	f.Send("u.in", []any{"x"})
	got := f.Sink.Got()
	if len(got) != 2 || !reflect.DeepEqual(got[0], map[string]any{"a": 1.0}) || !reflect.DeepEqual(got[1], []any{"x"}) {
		t.Errorf("pass-through gave %#v", got)
	}
}

// TestScalarTemplate: a mapping may be any JSON value, a lone expression too.
func TestScalarTemplate(t *testing.T) {
	f := moduletest.New(t, &transform.Component{})
	f.Add("t", transform.ComponentName, map[string]any{"mapping": "{{upper($.name)}}"}, map[string]string{"out": "sink.in"})
	f.Add("c", transform.ComponentName, map[string]any{"mapping": 7}, map[string]string{"out": "sink.in"})
	f.Send("t.in", map[string]any{"name": "ann"})
	f.Send("c.in", "anything")
	if got := f.Sink.Got(); len(got) != 2 || got[0] != "ANN" || got[1] != 7.0 {
		t.Errorf("got %#v", got)
	}
}

func TestInvalidMappingIsASettingsError(t *testing.T) {
	f := moduletest.New(t, &transform.Component{})
	for _, bad := range []any{
		map[string]any{"a": "{{$.n >}}"},
		"{{ $.x",
		[]any{"ok", "{{1 +}}"},
	} {
		p := f.Problems("bad", transform.ComponentName, map[string]any{"mapping": bad})
		if len(p) != 1 || p[0].Reason != moduletest.ReasonSettingsRejected || !strings.Contains(p[0].Message, "mapping") {
			t.Errorf("%v: problems %+v", bad, p)
		}
	}
}

func TestRuntimeErrorsFailTheMessage(t *testing.T) {
	f := moduletest.New(t, &transform.Component{})
	f.Add("t", transform.ComponentName, map[string]any{"mapping": map[string]any{"n": "{{$.s * 2}}"}}, map[string]string{"out": "sink.in"})
	err, ok := f.Send("t.in", map[string]any{"s": "x"}).(error)
	if !ok || !module.IsPermanent(err) || !strings.Contains(err.Error(), "$.s * 2") {
		t.Errorf("a failing expression: %v, want a permanent error naming it", err)
	}
	if len(f.Sink.Got()) != 0 {
		t.Error("a failed message went on")
	}
}

func TestOddMessages(t *testing.T) {
	f := moduletest.New(t, &transform.Component{})
	f.Add("t", transform.ComponentName, map[string]any{"mapping": map[string]any{"a": "{{$.a.b.c}}", "all": "{{$}}"}}, map[string]string{"out": "sink.in"})
	for _, msg := range []any{nil, map[string]any{}, map[string]any{"a": nil}} {
		if res := f.Send("t.in", msg); res != "ok" {
			t.Errorf("%#v: %v", msg, res)
		}
	}
	// Reading a member of a string or a number is the mapping's error, not
	// a panic, and the same for every send.
	for _, msg := range []any{"str", 3, []any{1}, map[string]any{"a": "not an object"}} {
		err, ok := f.Send("t.in", msg).(error)
		if !ok || !module.IsPermanent(err) || !strings.Contains(err.Error(), "$.a.b.c") || strings.Contains(err.Error(), "panic") {
			t.Errorf("%#v: %v", msg, err)
		}
	}
	// A big message reads like a small one.
	big := make([]any, 20000)
	for i := range big {
		big[i] = map[string]any{"i": i}
	}
	f.Add("n", transform.ComponentName, map[string]any{"mapping": "{{length($.items)}}"}, map[string]string{"out": "sink.in"})
	if res := f.Send("n.in", map[string]any{"items": big}); res != "ok" {
		t.Fatalf("a big message: %v", res)
	}
	got := f.Sink.Got()
	if got[len(got)-1] != 20000.0 {
		t.Errorf("length %v", got[len(got)-1])
	}
	// A cancelled message is not sent on.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err, ok := f.SendContext(ctx, "t.in", map[string]any{}).(error); !ok || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestPorts(t *testing.T) {
	f := moduletest.New(t, &transform.Component{})
	f.Add("t", transform.ComponentName, nil, nil)
	pos := map[string]module.Position{}
	for _, p := range f.Ports("t") {
		pos[p.Name] = p.Position
		if p.Name == v1alpha1.SettingsPort && !strings.Contains(string(p.Schema.Raw), `"title":"Mapping"`) {
			t.Errorf("settings schema %s", p.Schema.Raw)
		}
	}
	if pos[transform.InPort] != module.Left || pos[transform.OutPort] != module.Right {
		t.Errorf("positions %v", pos)
	}
}
