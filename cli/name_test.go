package cli_test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/cli"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
)

func sub(t *testing.T, root *cobra.Command, name string) *cobra.Command {
	t.Helper()
	for _, c := range root.Commands() {
		if c.Name() == name {
			return c
		}
	}
	t.Fatalf("no %s command", name)
	return nil
}

// TestRunAndDevDefaultToTheBinarysName: an author's binary that forgets
// --name still runs its own module's nodes.
func TestRunAndDevDefaultToTheBinarysName(t *testing.T) {
	root := cli.NewRootCommand("greeter", "v0")
	for _, name := range []string{"run", "dev"} {
		f := sub(t, root, name).Flags().Lookup("name")
		if f == nil || f.DefValue != "greeter" {
			t.Errorf("%s --name defaults to %+v, want greeter", name, f)
		}
		if f != nil && len(f.Annotations[cobra.BashCompOneRequiredFlag]) > 0 {
			t.Errorf("%s --name is still required", name)
		}
	}
	// The standalone constructors keep their behaviour.
	if f := cli.NewRunCommand("v0", nil).Flags().Lookup("name"); f.DefValue != "" || len(f.Annotations[cobra.BashCompOneRequiredFlag]) == 0 {
		t.Errorf("NewRunCommand's --name: default %q, annotations %v; want required", f.DefValue, f.Annotations)
	}
	if f := cli.NewDevCommand().Flags().Lookup("name"); f.DefValue != "tinymod" {
		t.Errorf("NewDevCommand's --name defaults to %q", f.DefValue)
	}
}

// TestRunWithoutNameRunsTheBinarysModule: `run` without --name creates the
// TinyModule named after the binary, and status explains the nodes of a
// module that no replica runs.
func TestRunWithoutNameRunsTheBinarysModule(t *testing.T) {
	s := newSetup(t)
	ctx := controlplanetest.Context(t, time.Minute)
	orphan := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "orphan", Namespace: s.ns},
		Spec: v1alpha1.TinyNodeSpec{Module: "nobody", Component: "debug"}}
	if err := s.env.Client.Create(ctx, orphan); err != nil {
		t.Fatal(err)
	}

	// The example module's own binary, as its author builds it: run sets
	// process-wide loggers, so it runs in a process of its own.
	bin := filepath.Join(t.TempDir(), "greeter")
	if out, err := exec.Command("go", "build", "-o", bin, "../examples/greeter").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var logs strings.Builder
	cmd := exec.Command(bin, "run", "--kubeconfig", s.kubeconfig, "--namespace", s.ns, "--identity", "greeter-0",
		"--grpc-listen", "127.0.0.1:0", "--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--log-format", "text")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("run: %v\n%s", err, logs.String())
		}
	})
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		var m v1alpha1.TinyModule
		return s.env.Client.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: "greeter"}, &m)
	})

	controlplanetest.Eventually(t, 30*time.Second, func() error {
		out, err := s.run(t, "status", "-o", "json")
		if err != nil {
			return err
		}
		var st cli.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return err
		}
		for _, m := range st.Modules {
			for _, n := range m.Nodes {
				switch {
				case n.Name == "orphan" && n.Reason != `no replica of module "nobody" is running`:
					return fmt.Errorf("orphan: %+v", n)
				case n.Name != "orphan" && n.Reason != "":
					return fmt.Errorf("node %s of a running module: %+v", n.Name, n)
				}
			}
		}
		return nil
	})
	text, err := s.run(t, "status")
	if err != nil || !strings.Contains(text, `no replica of module "nobody" is running`) {
		t.Errorf("text status (%v):\n%s", err, text)
	}
}
