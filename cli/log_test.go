package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// syncBuffer is a bytes.Buffer that many goroutines may log to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLoggerWritesEachKeyOnce gives a key again through WithValues and through
// the call itself, as the run command, the replica and a component do, in
// both formats: each key appears once, with the latest value.
func TestLoggerWritesEachKeyOnce(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			var out syncBuffer
			log, err := newLogger(format, &out)
			if err != nil {
				t.Fatal(err)
			}
			node := log.WithValues("identity", "dev-0", "module", "tinymod").
				WithValues("module", "tinymod", "identity", "dev-0").
				WithName("scheduler").WithValues("node", "printer")
			node.Info("debug", "node", "printer", "data", json.RawMessage(`{"said":"hello"}`))
			node.WithValues("node", "other").Info("again")

			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if len(lines) != 2 {
				t.Fatalf("want 2 lines, got %d:\n%s", len(lines), out.String())
			}
			// The text format writes the fields as JSON with a space after
			// each colon and comma.
			flat := strings.NewReplacer(`": `, `":`, `, "`, `,"`)
			for i, line := range lines {
				lines[i] = flat.Replace(line)
				for _, key := range []string{"identity", "module", "node"} {
					if n := strings.Count(line, `"`+key+`":`); n != 1 {
						t.Errorf("line %d has %q %d times: %s", i+1, key, n, line)
					}
				}
			}
			if !strings.Contains(lines[0], `"identity":"dev-0","module":"tinymod","node":"printer","data":{"said":"hello"}`) {
				t.Errorf("first line's fields are not in the order first given: %s", lines[0])
			}
			if !strings.Contains(lines[1], `"node":"other"`) {
				t.Errorf("a key given again does not take the latest value: %s", lines[1])
			}
			if format == "json" {
				for i, line := range lines {
					var m map[string]any
					if err := json.Unmarshal([]byte(line), &m); err != nil {
						t.Errorf("line %d is not JSON: %v", i+1, err)
					}
				}
			}
		})
	}
}

// TestLoggerSharedFieldsUnderConcurrency logs a Kubernetes object, which the
// encoder rewrites in the fields it is given, from many goroutines through
// one logger: the fields the logger holds must not be shared with a write.
func TestLoggerSharedFieldsUnderConcurrency(t *testing.T) {
	var out syncBuffer
	log, err := newLogger("json", &out)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}}
	l := log.WithValues("object", pod, "module", "m")
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Info("hello")
		}()
	}
	wg.Wait()
	for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		if strings.Count(line, `"module":`) != 1 || !strings.Contains(line, `"object":{"namespace":"ns","name":"p"}`) {
			t.Errorf("line: %s", line)
		}
	}
}

// TestUniqueKeysWithinNamespaces checks that a key repeats freely across
// namespaces and is replaced within its own.
func TestUniqueKeysWithinNamespaces(t *testing.T) {
	base := []zapcore.Field{
		{Key: "a", Type: zapcore.StringType, String: "1"},
		{Key: "x", Type: zapcore.NamespaceType},
		{Key: "a", Type: zapcore.StringType, String: "2"},
	}
	got := unique(base, []zapcore.Field{{Key: "a", Type: zapcore.StringType, String: "3"}, {Key: "b", Type: zapcore.StringType, String: "4"}})
	var keys []string
	for _, f := range got {
		keys = append(keys, f.Key+"="+f.String)
	}
	if want := "a=1 x= a=3 b=4"; strings.Join(keys, " ") != want {
		t.Errorf("got %s, want %s", strings.Join(keys, " "), want)
	}
}
