package debug

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
)

// TestLogsEveryMessageAndMirrorsRarely sends a burst: every message is one
// log line with its data as JSON; the metadata is written at most once an
// interval, and the newest messages reach it.
func TestLogsEveryMessageAndMirrorsRarely(t *testing.T) {
	var (
		mu    sync.Mutex
		lines []string
	)
	log := funcr.NewJSON(func(obj string) { mu.Lock(); lines = append(lines, obj); mu.Unlock() }, funcr.Options{})
	ctx := module.WithLog(context.Background(), log)

	var (
		writes []time.Time
		meta   = map[string]string{}
	)
	handler := func(_ context.Context, port string, data any) any {
		if fn, ok := data.(func(*v1alpha1.TinyNode)); ok && port == v1alpha1.ReconcilePort {
			mu.Lock()
			fn(&v1alpha1.TinyNode{Status: v1alpha1.TinyNodeStatus{Metadata: meta}})
			writes = append(writes, time.Now())
			mu.Unlock()
		}
		return nil
	}
	c := (&Component{every: 200 * time.Millisecond}).Instance().(*Component)
	c.Handle(ctx, handler, v1alpha1.ReconcilePort, &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "dbg"}})
	for i := range 30 {
		c.Handle(ctx, handler, InPort, map[string]any{"i": i, "s": "x"})
	}
	mu.Lock()
	if len(lines) != 30 {
		t.Fatalf("%d log lines for 30 messages", len(lines))
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("not JSON: %s", lines[0])
	}
	if first["msg"] != "debug" || first["node"] != "dbg" || first["data"].(map[string]any)["s"] != "x" {
		t.Errorf("log line: %s", lines[0])
	}
	mu.Unlock()

	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		done := strings.Contains(meta[LastKey], `"i":29`)
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the newest message never reached the metadata: %s", meta[LastKey])
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(writes) > 2 {
		t.Errorf("%d metadata writes for a burst of 30, want at most 2", len(writes))
	}
	for i := 1; i < len(writes); i++ {
		if gap := writes[i].Sub(writes[i-1]); gap < 200*time.Millisecond {
			t.Errorf("writes %s apart, want at least the interval (200ms)", gap)
		}
	}
	var last []map[string]any
	if err := json.Unmarshal([]byte(meta[LastKey]), &last); err != nil || len(last) != Keep || last[Keep-1]["i"] != 29.0 {
		t.Errorf("metadata last = %s", meta[LastKey])
	}
}
