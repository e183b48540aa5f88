package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/internal/scheduler"
)

// Status is what `tinymod status -o json` prints.
type Status struct {
	Namespace string         `json:"namespace"`
	Modules   []ModuleStatus `json:"modules"`
}

// ModuleStatus is one module with its replicas and nodes.
type ModuleStatus struct {
	Name     string          `json:"name"`
	Addr     string          `json:"addr,omitempty"`
	Version  string          `json:"version,omitempty"`
	Leader   string          `json:"leader,omitempty"`
	LeaseAge string          `json:"leaseAge,omitempty"`
	Replicas []ReplicaStatus `json:"replicas"`
	Nodes    []NodeStatus    `json:"nodes"`
}

// ReplicaStatus is one replica, from its membership Lease.
type ReplicaStatus struct {
	Identity string `json:"identity"`
	Addr     string `json:"addr,omitempty"`
	Leader   bool   `json:"leader"`
	// Renewed is how long ago the replica last renewed its membership.
	Renewed string `json:"renewed"`
	// MetricsAddr serves the replica's metrics and per-node health.
	MetricsAddr string `json:"metricsAddr,omitempty"`
}

// NodeStatus is one node's readiness.
type NodeStatus struct {
	Name      string `json:"name"`
	Component string `json:"component"`
	Flow      string `json:"flow,omitempty"`
	Ready     string `json:"ready"`
	Error     string `json:"error,omitempty"`
	// Reason says why a node has no Ready condition when tinymod can tell:
	// no replica of its module is running (none has a live membership Lease),
	// as when a module was started without --name or under another name.
	Reason string `json:"reason,omitempty"`
	// Errors, ErrorsPerSecond and LastError come from the module's replicas
	// (failed deliveries and panics they saw), not from the API server.
	Errors          uint64  `json:"errors,omitempty"`
	ErrorsPerSecond float64 `json:"errorsPerSecond,omitempty"`
	LastError       string  `json:"lastError,omitempty"`
	LastErrorAge    string  `json:"lastErrorAge,omitempty"`
}

// Problem is what is wrong with the node: its status.error, else Reason.
func (n NodeStatus) Problem() string {
	if n.Error != "" {
		return n.Error
	}
	return n.Reason
}

// GetStatus reads the namespace's modules, replicas and nodes.
func GetStatus(ctx context.Context, c client.Client, ns string) (*Status, error) {
	var (
		modules v1alpha1.TinyModuleList
		nodes   v1alpha1.TinyNodeList
		leases  coordinationv1.LeaseList
	)
	if err := c.List(ctx, &modules, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("list TinyModules: %w", err)
	}
	if err := c.List(ctx, &nodes, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("list TinyNodes: %w", err)
	}
	if err := c.List(ctx, &leases, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("list Leases: %w", err)
	}
	byName := map[string]*ModuleStatus{}
	get := func(name string) *ModuleStatus {
		if m, ok := byName[name]; ok {
			return m
		}
		m := &ModuleStatus{Name: name, Replicas: []ReplicaStatus{}, Nodes: []NodeStatus{}}
		byName[name] = m
		return m
	}
	for _, m := range modules.Items {
		s := get(m.Name)
		s.Addr, s.Version = m.Status.Addr, m.Status.Version
	}
	now := time.Now()
	live := map[string]bool{} // modules with a replica whose membership Lease is current
	for _, l := range leases.Items {
		holder := ""
		if l.Spec.HolderIdentity != nil {
			holder = *l.Spec.HolderIdentity
		}
		if module := l.Labels[leader.ModuleLabel]; module != "" && l.Labels[leader.RoleLabel] == "member" {
			r := ReplicaStatus{Identity: holder, Addr: l.Annotations[leader.AddressAnnotation], MetricsAddr: l.Annotations[leader.MetricsAnnotation]}
			if l.Spec.RenewTime != nil {
				r.Renewed = age(now.Sub(l.Spec.RenewTime.Time))
			}
			s := get(module)
			s.Replicas = append(s.Replicas, r)
			if !leader.MemberExpired(&l, now, 0) {
				live[module] = true
			}
			continue
		}
		if module, ok := strings.CutSuffix(l.Name, "-leader"); ok {
			if _, known := byName[module]; !known {
				continue
			}
			s := get(module)
			s.Leader = holder
			if holder != "" && l.Spec.AcquireTime != nil {
				s.LeaseAge = age(now.Sub(l.Spec.AcquireTime.Time))
			}
		}
	}
	for _, n := range nodes.Items {
		ns := NodeStatus{Name: n.Name, Component: n.Spec.Component, Flow: n.Labels[v1alpha1.FlowNameLabel], Ready: "Unknown", Error: n.Status.Error}
		if c := meta.FindStatusCondition(n.Status.Conditions, v1alpha1.ConditionReady); c != nil {
			ns.Ready = string(c.Status)
		}
		if !live[n.Spec.Module] {
			ns.Reason = fmt.Sprintf("no replica of module %q is running", n.Spec.Module)
		}
		get(n.Spec.Module).Nodes = append(get(n.Spec.Module).Nodes, ns)
	}
	out := &Status{Namespace: ns}
	for _, m := range byName {
		for i := range m.Replicas {
			m.Replicas[i].Leader = m.Replicas[i].Identity == m.Leader && m.Leader != ""
		}
		sort.Slice(m.Replicas, func(i, j int) bool { return m.Replicas[i].Identity < m.Replicas[j].Identity })
		sort.Slice(m.Nodes, func(i, j int) bool { return m.Nodes[i].Name < m.Nodes[j].Name })
		out.Modules = append(out.Modules, *m)
	}
	sort.Slice(out.Modules, func(i, j int) bool { return out.Modules[i].Name < out.Modules[j].Name })
	return out, nil
}

