// Package replica assembles one replica of a module: a controller-runtime
// manager watching the module's namespace, the scheduler with its node
// instances, the reconcilers and the status writer. `tinymod run` and the
// multi-replica tests both start replicas through Run.
package replica

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controller"
	"github.com/tinymod/tinymod/internal/debugring"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/resources"
	"github.com/tinymod/tinymod/internal/scheduler"
	"github.com/tinymod/tinymod/internal/transport"
	"github.com/tinymod/tinymod/module"
)

// Options configure a replica.
type Options struct {
	// Module names the module. Required.
	Module module.Info
	// Components the module hosts. Defaults to module.Registered().
	Components []module.Component
	// Config reaches the API server. Required.
	Config *rest.Config
	// Namespace the module lives in. Required.
	Namespace string
	// Identity of this replica. Required.
	Identity string
	// Leader, if set, decides leadership instead of an election (for tests
	// and single-replica runs: leader.Always). Nil runs for the module's Lease.
	Leader leader.Source
	// Election durations. Zero values take the defaults.
	Election leader.Config
	// GRPCAddr is this replica's advertised gRPC address, and ModuleAddr the
	// one that spreads over all replicas; both are published.
	GRPCAddr, ModuleAddr string
	// GRPCListener, if set, serves the Module service (messages from other
	// modules) and the gRPC health service; the replica stops it last.
	GRPCListener net.Listener
	// GRPCToken, if set, is required of callers and sent to other modules.
	GRPCToken string
	// MetricsAddr serves Prometheus metrics; "0" or empty turns them off.
	MetricsAddr string
	// HealthAddr serves /healthz and /readyz; "0" or empty turns them off.
	HealthAddr string
	// Log is the replica's logger. Defaults to discarding.
	Log logr.Logger
	// StatusWindow batches status writes. Defaults to controller.DefaultStatusWindow.
	StatusWindow time.Duration
	// Journal, if set, records every confirmation of leadership before the
	// leader-only work it allows (see leader.Journal).
	Journal *leader.Journal
	// PerNodeMetrics bounds the nodes whose ports get Prometheus series of
	// their own (tinymod_messages_total, tinymod_handle_seconds by node and
	// port); the module-wide totals count every message. 0:
	// scheduler.DefaultPerNodeMetrics (500); negative: none.
	PerNodeMetrics int
	// Tracing, if set, traces every delivery (see scheduler.Options.Tracing).
	Tracing trace.TracerProvider
	// FailedSignalTTL is how long a failed TinySignal is kept. Defaults to
	// controller.DefaultFailedTTL (an hour).
	FailedSignalTTL time.Duration
	// Runnables run on every replica, in its manager, once its caches have
	// synced: a module's own background work. One that fails stops the
	// replica, which hands over the lease first.
	Runnables []manager.Runnable
}

func (o *Options) validate() error {
	var errs []error
	if o.Module.Name == "" {
		errs = append(errs, errors.New("module name is required"))
	}
	if o.Config == nil {
		errs = append(errs, errors.New("a rest.Config is required"))
	}
	if o.Namespace == "" {
		errs = append(errs, errors.New("namespace is required"))
	}
	if o.Identity == "" {
		errs = append(errs, errors.New("identity is required"))
	}
	return errors.Join(errs...)
}

// Scheme returns a scheme with client-go's kinds and tinymod's.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// HealthPath serves a replica's Health as JSON on its metrics address.
const HealthPath = "/tinymod/nodes"

// Health is what one replica has seen go wrong with its module's nodes since
// it started: failed deliveries and panics, counted in memory.
type Health struct {
	Module   string                          `json:"module"`
	Identity string                          `json:"identity"`
	Nodes    map[string]scheduler.NodeHealth `json:"nodes"`
}

// LeaseName is the name of a module's leader Lease.
func LeaseName(module string) string { return module + "-leader" }

func addrOrOff(addr string) string {
	if addr == "" {
		return "0"
	}
	return addr
}

