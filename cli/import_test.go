package cli_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/cli"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
)

var update = flag.Bool("update", false, "rewrite the golden files of cli/testdata/import")

// runImport runs `tinymod import args...` with stdin and returns its stdout
// and stderr apart.
func runImport(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := cli.NewRootCommand("tinymod", "test")
	var out, errOut bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"import"}, args...))
	err = root.Execute()
	return out.String(), errOut.String(), err
}

// importCases are the golden cases: NAME.in.yaml is converted, with the flags
// of NAME.args if there is one, into NAME.out.yaml on stdout and NAME.err on
// stderr. `go test ./cli -run TestImportGolden -update` rewrites the outputs.
func importCases(t *testing.T) []string {
	t.Helper()
	ins, err := filepath.Glob(filepath.Join("testdata", "import", "*.in.yaml"))
	if err != nil || len(ins) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for i, in := range ins {
		ins[i] = strings.TrimSuffix(in, ".in.yaml")
	}
	return ins
}

func caseArgs(t *testing.T, name string) []string {
	t.Helper()
	args, err := os.ReadFile(name + ".args")
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(args))
}

func TestImportGolden(t *testing.T) {
	for _, name := range importCases(t) {
		t.Run(filepath.Base(name), func(t *testing.T) {
			stdout, stderr, err := runImport(t, "", append([]string{name + ".in.yaml"}, caseArgs(t, name)...)...)
			if err != nil {
				t.Fatalf("import: %v\nstderr:\n%s", err, stderr)
			}
			golden(t, name+".out.yaml", stdout)
			golden(t, name+".err", stderr)
		})
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update to rewrite it)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestImportStdin reads "-" as stdin, and gives what the file gives.
func TestImportStdin(t *testing.T) {
	name := filepath.Join("testdata", "import", "flow")
	in, err := os.ReadFile(name + ".in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fromFile, _, err := runImport(t, "", name+".in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fromStdin, _, err := runImport(t, string(in), "-")
	if err != nil {
		t.Fatal(err)
	}
	if fromStdin != fromFile || fromStdin == "" {
		t.Errorf("stdin gives\n%s\nthe file gives\n%s", fromStdin, fromFile)
	}
}

// TestImportFailures: malformed input, or nothing to convert, exits non-zero
// with nothing on stdout, so that a pipe into kubectl applies nothing.
func TestImportFailures(t *testing.T) {
	node := "apiVersion: operator.tinysystems.io/v1alpha1\nkind: TinyNode\nmetadata: {name: a.m.c-1}\nspec: {module: m:1, component: c}\n"
	cases := []struct {
		name, stdin string
		args        []string
		err, stderr string
	}{
		{name: "not yaml", stdin: node + "---\nkind: [", err: "document 2"},
		{name: "no kind", stdin: node + "---\nmetadata: {name: x}\n", err: "document 2: no apiVersion and kind"},
		{name: "list item not an object", stdin: "apiVersion: v1\nkind: List\nitems: [3]\n", err: "items[0] is not an object"},
		{name: "list item without kind", stdin: "apiVersion: v1\nkind: List\nitems: [{metadata: {name: x}}]\n", err: "items[0]: no apiVersion and kind"},
		{name: "empty", stdin: "# nothing\n", err: "nothing to import"},
		{
			name: "nothing convertible", stdin: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
			err: "nothing to import", stderr: "ConfigMap x: skipped: not a TinySystems kind",
		},
		{name: "bad module", stdin: node, args: []string{"--module", "Not_A_Name"}, err: `--module "Not_A_Name"`},
		{name: "missing file", args: []string{filepath.Join(t.TempDir(), "none.yaml")}, err: "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if len(args) == 0 || args[0] == "--module" {
				args = append([]string{"-"}, args...)
			}
			stdout, stderr, err := runImport(t, tc.stdin, args...)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want one containing %q", err, tc.err)
			}
			if stdout != "" {
				t.Errorf("stdout is not empty:\n%s", stdout)
			}
			if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.stderr)
			}
		})
	}
}

