package scheduler

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

type convertTarget struct {
	Who   string            `json:"who"`
	Count int               `json:"count"`
	Tags  []string          `json:"tags"`
	Meta  map[string]any    `json:"meta"`
	At    time.Time         `json:"at"` // its own UnmarshalJSON: encoding/json's turn
	Inner *Greeting         `json:"inner"`
	Env   map[string]string `json:"env"`
}

// TestConvertFormIsConvert: a mapping's result becomes the port's value the
// same whether convertForm builds it or encoding/json decodes it, over the
// default or the zero value, and fails where encoding/json fails.
func TestConvertFormIsConvert(t *testing.T) {
	defaults := []any{
		Greeting{Who: "def", Count: 1, Note: "n"},
		convertTarget{Who: "d", Tags: []string{"a", "b"}, Meta: map[string]any{"keep": true}, Env: map[string]string{"A": "1"}},
	}
	forms := []any{
		nil,
		map[string]any{},
		map[string]any{"who": "ann", "count": 4.0, "note": "hi ann"},
		map[string]any{"who": "ann", "count": 4.5},
		map[string]any{"who": 3.0},
		map[string]any{"Who": "fold"},
		map[string]any{"tags": []any{"x"}, "meta": map[string]any{"n": 1.0}, "inner": map[string]any{"who": "i"}, "env": map[string]any{"B": "2"}},
		map[string]any{"tags": nil, "meta": nil, "inner": nil},
		map[string]any{"at": "2026-12-01T12:00:00Z", "who": "t"},
		map[string]any{"at": "not a time"},
		"a string",
		[]any{1.0},
	}
	for _, def := range defaults {
		for _, overZero := range []bool{false, true} {
			defJSON, _ := json.Marshal(def)
			p := &port{typ: reflect.TypeOf(def), defaultJSON: defJSON, overZero: overZero}
			for _, form := range forms {
				want, werr := p.convert(form)
				got, gerr := p.convertForm(form)
				if (werr == nil) != (gerr == nil) || werr != nil && werr.Error() != gerr.Error() {
					t.Errorf("%T (overZero %v) from %#v: errors %v and %v", def, overZero, form, gerr, werr)
					continue
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%T (overZero %v) from %#v:\n convertForm %#v\n convert     %#v", def, overZero, form, got, want)
				}
			}
		}
	}
}
