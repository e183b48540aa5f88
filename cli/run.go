package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/internal/tracing"
	"github.com/tinymod/tinymod/module"
)

// RunOptions are the flags of `run`.
type RunOptions struct {
	Name, Namespace, Kubeconfig, Identity string
	GRPCListen, GRPCAdvertise             string
	MetricsAddr, HealthAddr               string
	// PprofAddr serves net/http/pprof's /debug/pprof/ there; "" or "0"
	// (the default) turns it off.
	PprofAddr                           string
	LeaseDuration, RenewDeadline, Retry time.Duration
	LogFormat                           string
	TokenFile                           string
	InsecureGRPC                        bool
	// KubeQPS and KubeBurst bound the replica's API requests (0: the
	// replica's defaults).
	KubeQPS   float32
	KubeBurst int
	// PerNodeMetrics bounds the nodes whose ports get their own Prometheus
	// series (0: 500; negative: none); module totals are always there.
	PerNodeMetrics int
	// LeaderJournal, if set, is the file that records leader-only work.
	LeaderJournal string
	// ShutdownTimeout bounds a graceful stop.
	ShutdownTimeout time.Duration
}

// NewRunCommand returns `run`: one replica of the module that hosts components
// (module.Registered() when nil), version as its version. --name is required;
// NewRootCommand's `run` defaults it to the binary's name instead.
func NewRunCommand(version string, components []module.Component) *cobra.Command {
	return newRunCommand("", version, components)
}

// newRunCommand is `run` with --name defaulting to name, or required when
// name is empty.
func newRunCommand(name, version string, components []module.Component) *cobra.Command {
	o := RunOptions{}
	use, example := "run --name NAME", "tinymod run --name tinymod"
	if name != "" {
		use, example = "run [--name NAME]", name+" run"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: "Run one replica of the module",
		Long: `Runs one replica of the module: it runs every TinyNode of the module, campaigns
for the module's Lease (NAME-leader) and, while it holds it, processes
TinySignals and writes status. Start several for a module that survives the
loss of any one of them.`,
		Example: "  " + example + " --grpc-listen 127.0.0.1:0 --metrics-bind-address 0 --health-probe-bind-address 0",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return run(ctx, o, version, components)
		},
	}
	f := cmd.Flags()
	nameUsage := "the module's name: its TinyModule, its Lease NAME-leader, the spec.module of its nodes"
	if name == "" {
		nameUsage += " (required)"
	}
	f.StringVar(&o.Name, "name", name, nameUsage)
	f.StringVar(&o.Namespace, "namespace", "", "the module's namespace (default $POD_NAMESPACE, else default)")
	f.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster, else $KUBECONFIG, else ~/.kube/config)")
	f.StringVar(&o.Identity, "identity", "", "this replica's identity (default $POD_NAME, else hostname plus a random suffix)")
	f.StringVar(&o.GRPCListen, "grpc-listen", ":8483", "gRPC listen address; port 0 picks a free one")
	f.StringVar(&o.GRPCAdvertise, "grpc-advertise", "", "gRPC address other replicas and modules use (default: the listen address)")
	f.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8080", "Prometheus metrics address; 0 turns them off")
	f.StringVar(&o.HealthAddr, "health-probe-bind-address", ":8081", "/healthz and /readyz address; 0 turns them off")
	f.StringVar(&o.PprofAddr, "pprof-bind-address", "", "serve Go's profiles (net/http/pprof, /debug/pprof/) on this address; empty or 0 (the default) turns it off")
	f.DurationVar(&o.LeaseDuration, "lease-duration", leader.DefaultLeaseDuration, "how long others wait after a renewal before taking the lease")
	f.DurationVar(&o.RenewDeadline, "renew-deadline", leader.DefaultRenewDeadline, "how long a leader leads after its last successful renewal")
	f.DurationVar(&o.Retry, "retry-period", leader.DefaultRetryPeriod, "time between renewals and acquire attempts")
	f.StringVar(&o.LogFormat, "log-format", "json", "json or text")
	f.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", 20*time.Second, "bound on a graceful stop")
	f.StringVar(&o.TokenFile, "grpc-token-file", "", "file holding the shared token that calls between modules carry (default $"+TokenEnv+")")
	f.BoolVar(&o.InsecureGRPC, "insecure-grpc", false, "serve gRPC on a non-loopback address without a token")
	f.Float32Var(&o.KubeQPS, "kube-api-qps", 0, "API requests a second this replica may make (0: 40); a leader writes every node's status at start-up")
	f.IntVar(&o.KubeBurst, "kube-api-burst", 0, "API request burst (0: 60)")
	f.IntVar(&o.PerNodeMetrics, "per-node-metrics", 0, "how many nodes get message series of their own, by port (0: 500; negative: none); module totals are always kept")
	f.StringVar(&o.LeaderJournal, "leader-journal", "", "append a JSON line to this file each time leadership is confirmed for leader-only work, "+
		"with identity, lease transitions and CLOCK_MONOTONIC times, for auditing that no two replicas lead at once")
	if name == "" {
		_ = cmd.MarkFlagRequired("name")
	}
	return cmd
}

