package mapping

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// sdkMsg is the message every SDK form is evaluated against.
const sdkMsg = `{"name":"Ann","count":3,"price":12.5,"quantity":2,"role":"admin","method":"GET",
	"user":{"name":"Bob","age":30,"role":"admin"},
	"items":[{"name":"a","price":5,"x":"a"},{"name":"b","price":15,"x":"b"},{"name":"c","price":25,"x":"a"}],
	"tags":["x","y"],"duration":"30m","at":"2026-12-01T12:00:00Z","flag":true,"target":"ns/pod","url":"https://example.com/path/x",
	"context":{"endpoints":[{"url":"http://e1"}],"responseUrl":"http://r"}}`

// failed stands for an expression error. The SDK logs it and gives null for
// a whole-string expression; tinymod fails the message.
type failed struct{}

// sdkForms are the template forms that modules written for the TinySystems
// SDK use (its evaluator tests and README, its common module's components),
// with what the SDK gives for sdkMsg, found by evaluating each with the SDK's
// evaluator and its JSONPath library, ajson v0.1.6. docs/mapping.md lists the
// same forms.
var sdkForms = []struct {
	template string
	sdk      any
	// differs says why tinymod gives tinymod instead of sdk; empty when
	// tinymod gives what the SDK gives.
	differs string
	tinymod any
}{
	{`"{{$.name}}"`, "Ann", "", nil},
	{`"{{$.user.name}}"`, "Bob", "", nil},
	{`"{{$['user']['name']}}"`, "Bob", "", nil},
	{`"{{$.items[0].name}}"`, "a", "", nil},
	{`"{{$.context.endpoints[0].url}}"`, "http://e1", "", nil},
	{`"{{$.items[-1].name}}"`, "c", "", nil},
	{`"{{$.user}}"`, map[string]any{"name": "Bob", "age": 30.0, "role": "admin"}, "", nil},
	{`"{{$.missing}}"`, nil, "", nil},
	{`"{{$.nonexistent.deep.path}}"`, nil, "", nil},
	{`"{{$.count + 1}}"`, 4.0, "", nil},
	{`"{{$.price * $.quantity}}"`, 25.0, "", nil},
	{`"{{$.count * 2 + 1}}"`, 7.0, "", nil},
	{`"{{$.count / 2}}"`, 1.5, "", nil},
	{`"{{$.method == 'GET'}}"`, true, "", nil},
	{`"{{$.user.role == 'admin'}}"`, true, "", nil},
	{`"{{$.context.responseUrl != null}}"`, true, "", nil},
	{`"{{$.price > 10 && $.role == 'admin'}}"`, true, "", nil},
	{`"{{$.count > 2 ? 'many' : 'few'}}"`, "many", "", nil},
	{`"Hello {{$.name}}!"`, "Hello Ann!", "", nil},
	{`"{{$.greeting}}, {{$.name}}! You have {{$.count}} messages."`, ", Ann! You have 3 messages.", "", nil},
	{`"n={{$.count}} p={{$.price}}"`, "n=3 p=12.5", "", nil},
	{`"{{\"Hello \" + $.name}}"`, "Hello Ann", "", nil},
	{`"{{string($.count)}}"`, "3", "", nil},
	{`"{{upper($.name)}}"`, "ANN", "", nil},
	{`"{{lower($.name)}}"`, "ann", "", nil},
	{`"{{replace($.target, '/', ': ')}}"`, "ns: pod", "", nil},
	{`"{{first(split($.target, '/'))}}"`, "ns", "", nil},
	{`"{{last(split($.target, '/'))}}"`, "pod", "", nil},
	{`"{{hasprefix($.name, 'A') ? 'yes' : 'no'}}"`, "yes", "", nil},
	{`"{{hassuffix($.target, 'pod')}}"`, true, "", nil},
	// JSONPath: descendants, wildcards, filters, slices, unions, length.
	{`"{{$..name}}"`, []any{"Ann", "Bob", "a", "b", "c"}, "", nil},
	{`"{{$..url}}"`, []any{"https://example.com/path/x", "http://e1"}, "", nil},
	{`"{{$.items[*].name}}"`, []any{"a", "b", "c"}, "", nil},
	{`"{{$.tags[*]}}"`, []any{"x", "y"}, "", nil},
	{`"{{$.items[?(@.price > 10)]}}"`, []any{
		map[string]any{"name": "b", "price": 15.0, "x": "b"},
		map[string]any{"name": "c", "price": 25.0, "x": "a"}}, "", nil},
	{`"{{$.items[?(@.price > 10)].name}}"`, []any{"b", "c"}, "", nil},
	{`"{{$.items[?(@.x == 'a')].name}}"`, []any{"a", "c"}, "", nil},
	{`"{{$.items[?(@.price > 20)]}}"`, map[string]any{"name": "c", "price": 25.0, "x": "a"}, "", nil},
	{`"{{$.items[?(@.price > 100)]}}"`, nil, "", nil},
	{`"{{$.items[0:2].name}}"`, []any{"a", "b"}, "", nil},
	{`"{{$.items[-1:].name}}"`, "c", "", nil},
	{`"{{$.items[0,2].name}}"`, []any{"a", "c"}, "", nil},
	{`"{{length($.items)}}"`, 3.0, "", nil},
	{`"{{length($.items[?(@.price > 10)])}}"`, 2.0, "", nil},
	{`"{{length($.name)}}"`, 3.0, "", nil},
	{`"{{length($.user)}}"`, 1.0, "", nil},
	{`"{{length($.missing)}}"`, 0.0, "", nil},
	{`"{{$.items.length}}"`, 3.0, "", nil},
	{`"{{$.items['length']}}"`, 3.0, "", nil},
	{`"{{sum($.items[*].price)}}"`, 45.0, "", nil},
	{`"{{$.duration + '1h'}}"`, "5400s", "", nil},
	{`"{{$.duration - '10m'}}"`, "1200s", "", nil},
	{`"{{$.at + '1h'}}"`, "2026-12-01T13:00:00Z", "", nil},
	{`"{{'90s' + $.at}}"`, "2026-12-01T12:01:30Z", "", nil},
	{`"{{$.at - '30m'}}"`, "2026-12-01T11:30:00Z", "", nil},
	{`"{{$.name + ' ' + $.role}}"`, "Ann admin", "", nil},
	// Forms the SDK reads differently.
	{`"{{$.items[?@.price > 10].name}}"`, nil,
		"RFC 9535 filter without parentheses: the SDK selects nothing", []any{"b", "c"}},
	{`"{{$.items[?@.x == 'a'].name}}"`, nil,
		"RFC 9535 filter without parentheses: the SDK selects nothing", []any{"a", "c"}},
	{`"{{\"a\" + 1}}"`, failed{}, "", nil},
	{`"{{$.name + $.count}}"`, failed{}, "", nil},
	{`"{{$.count + '1h'}}"`, failed{}, "", nil},
	{`"{{$.missing.x + 1}}"`, failed{}, "", nil},
	{`"{{$.count % 2}}"`, 1.0,
		"expr-lang's % takes integers, and JSON numbers are floats", failed{}},
	{`"{{$.missing ?? 'anon'}}"`, failed{},
		"?? is expr-lang's default for null; the SDK cannot parse it", "anon"},
	{`"{{!$.flag}}"`, failed{}, "! is expr-lang's not; the SDK cannot parse it", false},
	{`"tags: {{$.tags}}"`, "tags: [x y]",
		"tinymod interpolates a list or object as JSON, the SDK as Go prints it", `tags: ["x","y"]`},
}

