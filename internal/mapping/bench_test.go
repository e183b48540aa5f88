package mapping

import (
	"encoding/json"
	"testing"
)

// BenchmarkEvalForms measures Eval, run on every mapped message, for a path
// expr-lang reads and for the JSONPath queries beside it.
func BenchmarkEvalForms(b *testing.B) {
	var msg any
	if err := json.Unmarshal([]byte(sdkMsg), &msg); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, template string }{
		{"path", `{"a": "{{$.items[2].name}}", "b": "{{$.count * 2 + 1}}"}`},
		{"filter", `{"a": "{{$.items[?(@.price > 20)].name}}", "b": "{{$.count * 2 + 1}}"}`},
		{"descendant", `{"a": "{{$..name}}", "b": "{{$.count * 2 + 1}}"}`},
		{"length", `{"a": "{{length($.items)}}", "b": "{{$.count * 2 + 1}}"}`},
	} {
		tpl, err := Compile([]byte(bc.template))
		if err != nil {
			b.Skipf("%s: %v", bc.name, err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tpl.Eval(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
