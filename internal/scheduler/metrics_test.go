package scheduler

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
)

// TestPerNodeSeriesAreBounded: nodes past the bound get no series of their
// own, the module-wide series count every message, and a removed node's
// place goes to another.
func TestPerNodeSeriesAreBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{&sink{}},
		Metrics: MetricsOptions{Registerer: reg, Module: "m", PerNode: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	ctx := context.Background()
	add := func(name string) {
		s.Update(ctx, &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "sink"}})
	}
	send := func(name, who string) {
		s.Handle(ctx, Msg{To: name + ".in", Data: Greeting{Who: who}})
	}
	// nodes lists the nodes with series of their own; total sums the
	// module-wide counter of result.
	gather := func() (nodes map[string]bool, ok, failed float64) {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		nodes = map[string]bool{}
		for _, f := range families {
			for _, m := range f.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				switch f.GetName() {
				case "tinymod_messages_total", "tinymod_handle_seconds":
					nodes[labels["node"]] = true
				case "tinymod_module_messages_total":
					if labels["module"] != "m" {
						t.Errorf("module-wide series labelled %v", labels)
					}
					if labels["result"] == "ok" {
						ok = m.GetCounter().GetValue()
					} else {
						failed = m.GetCounter().GetValue()
					}
				}
			}
		}
		return nodes, ok, failed
	}

	for _, n := range []string{"a", "b", "c"} {
		add(n)
	}
	_, okBefore, failedBefore := gather() // what starting the nodes counted
	for _, n := range []string{"a", "b", "c"} {
		send(n, "x")
	}
	send("c", "fail")
	nodes, ok, failed := gather()
	if len(nodes) > 2 {
		t.Errorf("%d nodes have series of their own, want at most 2: %v", len(nodes), nodes)
	}
	if ok-okBefore != 3 || failed-failedBefore != 1 {
		t.Errorf("module-wide: %v ok, %v failed; want 3 and 1", ok-okBefore, failed-failedBefore)
	}

	// A removed node's series go, and its place with them.
	var gone string
	for n := range nodes {
		gone = n
		break
	}
	s.Remove(gone)
	add("d")
	send("d", "x")
	nodes, _, _ = gather()
	if nodes[gone] || !nodes["d"] {
		t.Errorf("after removing %s and adding d: series of %v", gone, nodes)
	}
}

// TestPerNodeSeriesOff: with a negative bound, only the module-wide series exist.
func TestPerNodeSeriesOff(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{&sink{}},
		Metrics: MetricsOptions{Registerer: reg, Module: "m", PerNode: -1}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	s.Update(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "a", Generation: 1}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "sink"}})
	s.Handle(context.Background(), Msg{To: "a.in", Data: Greeting{Who: "x"}})
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := false
	for _, f := range families {
		switch f.GetName() {
		case "tinymod_messages_total", "tinymod_handle_seconds":
			if len(f.GetMetric()) > 0 {
				t.Errorf("%s has %d series with per-node series off", f.GetName(), len(f.GetMetric()))
			}
		case "tinymod_module_messages_total":
			seen = true
		}
	}
	if !seen {
		t.Error("no module-wide series")
	}
}
