package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	validator "github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/swaggest/jsonschema-go"
)

// Types written in the TinySystems SDK's style: plain tags and swaggest hooks.

// route marshals as its value and exposes its options as an enum.
type route struct {
	Value   string
	Options []string
}

func (r route) MarshalJSON() ([]byte, error)     { return json.Marshal(r.Value) }
func (r *route) UnmarshalJSON(data []byte) error { return json.Unmarshal(data, &r.Value) }

func (r *route) JSONSchema() (jsonschema.Schema, error) {
	s := jsonschema.Schema{}
	s.AddType(jsonschema.String)
	s.WithTitle("Route")
	s.WithExtraPropertiesItem("shared", true)
	for _, o := range r.Options {
		s.Enum = append(s.Enum, o)
	}
	return s, nil
}

// record is a map whose schema gets an id when it declares nothing else.
type record map[string]any

func (record) PrepareJSONSchema(s *jsonschema.Schema) error {
	if len(s.Properties) == 0 {
		id := jsonschema.Schema{}
		id.AddType(jsonschema.String)
		id.WithTitle("ID")
		s.WithRequired("id")
		s.Properties = map[string]jsonschema.SchemaOrBool{"id": id.ToSchemaOrBool()}
	}
	return nil
}

type condition struct {
	Route route `json:"route" required:"true" title:"Route"`
	Match bool  `json:"match" required:"true" title:"Match"`
}

type status struct {
	Note string `json:"note" title:"Note" readonly:"true"`
}

type request struct {
	Context    any               `json:"context,omitempty" configurable:"true" title:"Context" description:"Passed through"`
	Op         string            `json:"op" required:"true" enum:"store,delete" enumTitles:"Store,Delete" default:"store" title:"Operation"`
	Send       bool              `json:"send" format:"button" title:"Send" required:"true"`
	Doc        record            `json:"doc" type:"object" title:"Document"`
	Docs       []record          `json:"docs" title:"Documents"`
	Conditions []condition       `json:"conditions" title:"Conditions" minItems:"1" uniqueItems:"true"`
	Status     status            `json:"status" title:"Status" tab:"Advanced" align:"right" colSpan:"col-span-6"`
	ByName     map[string]status `json:"byName" title:"By name"`
	Last       *status           `json:"last" title:"Last"`
	Fallback   *route            `json:"fallback" title:"Fallback"`
	Items      []any             `json:"items" shared:"true" title:"Items"`
	Retries    int               `json:"retries" minimum:"1" title:"Retries"`
	Legacy     string            `json:"legacy" jsonschema:"title=Legacy,description=Tagged the tinymod way,required"`
}

func decode(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	return m
}

