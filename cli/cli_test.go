package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/gonum/graph/formats/dot"
	"gonum.org/v1/gonum/graph/formats/dot/ast"

	"github.com/tinymod/tinymod/cli"
	"github.com/tinymod/tinymod/components"
	"github.com/tinymod/tinymod/config/samples"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/manifest"
	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/module"
)

func TestMain(m *testing.M) { controlplanetest.Main(m) }

type setup struct {
	env        *controlplanetest.Env
	ns         string
	kubeconfig string
}

// newSetup applies the sample flow and runs two replicas of the standard module.
func newSetup(t *testing.T) *setup {
	env := controlplanetest.Start(t)
	s := &setup{env: env, ns: env.Namespace(t), kubeconfig: filepath.Join(t.TempDir(), "kubeconfig")}
	if err := os.WriteFile(s.kubeconfig, env.Kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := manifest.Apply(controlplanetest.Context(t, 30*time.Second), env.Client, s.ns, samples.DemoFlow); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"cli-a", "cli-b"} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- replica.Run(ctx, replica.Options{
				Module: module.Info{Name: "tinymod", Version: "test"}, Components: components.Standard(),
				Config: env.Config, Namespace: s.ns, Identity: id, GRPCAddr: "127.0.0.1:1" + id[len(id)-1:],
				Election: leader.Config{LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 500 * time.Millisecond},
			})
		}()
		t.Cleanup(func() { cancel(); <-done })
	}
	return s
}

func (s *setup) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := cli.NewRootCommand("tinymod", "test")
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append(args, "--kubeconfig", s.kubeconfig, "-n", s.ns))
	root.SetContext(controlplanetest.Context(t, time.Minute))
	err := root.Execute()
	return out.String(), err
}

// sampleNodes counts the TinyNodes of the sample flows.
func sampleNodes(t *testing.T) int {
	t.Helper()
	objs, err := manifest.Objects(samples.DemoFlow)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, o := range objs {
		if o.GetKind() == "TinyNode" {
			n++
		}
	}
	return n
}

func TestStatus(t *testing.T) {
	s := newSetup(t)
	nodes := sampleNodes(t)
	var st cli.Status
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		out, err := s.run(t, "status", "-o", "json")
		if err != nil {
			return err
		}
		st = cli.Status{}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return err
		}
		if len(st.Modules) != 1 || st.Modules[0].Leader == "" || len(st.Modules[0].Replicas) != 2 || len(st.Modules[0].Nodes) != nodes {
			return fmt.Errorf("status: %+v", st)
		}
		for _, n := range st.Modules[0].Nodes {
			if n.Ready != "True" {
				return fmt.Errorf("node %s not ready: %+v", n.Name, n)
			}
		}
		return nil
	})
	m := st.Modules[0]
	leaders := 0
	for _, r := range m.Replicas {
		if r.Leader {
			leaders++
			if r.Identity != m.Leader {
				t.Errorf("replica %s marked leader, module says %s", r.Identity, m.Leader)
			}
		}
		if !strings.HasPrefix(r.Addr, "127.0.0.1:1") {
			t.Errorf("replica %s address %q", r.Identity, r.Addr)
		}
	}
	if leaders != 1 || m.LeaseAge == "" {
		t.Errorf("%d leaders, lease age %q", leaders, m.LeaseAge)
	}
	text, err := s.run(t, "status")
	if err != nil || !strings.Contains(text, "MODULE tinymod") || !strings.Contains(text, "leader "+m.Leader) || !strings.Contains(text, "ticker-1") {
		t.Errorf("text status (%v):\n%s", err, text)
	}
}

func TestSignalWait(t *testing.T) {
	s := newSetup(t)
	out, err := s.run(t, "signal", "--node", "signal-1", "--port", "_control", "--data", `{"send":true}`, "--wait", "--timeout", "30s")
	if err != nil || !strings.Contains(out, "delivered") {
		t.Fatalf("signal --wait: %v\n%s", err, out)
	}
	out, err = s.run(t, "signal", "--node", "signal-1", "--port", "nope", "--wait", "--timeout", "30s")
	if err == nil || !strings.Contains(err.Error(), "failed") || !strings.Contains(err.Error(), "no such port") {
		t.Errorf("a signal to a missing port: %v\n%s", err, out)
	}
}

func TestGraph(t *testing.T) {
	s := newSetup(t)
	out, err := s.run(t, "graph", "--flow", "demo")
	if err != nil {
		t.Fatal(err)
	}
	file, err := dot.ParseString(out)
	if err != nil {
		t.Fatalf("DOT does not parse: %v\n%s", err, out)
	}
	nodes, edges := map[string]bool{}, map[string]bool{}
	for _, stmt := range file.Graphs[0].Stmts {
		switch st := stmt.(type) {
		case *ast.NodeStmt:
			nodes[strings.Trim(st.Node.ID, `"`)] = true
		case *ast.EdgeStmt:
			from := strings.Trim(st.From.(*ast.Node).ID, `"`)
			to := strings.Trim(st.To.Vertex.(*ast.Node).ID, `"`)
			edges[from+"->"+to] = true
		}
	}
	for _, n := range []string{"ticker-1", "router-1", "debug-loud", "debug-quiet", "signal-1", "delay-1", "debug-signal"} {
		if !nodes[n] {
			t.Errorf("node %s missing from the DOT", n)
		}
	}
	for _, e := range []string{"ticker-1->router-1", "router-1->debug-loud", "router-1->debug-quiet", "signal-1->delay-1", "delay-1->debug-signal"} {
		if !edges[e] {
			t.Errorf("edge %s missing from the DOT", e)
		}
	}
	if len(edges) != 5 {
		t.Errorf("%d edges: %v", len(edges), edges)
	}
	mermaid, err := s.run(t, "graph", "--flow", "demo", "--format", "mermaid")
	if err != nil || !strings.HasPrefix(mermaid, "flowchart LR") || !strings.Contains(mermaid, `ticker_1 -->|"out → in"| router_1`) {
		t.Errorf("mermaid (%v):\n%s", err, mermaid)
	}
}
