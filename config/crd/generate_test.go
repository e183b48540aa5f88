package crd_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedCodeIsCurrent fails when the committed deepcopy code or CRD
// manifests differ from what controller-gen makes of api/v1alpha1 now.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs controller-gen")
	}
	root := moduleRoot(t)
	out := t.TempDir()

	run(t, root, "go", "tool", "controller-gen", "crd", "paths=./api/...", "output:crd:artifacts:config="+out)
	generated, err := filepath.Glob(filepath.Join(out, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	committed, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(generated) == 0 || len(generated) != len(committed) {
		t.Fatalf("controller-gen made %d CRDs, config/crd/bases has %d: run `make generate`", len(generated), len(committed))
	}
	for _, g := range generated {
		c := filepath.Join(root, "config", "crd", "bases", filepath.Base(g))
		assertSameFile(t, g, c)
	}

	deepcopy := run(t, root, "go", "tool", "controller-gen", "object", "paths=./api/...", "output:object:stdout")
	committedDeepcopy, err := os.ReadFile(filepath.Join(root, "api", "v1alpha1", "zz_generated.deepcopy.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(deepcopy, committedDeepcopy) {
		t.Errorf("api/v1alpha1/zz_generated.deepcopy.go is stale: run `make generate`")
	}
}

func assertSameFile(t *testing.T, generated, committed string) {
	t.Helper()
	want, err := os.ReadFile(generated)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(committed)
	if err != nil {
		t.Errorf("%s is missing: run `make generate`", filepath.Base(committed))
		return
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s is stale: run `make generate`", filepath.Base(committed))
	}
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	gomod := strings.TrimSpace(string(run(t, ".", "go", "env", "GOMOD")))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("not in a Go module")
	}
	return filepath.Dir(gomod)
}

func run(t *testing.T, dir string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}
