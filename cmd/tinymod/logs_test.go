package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controlplane"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/manifest"
)

// logsFlow is a signal node wired to a debug node, for the replica of module "logs".
const logsFlow = `
apiVersion: operator.tinysystems.io/v1alpha1
kind: TinyNode
metadata: {name: button}
spec:
  module: logs
  component: signal
  ports:
    - {port: _settings, configuration: {context: {said: hello}}}
  edges:
    - {id: button-printer, port: out, to: printer.in}
---
apiVersion: operator.tinysystems.io/v1alpha1
kind: TinyNode
metadata: {name: printer}
spec: {module: logs, component: debug}
`

// TestRunLogsEachKeyOnce runs `tinymod run --log-format json` through
// start-up, leadership, a reconciled flow, a delivered signal, a debug message
// and a graceful stop, and reads every line it writes, stdout and stderr
// alike: each is one JSON object, no key appears twice in any object, and it
// carries time (RFC 3339, nanoseconds), level, msg, identity and module.
func TestRunLogsEachKeyOnce(t *testing.T) {
	if err := controlplane.CheckBinaries(controlplane.BinDir()); err != nil {
		t.Fatal(err)
	}
	bin := buildTinymod(t)
	controlplanetest.Lock(t)
	cp, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, cp.Kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cp.Config, client.Options{Scheme: controlplanetest.NewScheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := controlplanetest.Context(t, 3*time.Minute)
	if _, err := manifest.Apply(ctx, c, "default", []byte(logsFlow)); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "run", "--name", "logs", "--namespace", "default", "--kubeconfig", kubeconfig,
		"--identity", "logs-0", "--grpc-listen", "127.0.0.1:0", "--metrics-bind-address", "0",
		"--health-probe-bind-address", "0", "--log-format", "json")
	out := &lineLog{}
	var reading sync.WaitGroup
	for _, pipe := range []func() (io.ReadCloser, error){cmd.StdoutPipe, cmd.StderrPipe} {
		r, err := pipe()
		if err != nil {
			t.Fatal(err)
		}
		reading.Add(1)
		go func() { defer reading.Done(); out.read(r) }()
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	exited := make(chan error, 1)
	go func() {
		reading.Wait() // every line read before Wait closes the pipes
		exited <- cmd.Wait()
	}()

	out.wait(t, regexp.MustCompile(`"msg":"became leader"`), 0, 60*time.Second)
	// The leader reconciles the nodes: their ports reach their status.
	controlplanetest.Eventually(t, 60*time.Second, func() error {
		for _, name := range []string{"button", "printer"} {
			n := &v1alpha1.TinyNode{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, n); err != nil {
				return err
			}
			if len(n.Status.Ports) == 0 {
				return fmt.Errorf("node %s has no ports in its status yet", name)
			}
		}
		return nil
	})
	sig := &v1alpha1.TinySignal{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "press-", Namespace: "default"},
		Spec: v1alpha1.TinySignalSpec{Node: "button", Port: v1alpha1.ControlPort,
			Data: &apiextensionsv1.JSON{Raw: []byte(`{"send":true}`)}},
	}
	if err := c.Create(ctx, sig); err != nil {
		t.Fatal(err)
	}
	out.wait(t, regexp.MustCompile(`"msg":"debug"`), 0, 60*time.Second)
	controlplanetest.Eventually(t, 60*time.Second, func() error {
		err := c.Get(ctx, client.ObjectKeyFromObject(sig), &v1alpha1.TinySignal{})
		if apierrors.IsNotFound(err) {
			return nil // delivered
		}
		return fmt.Errorf("signal %s not delivered yet (%v)", sig.Name, err)
	})

	stopAndWait(t, cmd, exited, syscall.SIGTERM, 60*time.Second)

	out.mu.Lock()
	lines := out.lines
	out.mu.Unlock()
	seen := map[string]bool{}
	bad := 0
	for i, line := range lines {
		fields, err := checkLogLine(line)
		if err == nil && fields["identity"] != "logs-0" {
			err = fmt.Errorf("identity %v, want logs-0", fields["identity"])
		}
		if err == nil && fields["module"] != "logs" {
			err = fmt.Errorf("module %v, want logs", fields["module"])
		}
		if err != nil {
			if bad++; bad <= 10 {
				t.Errorf("line %d: %v\n%s", i+1, err, line)
			}
			continue
		}
		if _, ok := fields["controller"]; ok {
			seen["a controller-runtime line"] = true
		}
		switch fields["msg"] {
		case "became leader", "replica stopped", "exiting":
			seen[fields["msg"].(string)] = true
		case "debug":
			if fields["node"] == "printer" && fmt.Sprint(fields["data"]) == "map[said:hello]" {
				seen["debug"] = true
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d lines are not well-formed", bad, len(lines))
	}
	for _, want := range []string{"a controller-runtime line", "became leader", "debug", "replica stopped", "exiting"} {
		if !seen[want] {
			t.Errorf("no well-formed %q line among %d lines", want, len(lines))
		}
	}
}

// checkLogLine parses line strictly as one JSON object whose objects, at any
// depth, hold each key once (encoding/json keeps the last of two equal keys
// without a word), and checks the fields every line carries. It returns the
// top-level fields.
func checkLogLine(line string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object")
	}
	if err := checkObject(dec, ""); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("more than one JSON value in the line")
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(line), &fields); err != nil {
		return nil, err
	}
	for _, key := range []string{"time", "level", "msg", "identity", "module"} {
		if s, ok := fields[key].(string); !ok || s == "" {
			return nil, fmt.Errorf("no %q string", key)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, fields["time"].(string)); err != nil {
		return nil, fmt.Errorf("time: %w", err)
	}
	return fields, nil
}

// checkObject reads the rest of an object whose '{' dec has just returned.
func checkObject(dec *json.Decoder, path string) error {
	keys := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string) // an object's tokens alternate key, value
		if keys[key] {
			return fmt.Errorf("key %q appears twice in %s", key, cmp.Or(path, "the line"))
		}
		keys[key] = true
		if err := checkValue(dec, path+"."+key); err != nil {
			return err
		}
	}
	_, err := dec.Token() // '}'
	return err
}

