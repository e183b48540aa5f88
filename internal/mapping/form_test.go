package mapping

import (
	"bytes"
	"encoding/json"
	"math"
	oldrand "math/rand"
	"math/rand/v2"
	"reflect"
	"testing"
	"testing/quick"
	"time"
)

type formInner struct {
	A int                `json:"a"`
	B []string           `json:"b,omitempty"`
	M map[string]float64 `json:"m"`
	P *int               `json:"p"`
}

type formNamed string

// formAll has a field of each kind JSONForm and DecodeForm walk themselves.
type formAll struct {
	S     string      `json:"s"`
	I     int         `json:"i"`
	I8    int8        `json:"i8"`
	U     uint16      `json:"u"`
	U64   uint64      `json:"u64"`
	F     float64     `json:"f"`
	F32   float32     `json:"f32"`
	B     bool        `json:"b,omitempty"`
	N     formNamed   `json:"n"`
	P     *formInner  `json:"p"`
	In    formInner   `json:"in"`
	L     []formInner `json:"l"`
	A     [2]int      `json:"a"`
	Bytes []byte      `json:"bytes"`
	Skip  string      `json:"-"`
	Dash  string      `json:"-,"`
	NoTag string
	Z     int      `json:"z,omitzero"`
	Odd   string   `json:"a b"`
	Bad   string   `json:"bad\\tag"`
	Strs  []string `json:"strs"`
}

type formWithAny struct {
	All formAll        `json:"all"`
	Any any            `json:"any"`
	MM  map[string]any `json:"mm"`
}

// formCustom has what the fast paths leave to encoding/json.
type formCustom struct {
	T   time.Time       `json:"t"`
	Raw json.RawMessage `json:"raw"`
	Num json.Number     `json:"num"`
	Str int             `json:"str,string"`
	formInner
}

func roundTrip(v any) (any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	err = json.Unmarshal(data, &out)
	return out, err
}

// sameJSON compares two JSON forms exactly: DeepEqual, and -0 apart from 0.
func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ea, erra := json.Marshal(a)
	eb, errb := json.Marshal(b)
	return reflect.DeepEqual(a, b) && erra == nil && errb == nil && bytes.Equal(ea, eb)
}

// TestJSONFormIsTheRoundTrip: JSONForm gives what json.Marshal and
// json.Unmarshal give, for values of every kind, chosen at random and by hand.
func TestJSONFormIsTheRoundTrip(t *testing.T) {
	one := 1
	table := []any{
		formWithAny{Any: map[string]any{"k": []any{1.5, 2}}},
		formAll{S: "x", I: -3, U64: 1 << 60, F: math.Copysign(0, -1), F32: 0.1, N: "n", P: &formInner{P: &one},
			Bytes: []byte("hi"), Skip: "s", Dash: "d", NoTag: "t", Z: 0, Odd: "o", Bad: "b", L: []formInner{{A: 1}}},
		formAll{B: true, Z: 7, Bytes: []byte{}, Strs: []string{}},
		formWithAny{MM: map[string]any{}},
		&formAll{I8: -8},
		formCustom{T: time.Unix(0, 0).UTC(), Raw: json.RawMessage(`{"a":1}`), Num: "12", Str: 3},
		map[string]int{"a": 1},
		map[int]string{1: "a"},
		[]any{1, "x", nil},
		[3]uint8{1, 2, 3},
		"plain", 3, int64(1<<62 + 1), float32(3.4e38), uint8(200), true, nil,
		"bad \xff utf-8",
		formAll{S: "bad \xff"},
		math.NaN(),
		struct{ C complex64 }{},
		struct{ Ch chan int }{},
	}
	r := oldrand.New(oldrand.NewSource(1))
	for range 300 {
		v, ok := quick.Value(reflect.TypeFor[formAll](), r)
		if !ok {
			t.Fatal("quick cannot make a formAll")
		}
		table = append(table, v.Interface())
	}
	fast := 0
	for i, v := range table {
		want, werr := roundTrip(v)
		got, ok := JSONForm(v)
		if !ok {
			continue
		}
		fast++
		switch v.(type) {
		case nil, string, float64, bool, map[string]any, []any: // taken as they are
			continue
		}
		if werr != nil {
			t.Errorf("%d: %#v: JSONForm gave %v where the round trip fails: %v", i, v, got, werr)
			continue
		}
		if !sameJSON(t, got, want) {
			t.Errorf("%d: %#v:\n JSONForm   %#v\n round trip %#v", i, v, got, want)
		}
	}
	if fast < 300 {
		t.Errorf("JSONForm did the work itself for %d of %d values", fast, len(table))
	}
}

