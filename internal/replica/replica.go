// Package replica assembles one replica of a module: a controller-runtime
// manager watching the module's namespace, the scheduler with its node
// instances, the reconcilers and the status writer. `tinymod run` and the
// multi-replica tests both start replicas through Run.
package replica

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controller"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/scheduler"
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
	// Leader tells whether this replica leads. Required.
	Leader leader.Status
	// MetricsAddr serves Prometheus metrics; "0" or empty turns them off.
	MetricsAddr string
	// HealthAddr serves /healthz and /readyz; "0" or empty turns them off.
	HealthAddr string
	// Log is the replica's logger. Defaults to discarding.
	Log logr.Logger
	// StatusWindow batches status writes. Defaults to controller.DefaultStatusWindow.
	StatusWindow time.Duration
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
	if o.Leader == nil {
		errs = append(errs, errors.New("a leader.Status is required"))
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
	mgr, err := ctrl.NewManager(opts.Config, ctrl.Options{
		Scheme:                 Scheme(),
		Logger:                 log,
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{opts.Namespace: {}}},
		Metrics:                metricsserver.Options{BindAddress: addrOrOff(opts.MetricsAddr)},
		HealthProbeBindAddress: addrOrOff(opts.HealthAddr),
		LeaderElection:         false, // leadership is tinymod's own
	})
	if err != nil {
		return fmt.Errorf("replica: manager: %w", err)
	}
	if opts.HealthAddr != "" && opts.HealthAddr != "0" {
		if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
			return err
		}
		if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
			return err
		}
	}

	nodes := &controller.TinyNodeReconciler{
		Client:    mgr.GetClient(),
		Leader:    opts.Leader,
		Recorder:  mgr.GetEventRecorder("tinymod/" + opts.Module.Name),
		Namespace: opts.Namespace,
	}
	status := &controller.StatusWriter{
		Client:    mgr.GetClient(),
		Reader:    mgr.GetAPIReader(),
		Namespace: opts.Namespace,
		Leader:    opts.Leader,
		Render:    nodes.RenderStatus,
		Window:    opts.StatusWindow,
	}
	sched, err := scheduler.New(scheduler.Options{
		Module:     opts.Module,
		Components: opts.Components,
		Leader:     opts.Leader,
		Status:     status,
		Lookup:     nodes.Lookup,
		Metrics:    ctrlmetrics.Registry,
		Log:        log.WithName("scheduler"),
	})
	if err != nil {
		return fmt.Errorf("replica: %w", err)
	}
	nodes.Scheduler = sched
	nodes.Status = status
	if err := nodes.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("replica: %w", err)
	}
	modules := &controller.TinyModuleReconciler{
		Client: mgr.GetClient(), Scheduler: sched, Leader: opts.Leader,
		Namespace: opts.Namespace, Identity: opts.Identity,
	}
	if err := modules.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("replica: %w", err)
	}
	if err := modules.EnsureExists(ctx); err != nil {
		return fmt.Errorf("replica: %w", err)
	}

	log.Info("replica starting", "components", len(sched.Components()))
	err = mgr.Start(ctx)
	sched.Stop()
	status.Flush()
	log.Info("replica stopped")
	return err
}
