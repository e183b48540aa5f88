package mapping

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func eval(t *testing.T, template string, msg any) any {
	t.Helper()
	tpl, err := Compile([]byte(template))
	if err != nil {
		t.Fatalf("compile %s: %v", template, err)
	}
	out, err := tpl.Eval(msg)
	if err != nil {
		t.Fatalf("eval %s: %v", template, err)
	}
	return out
}

func TestEval(t *testing.T) {
	msg := map[string]any{
		"who": "ann", "n": 12.0, "ok": true,
		"user": map[string]any{"name": "Ann", "tags": []any{"a", "b"}},
	}
	cases := []struct {
		template string
		want     any
	}{
		{`"{{$.who}}"`, "ann"},
		{`"{{ $.n }}"`, 12.0},
		{`"{{$.ok}}"`, true},
		{`"{{$.user}}"`, map[string]any{"name": "Ann", "tags": []any{"a", "b"}}},
		{`"{{$.user.tags[1]}}"`, "b"},
		{`"hello {{$.who}}!"`, "hello ann!"},
		{`"{{$.who}} has {{$.n}} and {{$.user.tags}}"`, `ann has 12 and ["a","b"]`},
		{`"{{$.n > 10}}"`, true},
		{`"{{$.n * 2 + 1}}"`, 25.0},
		{`"{{$.who == 'ann' ? 'yes' : 'no'}}"`, "yes"},
		{`"{{$.missing}}"`, nil},
		{`"{{$.missing.deeper.still}}"`, nil},
		{`"{{$.user.missing.x}}"`, nil},
		{`"x{{$.missing}}y"`, "xy"},
		{`{"a": "{{$.who}}", "b": ["{{$.n}}", 1, "lit"], "c": {"d": "{{$.ok}}"}}`,
			map[string]any{"a": "ann", "b": []any{12.0, 1.0, "lit"}, "c": map[string]any{"d": true}}},
		{`{"plain": 1}`, map[string]any{"plain": 1.0}},
		{`"{{$}}"`, msg},
		{`"{{len($.user.tags)}}"`, 2.0},
	}
	for _, c := range cases {
		if got := eval(t, c.template, msg); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.template, got, c.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, template := range []string{`"{{$.a +}}"`, `"{{ ( }}"`, `"x {{$.a"`, `not json`} {
		if _, err := Compile([]byte(template)); err == nil {
			t.Errorf("%s compiled", template)
		}
	}
	_, err := Compile([]byte(`{"a": "{{$.a +}}"}`))
	if err == nil || !strings.Contains(err.Error(), "$.a +") {
		t.Errorf("error does not name the expression: %v", err)
	}
}

func TestEvalRuntimeError(t *testing.T) {
	tpl, err := Compile([]byte(`"{{$.s * 2}}"`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tpl.Eval(map[string]any{"s": "text"}); err == nil {
		t.Error("string * 2 evaluated")
	}
}

func TestHasExpressions(t *testing.T) {
	for template, want := range map[string]bool{`{"a":1}`: false, `{"a":"{{$.x}}"}`: true, `"{{$}}"`: true, `[1,"x"]`: false} {
		tpl, err := Compile([]byte(template))
		if err != nil {
			t.Fatal(err)
		}
		if tpl.HasExpressions() != want {
			t.Errorf("%s: HasExpressions = %v", template, !want)
		}
	}
}

func FuzzCompileEval(f *testing.F) {
	for _, s := range []string{`"{{$.a}}"`, `{"x":"a {{$.b.c}} b"}`, `["{{$.n*2}}"]`, `"{{"`, `"}}{{"`} {
		f.Add(s, `{"a":1,"b":{"c":"x"},"n":2}`)
	}
	f.Fuzz(func(t *testing.T, template, msg string) {
		tpl, err := Compile([]byte(template))
		if err != nil {
			return
		}
		var m any
		if json.Unmarshal([]byte(msg), &m) != nil {
			return
		}
		out, err := tpl.Eval(m)
		if err != nil {
			return
		}
		if _, err := json.Marshal(out); err != nil {
			t.Fatalf("result of %s is not JSON: %v", template, err)
		}
	})
}

func TestAddStringAndNumberFails(t *testing.T) {
	msg := map[string]any{"s": "text", "d": "30m", "n": 2.0, "items": []any{map[string]any{"n": 1.0}, map[string]any{"n": 2.0}}}
	for _, src := range []string{`"a" + 1`, `1 + "a"`, `$.s + $.n`, `$.n + $.s`, `$.n + '1h'`, `$.s + 1`, `$..n + 'x'`} {
		e, err := CompileExpr(src)
		if err == nil {
			var got any
			if got, err = e.Eval(msg); err == nil {
				t.Errorf("%s gave %#v", src, got)
				continue
			}
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("expression %q", src)) || !strings.Contains(err.Error(), "+") {
			t.Errorf("%s: error does not name the expression and the operation: %v", src, err)
		}
	}
	for src, want := range map[string]any{`$.s + $.d`: "text30m", `$.n + 1`: 3.0, `$.items[0].n + $.n`: 3.0, `$.s + '!'`: "text!"} {
		e, err := CompileExpr(src)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := e.Eval(msg); err != nil || got != want {
			t.Errorf("%s = %#v, %v; want %#v", src, got, err, want)
		}
	}
}
