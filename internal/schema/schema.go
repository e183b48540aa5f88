// Package schema turns the Go types of component ports into JSON Schemas and
// checks values against them.
package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/invopop/jsonschema"
	validator "github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

var english = message.NewPrinter(language.English)

// For returns the JSON Schema of v's type, with v as its default. Struct tags
// shape it: `json` names fields, `jsonschema:"title=...,description=...,
// enum=a,enum=b,required,default=..."` adds the rest. A field is required
// only when tagged so, since a missing field takes its default. A nil v has the
// empty schema, which accepts anything.
func For(v any) (json.RawMessage, error) {
	if v == nil {
		return json.RawMessage(`{}`), nil
	}
	r := &jsonschema.Reflector{
		DoNotReference:             true,
		ExpandedStruct:             true,
		RequiredFromJSONSchemaTags: true,
		AllowAdditionalProperties:  true,
		Anonymous:                  true,
	}
	s := r.ReflectFromType(reflect.TypeOf(v))
	s.Version = ""
	if def, err := json.Marshal(v); err == nil && !bytes.Equal(def, []byte("null")) {
		s.Default = json.RawMessage(def)
	}
	out, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("schema of %T: %w", v, err)
	}
	return out, nil
}

// Validator checks JSON values against one schema.
type Validator struct {
	s *validator.Schema
}

// NewValidator compiles a schema made by For.
func NewValidator(schema json.RawMessage) (*Validator, error) {
	doc, err := validator.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, err
	}
	c := validator.NewCompiler()
	if err := c.AddResource("port.json", doc); err != nil {
		return nil, err
	}
	s, err := c.Compile("port.json")
	if err != nil {
		return nil, err
	}
	return &Validator{s: s}, nil
}

// Validate checks a JSON document; the error says which part breaks the schema.
func (v *Validator) Validate(data []byte) error {
	doc, err := validator.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if err := v.s.Validate(doc); err != nil {
		if ve, ok := err.(*validator.ValidationError); ok {
			return fmt.Errorf("%s", flatten(ve))
		}
		return err
	}
	return nil
}

// flatten turns a validation error tree into one line per leaf.
func flatten(ve *validator.ValidationError) string {
	var out bytes.Buffer
	var walk func(e *validator.ValidationError)
	walk = func(e *validator.ValidationError) {
		if len(e.Causes) == 0 {
			if out.Len() > 0 {
				out.WriteString("; ")
			}
			loc := "/"
			if len(e.InstanceLocation) > 0 {
				loc = ""
				for _, p := range e.InstanceLocation {
					loc += "/" + p
				}
			}
			fmt.Fprintf(&out, "at %s: %s", loc, e.ErrorKind.LocalizedString(english))
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return out.String()
}
