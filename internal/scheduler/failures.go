package scheduler

import (
	"fmt"
	"runtime/debug"
	"sync"
	"time"
)

// NodeHealth is what one replica has seen go wrong with a node: failed
// deliveries to or from it and panics of its component. It is kept in memory
// and served by each replica (tinymod status and tinymod dev read it), so
// that no replica writes to the API server per message.
type NodeHealth struct {
	// Errors counts failed deliveries since the instance started here.
	Errors uint64 `json:"errors"`
	// Panics counts panics recovered from the node's component code.
	Panics uint64 `json:"panics"`
	// LastError is the newest failure, and LastErrorAt when it happened.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitempty"`
}

// failures tracks NodeHealth per node and rate-limits the log lines of
// failures per node and edge.
type failures struct {
	every time.Duration

	mu     sync.Mutex
	nodes  map[string]*NodeHealth
	logged map[string]*logWindow // "<node>|<edge or port>"
}

type logWindow struct {
	last       time.Time
	suppressed int
}

func newFailures(every time.Duration) *failures {
	return &failures{every: every, nodes: map[string]*NodeHealth{}, logged: map[string]*logWindow{}}
}

// record counts a failure of node and says whether to log it now, and how many
// lines for the same node and edge were left out since the last one.
func (f *failures) record(node, edge string, err error, panicked bool, now time.Time) (log bool, suppressed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.nodes[node]
	if h == nil {
		h = &NodeHealth{}
		f.nodes[node] = h
	}
	if panicked {
		h.Panics++
	} else {
		h.Errors++
	}
	h.LastError, h.LastErrorAt = err.Error(), now
	return f.limitLocked(node+"|"+edge, now)
}

// limit says whether to log a line for key now, and how many were left out.
func (f *failures) limit(key string, now time.Time) (log bool, suppressed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.limitLocked(key, now)
}

func (f *failures) limitLocked(key string, now time.Time) (log bool, suppressed int) {
	w := f.logged[key]
	if w == nil {
		f.logged[key] = &logWindow{last: now}
		return true, 0
	}
	if now.Sub(w.last) < f.every {
		w.suppressed++
		return false, 0
	}
	suppressed, w.suppressed, w.last = w.suppressed, 0, now
	return true, suppressed
}

func (f *failures) forget(node string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.nodes, node)
	for key := range f.logged {
		if len(key) > len(node) && key[:len(node)+1] == node+"|" {
			delete(f.logged, key)
		}
	}
}

func (f *failures) snapshot() map[string]NodeHealth {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]NodeHealth, len(f.nodes))
	for name, h := range f.nodes {
		out[name] = *h
	}
	return out
}

// Health returns what this replica has seen go wrong, by node; nodes with
// nothing wrong are left out.
func (s *Scheduler) Health() map[string]NodeHealth { return s.failures.snapshot() }

// failed records a failed delivery of node along edge (or at a port) and logs
// it, rate-limited per node and edge.
func (s *Scheduler) failed(node, edge, from string, err error) {
	s.metrics.failures.WithLabelValues(s.opts.Module.Name).Inc()
	log, suppressed := s.failures.record(node, edge, err, false, time.Now())
	if !log {
		return
	}
	kv := []any{"node", node, "edge", edge}
	if from != "" {
		kv = append(kv, "from", from)
	}
	if suppressed > 0 {
		kv = append(kv, "suppressed", suppressed)
	}
	s.opts.Log.Error(err, "delivery failed", kv...)
}

// failedUnknown records a delivery to a node this replica does not run: it
// is counted and logged, at most once a period, but kept under no node's
// name, so that names from outside cannot grow what the replica keeps.
func (s *Scheduler) failedUnknown(err error) {
	s.metrics.failures.WithLabelValues(s.opts.Module.Name).Inc()
	if log, suppressed := s.failures.limit("|unknown node", time.Now()); log {
		s.opts.Log.Error(err, "delivery failed", "suppressed", suppressed)
	}
}

// panicked records a panic recovered from node's component code at entry.
func (s *Scheduler) panicked(node, entry string, err error) {
	s.metrics.panics.WithLabelValues(s.opts.Module.Name).Inc()
	if log, suppressed := s.failures.record(node, entry, err, true, time.Now()); log {
		kv := []any{"node", node, "entry", entry}
		if suppressed > 0 {
			kv = append(kv, "suppressed", suppressed)
		}
		s.opts.Log.Error(err, "component panicked", kv...)
	}
	if s.opts.OnPanic != nil {
		s.opts.OnPanic(node, fmt.Errorf("%s: %w", entry, err))
	}
}

// PanicError is a panic recovered from component code, with its stack.
type PanicError struct {
	Value any
	Stack []byte
}

func (p *PanicError) Error() string { return fmt.Sprintf("panic: %v", p.Value) }

// contain runs f, turning a panic into a *PanicError.
func contain(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	f()
	return nil
}
