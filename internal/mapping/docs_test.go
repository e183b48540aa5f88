package mapping_test

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/components/ticker"
	"github.com/tinymod/tinymod/internal/mapping"
)

// The example in docs/mapping.md, pasted as written, maps what the ticker it
// configures really sends: no expression fails or reads a missing field.
func TestDocExampleMapsTickerOutput(t *testing.T) {
	doc, err := os.ReadFile("../../docs/mapping.md")
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(doc, []byte("```yaml\n"))
	if start < 0 {
		t.Fatal("docs/mapping.md has no yaml example")
	}
	block := doc[start+len("```yaml\n"):]
	block = block[:bytes.Index(block, []byte("```"))]

	nodes := map[string]v1alpha1.TinyNode{}
	for _, part := range strings.Split(string(block), "\n---\n") {
		var n v1alpha1.TinyNode
		if err := yaml.UnmarshalStrict([]byte(part), &n); err != nil {
			t.Fatalf("example does not parse: %v", err)
		}
		nodes[n.Name] = n
	}

	var settings ticker.Settings
	var mappingPort *v1alpha1.TinyNodePortConfig
	for _, n := range nodes {
		for i, p := range n.Spec.Ports {
			switch {
			case n.Spec.Component == ticker.ComponentName && p.Port == v1alpha1.SettingsPort:
				if err := json.Unmarshal(p.Configuration.Raw, &settings); err != nil {
					t.Fatal(err)
				}
			case strings.HasSuffix(p.From, "."+ticker.OutPort):
				if _, ok := nodes[strings.TrimSuffix(p.From, "."+ticker.OutPort)]; !ok {
					t.Fatalf("mapping from %s: no such node in the example", p.From)
				}
				mappingPort = &n.Spec.Ports[i]
			}
		}
	}
	if mappingPort == nil {
		t.Fatal("example has no mapping from a ticker's out")
	}

	// What the ticker sends on out, in JSON form as it travels.
	tk := (&ticker.Component{}).Instance()
	tk.Handle(t.Context(), nil, v1alpha1.SettingsPort, settings)
	var sent any
	for _, p := range tk.Ports() {
		if p.Name == ticker.OutPort {
			data, err := json.Marshal(p.Configuration)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &sent); err != nil {
				t.Fatal(err)
			}
		}
	}
	if sent == nil {
		t.Fatal("the example's ticker sends nothing")
	}

	tpl, err := mapping.Compile(mappingPort.Configuration.Raw)
	if err != nil {
		t.Fatal(err)
	}
	out, err := tpl.Eval(sent)
	if err != nil {
		t.Fatalf("example mapping fails on what the ticker sends (%v): %v", sent, err)
	}
	for k, v := range out.(map[string]any) {
		if v == nil || v == "" {
			t.Errorf("%s maps to %#v: it reads a field the ticker does not send", k, v)
		}
	}
}
