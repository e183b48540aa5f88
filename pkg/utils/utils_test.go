package utils_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/tinymod/tinymod/internal/leadership"
	"github.com/tinymod/tinymod/pkg/utils"
)

// TestIsLeaderIsLive: the answer follows the source's terms, on a context made
// before they started and ended.
func TestIsLeaderIsLive(t *testing.T) {
	if utils.IsLeader(context.Background()) {
		t.Error("a context without a source leads")
	}
	var m leadership.Manual
	ctx := leadership.NewContext(context.Background(), &m, "test")
	if utils.IsLeader(ctx) {
		t.Error("leads before any term")
	}
	m.Start()
	if !utils.IsLeader(ctx) {
		t.Error("does not lead during a term")
	}
	m.Stop()
	if utils.IsLeader(ctx) {
		t.Error("leads after the term ended")
	}
	m.Start()
	if !utils.IsLeader(ctx) {
		t.Error("does not lead in a later term")
	}
}

// TestFacadeIsLight: a component that imports pkg/utils takes in nothing
// beyond the standard library, Kubernetes clients least of all.
func TestFacadeIsLight(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/tinymod/tinymod/pkg/utils").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		first := strings.SplitN(pkg, "/", 2)[0]
		if strings.Contains(first, ".") && !strings.HasPrefix(pkg, "github.com/tinymod/tinymod/") {
			t.Errorf("pkg/utils depends on %s", pkg)
		}
	}
}
