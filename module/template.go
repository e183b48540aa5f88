package module

import (
	"fmt"
	"maps"
	"slices"

	"github.com/tinymod/tinymod/internal/mapping"
)

// Template is a compiled JSON template in the language of edge mappings
// (docs/mapping.md): strings holding "{{ expr }}" are expressions over a
// message, $ being the message; everything else is copied as written. It
// is what an edge mapping's configuration is, for components that shape
// messages themselves. It is safe for concurrent use.
//
//	t, err := module.CompileTemplate([]byte(`{"who": "{{$.user}}", "big": "{{$.n > 10}}"}`))
//	out, err := t.Eval(msg) // map[string]any{"who": "ann", "big": true}
type Template struct{ t *mapping.Template }

// CompileTemplate compiles template, a JSON document. The error names the
// expression that does not compile, or says that template is not JSON.
func CompileTemplate(template []byte) (*Template, error) {
	t, err := mapping.Compile(template)
	if err != nil {
		return nil, err
	}
	return &Template{t: t}, nil
}

// Eval evaluates the template against msg, any JSON-encodable value, and
// returns the result in JSON form: maps, slices, strings, float64s, bools
// and nil (a time, such as now() gives, becomes its RFC 3339 string). The
// result may share the template's literal parts and parts of msg: treat it
// as read-only, as every message is.
func (t *Template) Eval(msg any) (any, error) {
	out, err := t.t.EvalValue(msg)
	if err != nil {
		return nil, err
	}
	out, _, err = jsonForm(out, 0)
	return out, err
}

// HasExpressions reports whether the template reads anything at all; a
// template without expressions always gives the same value.
func (t *Template) HasExpressions() bool { return t.t.HasExpressions() }

// jsonForm returns v with every value that is not already in JSON form
// replaced by its JSON form, and whether it replaced any; v itself when
// nothing needed it.
func jsonForm(v any, depth int) (any, bool, error) {
	if depth > 64 {
		return nil, false, fmt.Errorf("template result nested deeper than 64 levels")
	}
	switch x := v.(type) {
	case nil, string, float64, bool:
		return v, false, nil
	case map[string]any:
		var out map[string]any
		for k, e := range x {
			f, changed, err := jsonForm(e, depth+1)
			if err != nil {
				return nil, false, err
			}
			if changed && out == nil {
				out = maps.Clone(x)
			}
			if changed {
				out[k] = f
			}
		}
		if out == nil {
			return x, false, nil
		}
		return out, true, nil
	case []any:
		var out []any
		for i, e := range x {
			f, changed, err := jsonForm(e, depth+1)
			if err != nil {
				return nil, false, err
			}
			if changed && out == nil {
				out = slices.Clone(x)
			}
			if changed {
				out[i] = f
			}
		}
		if out == nil {
			return x, false, nil
		}
		return out, true, nil
	}
	f, err := mapping.Form(v)
	return f, true, err
}
