package harness

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
)

// Every `go test` process of the end-to-end suites builds its binaries, about
// 85 MB each; left behind, a few hundred runs fill a disk.
func TestBuiltBinaryIsRemovedWhenTheTestsEnd(t *testing.T) {
	bin := Build(t, "./test/e2e/harness/testdata/hello")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("built binary: %v", err)
	}
	controlplanetest.RunAtExit()
	if _, err := os.Stat(filepath.Dir(bin)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the binary's directory after the tests end: %v, want it gone", err)
	}
}