// randomForm makes a value in JSON form with keys a decoder of formAll meets.
func randomForm(r *rand.Rand, depth int) any {
	keys := []string{"all", "s", "S", "i", "i8", "u", "u64", "f", "f32", "b", "n", "p", "in", "l", "a", "any", "bytes", "mm",
		"Skip", "-", "NoTag", "notag", "z", "a b", "Bad", "strs", "m", "unknown", "A", "\xff"}
	numbers := []float64{0, 1, -1, 3, 255, 256, -129, 65535, 65536, 1 << 53, 1<<53 + 2, 1 << 60, 1e21, 0.5, -2.5,
		math.Copysign(0, -1), 3.4e38, 1e39, 0.1, math.MaxInt64}
	switch n := r.IntN(10); {
	case n == 0:
		return nil
	case n == 1:
		return r.IntN(2) == 0
	case n <= 3:
		return numbers[r.IntN(len(numbers))]
	case n <= 5:
		return []string{"", "x", "aGk=", "bad \xff", "2026-12-01T12:00:00Z"}[r.IntN(5)]
	case n <= 7 && depth < 3:
		a := make([]any, r.IntN(4))
		for i := range a {
			a[i] = randomForm(r, depth+1)
		}
		return a
	case depth < 3:
		m := map[string]any{}
		for range r.IntN(6) {
			m[keys[r.IntN(len(keys))]] = randomForm(r, depth+1)
		}
		return m
	}
	return "leaf"
}

// TestDecodeFormIsUnmarshal: decoding a value in JSON form over a port's
// default gives what json.Unmarshal of its encoding gives, for random
// values, and never succeeds where json.Unmarshal fails.
func TestDecodeFormIsUnmarshal(t *testing.T) {
	one := 1
	defaults := []any{
		formAll{},
		formAll{S: "def", I: 5, P: &formInner{A: 2, B: []string{"x", "y"}, M: map[string]float64{"k": 1}}, L: []formInner{{A: 1, B: []string{"z"}}, {A: 2}},
			A: [2]int{7, 8}, Strs: []string{"a", "b", "c"}, In: formInner{P: &one}},
		formWithAny{Any: map[string]any{"d": true}, MM: map[string]any{"keep": 1.0}},
		formWithAny{Any: &formInner{}},
		formCustom{Num: "1"},
		map[string]any{"x": 1.0},
		map[string]formInner{"k": {A: 1}},
		[]formInner{{A: 9}},
		[]int{1, 2},
		formInner{},
	}
	r := rand.New(rand.NewPCG(3, 4))
	fast, total := 0, 0
	for _, def := range defaults {
		typ := reflect.TypeOf(def)
		defJSON, err := json.Marshal(def)
		if err != nil {
			t.Fatal(err)
		}
		var defForm any
		if err := json.Unmarshal(defJSON, &defForm); err != nil {
			t.Fatal(err)
		}
		for range 2000 {
			form := randomForm(r, 0)
			if r.IntN(3) == 0 && typ.Kind() == reflect.Struct {
				form = map[string]any{"s": "x", "i": 2.0, "p": map[string]any{"a": 3.0, "b": []any{"q"}}, "l": []any{map[string]any{"a": 5.0}}, "any": form}
			}
			total++
			want := reflect.New(typ)
			werr := json.Unmarshal(defJSON, want.Interface())
			if werr == nil {
				data, err := json.Marshal(form)
				if err != nil {
					t.Fatal(err)
				}
				werr = json.Unmarshal(data, want.Interface())
			}
			got := reflect.New(typ)
			if !DecodeForm(defForm, got.Elem()) || !DecodeForm(form, got.Elem()) {
				continue
			}
			fast++
			if werr != nil {
				t.Errorf("%T over its default, from %#v: DecodeForm gave %#v where json.Unmarshal fails: %v", def, form, got.Elem(), werr)
				continue
			}
			if !reflect.DeepEqual(got.Elem().Interface(), want.Elem().Interface()) {
				t.Errorf("%T over its default, from %#v:\n DecodeForm     %#v\n json.Unmarshal %#v", def, form, got.Elem(), want.Elem())
			}
		}
	}
	t.Logf("DecodeForm did the work itself for %d of %d forms", fast, total)
	if fast < total/8 {
		t.Errorf("DecodeForm did the work itself for only %d of %d forms", fast, total)
	}
}

// TestDecodeFormCopiesLiterals: what decodes into an any is the form's copy,
// so a component cannot change a template's literals.
func TestDecodeFormCopiesLiterals(t *testing.T) {
	literal := map[string]any{"list": []any{1.0}}
	var got struct {
		Any any `json:"any"`
	}
	if !DecodeForm(map[string]any{"any": literal}, reflect.ValueOf(&got).Elem()) {
		t.Fatal("DecodeForm left a plain form to json")
	}
	got.Any.(map[string]any)["list"].([]any)[0] = 2.0
	if literal["list"].([]any)[0] != 1.0 {
		t.Error("the decoded value shares the literal's slice")
	}
}