func TestSDKForms(t *testing.T) {
	var msg any
	if err := json.Unmarshal([]byte(sdkMsg), &msg); err != nil {
		t.Fatal(err)
	}
	same := 0
	for _, f := range sdkForms {
		want := f.sdk
		if f.differs != "" {
			want = f.tinymod
		} else {
			same++
		}
		got, err := evalTemplate(f.template, msg)
		if _, fail := want.(failed); fail {
			if err == nil {
				t.Errorf("%s: gave %#v, want an error", f.template, got)
			} else if !strings.Contains(err.Error(), fmt.Sprintf("expression %q", source(t, f.template))) {
				t.Errorf("%s: error does not name the expression: %v", f.template, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", f.template, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %#v, want %#v", f.template, got, want)
		}
	}
	if same < 24 {
		t.Errorf("only %d SDK forms give what the SDK gives", same)
	}
}

func evalTemplate(template string, msg any) (any, error) {
	tpl, err := Compile([]byte(template))
	if err != nil {
		return nil, err
	}
	return tpl.Eval(msg)
}

// source is the expression inside a template that is one JSON string
// holding one whole expression.
func source(t *testing.T, template string) string {
	t.Helper()
	var s string
	if err := json.Unmarshal([]byte(template), &s); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(s, "{{"), "}}"))
}
