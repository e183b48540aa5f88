package components_test

import (
	"bytes"
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/components/collect"
	"github.com/tinymod/tinymod/components/debug"
	"github.com/tinymod/tinymod/components/delay"
	"github.com/tinymod/tinymod/components/inject"
	"github.com/tinymod/tinymod/components/router"
	"github.com/tinymod/tinymod/components/signal"
	"github.com/tinymod/tinymod/components/split"
	"github.com/tinymod/tinymod/components/ticker"
	"github.com/tinymod/tinymod/components/transform"
	"github.com/tinymod/tinymod/config/samples"
	"github.com/tinymod/tinymod/module/moduletest"
)

// sampleNodes returns the TinyNodes of the sample flows, in the test's module.
func sampleNodes(t *testing.T) map[string]*v1alpha1.TinyNode {
	t.Helper()
	nodes := map[string]*v1alpha1.TinyNode{}
	for _, doc := range bytes.Split(samples.DemoFlow, []byte("\n---\n")) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		if meta.Kind != "TinyNode" {
			continue
		}
		n := &v1alpha1.TinyNode{}
		if err := yaml.UnmarshalStrict(doc, n); err != nil {
			t.Fatal(err)
		}
		n.Spec.Module = moduletest.ModuleName
		nodes[n.Name] = n
	}
	return nodes
}

// TestSampleBatchFlow runs the sample's batch flow through the real
// components: a press of inject-1 is one order, split into its lines, each
// priced by transform-1 and collected back by collect-1 into one batch.
func TestSampleBatchFlow(t *testing.T) {
	nodes := sampleNodes(t)
	f := moduletest.New(t, &inject.Component{}, &split.Component{}, &transform.Component{}, &collect.Component{}, &debug.Component{},
		&ticker.Component{}, &router.Component{}, &signal.Component{}, &delay.Component{})
	// Every node of the samples runs as written, batch flow or not; targets
	// first, since an edge must lead to a node.
	for _, name := range []string{"debug-loud", "debug-quiet", "router-1", "ticker-1", "debug-signal", "delay-1", "signal-1", "debug-batch", "collect-1", "transform-1", "split-1", "inject-1"} {
		n := nodes[name]
		if n == nil {
			t.Fatalf("the sample has no node %s", name)
		}
		if name == "collect-1" {
			n.Spec.Edges[0].To = moduletest.SinkNode + ".in" // to watch the batch
		}
		if p := f.Apply(n); len(p) != 0 {
			t.Fatalf("sample node %s: %+v", name, p)
		}
	}
	if len(nodes) != 12 {
		t.Errorf("the samples have %d nodes, this test knows 12", len(nodes))
	}
	f.Send("inject-1._control", map[string]any{"send": true})
	got := f.Sink.Got()
	if len(got) != 1 {
		t.Fatalf("one press gave %d batches", len(got))
	}
	b := got[0].(collect.Batch)
	want := []any{
		map[string]any{"sku": "apple", "total": 1.5, "line": "1 of 3"},
		map[string]any{"sku": "bread", "total": 2.25, "line": "2 of 3"},
		map[string]any{"sku": "cheese", "total": 8.0, "line": "3 of 3"},
	}
	if b.Reason != collect.ReasonCount || !reflect.DeepEqual(b.Items, want) {
		t.Errorf("batch %+v", b)
	}
	// A reader does not press.
	f.Leader.Stop()
	f.Send("inject-1._control", map[string]any{"send": true})
	if n := len(f.Sink.Got()); n != 1 {
		t.Errorf("a reader's press made %d batches", n-1)
	}
}