func age(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// Print writes the status as tables.
func (s *Status) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, m := range s.Modules {
		fmt.Fprintf(tw, "MODULE %s\tleader %s\tfor %s\taddr %s\tversion %s\n", m.Name, dash(m.Leader), dash(m.LeaseAge), dash(m.Addr), dash(m.Version))
		fmt.Fprintf(tw, "  REPLICA\tADDRESS\tROLE\tRENEWED\n")
		for _, r := range m.Replicas {
			role := "reader"
			if r.Leader {
				role = "leader"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s ago\n", r.Identity, dash(r.Addr), role, r.Renewed)
		}
		fmt.Fprintf(tw, "  NODE\tCOMPONENT\tREADY\tERROR\tERRORS/S\tLAST FAILURE\n")
		for _, n := range m.Nodes {
			last := "-"
			if n.LastError != "" {
				last = fmt.Sprintf("%s ago: %s", n.LastErrorAge, n.LastError)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%.1f\t%s\n", n.Name, n.Component, n.Ready, dash(n.Problem()), n.ErrorsPerSecond, last)
		}
	}
	_ = tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// NewStatusCommand returns `status`.
func NewStatusCommand() *cobra.Command {
	var (
		namespace, kubeconfig, output string
		window                        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show modules, their replicas and leader, and their nodes",
		Long: `Show modules, their replicas and leader, and their nodes with readiness
and, from the replicas themselves, failed deliveries per second and the last
failure: each replica keeps them in memory and serves them beside its metrics,
read directly or through the API server's pod proxy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, ns, err := kubeConfig(kubeconfig, namespace)
			if err != nil {
				return err
			}
			c, err := client.New(cfg, client.Options{Scheme: replica.Scheme()})
			if err != nil {
				return err
			}
			s, err := GetStatus(cmd.Context(), c, ns)
			if err != nil {
				return err
			}
			for _, note := range AddHealth(cmd.Context(), &HealthReader{Config: cfg, Namespace: ns}, s, window) {
				fmt.Fprintln(cmd.ErrOrStderr(), "health:", note)
			}
			switch output {
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			case "", "text":
				s.Print(cmd.OutOrStdout())
				return nil
			}
			return fmt.Errorf("-o must be text or json, not %q", output)
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace (default: the kubeconfig's, else default)")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.Flags().DurationVar(&window, "rate-window", time.Second, "read the replicas' failure counts twice this far apart for ERRORS/S; 0 reads once")
	return cmd
}

// NewGraphCommand returns `graph`.
func NewGraphCommand() *cobra.Command {
	var namespace, kubeconfig, flow, format string
	cmd := &cobra.Command{
		Use:   "graph [--flow NAME] [--format dot|mermaid]",
		Short: "Print a flow as Graphviz DOT or Mermaid",
		Example: `  tinymod graph --flow demo | dot -Tsvg > demo.svg
  tinymod graph --flow demo --format mermaid`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ns, err := kubeClient(kubeconfig, namespace)
			if err != nil {
				return err
			}
			var nodes v1alpha1.TinyNodeList
			opts := []client.ListOption{client.InNamespace(ns)}
			if flow != "" {
				opts = append(opts, client.MatchingLabels{v1alpha1.FlowNameLabel: flow})
			}
			if err := c.List(cmd.Context(), &nodes, opts...); err != nil {
				return err
			}
			return WriteGraph(cmd.OutOrStdout(), nodes.Items, format)
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace (default: the kubeconfig's, else default)")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file")
	cmd.Flags().StringVar(&flow, "flow", "", "only the nodes of this flow (label "+v1alpha1.FlowNameLabel+")")
	cmd.Flags().StringVar(&format, "format", "dot", "dot or mermaid")
	return cmd
}

// WriteGraph writes nodes and their edges as DOT or Mermaid.
func WriteGraph(w io.Writer, nodes []v1alpha1.TinyNode, format string) error {
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	type edge struct{ from, to, label string }
	var edges []edge
	for _, n := range nodes {
		for _, e := range n.Spec.Edges {
			target, port, err := scheduler.SplitTarget(e.To)
			if err != nil {
				continue
			}
			edges = append(edges, edge{n.Name, target, e.Port + " → " + port})
		}
	}
	switch format {
	case "dot":
		fmt.Fprintln(w, "digraph flow {")
		fmt.Fprintln(w, "  rankdir=LR;")
		fmt.Fprintln(w, "  node [shape=box, style=rounded];")
		for _, n := range nodes {
			fmt.Fprintf(w, "  %q [label=%q];\n", n.Name, n.Name+"\n"+n.Spec.Component)
		}
		for _, e := range edges {
			fmt.Fprintf(w, "  %q -> %q [label=%q];\n", e.from, e.to, e.label)
		}
		fmt.Fprintln(w, "}")
	case "mermaid":
		id := func(name string) string { return strings.NewReplacer("-", "_", ".", "_").Replace(name) }
		fmt.Fprintln(w, "flowchart LR")
		for _, n := range nodes {
			fmt.Fprintf(w, "  %s[\"%s<br/>%s\"]\n", id(n.Name), n.Name, n.Spec.Component)
		}
		for _, e := range edges {
			fmt.Fprintf(w, "  %s -->|\"%s\"| %s\n", id(e.from), e.label, id(e.to))
		}
	default:
		return fmt.Errorf("--format must be dot or mermaid, not %q", format)
	}
	return nil
}
