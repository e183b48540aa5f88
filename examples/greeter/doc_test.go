package main

import (
	"os"
	"strings"
	"testing"

	"github.com/tinymod/tinymod/internal/manifest"
)

// TestDocShowsThisCode keeps docs/writing-a-component.md and this example identical.
func TestDocShowsThisCode(t *testing.T) {
	doc, err := os.ReadFile("../../docs/writing-a-component.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"greeter.go", "main.go", "flow.yaml", "greeter_test.go"} {
		code, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(doc), string(code)) {
			t.Errorf("docs/writing-a-component.md does not show %s as it is", name)
		}
	}
	flow, _ := os.ReadFile("flow.yaml")
	if objs, err := manifest.Objects(flow); err != nil || len(objs) != 4 {
		t.Errorf("flow.yaml: %d objects, %v", len(objs), err)
	}
}
