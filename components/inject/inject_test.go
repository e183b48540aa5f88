package inject_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/components/inject"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/module/moduletest"
)

func TestSendOnLeaderOnly(t *testing.T) {
	f := moduletest.New(t, &inject.Component{})
	value := map[string]any{"hello": "world", "n": 1, "list": []any{true, nil}}
	f.Add("i", inject.ComponentName, map[string]any{"value": value}, map[string]string{"out": "sink.in"})

	f.Leader.Stop()
	if res := f.Send("i._control", map[string]any{"send": true}); res != nil {
		t.Errorf("a reader answered %v", res)
	}
	if len(f.Sink.Got()) != 0 || f.Status.Writes() != 0 {
		t.Fatal("a reader sent or wrote status")
	}

	f.Leader.Start()
	if res := f.Send("i._control", map[string]any{"send": true}); res != "ok" {
		t.Fatalf("a press answered %v, want the flow's result", res)
	}
	want := map[string]any{"hello": "world", "n": 1.0, "list": []any{true, nil}}
	if got := f.Sink.Got(); len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Errorf("sink got %#v", got)
	}
	// One press, one message; a control without send does nothing.
	f.Send("i._control", map[string]any{})
	f.Send("i._control", nil)
	if n := len(f.Sink.Got()); n != 1 {
		t.Errorf("%d messages after one press", n)
	}
}

func TestTemplateAtThePress(t *testing.T) {
	f := moduletest.New(t, &inject.Component{})
	f.Add("i", inject.ComponentName, map[string]any{"value": map[string]any{
		"at":   "{{now()}}",
		"day":  "day {{now().Format('2006-01-02')}}",
		"unix": "{{now().Unix()}}",
		"note": "plain",
	}}, map[string]string{"out": "sink.in"})
	before := time.Now().Add(-time.Second)
	f.Send("i._control", map[string]any{"send": true})
	time.Sleep(20 * time.Millisecond)
	f.Send("i._control", map[string]any{"send": true})
	got := f.Sink.Got()
	if len(got) != 2 {
		t.Fatalf("sink got %v", got)
	}
	first, second := got[0].(map[string]any), got[1].(map[string]any)
	at, err := time.Parse(time.RFC3339Nano, first["at"].(string))
	if err != nil || at.Before(before) {
		t.Errorf("at %v: %v", first["at"], err)
	}
	if first["at"] == second["at"] {
		t.Error("the value was evaluated once, not at each press")
	}
	if first["day"] != "day "+at.Format("2006-01-02") || first["note"] != "plain" {
		t.Errorf("day %v note %v", first["day"], first["note"])
	}
	if u, ok := first["unix"].(float64); !ok || int64(u) < before.Unix() {
		t.Errorf("unix %v", first["unix"])
	}
}

func TestScalarsAndNull(t *testing.T) {
	f := moduletest.New(t, &inject.Component{})
	f.Add("s", inject.ComponentName, map[string]any{"value": "just text"}, map[string]string{"out": "sink.in"})
	f.Add("n", inject.ComponentName, nil, map[string]string{"out": "sink.in"})
	f.Send("s._control", map[string]any{"send": true})
	f.Send("n._control", map[string]any{"send": true})
	if got := f.Sink.Got(); len(got) != 2 || got[0] != "just text" || got[1] != nil {
		t.Errorf("got %#v", got)
	}
}

func TestErrors(t *testing.T) {
	f := moduletest.New(t, &inject.Component{})
	for _, bad := range []any{"{{now(}}", map[string]any{"a": "{{ 1 +"}} {
		p := f.Problems("bad", inject.ComponentName, map[string]any{"value": bad})
		if len(p) != 1 || p[0].Reason != moduletest.ReasonSettingsRejected || !strings.Contains(p[0].Message, "value") {
			t.Errorf("%v: %+v", bad, p)
		}
	}
	// $ is null at a press: arithmetic on it fails the press, for good.
	f.Add("i", inject.ComponentName, map[string]any{"value": "{{$.n * 2}}"}, map[string]string{"out": "sink.in"})
	err, ok := f.Send("i._control", map[string]any{"send": true}).(error)
	if !ok || !module.IsPermanent(err) || !strings.Contains(err.Error(), "$.n * 2") {
		t.Errorf("a failing value: %v", err)
	}
	if len(f.Sink.Got()) != 0 {
		t.Error("a failed value was sent")
	}
	// A control of the wrong shape is refused by the runtime, not a panic.
	if err, ok := f.Send("i._control", "send").(error); !ok || strings.Contains(err.Error(), "panic") {
		t.Errorf("a string control: %v", err)
	}
}

func TestPorts(t *testing.T) {
	f := moduletest.New(t, &inject.Component{})
	f.Add("i", inject.ComponentName, nil, nil)
	for _, p := range f.Ports("i") {
		switch p.Name {
		case v1alpha1.ControlPort:
			if !strings.Contains(string(p.Schema.Raw), `"send":{"type":"boolean","title":"Send"`) {
				t.Errorf("control %s", p.Schema.Raw)
			}
		case inject.OutPort:
			if p.Position != module.Right {
				t.Errorf("out drawn %s", p.Position)
			}
		case v1alpha1.SettingsPort:
			if !strings.Contains(string(p.Schema.Raw), `"title":"Value"`) {
				t.Errorf("settings %s", p.Schema.Raw)
			}
		}
	}
}