// at follows a slash-separated path of keys and array indexes.
func at(v any, path string) any {
	for _, k := range strings.Split(path, "/") {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			var i int
			if _, err := fmt.Sscan(k, &i); err != nil || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func has(list any, want string) bool {
	l, _ := list.([]any)
	for _, x := range l {
		if x == want {
			return true
		}
	}
	return false
}

// checkSelfConsistent fails when the schema's own default breaks it, with
// formats asserted.
func checkSelfConsistent(t *testing.T, raw []byte) {
	t.Helper()
	doc, err := validator.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := validator.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("s.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("s.json")
	if err != nil {
		t.Fatalf("compile %s: %v", raw, err)
	}
	def, ok := doc.(map[string]any)["default"]
	if !ok {
		return
	}
	if err := s.Validate(def); err != nil {
		t.Errorf("the schema's default breaks it: %v\n%s", err, raw)
	}
}

func TestSchemaSDKTags(t *testing.T) {
	v := request{
		Op:         "store",
		Conditions: []condition{{Route: route{Value: "A", Options: []string{"A", "B"}}, Match: true}},
		Retries:    3,
		Legacy:     "x",
	}
	raw, err := For(v)
	if err != nil {
		t.Fatal(err)
	}
	s := decode(t, raw)
	for path, want := range map[string]any{
		"type":                                                            "object",
		"properties/context/title":                                        "Context",
		"properties/context/description":                                  "Passed through",
		"properties/context/configurable":                                 true,
		"properties/context/propertyOrder":                                1.0,
		"properties/op/title":                                             "Operation",
		"properties/op/default":                                           "store",
		"properties/op/enum/1":                                            "delete",
		"properties/op/enumTitles/1":                                      "Delete",
		"properties/op/propertyOrder":                                     2.0,
		"properties/send/format":                                          "button",
		"properties/send/type":                                            "boolean",
		"properties/doc/type":                                             "object",
		"properties/doc/properties/id/title":                              "ID",
		"properties/doc/required/0":                                       "id",
		"properties/docs/items/properties/id/title":                       "ID",
		"properties/conditions/minItems":                                  1.0,
		"properties/conditions/uniqueItems":                               true,
		"properties/conditions/items/properties/route/title":              "Route",
		"properties/conditions/items/properties/route/shared":             true,
		"properties/conditions/items/properties/route/enum/1":             "B",
		"properties/conditions/items/properties/match/title":              "Match",
		"properties/status/tab":                                           "Advanced",
		"properties/status/align":                                         "right",
		"properties/status/colSpan":                                       "col-span-6",
		"properties/status/properties/note/readonly":                      true,
		"properties/status/properties/note/propertyOrder":                 1.0,
		"properties/byName/additionalProperties/properties/note/readonly": true,
		"properties/last/properties/note/readonly":                        true,
		"properties/fallback/title":                                       "Fallback",
		"properties/fallback/shared":                                      true,
		"properties/items/shared":                                         true,
		"properties/items/items/shared":                                   true,
		"properties/retries/minimum":                                      1.0,
		"properties/retries/type":                                         "integer",
		"properties/legacy/title":                                         "Legacy",
		"properties/legacy/description":                                   "Tagged the tinymod way",
		"default/retries":                                                 3.0,
		"default/conditions/0/route":                                      "A",
	} {
		if got := at(s, path); !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", path, got, want)
		}
	}
	for _, name := range []string{"op", "send", "legacy"} {
		if !has(s["required"], name) {
			t.Errorf("required %v lacks %s", s["required"], name)
		}
	}
	for _, name := range []string{"route", "match"} {
		if !has(at(s, "properties/conditions/items/required"), name) {
			t.Errorf("condition's required lacks %s", name)
		}
	}
	if n := bytes.Count(raw, []byte(`"format"`)); n != 1 {
		t.Errorf("format keyword appears %d times: %s", n, raw)
	}
	if _, err := NewValidator(raw); err != nil {
		t.Errorf("schema does not compile: %v", err)
	}
	checkSelfConsistent(t, raw)
}

// A route's enum comes from the value the port is built with.
func TestSchemaExposerSeesThePortValue(t *testing.T) {
	raw, err := For(condition{Route: route{Value: "POST", Options: []string{"POST", "OTHER"}}})
	if err != nil {
		t.Fatal(err)
	}
	s := decode(t, raw)
	if got := at(s, "properties/route/enum"); !reflect.DeepEqual(got, []any{"POST", "OTHER"}) {
		t.Errorf("route enum = %v", got)
	}
	if got := at(s, "default/route"); got != "POST" {
		t.Errorf("default route = %v", got)
	}
}

func TestSchemaDefaultContradictions(t *testing.T) {
	type query struct {
		Query string `json:"query,omitempty" required:"true" title:"Query"`
	}
	type mode struct {
		Mode string `json:"mode,omitempty" required:"true" enum:"fast,slow" title:"Mode"`
	}
	type retries struct {
		Retries int `json:"retries" minimum:"1" title:"Retries"`
	}
	type name struct {
		Name string `json:"name" pattern:"^[a-z]+$" title:"Name"`
	}
	type email struct {
		Email string `json:"email" format:"email" title:"Email"`
	}
	type item struct {
		Key string `json:"key,omitempty" required:"true" title:"Key"`
	}
	type items struct {
		Items []item `json:"items" title:"Items"`
	}
	type store struct {
		Doc  record `json:"doc,omitempty" type:"object" required:"true" title:"Document"`
		Keep int    `json:"keep" title:"Keep"`
	}
	type enumOK struct {
		Op string `json:"op" enum:"a,b" title:"Op"`
	}
	for _, tc := range []struct {
		name    string
		v       any
		want    string // the default published; "" for none, or for any when problem is "" too
		problem string // what the contradiction names
	}{
		{"required left out by omitempty", query{}, `{"query":""}`, ""},
		{"required zero value outside the enum", mode{}, "", "/mode"},
		{"below minimum", retries{}, "", "/retries"},
		{"pattern", name{Name: "Two words"}, "", "/name"},
		{"format", email{Email: "nobody"}, "", "/email"},
		{"required left out in array items", items{Items: []item{{}}}, `{"items":[{"key":""}]}`, ""},
		{"required object left out, filled with its required", store{Keep: 2}, `{"doc":{"id":""},"keep":2}`, ""},
		{"tinymod tags below minimum", settings{}, "", "/delay"},
		{"nil slice and map stand for empty ones", request{Op: "store", Retries: 1, Conditions: []condition{{Route: route{Value: "A", Options: []string{"A"}}}}}, "", ""},
		{"nil slice below minItems", request{Op: "store", Retries: 1}, "", "/conditions"},
		{"agreeing default kept as is", enumOK{Op: "b"}, `{"op":"b"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Describe(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			s := decode(t, d.Schema)
			def, hasDef := s["default"]
			if tc.want == "" && tc.problem == "" {
				if !hasDef || len(d.Contradictions) > 0 {
					t.Errorf("default %v left out: %v", def, d.Contradictions)
				}
			} else if tc.want == "" {
				if hasDef {
					t.Errorf("default %v published, want none", def)
				}
				joined := strings.Join(d.Contradictions, "; ")
				if !strings.Contains(joined, tc.problem) {
					t.Errorf("contradictions %q do not name %s", joined, tc.problem)
				}
				if c, _ := s["$comment"].(string); !strings.Contains(c, tc.problem) {
					t.Errorf("$comment %q does not name %s", c, tc.problem)
				}
			} else {
				got, _ := json.Marshal(def)
				if !hasDef || string(got) != tc.want {
					t.Errorf("default = %s, want %s", got, tc.want)
				}
				if len(d.Contradictions) > 0 || s["$comment"] != nil {
					t.Errorf("contradictions reported: %v", d.Contradictions)
				}
			}
			checkSelfConsistent(t, d.Schema)
		})
	}
}
