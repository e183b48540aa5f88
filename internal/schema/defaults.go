package schema

import (
	"bytes"
	"encoding/json"
	"fmt"

	validator "github.com/santhosh-tekuri/jsonschema/v6"
)

// settleDefault makes a port's value, def, fit to be its schema's default.
// Encoding leaves out a zero field tagged omitempty, though decoding the
// default gives that field its zero value all the same; so a required
// property def lacks is written in with the zero value of its schema's type,
// and a nil slice or map, which encodes as null, as an empty one.
// If def then still breaks the schema (an enum, minimum, pattern, format...),
// the schema wins, since settings are validated against it, and the
// contradictions are returned instead of a default.
func settleDefault(schema, def []byte) (json.RawMessage, []string, error) {
	var s any
	if err := json.Unmarshal(schema, &s); err != nil {
		return nil, nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(def))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, nil, err
	}
	changed := false
	v = fillRequired(s, v, &changed)
	settled := json.RawMessage(def)
	if changed {
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, nil, err
		}
		settled = raw
	}
	c := validator.NewCompiler()
	c.AssertFormat()
	doc, err := validator.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, nil, err
	}
	if err := c.AddResource("port.json", doc); err != nil {
		return nil, nil, err
	}
	compiled, err := c.Compile("port.json")
	if err != nil {
		return nil, nil, fmt.Errorf("compile: %w", err)
	}
	inst, err := validator.UnmarshalJSON(bytes.NewReader(settled))
	if err != nil {
		return nil, nil, err
	}
	if err := compiled.Validate(inst); err != nil {
		if ve, ok := err.(*validator.ValidationError); ok {
			return nil, flatten(ve), nil
		}
		return nil, []string{err.Error()}, nil
	}
	return settled, nil, nil
}

// fillRequired writes the zero value of each required property v lacks, in
// v and in the objects and array items within it, and turns a null where the
// schema wants an array or an object into an empty one.
func fillRequired(schema, v any, changed *bool) any {
	s, _ := schema.(map[string]any)
	if s == nil {
		return v
	}
	// Go encodes a nil slice or map as null; it stands for an empty one.
	if t, _ := s["type"].(string); v == nil && (t == "array" || t == "object") {
		*changed = true
		return zeroOf(s, changed)
	}
	switch v := v.(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		req, _ := s["required"].([]any)
		for _, r := range req {
			name, _ := r.(string)
			if _, ok := v[name]; ok || name == "" {
				continue
			}
			v[name] = zeroOf(props[name], changed)
			*changed = true
		}
		for name, pv := range v {
			if ps, ok := props[name]; ok {
				v[name] = fillRequired(ps, pv, changed)
			}
		}
		return v
	case []any:
		for i := range v {
			v[i] = fillRequired(s["items"], v[i], changed)
		}
		return v
	}
	return v
}

// zeroOf is the value Go decodes a missing property of this schema to, as
// JSON; an object gets its own required properties.
func zeroOf(schema any, changed *bool) any {
	s, _ := schema.(map[string]any)
	var typ string
	switch t := s["type"].(type) {
	case string:
		typ = t
	case []any:
		for _, x := range t {
			if x == "null" {
				return nil
			}
		}
		if len(t) > 0 {
			typ, _ = t[0].(string)
		}
	}
	switch typ {
	case "string":
		return ""
	case "integer", "number":
		return json.Number("0")
	case "boolean":
		return false
	case "array":
		return []any{}
	case "object":
		return fillRequired(s, map[string]any{}, changed)
	}
	return nil
}