// Run runs the replica until ctx ends.
func Run(ctx context.Context, opts Options) error {
	if err := opts.validate(); err != nil {
		return fmt.Errorf("replica: %w", err)
	}
	if opts.Log.GetSink() == nil {
		opts.Log = logr.Discard()
	}
	log := opts.Log.WithValues("module", opts.Module.Name, "identity", opts.Identity)
	opts.Config = rest.CopyConfig(opts.Config)
	if opts.Config.UserAgent == "" {
		// Tells the replicas of a module apart in the API server's audit log,
		// even when they share a service account.
		opts.Config.UserAgent = fmt.Sprintf("tinymod/%s (module %s; identity %s)", opts.Module.Version, opts.Module.Name, opts.Identity)
	}
	if opts.Config.QPS == 0 && opts.Config.Burst == 0 {
		// client-go's default of 5 requests a second starves a leader that
		// delivers signals; these match controller-runtime's own defaults x2.
		opts.Config.QPS, opts.Config.Burst = 40, 60
	} else if opts.Config.QPS == 0 {
		opts.Config.QPS = 40
	} else if opts.Config.Burst == 0 {
		opts.Config.Burst = int(opts.Config.QPS * 1.5)
	}
	// Changes to objects leave only with a valid term (the lease still held,
	// while a graceful stop flushes on the way out too), checked as they are
	// sent; a replica's Leases and Events are exempt.
	fence := &leader.Fence{Prefix: leader.PrefixOf(opts.Config.Host)}
	opts.Config.Wrap(fence.Wrap)
	mgr, err := ctrl.NewManager(opts.Config, ctrl.Options{
		Scheme: Scheme(),
		Logger: log,
		// No code reads managedFields; without them a cached TinyNode
		// costs about half as much, and every replica caches every node.
		Cache: cache.Options{DefaultNamespaces: map[string]cache.Config{opts.Namespace: {}},
			DefaultTransform: cache.TransformStripManagedFields()},
		Metrics:                metricsserver.Options{BindAddress: addrOrOff(opts.MetricsAddr)},
		HealthProbeBindAddress: addrOrOff(opts.HealthAddr),
		LeaderElection:         false, // leadership is tinymod's own
	})
	if err != nil {
		return fmt.Errorf("replica: manager: %w", err)
	}
	mgrReady := make(chan struct{}) // closed once the manager's caches have synced
	if opts.HealthAddr != "" && opts.HealthAddr != "0" {
		if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
			return err
		}
		if err := mgr.AddReadyzCheck("caches", func(*http.Request) error {
			select {
			case <-mgrReady:
				return nil
			default:
				return errors.New("caches have not synced yet")
			}
		}); err != nil {
			return err
		}
	}

	clientset, err := kubernetes.NewForConfig(opts.Config)
	if err != nil {
		return fmt.Errorf("replica: %w", err)
	}
	var (
		elector *leader.Elector
		status  = opts.Leader
	)
	// Filled in below; the elector's callbacks need them.
	var (
		sched   *scheduler.Scheduler
		nodes   *controller.TinyNodeReconciler
		signals *controller.TinySignalReconciler
		modules *controller.TinyModuleReconciler
		statusW *controller.StatusWriter
	)
	if status == nil {
		elector, err = leader.New(leader.Options{
			Config:    opts.Election,
			Client:    clientset,
			Namespace: opts.Namespace,
			Name:      LeaseName(opts.Module.Name),
			Identity:  opts.Identity,
			Log:       log.WithName("leader"),
			Metrics:   leader.NewMetrics(ctrlmetrics.Registry, opts.Module.Name, opts.Identity),
			Journal:   opts.Journal,
			OnStartedLeading: func(term *leader.Term) {
				<-mgrReady
				sched.LeadershipChanged()
				modules.Resync()
				nodes.Resync(term.Context())
				signals.Resync(term.Context())
			},
			OnStoppedLeading: func() { sched.LeadershipChanged() },
			BeforeRelease: func() {
				// Deliveries whose Handle is returning are settled under
				// the lease, then the status writes they made are flushed.
				budget := opts.Election.WithDefaults().RenewDeadline / 4
				signals.Drain(budget)
				if !statusW.FlushWithin(budget) {
					log.Info("status writes still pending at release; the next leader renders them again")
				}
			},
		})
		if err != nil {
			return fmt.Errorf("replica: %w", err)
		}
		status = elector
		if opts.HealthAddr != "" && opts.HealthAddr != "0" {
			if err := mgr.AddReadyzCheck("lease", func(*http.Request) error {
				if !elector.Observed() {
					return errors.New("the leader lease has not been observed yet")
				}
				return nil
			}); err != nil {
				return err
			}
		}
	}

	nodes = &controller.TinyNodeReconciler{
		Client:    mgr.GetClient(),
		Leader:    status,
		Recorder:  mgr.GetEventRecorder("tinymod/" + opts.Module.Name),
		Identity:  opts.Identity,
		Namespace: opts.Namespace,
		Cleanup: func(ctx context.Context, node string) error {
			return resources.Cleanup(ctx, mgr.GetClient(), mgr.GetAPIReader(), opts.Namespace, node)
		},
	}
	statusW = &controller.StatusWriter{
		Client:    mgr.GetClient(),
		Reader:    mgr.GetAPIReader(),
		Namespace: opts.Namespace,
		Leader:    status,
		Render:    nodes.RenderStatus,
		Window:    opts.StatusWindow,
	}
	transportMetrics, err := transport.NewMetrics(ctrlmetrics.Registry, opts.Module.Name)
	if err != nil {
		return fmt.Errorf("transport metrics: %w", err)
	}
	transportClient := transport.NewClientWith(resolver{c: mgr.GetClient(), ns: opts.Namespace}, opts.GRPCToken, transport.ClientConfig{Metrics: transportMetrics})
	defer transportClient.Close()
	sched, err = scheduler.New(scheduler.Options{
		Module:     opts.Module,
		Components: opts.Components,
		Leader:     status,
		Resources: func(node string) module.ResourceManager {
			return &resources.Manager{Client: mgr.GetClient(), Read: mgr.GetAPIReader(), Namespace: opts.Namespace,
				Module: opts.Module.Name, Node: node, Leader: status}
		},
		Status:    statusW,
		Lookup:    nodes.Lookup,
		Transport: transportClient,
		Metrics:   scheduler.MetricsOptions{Registerer: ctrlmetrics.Registry, Module: opts.Module.Name, PerNode: opts.PerNodeMetrics},
		Log:       log.WithName("scheduler"),
		OnPanic:   nodes.Panicked,
		Tracing:   opts.Tracing,
	})
	if err != nil {
		return fmt.Errorf("replica: %w", err)
	}
	nodes.Scheduler = sched
	nodes.Status = statusW
	if err := nodes.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("replica: %w", err)
	}
	modules = &controller.TinyModuleReconciler{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Scheduler: sched, Leader: status,
		Namespace: opts.Namespace, Identity: opts.Identity,
		Addr: opts.ModuleAddr, LeaderAddr: opts.GRPCAddr,
		Modules: &controller.AddressBook{},
	}
	if err := modules.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("replica: %w", err)
	}
	signals = &controller.TinySignalReconciler{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Scheduler: sched, Leader: status,
		Events: true, Identity: opts.Identity,
		Namespace: opts.Namespace, Metrics: ctrlmetrics.Registry, FailedTTL: opts.FailedSignalTTL,
	}
	if err := signals.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("replica: %w", err)
	}
	if err := controller.RetryStartup(ctx, func() error { return modules.EnsureExists(ctx) }); err != nil {
		return fmt.Errorf("replica: %w", err)
	}

	if opts.MetricsAddr != "" && opts.MetricsAddr != "0" {
		// What this replica has seen go wrong, per node, beside /metrics:
		// tinymod status and tinymod dev read it, so that no replica writes
		// to the API server per failed message.
		if err := mgr.AddMetricsServerExtraHandler(HealthPath, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(Health{Module: opts.Module.Name, Identity: opts.Identity, Nodes: sched.Health()})
		})); err != nil {
			return fmt.Errorf("replica: %w", err)
		}
		// The last messages of this process's debug nodes, for tinymod ui.
		if err := mgr.AddMetricsServerExtraHandler(debugring.Path, debugring.Handler(debugring.Default)); err != nil {
			return fmt.Errorf("replica: %w", err)
		}
	}
	for _, r := range opts.Runnables {
		if err := mgr.Add(r); err != nil {
			return fmt.Errorf("replica: %w", err)
		}
	}
	// The manager starts its runnables once its caches have synced.
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		close(mgrReady)
		<-ctx.Done()
		return nil
	})); err != nil {
		return fmt.Errorf("replica: %w", err)
	}

	log.Info("replica starting", "components", len(sched.Components()))
	mgrCtx, stopMgr := context.WithCancel(context.Background())
	defer stopMgr()
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Start(mgrCtx) }()
	select {
	case <-mgrReady:
	case err := <-mgrDone:
		sched.Stop()
		return fmt.Errorf("replica: manager: %w", err)
	case <-ctx.Done():
		stopMgr()
		<-mgrDone
		sched.Stop()
		return nil
	}

	var (
		grpcServer *grpc.Server
		healthSrv  *health.Server
		moduleSrv  *transport.Server
	)
	if opts.GRPCListener != nil {
		grpcServer = grpc.NewServer(transport.ServerOptions(opts.GRPCToken)...)
		healthSrv = health.NewServer()
		healthpb.RegisterHealthServer(grpcServer, healthSrv)
		moduleSrv = transport.NewServerWith(sched, opts.GRPCToken, transport.ServerConfig{Metrics: transportMetrics})
		moduleSrv.Register(grpcServer)
		go func() { _ = grpcServer.Serve(opts.GRPCListener) }()
	}

	memberCtx, stopMember := context.WithCancel(context.Background())
	memberDone := make(chan struct{})
	go func() {
		defer close(memberDone)
		(&leader.Membership{Client: clientset, Namespace: opts.Namespace, Module: opts.Module.Name,
			Identity: opts.Identity, Addr: opts.GRPCAddr, MetricsAddr: advertisedMetrics(opts.MetricsAddr, opts.GRPCAddr),
			Duration: opts.Election.WithDefaults().LeaseDuration,
			Log:      log.WithName("membership")}).Run(memberCtx)
	}()

	// The replica runs until ctx ends or the manager stops on its own (a
	// runnable failed): a leader whose controllers have stopped must not
	// keep renewing the lease.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	var (
		mgrErr     error
		mgrStopped bool
	)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case mgrErr = <-mgrDone:
			mgrStopped = true
			log.Error(mgrErr, "the manager stopped; the replica stops with it")
			stopRun()
		case <-runCtx.Done():
		}
	}()
	if elector != nil {
		// Returns once runCtx ends, after stopping leader-only work, flushing
		// status writes and releasing the lease.
		if err := elector.Run(runCtx); err != nil {
			log.Error(err, "leader election")
		}
	} else {
		<-runCtx.Done()
	}
	stopRun()
	<-watched
	// A callback that blocks must not hold the stop up: bounded, like the
	// flush before the lease was released.
	statusW.FlushWithin(opts.Election.WithDefaults().RenewDeadline / 4)
	stopMember()
	<-memberDone
	if grpcServer != nil {
		// Drain messages in flight, bounded: other replicas' streams stop
		// taking messages (their senders move new ones to other replicas),
		// the messages in flight are answered and the streams end, so that
		// GracefulStop does not wait for them.
		healthSrv.Shutdown()
		drainCtx, cancelDrain := context.WithTimeout(context.Background(), 5*time.Second)
		if err := moduleSrv.Drain(drainCtx); err != nil {
			log.Info("gRPC drain cut short", "error", err.Error())
		}
		stopped := make(chan struct{})
		go func() { grpcServer.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-drainCtx.Done():
			grpcServer.Stop()
		}
		cancelDrain()
	}
	stopMgr()
	if mgrStopped {
		err = mgrErr
		if err == nil {
			err = errors.New("the manager stopped")
		}
	} else {
		err = <-mgrDone
	}
	sched.Stop()
	log.Info("replica stopped")
	return err
}

// advertisedMetrics is the metrics address others can reach: the bind
// address, with the advertised gRPC host when it binds every interface; empty
// when metrics are off or on a port picked at random.
func advertisedMetrics(bind, grpcAddr string) string {
	if bind == "" || bind == "0" {
		return ""
	}
	host, port, err := net.SplitHostPort(bind)
	if err != nil || port == "0" || port == "" {
		return ""
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		if h, _, err := net.SplitHostPort(grpcAddr); err == nil && h != "" {
			host = h
		} else {
			host = "127.0.0.1"
		}
	}
	return net.JoinHostPort(host, port)
}