// outputObjects parses import's output as kubectl does, integers as int64.
func outputObjects(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatal(err)
		}
		raw, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatal(err)
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(raw); err != nil {
			t.Fatalf("%v in\n%s", err, doc)
		}
		objs = append(objs, obj)
	}
}

// TestImportAccepted applies every golden output to a real API server with
// tinymod's CRDs, rejecting unknown fields, and reads the objects back.
func TestImportAccepted(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, 30*time.Second)
	c := env.Client

	created := 0
	for _, name := range importCases(t) {
		data, err := os.ReadFile(name + ".out.yaml")
		if err != nil {
			t.Fatal(err)
		}
		objs := outputObjects(t, data)
		for _, obj := range objs {
			obj.SetNamespace(ns)
			if err := c.Create(ctx, obj, client.FieldValidation(metav1.FieldValidationStrict)); err != nil {
				t.Errorf("%s: create %s %s: %v", name, obj.GetKind(), obj.GetName(), err)
				continue
			}
			created++
			// Let the namespace go when the test ends: no module runs here to
			// release a node's finalizer.
			if len(obj.GetFinalizers()) > 0 {
				obj.SetFinalizers(nil)
				if err := c.Update(ctx, obj); err != nil {
					t.Errorf("drop the finalizer of %s: %v", obj.GetName(), err)
				}
			}
		}
	}
	if created == 0 {
		t.Fatal("no golden output to apply")
	}

	// The values survive the trip as JSON, large integers included.
	node := &v1alpha1.TinyNode{}
	key := client.ObjectKey{Namespace: ns, Name: "3f2a9c1e.tinysystems-common-module-v0.ticker-x7k2p"}
	if err := c.Get(ctx, key, node); err != nil {
		t.Fatal(err)
	}
	if node.Spec.Module != "tinysystems-common-module-v0" || node.Spec.Component != "ticker" {
		t.Errorf("module/component: %q/%q", node.Spec.Module, node.Spec.Component)
	}
	wantEdges := []v1alpha1.TinyNodeEdge{{ID: "6e1b7f0c-3a2d-4c5e-8f9a-0b1c2d3e4f50", Port: "out", To: "3f2a9c1e.tinysystems-common-module-v0.debug-k3m9q.in"}}
	if !reflect.DeepEqual(node.Spec.Edges, wantEdges) {
		t.Errorf("edges: %+v", node.Spec.Edges)
	}
	if len(node.Spec.Ports) != 1 || node.Spec.Ports[0].Configuration == nil {
		t.Fatalf("ports: %+v", node.Spec.Ports)
	}
	var settings any
	dec := json.NewDecoder(bytes.NewReader(node.Spec.Ports[0].Configuration.Raw))
	dec.UseNumber()
	if err := dec.Decode(&settings); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"delay": json.Number("1000"), "context": map[string]any{"n": json.Number("1"), "id": json.Number("9007199254740993")}}
	if !reflect.DeepEqual(settings, want) {
		t.Errorf("settings: %s", node.Spec.Ports[0].Configuration.Raw)
	}

	signal := &v1alpha1.TinySignal{}
	key.Name = "3f2a9c1e.tinysystems-common-module-v0.ticker-x7k2p-control"
	if err := c.Get(ctx, key, signal); err != nil {
		t.Fatal(err)
	}
	if signal.Spec.Data == nil || string(signal.Spec.Data.Raw) != `{"start":true}` {
		t.Errorf("signal data: %+v", signal.Spec.Data)
	}

	flow := &v1alpha1.TinyFlow{}
	key.Name = "hello-flow-abcde"
	if err := c.Get(ctx, key, flow); err != nil {
		t.Fatal(err)
	}
	if flow.Spec.Description != "Hello flow" {
		t.Errorf("flow description: %q", flow.Spec.Description)
	}
}