func defaultIdentity() string {
	if pod := os.Getenv("POD_NAME"); pod != "" {
		return pod
	}
	host, err := os.Hostname()
	if err != nil {
		host = "tinymod"
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}

func run(ctx context.Context, o RunOptions, version string, components []module.Component) error {
	if o.Name == "" {
		return fmt.Errorf("--name is required")
	}
	election := leader.Config{LeaseDuration: o.LeaseDuration, RenewDeadline: o.RenewDeadline, RetryPeriod: o.Retry}
	if err := election.Validate(); err != nil {
		return err
	}
	if o.Namespace == "" {
		o.Namespace = os.Getenv("POD_NAMESPACE")
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.Identity == "" {
		o.Identity = defaultIdentity()
	}
	defer tuneGCUnlessSet(os.Getenv)()
	base, err := newLogger(o.LogFormat, os.Stderr)
	if err != nil {
		return err
	}
	// replica.Run adds the identity and the module to the logger it is given;
	// the lines logged here and by libraries outside it get them from log.
	log := base.WithValues("identity", o.Identity, "module", o.Name)
	ctrllog.SetLogger(log)
	klog.SetLogger(log)

	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.Kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}

	if o.KubeQPS > 0 {
		cfg.QPS = o.KubeQPS
	}
	if o.KubeBurst > 0 {
		cfg.Burst = o.KubeBurst
	}
	token := os.Getenv(TokenEnv)
	if o.TokenFile != "" {
		data, err := os.ReadFile(o.TokenFile)
		if err != nil {
			return fmt.Errorf("--grpc-token-file: %w", err)
		}
		token = strings.TrimSpace(string(data))
	}
	if token == "" && !o.InsecureGRPC && !loopback(o.GRPCListen) {
		return fmt.Errorf("--grpc-listen %s is reachable from other hosts and no token is set: give --grpc-token-file (or $%s), listen on 127.0.0.1, or pass --insecure-grpc", o.GRPCListen, TokenEnv)
	}
	ln, err := net.Listen("tcp", o.GRPCListen)
	if err != nil {
		return fmt.Errorf("--grpc-listen: %w", err)
	}
	advertise := o.GRPCAdvertise
	if advertise == "" {
		advertise = ln.Addr().String()
	}
	var journal *leader.Journal
	if o.LeaderJournal != "" {
		if journal, err = leader.OpenJournal(o.LeaderJournal); err != nil {
			return fmt.Errorf("--leader-journal: %w", err)
		}
		defer journal.Close()
	}
	if o.PprofAddr != "" && o.PprofAddr != "0" {
		stopPprof, addr, err := servePprof(o.PprofAddr)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("--pprof-bind-address: %w", err)
		}
		defer stopPprof()
		log.Info("pprof listening", "addr", addr)
	}
	log.Info("gRPC listening", "addr", ln.Addr().String(), "advertise", advertise, "authenticated", token != "")
	// Traces, when the OTEL_* environment asks for them.
	var tracer trace.TracerProvider
	tp, err := tracing.Setup(ctx, o.Name, o.Identity)
	if err != nil {
		_ = ln.Close()
		return err
	}
	if tp != nil {
		tracer = tp
		defer func() {
			flush, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = tp.Shutdown(flush)
		}()
		log.Info("tracing", "exporter", "otlp")
	}

	replicaDone := make(chan error, 1)
	go func() {
		replicaDone <- replica.Run(ctx, replica.Options{
			Module:       module.Info{Name: o.Name, Version: version},
			Components:   components,
			Config:       cfg,
			Namespace:    o.Namespace,
			Identity:     o.Identity,
			Election:     election,
			GRPCAddr:     advertise,
			ModuleAddr:   advertise,
			GRPCListener: ln,
			GRPCToken:    token,
			MetricsAddr:  o.MetricsAddr,
			HealthAddr:   o.HealthAddr,
			Log:          base,
			Journal:      journal,

			PerNodeMetrics: o.PerNodeMetrics,
			Tracing:        tracer,
		})
	}()
	var runErr error
	select {
	case runErr = <-replicaDone:
	case <-ctx.Done():
		// The replica steps down, flushes and releases on ctx; bound it.
		select {
		case runErr = <-replicaDone:
		case <-time.After(o.ShutdownTimeout):
			runErr = fmt.Errorf("graceful stop took longer than %s", o.ShutdownTimeout)
		}
	}
	log.Info("exiting")
	return runErr
}

// servePprof serves net/http/pprof's handlers on addr until stop is called.
// It listens before it returns, so a bad address fails the start.
func servePprof(addr string) (stop func(), bound string, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, ln.Addr().String(), nil
}

// TokenEnv names the environment variable holding the shared gRPC token.
const TokenEnv = "TINYMOD_GRPC_TOKEN"

// loopback reports whether addr listens only on a loopback address.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// moduleAddr is the address that spreads over all replicas of a module. In a
// cluster (POD_NAMESPACE set) it is the module's headless Service,
// NAME.NAMESPACE.svc:PORT, whose DNS answers with every ready replica; outside
// one there is no such name, and it is this replica's advertised address
// (callers outside a cluster spread over the membership Leases instead).
func moduleAddr(name, namespace string, inCluster bool, advertise string) string {
	if !inCluster {
		return advertise
	}
	_, port, err := net.SplitHostPort(advertise)
	if err != nil {
		return advertise
	}
	return net.JoinHostPort(name+"."+namespace+".svc", port)
}
