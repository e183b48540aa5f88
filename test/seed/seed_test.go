package seed_test

// Package seed_test holds the component-side code samples of the
// leader-reader specification, as users copy them, with only the import paths
// changed and the minimum scaffolding (types the snippets leave out, counters
// in the helpers they call). seed_run_test.go runs them.

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/pkg/utils"
)

// Scaffolding the samples assume.

type Settings struct{ Delay int }
type Control struct {
	Send, Reset, Start, Stop bool
	Context                  any
}

const OutPort = "out"

var (
	logBuf syncBuffer
	log    = slog.New(slog.NewTextHandler(&logBuf, nil))
)

type Component struct {
	cancelFunc context.CancelFunc
	mu         sync.Mutex
	wasLeader  bool
	settings   Settings
}

// Counters behind the helpers the samples call.
var (
	controls, reconciles, inputs, statusUpdates, leaderWork, inits, work atomic.Int64
)

func (c *Component) handleControl(context.Context, module.Handler, any) any {
	controls.Add(1)
	return nil
}
func (c *Component) handleReconcile(context.Context, module.Handler, any) any {
	reconciles.Add(1)
	return nil
}
func (c *Component) handleInput(context.Context, module.Handler, any) any {
	inputs.Add(1)
	return nil
}
func (c *Component) processInput(context.Context, module.Handler, any) any {
	inputs.Add(1)
	return nil
}
func (c *Component) updateStatus(context.Context, module.Handler)        { statusUpdates.Add(1) }
func (c *Component) startLeaderOnlyWork(context.Context, module.Handler) { leaderWork.Add(1) }
func (c *Component) performInitialization()                              { inits.Add(1) }
func (c *Component) doWork()                                             { work.Add(1); time.Sleep(time.Millisecond) }

// Checking Leadership.
func (c *Component) HandleChecking(ctx context.Context, output module.Handler, port string, msg any) any {
	if utils.IsLeader(ctx) {
		// Leader-only code
	} else {
		// Reader code (or skip)
	}
	return nil
}

// Basic Pattern.
func (c *Component) HandleBasic(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.SettingsPort:
		// ALL pods: store settings
		c.settings = msg.(Settings)
		return nil

	case v1alpha1.ControlPort:
		// LEADER only: process control actions
		if !utils.IsLeader(ctx) {
			return nil
		}
		return c.handleControl(ctx, output, msg)

	case v1alpha1.ReconcilePort:
		// ALL pods: read shared state
		// LEADER: also writes state
		return c.handleReconcile(ctx, output, msg)

	case "input":
		// ALL pods: handle incoming messages
		return c.handleInput(ctx, output, msg)
	}
	return nil
}

// Signal Component Example.
type Signal struct {
	mu         sync.Mutex
	cancelFunc context.CancelFunc
}

func (t *Signal) Handle(ctx context.Context, handler module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.ControlPort:
		// Only leader processes button clicks
		if !utils.IsLeader(ctx) {
			return nil
		}

		control := msg.(Control)
		if control.Send {
			// Start the flow
			t.mu.Lock()
			if t.cancelFunc != nil {
				t.cancelFunc()
			}
			ctx, t.cancelFunc = context.WithCancel(ctx)
			t.mu.Unlock()

			// Update UI state
			handler(context.Background(), v1alpha1.ReconcilePort, nil)

			// Send to output
			return handler(ctx, OutPort, control.Context)
		}

		if control.Reset {
			t.mu.Lock()
			if t.cancelFunc != nil {
				t.cancelFunc()
				t.cancelFunc = nil
			}
			t.mu.Unlock()

			handler(context.Background(), v1alpha1.ReconcilePort, nil)
			return ctx.Err()
		}
	}
	return nil
}

// Ticker Component Example.
type TickerSettings struct {
	Delay   int
	Context any
}

type Ticker struct {
	mu         sync.Mutex
	cancelFunc context.CancelFunc
	settings   TickerSettings
}

func (t *Ticker) stopEmitting() {}

func (t *Ticker) Handle(ctx context.Context, handler module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.ControlPort:
		// Only leader starts/stops the ticker
		if !utils.IsLeader(ctx) {
			return nil
		}

		control := msg.(Control)
		if control.Start {
			return t.startEmitting(ctx, handler)
		}
		if control.Stop {
			t.stopEmitting()
		}
		return nil

	case v1alpha1.ReconcilePort:
		// All pods can read state
		// Leader can update state
		return nil
	}
	return nil
}

func (t *Ticker) startEmitting(ctx context.Context, handler module.Handler) error {
	t.mu.Lock()
	runCtx, cancel := context.WithCancel(ctx)
	t.cancelFunc = cancel
	t.mu.Unlock()

	// Update UI
	handler(context.Background(), v1alpha1.ReconcilePort, nil)

	// Emit loop (blocking)
	timer := time.NewTimer(time.Duration(t.settings.Delay) * time.Millisecond)
	for {
		select {
		case <-timer.C:
			handler(runCtx, OutPort, t.settings.Context)
			timer.Reset(time.Duration(t.settings.Delay) * time.Millisecond)
		case <-runCtx.Done():
			return runCtx.Err()
		}
	}
}

// Code for Failover.
func (c *Component) HandleFailover(ctx context.Context, output module.Handler, port string, msg any) any {
	if port == v1alpha1.ReconcilePort {
		isLeader := utils.IsLeader(ctx)

		c.mu.Lock()
		defer c.mu.Unlock()

		if isLeader && !c.wasLeader {
			// Just became leader - take over
			c.onBecameLeader(ctx, output)
			c.wasLeader = true
		} else if !isLeader && c.wasLeader {
			// Lost leadership - stop leader-only work
			c.onLostLeadership()
			c.wasLeader = false
		}
	}
	return nil
}

func (c *Component) onBecameLeader(ctx context.Context, output module.Handler) {
	// Initialize leader-only resources
	log.Info("became leader, taking over")

	// Resume any paused operations
	c.startLeaderOnlyWork(ctx, output)
}

func (c *Component) onLostLeadership() {
	// Stop leader-only work
	log.Info("lost leadership, stopping leader-only work")

	if c.cancelFunc != nil {
		c.cancelFunc()
		c.cancelFunc = nil
	}
}

// Best Practices 1: check leadership in the loop.
func (c *Component) HandleGoodLoop(ctx context.Context, output module.Handler, port string, msg any) any {
	if utils.IsLeader(ctx) {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				default:
					if !utils.IsLeader(ctx) {
						return // Lost leadership
					}
					c.doWork()
				}
			}
		}()
	}
	return nil
}

// Best Practices 2: idempotent state updates.
func (c *Component) HandleIdempotent(ctx context.Context, output module.Handler, port string, msg any) any {
	output(ctx, v1alpha1.ReconcilePort, func(node *v1alpha1.TinyNode) {
		if node.Status.Metadata["initialized"] != "true" {
			// Only initialize once
			node.Status.Metadata["initialized"] = "true"
			c.performInitialization()
		}
	})
	return nil
}

// Best Practices 3: graceful degradation.
func (c *Component) HandleGraceful(ctx context.Context, output module.Handler, port string, msg any) any {
	// All pods can handle messages
	if port == "input" {
		return c.processInput(ctx, output, msg)
	}

	// But only leader does status updates
	if port == v1alpha1.ReconcilePort && utils.IsLeader(ctx) {
		c.updateStatus(ctx, output)
	}
	return nil
}
