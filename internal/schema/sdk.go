package schema

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	invopop "github.com/invopop/jsonschema"
	"github.com/swaggest/jsonschema-go"
)

// Components written for the TinySystems SDK describe their ports with plain
// struct tags (`title:"..." required:"true"`) read by swaggest's reflector,
// plus keywords of the SDK's own (`configurable`, `enumTitles`, ...), and
// may shape a type's schema with swaggest's hooks. A port type that uses any
// of them is reflected the way the SDK reflects it, so such a component keeps
// its schemas on tinymod; every other type keeps invopop's reflection.

// plainTags are the field tags swaggest's reflector reads.
var plainTags = []string{
	"title", "description", "default", "const", "pattern", "format",
	"multipleOf", "maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum",
	"maxLength", "minLength", "maxItems", "minItems", "maxProperties", "minProperties",
	"uniqueItems", "enum", "required", "nullable", "readOnly", "writeOnly", "deprecated",
	"example", "examples",
}

// sdkScalarKeywords are the SDK's own tags, emitted as schema keywords of the
// same name with the value as bool, number or string. `format` and `type`
// are set as the standard keywords; `$ref` is not emitted, since it points
// into definitions a tinymod schema, being inline, does not have.
var sdkScalarKeywords = []string{
	"requiredWhen", "propertyOrder", "optionalWhen", "colSpan", "tab", "align",
	"configurable", "shared", "readonly", "language",
}

// sdkListKeywords are the SDK's tags holding a comma-separated list.
var sdkListKeywords = []string{"enumTitles"}

var (
	typeExposer    = reflect.TypeOf((*jsonschema.Exposer)(nil)).Elem()
	typeRawExposer = reflect.TypeOf((*jsonschema.RawExposer)(nil)).Elem()
	typePreparer   = reflect.TypeOf((*jsonschema.Preparer)(nil)).Elem()
	typeEnum       = reflect.TypeOf((*jsonschema.Enum)(nil)).Elem()
	typeNamedEnum  = reflect.TypeOf((*jsonschema.NamedEnum)(nil)).Elem()
)

// sdkStyle reports whether t, or a type within it, carries a plain schema tag
// or implements a swaggest hook.
func sdkStyle(t reflect.Type) bool {
	return sdkStyleSeen(t, map[reflect.Type]bool{})
}

func sdkStyleSeen(t reflect.Type, seen map[reflect.Type]bool) bool {
	for t.Kind() == reflect.Ptr {
		t = t.Elem()
	}
	if seen[t] {
		return false
	}
	seen[t] = true
	for _, hook := range []reflect.Type{typeExposer, typeRawExposer, typePreparer, typeEnum, typeNamedEnum} {
		if t.Implements(hook) || reflect.PointerTo(t).Implements(hook) {
			return true
		}
	}
	switch t.Kind() {
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() && !f.Anonymous {
				continue
			}
			if hasPlainTag(f.Tag) || sdkStyleSeen(f.Type, seen) {
				return true
			}
		}
	case reflect.Slice, reflect.Array, reflect.Map:
		return sdkStyleSeen(t.Elem(), seen)
	}
	return false
}

func hasPlainTag(tag reflect.StructTag) bool {
	for _, lists := range [][]string{plainTags, sdkScalarKeywords, sdkListKeywords, {"type"}} {
		for _, k := range lists {
			if _, ok := tag.Lookup(k); ok {
				return true
			}
		}
	}
	return false
}

// reflectSDK builds v's schema as the SDK does, with every definition inline.
func reflectSDK(v any) (jsonschema.Schema, error) {
	r := jsonschema.Reflector{}
	order := map[string]int{}
	return r.Reflect(v,
		jsonschema.InlineRefs,
		jsonschema.InterceptProp(func(p jsonschema.InterceptPropParams) error {
			if !p.Processed {
				return nil
			}
			if err := applyInvopopTags(p.Field, p.Name, p.PropertySchema, p.ParentSchema); err != nil {
				return fmt.Errorf("property %s: %w", p.Name, err)
			}
			applySDKKeywords(p.Field.Tag, p.PropertySchema)
			// The SDK numbers properties in the order it meets them, per object.
			parent := strings.Join(p.Path, "/")
			order[parent]++
			p.PropertySchema.WithExtraPropertiesItem("propertyOrder", order[parent])
			return nil
		}),
		// As in the SDK, only pointers are nullable.
		jsonschema.InterceptNullability(func(p jsonschema.InterceptNullabilityParams) {
			if p.Type.Kind() != reflect.Ptr {
				p.Schema.RemoveType(jsonschema.Null)
			}
		}),
	)
}

