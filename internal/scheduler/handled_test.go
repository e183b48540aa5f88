package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
)

// TestHandleBuckets: a duration lands in the first bucket whose bound it
// does not pass, as a Prometheus histogram puts it.
func TestHandleBuckets(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want int
	}{
		{0, 0}, {-time.Second, 0}, {10 * time.Microsecond, 0}, {10*time.Microsecond + 1, 1},
		{40 * time.Microsecond, 1}, {time.Millisecond, 4}, {42 * time.Second, 12}, {time.Hour, 12},
	} {
		var s portStats
		s.observe(c.d, false)
		for i := range s.buckets {
			if n := s.buckets[i].Load(); (i == c.want) != (n == 1) {
				t.Errorf("%v: bucket %d counts %d, want the one in bucket %d", c.d, i, n, c.want)
			}
		}
	}
	if handleBounds[11] != 10*time.Microsecond*(1<<22) {
		t.Errorf("last bound %v", handleBounds[11])
	}
}

// TestHandledSeries: replicas that share a registry sum their series with
// the same labels; a histogram counts what the counters count; the module's
// totals keep what a removed node counted.
func TestHandledSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	ctx := context.Background()
	var replicas []*Scheduler
	for range 2 {
		s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{&sink{}},
			Metrics: MetricsOptions{Registerer: reg, Module: "m"}})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Stop()
		s.Update(ctx, &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "a", Generation: 1}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "sink"}})
		replicas = append(replicas, s)
	}
	base := gathered(t, reg, "tinymod_module_messages_total", "module", "m", "result", "ok")
	replicas[0].Handle(ctx, Msg{To: "a.in", Data: Greeting{Who: "x"}})
	replicas[1].Handle(ctx, Msg{To: "a.in", Data: Greeting{Who: "y"}})
	replicas[1].Handle(ctx, Msg{To: "a.in", Data: Greeting{Who: "fail"}})
	for _, c := range []struct {
		family string
		labels []string
		want   float64
	}{
		{"tinymod_messages_total", []string{"node", "a", "port", "in", "result", "ok"}, 2},
		{"tinymod_messages_total", []string{"node", "a", "port", "in", "result", "error"}, 1},
		{"tinymod_handle_seconds", []string{"node", "a", "port", "in"}, 3},
		{"tinymod_module_messages_total", []string{"module", "m", "result", "ok"}, base + 2},
	} {
		if got := gathered(t, reg, c.family, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.family, c.labels, got, c.want)
		}
	}
	replicas[0].Remove("a")
	replicas[1].Remove("a")
	if got := gathered(t, reg, "tinymod_messages_total", "node", "a"); got != -1 {
		t.Errorf("a removed node still has series: %v", got)
	}
	if got := gathered(t, reg, "tinymod_module_messages_total", "module", "m", "result", "ok"); got != base+2 {
		t.Errorf("module total after removing the node: %v, want %v", got, base+2)
	}
	if got := gathered(t, reg, "tinymod_module_handle_seconds", "module", "m"); got < 3 {
		t.Errorf("module histogram count after removing the node: %v, want ≥ 3", got)
	}
}
