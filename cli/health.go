package cli

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/rest"

	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/internal/ui"
)

// HealthReader fetches what replicas have seen go wrong with their nodes
// (replica.HealthPath on each replica's metrics address): directly when the
// address is reachable, else through the API server's pod proxy, which reaches
// a replica in a cluster by its pod name (its identity).
type HealthReader struct {
	// Config reaches the API server for the pod proxy; nil tries only directly.
	Config *rest.Config
	// Namespace of the replicas' pods.
	Namespace string
	// Timeout bounds each fetch. Defaults to 2 seconds.
	Timeout time.Duration
}

// Read returns the health a replica serves at addr ("host:port").
func (h *HealthReader) Read(ctx context.Context, identity, addr string) (*replica.Health, error) {
	timeout := h.Timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return ui.ReadHealth(ctx, h.Config, h.Namespace, identity, addr)
}

// nodeHealth sums the replicas' health of one node.
type nodeHealth struct {
	errors    uint64
	lastError string
	lastAt    time.Time
}

// collectHealth reads every replica of s and sums per node; replicas that do
// not answer are named in the returned notes.
func collectHealth(ctx context.Context, hr *HealthReader, s *Status) (map[string]map[string]nodeHealth, []string) {
	out := map[string]map[string]nodeHealth{}
	var notes []string
	for _, m := range s.Modules {
		for _, r := range m.Replicas {
			if r.MetricsAddr == "" {
				continue
			}
			h, err := hr.Read(ctx, r.Identity, r.MetricsAddr)
			if err != nil {
				notes = append(notes, fmt.Sprintf("replica %s (%s): %v", r.Identity, r.MetricsAddr, err))
				continue
			}
			if out[m.Name] == nil {
				out[m.Name] = map[string]nodeHealth{}
			}
			for name, nh := range h.Nodes {
				sum := out[m.Name][name]
				sum.errors += nh.Errors + nh.Panics
				if nh.LastErrorAt.After(sum.lastAt) {
					sum.lastError, sum.lastAt = nh.LastError, nh.LastErrorAt
				}
				out[m.Name][name] = sum
			}
		}
	}
	return out, notes
}

// AddHealth fills in each node's errors per second (from two readings window
// apart; zero skips the rate) and last error, as the module's replicas report
// them, and returns notes on replicas that could not be read.
func AddHealth(ctx context.Context, hr *HealthReader, s *Status, window time.Duration) []string {
	first, notes := collectHealth(ctx, hr, s)
	second := first
	if window > 0 {
		select {
		case <-ctx.Done():
			return notes
		case <-time.After(window):
		}
		second, notes = collectHealth(ctx, hr, s)
	}
	for i := range s.Modules {
		m := &s.Modules[i]
		for j := range m.Nodes {
			n := &m.Nodes[j]
			now, ok := second[m.Name][n.Name]
			if !ok {
				continue
			}
			n.Errors = now.errors
			n.LastError = now.lastError
			if !now.lastAt.IsZero() {
				n.LastErrorAge = age(time.Since(now.lastAt))
			}
			if window > 0 {
				// A replica that restarted between the readings counts
				// from zero again: never a negative rate.
				if before := first[m.Name][n.Name]; now.errors >= before.errors {
					n.ErrorsPerSecond = float64(now.errors-before.errors) / window.Seconds()
				}
			}
		}
	}
	return notes
}
