package schema

import (
	"encoding/json"
	"strings"
	"testing"
)

type settings struct {
	Delay   int    `json:"delay" jsonschema:"title=Delay,description=Milliseconds between ticks,minimum=1"`
	Mode    string `json:"mode,omitempty" jsonschema:"enum=fast,enum=slow"`
	Name    string `json:"name" jsonschema:"required"`
	Context any    `json:"context,omitempty" jsonschema:"title=Context"`
}

func TestForHonoursTags(t *testing.T) {
	raw, err := For(settings{Delay: 1000, Mode: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	props := s["properties"].(map[string]any)
	delay := props["delay"].(map[string]any)
	if delay["title"] != "Delay" || delay["description"] != "Milliseconds between ticks" || delay["type"] != "integer" {
		t.Errorf("delay: %v", delay)
	}
	if enum := props["mode"].(map[string]any)["enum"]; len(enum.([]any)) != 2 {
		t.Errorf("mode enum: %v", enum)
	}
	if req, _ := s["required"].([]any); len(req) != 1 || req[0] != "name" {
		t.Errorf("required: %v", s["required"])
	}
	if def := s["default"].(map[string]any); def["delay"] != 1000.0 || def["mode"] != "slow" {
		t.Errorf("default: %v", s["default"])
	}
}

func TestValidate(t *testing.T) {
	raw, err := For(settings{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewValidator(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate([]byte(`{"name":"a","delay":5,"mode":"fast","context":{"x":[1]}}`)); err != nil {
		t.Errorf("valid settings rejected: %v", err)
	}
	for doc, want := range map[string]string{
		`{"name":"a","delay":"soon"}`:  "/delay",
		`{"name":"a","mode":"medium"}`: "/mode",
		`{"delay":5}`:                  "name",
		`{"name":"a","delay":0}`:       "/delay",
		`[1,2]`:                        "object",
	} {
		err := v.Validate([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error mentioning %s", doc, err, want)
		}
	}
}

func TestForNil(t *testing.T) {
	raw, err := For(nil)
	if err != nil || string(raw) != "{}" {
		t.Fatalf("For(nil) = %s, %v", raw, err)
	}
}
