// Package schema turns the Go types of component ports into JSON Schemas and
// checks values against them.
package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

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
//
// A type written for the TinySystems SDK (plain tags such as `title:"..."
// required:"true"`, or swaggest's Exposer and Preparer hooks) is reflected as
// the SDK reflects it; see Describe.
func For(v any) (json.RawMessage, error) {
	d, err := Describe(v)
	return d.Schema, err
}

// Description is a port's JSON Schema and what had to be left out of it.
type Description struct {
	Schema json.RawMessage
	// Contradictions list where the port's value breaks its own schema; when
	// there are any, the value is not published as the schema's default.
	Contradictions []string
}

// Describe returns the JSON Schema of v's type with v as its default, like
// For, and says why the default was left out if it was. A type that uses the
// SDK's plain tags or swaggest's hooks anywhere in it is reflected by
// swaggest's reflector, as the SDK does, with every definition inline and the
// SDK's keywords (configurable, shared, enumTitles, propertyOrder, ...) kept;
// any other type by invopop's. The published default never breaks the schema:
// a required property that encoding left out (omitempty) is written into it
// with its zero value, a nil slice or map as an empty one, and a default that
// still breaks the schema is left out, with the contradictions in the
// schema's $comment.
//
// Descriptions are kept by type and value: ports are described again every
// time a component's ports are read, which is often, and reflecting a type
// costs about 200 µs.
func Describe(v any) (Description, error) {
	if v == nil {
		return Description{Schema: json.RawMessage(`{}`)}, nil
	}
	var def json.RawMessage
	if raw, err := json.Marshal(v); err == nil && !bytes.Equal(raw, []byte("null")) {
		def = raw
	}
	key := describedKey{typ: reflect.TypeOf(v), def: string(def)}
	if d, ok := described.get(key); ok {
		return d, nil
	}
	d, err := describe(v, def)
	if err == nil {
		described.put(key, d)
	}
	return d.clone(), err
}

// describedKey is a value's type and JSON.
type describedKey struct {
	typ reflect.Type
	def string
}

// describedCache holds at most describedMax descriptions, and starts over
// when full: values that change with every call (a control port showing a
// counter) must not grow it without bound.
type describedCache struct {
	mu sync.Mutex
	m  map[describedKey]Description
}

const describedMax = 4096

var described = &describedCache{m: map[describedKey]Description{}}

func (c *describedCache) get(k describedKey) (Description, bool) {
	c.mu.Lock()
	d, ok := c.m[k]
	c.mu.Unlock()
	return d.clone(), ok
}

func (c *describedCache) put(k describedKey, d Description) {
	c.mu.Lock()
	if len(c.m) >= describedMax {
		c.m = map[describedKey]Description{}
	}
	c.m[k] = d.clone()
	c.mu.Unlock()
}

// clone copies d, so that no caller shares the cached bytes.
func (d Description) clone() Description {
	return Description{Schema: bytes.Clone(d.Schema), Contradictions: slices.Clone(d.Contradictions)}
}

func describe(v any, def json.RawMessage) (Description, error) {
	if sdkStyle(reflect.TypeOf(v)) {
		s, err := reflectSDK(v)
		if err != nil {
			return Description{}, fmt.Errorf("schema of %T: %w", v, err)
		}
		return publish(v, def, func(def json.RawMessage, comment string) ([]byte, error) {
			if def != nil {
				s.WithDefault(def)
			}
			if comment != "" {
				s.WithComment(comment)
			}
			return json.Marshal(s)
		})
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
	return publish(v, def, func(def json.RawMessage, comment string) ([]byte, error) {
		if def != nil {
			s.Default = def
		}
		s.Comments = comment
		return json.Marshal(s)
	})
}

// publish renders a schema through render, with def as its default once def
// is made to agree with it, or without a default, and with a comment, if not.
func publish(v any, def json.RawMessage, render func(def json.RawMessage, comment string) ([]byte, error)) (Description, error) {
	bare, err := render(nil, "")
	if err != nil {
		return Description{}, fmt.Errorf("schema of %T: %w", v, err)
	}
	d := Description{Schema: bare}
	if def == nil {
		return d, nil
	}
	settled, contradictions, err := settleDefault(bare, def)
	if err != nil {
		return Description{}, fmt.Errorf("schema of %T: %w", v, err)
	}
	comment := ""
	if len(contradictions) > 0 {
		settled = nil
		comment = "default left out, it breaks this schema: " + strings.Join(contradictions, "; ")
	}
	out, err := render(settled, comment)
	if err != nil {
		return Description{}, fmt.Errorf("schema of %T: %w", v, err)
	}
	return Description{Schema: out, Contradictions: contradictions}, nil
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
			return fmt.Errorf("%s", strings.Join(flatten(ve), "; "))
		}
		return err
	}
	return nil
}

// flatten turns a validation error tree into one line per leaf.
func flatten(ve *validator.ValidationError) []string {
	var out []string
	var walk func(e *validator.ValidationError)
	walk = func(e *validator.ValidationError) {
		if len(e.Causes) == 0 {
			loc := "/"
			if len(e.InstanceLocation) > 0 {
				loc = ""
				for _, p := range e.InstanceLocation {
					loc += "/" + p
				}
			}
			out = append(out, fmt.Sprintf("at %s: %s", loc, e.ErrorKind.LocalizedString(english)))
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return out
}
