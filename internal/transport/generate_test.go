package transport

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedCodeIsCurrent fails when transportpb differs from what protoc
// and the pinned plugins make of api/proto/transport.proto now.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		t.Fatal("protoc is not installed: run `make tools` (Debian's protobuf-compiler)")
	}
	tool := func(name string) string {
		out, err := exec.Command("go", "tool", "-n", name).Output()
		if err != nil {
			t.Fatalf("go tool -n %s: %v", name, err)
		}
		return strings.TrimSpace(string(out))
	}
	out := t.TempDir()
	cmd := exec.Command(protoc, "--plugin=protoc-gen-go="+tool("protoc-gen-go"), "--plugin=protoc-gen-go-grpc="+tool("protoc-gen-go-grpc"),
		"--go_out="+out, "--go_opt=module=github.com/tinymod/tinymod", "--go-grpc_out="+out, "--go-grpc_opt=module=github.com/tinymod/tinymod",
		"api/proto/transport.proto")
	cmd.Dir = "../.."
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, msg)
	}
	for _, name := range []string{"transport.pb.go", "transport_grpc.pb.go"} {
		want, err := os.ReadFile(filepath.Join(out, "internal", "transport", "transportpb", name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("transportpb", name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("transportpb/%s is stale: run `make generate`", name)
		}
	}
}
