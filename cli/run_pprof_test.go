package cli_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinymod/tinymod/cli"
	"github.com/tinymod/tinymod/components"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
)

// TestRunServesPprof: with --pprof-bind-address, run serves /debug/pprof/
// for as long as it runs, and stops serving when it returns.
func TestRunServesPprof(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.Kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()

	cmd := cli.NewRunCommand("test", components.Standard())
	cmd.SetArgs([]string{"--name", "pprof", "--namespace", ns, "--kubeconfig", kubeconfig, "--identity", "pprof-0",
		"--grpc-listen", "127.0.0.1:0", "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--log-format", "text", "--pprof-bind-address", addr})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	controlplanetest.Eventually(t, 30*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/debug/pprof/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine") {
			return fmt.Errorf("GET /debug/pprof/: %s", resp.Status)
		}
		return nil
	})
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "goroutine profile") {
		t.Errorf("goroutine profile: %.200s", body)
	}

	cancel()
	select {
	case err := <-done:
		// Stopped this early, the replica may not have finished starting.
		if err != nil && !errors.Is(err, context.Canceled) && !strings.Contains(err.Error(), "context canceled") {
			t.Errorf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still serves after run returned", addr)
	}
}