// applySDKKeywords emits the SDK's own keywords of one field's tag.
func applySDKKeywords(tag reflect.StructTag, s *jsonschema.Schema) {
	for _, k := range sdkScalarKeywords {
		if raw, ok := tag.Lookup(k); ok {
			s.WithExtraPropertiesItem(k, scalar(raw))
		}
	}
	for _, k := range sdkListKeywords {
		if raw, ok := tag.Lookup(k); ok {
			s.WithExtraPropertiesItem(k, strings.Split(raw, ","))
		}
	}
	if raw, ok := tag.Lookup("type"); ok {
		s.Type = &jsonschema.Type{}
		s.Type.WithSimpleTypes(jsonschema.SimpleType(raw))
	}
	// An array's items inherit shared and configurable, as in the SDK.
	if s.Items != nil && s.Items.SchemaOrBool != nil && s.Items.SchemaOrBool.TypeObject != nil {
		items := s.Items.SchemaOrBool.TypeObject
		for _, k := range []string{"shared", "configurable"} {
			if b, _ := s.ExtraProperties[k].(bool); b {
				items.WithExtraPropertiesItem(k, true)
			}
		}
	}
}

// scalar reads a tag value as the SDK does: bool, then number, else string.
func scalar(raw string) any {
	if b, err := strconv.ParseBool(raw); err == nil && (raw == "true" || raw == "false") {
		return b
	}
	if f, err := strconv.ParseFloat(raw, 64); err == nil {
		return f
	}
	return raw
}

// structural keywords of an invopop property are swaggest's to decide.
var structural = map[string]bool{
	"type": true, "properties": true, "items": true, "additionalProperties": true,
	"patternProperties": true, "required": true, "$defs": true, "$ref": true,
	"$id": true, "$schema": true,
}

// applyInvopopTags lets a field of an SDK-style type keep using tinymod's
// `jsonschema:"..."` tag: invopop reads the field alone and its annotations
// are laid over swaggest's property schema.
func applyInvopopTags(f reflect.StructField, name string, s, parent *jsonschema.Schema) error {
	if _, ok := f.Tag.Lookup("jsonschema"); !ok || !f.IsExported() {
		return nil
	}
	r := &invopop.Reflector{DoNotReference: true, ExpandedStruct: true, RequiredFromJSONSchemaTags: true, AllowAdditionalProperties: true, Anonymous: true}
	one := reflect.StructOf([]reflect.StructField{{Name: f.Name, Type: f.Type, Tag: f.Tag}})
	is := r.ReflectFromType(one)
	prop, ok := is.Properties.Get(name)
	if !ok {
		return nil
	}
	raw, err := json.Marshal(prop)
	if err != nil {
		return err
	}
	var keywords map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keywords); err != nil {
		return nil // a boolean schema carries no annotation
	}
	mine, err := json.Marshal(s)
	if err != nil {
		return err
	}
	var merged map[string]json.RawMessage
	if err := json.Unmarshal(mine, &merged); err != nil || merged == nil {
		merged = map[string]json.RawMessage{}
	}
	for k, v := range keywords {
		if !structural[k] {
			merged[k] = v
		}
	}
	out, err := json.Marshal(merged)
	if err != nil {
		return err
	}
	var next jsonschema.Schema
	if err := json.Unmarshal(out, &next); err != nil {
		return err
	}
	next.ReflectType, next.Parent = s.ReflectType, s.Parent
	*s = next
	for _, req := range is.Required {
		if req == name && !contains(parent.Required, name) {
			parent.Required = append(parent.Required, name)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
