package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
)

// TestUIExposedSaysWhatOthersCan: an exposed page hands its session token
// to whoever loads it, so anyone who reaches it can change flows with the
// user's credentials; the warning must say so, not only that they can see.
func TestUIExposedSaysWhatOthersCan(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.Kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // serve nothing: only what it says at start matters
	var out, errOut bytes.Buffer
	cmd := NewUICommand()
	cmd.SetArgs([]string{"--kubeconfig", kubeconfig, "-n", ns, "--listen", "127.0.0.1:0", "--expose"})
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatalf("tinymod ui --expose: %v\n%s%s", err, out.String(), errOut.String())
	}
	warning := errOut.String()
	if !strings.Contains(warning, "change") || !strings.Contains(warning, "credentials") {
		t.Errorf("the warning of an exposed page does not say that others can change flows with your credentials: %q", warning)
	}
}
