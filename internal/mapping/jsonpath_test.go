package mapping

import (
	"reflect"
	"strings"
	"testing"
)

// Paths expr-lang reads itself stay expr-lang's, so existing mappings keep
// their results.
func TestExprPathsUnchanged(t *testing.T) {
	msg := map[string]any{"s": "hello", "i": 1.0, "list": []any{"a", "b", "c"}, "flag": true}
	cases := map[string]any{
		`"{{$.s[1:3]}}"`:                "el",
		`"{{$.list[0:1]}}"`:             []any{"a"},
		`"{{$.list[$.i]}}"`:             "b",
		`"{{$.list[$.flag ? 2 : 0]}}"`:  "c",
		`"{{'$..s[*]' + $.s}}"`:         "$..s[*]hello",
		`"{{len($.list)}}"`:             3.0,
		`"{{$.list[len($.list) - 1]}}"`: "c",
	}
	for template, want := range cases {
		if got := eval(t, template, msg); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %#v, want %#v", template, got, want)
		}
	}
}

// A descendant or wildcard query visits map members, whose order Go does not
// keep; the result must not depend on it, and comes in the SDK's order (its
// JSONPath library gives [0,1,2,4,3] and [2,{"id":4}] for these).
func TestQueryOrderIsStable(t *testing.T) {
	msg := map[string]any{
		"b":  map[string]any{"id": 2.0, "z": map[string]any{"id": 4.0}},
		"a":  map[string]any{"id": 1.0},
		"c":  []any{map[string]any{"id": 3.0}},
		"id": 0.0,
	}
	want := map[string]any{
		`"{{$..id}}"`: []any{0.0, 1.0, 2.0, 4.0, 3.0},
		`"{{$.b.*}}"`: []any{2.0, map[string]any{"id": 4.0}},
	}
	for template, w := range want {
		for range 50 {
			if got := eval(t, template, msg); !reflect.DeepEqual(got, w) {
				t.Fatalf("%s: got %#v, want %#v", template, got, w)
			}
		}
	}
}

func TestBadJSONPathNamesExpression(t *testing.T) {
	_, err := Compile([]byte(`{"a": "{{$.items[?(@.x >)]}}"}`))
	if err == nil || !strings.Contains(err.Error(), `$.items[?(@.x >)]`) {
		t.Errorf("error does not name the expression: %v", err)
	}
}
