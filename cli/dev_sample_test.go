package cli

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tinymod/tinymod/internal/manifest"
)

// TestSampleFlowTakesTheModulesName: dev's built-in flow runs in the module
// that dev starts, whatever its name.
func TestSampleFlowTakesTheModulesName(t *testing.T) {
	objs, err := manifest.Objects(sampleFlow("greeter"))
	if err != nil {
		t.Fatal(err)
	}
	nodes := 0
	for _, o := range objs {
		if o.GetKind() != "TinyNode" {
			continue
		}
		nodes++
		if m, _, _ := unstructured.NestedString(o.Object, "spec", "module"); m != "greeter" {
			t.Errorf("node %s in module %q", o.GetName(), m)
		}
	}
	if nodes == 0 || strings.Contains(string(sampleFlow("greeter")), "module: tinymod") {
		t.Errorf("%d nodes; tinymod left in the flow", nodes)
	}
}