func checkValue(dec *json.Decoder, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		return checkObject(dec, path)
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if err := checkValue(dec, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ']'
		return err
	}
	return nil
}

// TestCheckLogLine checks the checker on lines it must reject.
func TestCheckLogLine(t *testing.T) {
	const ok = `{"time":"2026-01-02T03:04:05.123456789Z","level":"info","msg":"m","identity":"i","module":"m","data":{"a":[{"b":1},{"b":2}]}}`
	if _, err := checkLogLine(ok); err != nil {
		t.Fatalf("rejected a good line: %v", err)
	}
	for _, line := range []string{
		`{"time":"2026-01-02T03:04:05Z","level":"info","msg":"m","identity":"i","module":"m","module":"m"}`,
		`{"time":"2026-01-02T03:04:05Z","level":"info","msg":"m","identity":"i","module":"m","data":{"a":1,"a":2}}`,
		`{"time":"2026-01-02T03:04:05Z","level":"info","msg":"m","identity":"i","module":"m","data":[{"a":1,"a":1}]}`,
		`{"time":"2026-01-02T03:04:05Z","level":"info","msg":"m","identity":"i","module":"m"} {}`,
		`{"time":"2026-01-02 03:04:05","level":"info","msg":"m","identity":"i","module":"m"}`,
		`{"time":"2026-01-02T03:04:05Z","level":"info","msg":"m","module":"m"}`,
		`2026-01-02T03:04:05Z	info	m	{"identity":"i","module":"m"}`,
		`["not", "an", "object"]`,
	} {
		if _, err := checkLogLine(line); err == nil {
			t.Errorf("accepted %s", line)
		}
	}
}
