package module

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestTemplate(t *testing.T) {
	tpl, err := CompileTemplate([]byte(`{"who": "{{$.user}}", "n": "{{$.n * 2}}", "line": "hi {{$.user}}", "fixed": [1, "a"], "list": ["{{$.n}}", 3]}`))
	if err != nil {
		t.Fatal(err)
	}
	if !tpl.HasExpressions() {
		t.Error("HasExpressions false for a template with expressions")
	}
	type msg struct {
		User string `json:"user"`
		N    int    `json:"n"`
	}
	// A Go value, its JSON form and raw JSON all read the same.
	for _, in := range []any{msg{User: "ann", N: 3}, map[string]any{"user": "ann", "n": 3.0}, json.RawMessage(`{"user":"ann","n":3}`)} {
		got, err := tpl.Eval(in)
		if err != nil {
			t.Fatalf("%T: %v", in, err)
		}
		want := map[string]any{"who": "ann", "n": 6.0, "line": "hi ann", "fixed": []any{1.0, "a"}, "list": []any{3.0, 3.0}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%T: got %#v, want %#v", in, got, want)
		}
	}
	// A missing path is null; nil is a message too.
	who, err := CompileTemplate([]byte(`{"who": "{{$.user.name}}"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := who.Eval(nil); err != nil || !reflect.DeepEqual(got, map[string]any{"who": nil}) {
		t.Errorf("nil message: %v, %v", got, err)
	}
}

func TestTemplateResultIsJSONForm(t *testing.T) {
	tpl, err := CompileTemplate([]byte(`{"at": "{{now()}}", "deep": ["{{date('2026-01-02T03:04:05Z')}}"], "unix": "{{now().Unix()}}"}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := tpl.Eval(nil)
	if err != nil {
		t.Fatal(err)
	}
	m := got.(map[string]any)
	at, ok := m["at"].(string)
	if !ok {
		t.Fatalf("now() gave %T, want its RFC 3339 string", m["at"])
	}
	if _, err := time.Parse(time.RFC3339Nano, at); err != nil {
		t.Errorf("now() gave %q: %v", at, err)
	}
	if d := m["deep"].([]any)[0]; d != "2026-01-02T03:04:05Z" {
		t.Errorf("a nested time gave %#v", d)
	}
	if _, ok := m["unix"].(float64); !ok {
		t.Errorf("now().Unix() gave %T", m["unix"])
	}
}

func TestTemplateErrors(t *testing.T) {
	for src, want := range map[string]string{
		`{"a": "{{$.n >}}"}`: `expression "$.n >"`,
		`{"a": `:             "not JSON",
		`"{{ $.x"`:           "no closing",
	} {
		if _, err := CompileTemplate([]byte(src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", src, err, want)
		}
	}
	tpl, err := CompileTemplate([]byte(`"{{$.s * 2}}"`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tpl.Eval(map[string]any{"s": "x"}); err == nil || !strings.Contains(err.Error(), `$.s * 2`) {
		t.Errorf("run-time error: %v", err)
	}
	if _, err := tpl.Eval(func() {}); err == nil {
		t.Error("a message that is not JSON-encodable evaluated")
	}
	lit, err := CompileTemplate([]byte(`{"a": 1}`))
	if err != nil || lit.HasExpressions() {
		t.Errorf("literal: %v, HasExpressions %v", err, lit.HasExpressions())
	}
}
