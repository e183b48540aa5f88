package mapping

import (
	"encoding/json"
	"math"
	oldrand "math/rand"
	"reflect"
	"strings"
	"testing"
	"testing/quick"
	"time"
)

// formTarget is a port type that mapped results are decoded into.
type formTarget struct {
	S   string         `json:"s"`
	I   int            `json:"i"`
	F   float64        `json:"f"`
	In  formInner      `json:"in"`
	Any any            `json:"any"`
	L   []formInner    `json:"l"`
	M   map[string]any `json:"m"`
	Def string         `json:"def"`
}

// TestEvalValueIsEvalOfTheRoundTrip: EvalValue of a Go message, read field
// by field or not, gives what Eval of the message's JSON round trip gives,
// error or not; and EvalInto decodes what json.Unmarshal of that result
// would.
func TestEvalValueIsEvalOfTheRoundTrip(t *testing.T) {
	templates := []string{
		`{"s": "{{$.s}}", "i": "{{$.i + 1}}", "f": "{{$.f}}"}`,
		`{"s": "hi {{$.n}} {{$.in.a}}", "in": "{{$.p}}", "l": "{{$.l}}"}`,
		`{"any": "{{$.bytes}}", "i": "{{$.u64 > 5 ? 1 : 2}}", "m": "{{$.in}}", "S": "{{$.s}}"}`,
		`{"s": "{{$.missing}}", "i": "{{$.z}}", "any": "{{$.b}}", "def": "{{$[\"s\"]}}"}`,
		`{"s": "{{$.a b}}", "any": "{{$.strs}}"}`,                // not a member read: compiles as it may
		`{"any": "{{$}}", "i": "{{len($.l ?? [])}}"}`,            // $ whole: the JSON form
		`{"any": "{{$..a}}", "s": "{{$.s}}"}`,                    // a query: the JSON form
		`{"any": "{{$.t}}", "s": "{{$.raw}}", "i": "{{$.str}}"}`, // fields of their own JSON
		`{"i": "{{$.s}}"}`, // does not decode
		`{"in": {"a": "{{$.i}}", "b": ["{{$.s}}"]}, "def": "x"}`, // nested literals
		`["{{$.s}}", "{{$.i}}"]`,                                 // not an object
		`{"s": "{{($.i + 0.5) / 0}}"}`,                           // fails at run time
	}
	one := 1
	msgs := []any{
		formAll{S: "x", I: -3, U64: 1 << 60, F: math.Copysign(0, -1), F32: 0.1, N: "n", P: &formInner{P: &one},
			Bytes: []byte("hi"), Odd: "o", L: []formInner{{A: 1}}},
		&formAll{B: true, Z: 7, Strs: []string{}},
		formAll{S: "bad \xff"},
		formCustom{T: time.Unix(0, 0).UTC(), Raw: json.RawMessage(`{"a":1}`), Num: "12", Str: 3},
		struct{ F float64 }{math.NaN()},
		map[string]any{"s": "m", "i": 2.0},
		(*formAll)(nil),
		"plain", 3, nil,
	}
	r := oldrand.New(oldrand.NewSource(2))
	for range 50 {
		v, _ := quick.Value(reflect.TypeFor[formAll](), r)
		msgs = append(msgs, v.Interface())
	}
	for _, src := range templates {
		tpl, err := Compile([]byte(src))
		if err != nil {
			t.Logf("%s: %v", src, err)
			continue
		}
		for i, msg := range msgs {
			var want any
			form, werr := roundTrip(msg)
			if werr == nil {
				want, werr = tpl.Eval(form)
			}
			got, gerr := tpl.EvalValue(msg)
			if (gerr != nil) != (werr != nil) && !(tpl.members && werr != nil) {
				t.Errorf("%s, message %d (%#v): EvalValue error %v, round trip %v", src, i, msg, gerr, werr)
				continue
			}
			if werr != nil {
				continue // reading only some fields may succeed where the whole fails
			}
			if gerr != nil {
				t.Errorf("%s, message %d: EvalValue: %v, round trip gave %v", src, i, gerr, want)
				continue
			}
			if !sameResult(got, want) {
				t.Errorf("%s, message %d:\n EvalValue  %#v\n round trip %#v", src, i, got, want)
			}

			// EvalInto over a value that holds something already.
			base := formTarget{Def: "default", In: formInner{A: 9}}
			wantDst, data := base, mustJSON(t, want)
			wantErr := json.Unmarshal(data, &wantDst)
			gotDst := base
			done, out, err := tpl.EvalInto(msg, reflect.ValueOf(&gotDst).Elem())
			if err != nil {
				t.Errorf("%s, message %d: EvalInto: %v", src, i, err)
				continue
			}
			if !done {
				if !sameResult(out, want) {
					t.Errorf("%s, message %d: EvalInto's result %#v, want %#v", src, i, out, want)
				}
				continue
			}
			if wantErr != nil {
				t.Errorf("%s, message %d: EvalInto decoded %+v where json.Unmarshal fails: %v", src, i, gotDst, wantErr)
			} else if !reflect.DeepEqual(gotDst, wantDst) {
				t.Errorf("%s, message %d:\n EvalInto       %+v\n json.Unmarshal %+v", src, i, gotDst, wantDst)
			}
		}
	}
}

// TestMembersOnly: which expressions read $ field by field.
func TestMembersOnly(t *testing.T) {
	for src, want := range map[string]bool{
		`$.a`: true, `$.a.b + 1`: true, `$["a"] ?? 2`: true, `$?.a`: true, `"x" + $.a`: true, `len($.l)`: true,
		`$`: false, `len($)`: false, `$[k]`: false, `$.a + $`: false, `toJSON($)`: false, `$.a()`: false,
	} {
		if got := readsMembersOnly(src); got != want {
			t.Errorf("%s: %v, want %v", src, got, want)
		}
	}
	for src, want := range map[string]bool{
		`{"a": "{{$.a}}", "b": ["x {{$.b.c}}"]}`: true,
		`{"a": "{{$.a}}", "b": "{{$}}"}`:         false,
		`{"a": "{{$..a}}"}`:                      false,
		`{"a": 1}`:                               true,
	} {
		tpl, err := Compile([]byte(src))
		if err != nil {
			t.Fatal(err)
		}
		if tpl.members != want {
			t.Errorf("%s: members %v, want %v", src, tpl.members, want)
		}
	}
}

// sameResult compares two results exactly: DeepEqual, and their encodings
// (-0 apart from 0), or both not encodable.
func sameResult(a, b any) bool {
	ea, erra := json.Marshal(a)
	eb, errb := json.Marshal(b)
	return reflect.DeepEqual(a, b) && (erra != nil) == (errb != nil) && string(ea) == string(eb)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil && !strings.Contains(err.Error(), "unsupported") {
		t.Fatal(err)
	}
	return data
}
