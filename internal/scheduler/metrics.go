package scheduler

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tinymod/tinymod/internal/clock"
	promreg "github.com/tinymod/tinymod/internal/metrics"
)

// DefaultPerNodeMetrics is how many nodes get message series of their own
// when MetricsOptions does not say.
const DefaultPerNodeMetrics = 500

// MetricsOptions, passed as Options.Metrics in place of a plain Registerer,
// say how the scheduler's metrics are kept. A plain Registerer takes the
// defaults, with an empty module label.
type MetricsOptions struct {
	// Registerer registers the metrics. Required.
	prometheus.Registerer
	// Module labels the module-wide series.
	Module string
	// PerNode bounds the nodes whose ports get series of their own
	// (tinymod_messages_total and tinymod_handle_seconds, by node and port),
	// made when a port handles its first message. Each costs a counter pair
	// and a 12-bucket histogram per port, on every replica and in
	// Prometheus; nodes past the bound are counted in the module-wide series
	// only (tinymod_module_messages_total, tinymod_module_handle_seconds),
	// which count every message. 0: DefaultPerNodeMetrics; negative: none.
	PerNode int
}

type metrics struct {
	failures  *prometheus.CounterVec
	panics    *prometheus.CounterVec
	instances *prometheus.GaugeVec
	forwarded *prometheus.CounterVec

	handled *handled // collects stats
	module  string

	perNode int                              // nodes that may have series of their own
	mu      sync.Mutex                       // guards nodes and stats
	nodes   map[string]struct{}              // nodes that have them
	stats   map[string]map[string]*portStats // by node and port: ports that have handled a message
	// others counts the ports of nodes past the bound, which have no series
	// of their own: one set for all, for the module's totals.
	others *portStats
}

// portMetrics counts one port's messages. Its stats are made with its
// first message, so that idle ports (most _control and _reconcile ports)
// cost nothing, and outlive the port: a port table read again counts on.
type portMetrics struct {
	m          *metrics
	node, port string
	stats      atomic.Pointer[portStats] // nil: not resolved yet
	// failed counts a message that failed before its handler ran.
	failed failedCounter
}

// failedCounter counts a port's message that failed before its handler ran
// (it did not decode): an error in the module's and the port's totals.
type failedCounter struct{ p *portMetrics }

func (f failedCounter) Inc() { f.p.resolve().failed.Add(1) }

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	opts := MetricsOptions{Registerer: reg}
	switch o := reg.(type) {
	case MetricsOptions:
		opts = o
	case *MetricsOptions:
		opts = *o
	}
	reg = opts.Registerer
	m := &metrics{
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tinymod_node_instances",
			Help: "Node instances this replica runs, by module: every replica runs every node of its module.",
		}, []string{"module"}),
		module:  opts.Module,
		perNode: opts.PerNode,
		nodes:   map[string]struct{}{},
		stats:   map[string]map[string]*portStats{},
	}
	m.others = &portStats{module: m.module}
	if m.perNode == 0 {
		m.perNode = DefaultPerNodeMetrics
	}
	m.failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tinymod_delivery_failures_total",
		Help: "Failed deliveries on this replica, by module: a message that did not map, decode or reach its node, or a handler's error.",
	}, []string{"module"})
	m.panics = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tinymod_component_panics_total",
		Help: "Panics recovered from component code on this replica, by module.",
	}, []string{"module"})
	m.forwarded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tinymod_metadata_forwards_total",
		Help: "Metadata writes made on readers and forwarded to the leader, by module and side: sent (on the reader, once the leader wrote it), failed (on the reader), written (on the leader).",
	}, []string{"module", "side"})
	var err error
	if m.forwarded, err = promreg.Register(reg, m.forwarded); err != nil {
		return nil, err
	}
	if m.failures, err = promreg.Register(reg, m.failures); err != nil {
		return nil, err
	}
	if m.panics, err = promreg.Register(reg, m.panics); err != nil {
		return nil, err
	}
	if m.instances, err = promreg.Register(reg, m.instances); err != nil {
		return nil, err
	}
	if m.handled, err = promreg.Register(reg, newHandled()); err != nil {
		return nil, err
	}
	m.handled.attach(m)
	return m, nil
}

// forPort returns the port's counters; its own series wait for its first
// message.
func (m *metrics) forPort(node, port string) *portMetrics {
	p := &portMetrics{m: m, node: node, port: port}
	p.failed = failedCounter{p}
	return p
}

// resolve returns the port's stats, made with its first message; they have
// series of their own if its node is within the bound.
func (p *portMetrics) resolve() *portStats {
	if s := p.stats.Load(); s != nil {
		return s
	}
	m := p.m
	m.mu.Lock()
	s := m.stats[p.node][p.port]
	if s == nil {
		_, own := m.nodes[p.node]
		if !own && len(m.nodes) < m.perNode {
			m.nodes[p.node] = struct{}{}
			own = true
		}
		s = m.others
		if own {
			s = &portStats{module: m.module, node: p.node, port: p.port, own: true}
			if m.stats[p.node] == nil {
				m.stats[p.node] = map[string]*portStats{}
			}
			m.stats[p.node][p.port] = s
		}
	}
	m.mu.Unlock()
	p.stats.Store(s)
	return s
}

// forget drops a node's stats, keeping their counts in the module's totals,
// and gives its place among the nodes with series to another.
func (m *metrics) forget(node string) {
	m.mu.Lock()
	var gone []*portStats
	for _, s := range m.stats[node] {
		gone = append(gone, s)
	}
	delete(m.stats, node)
	delete(m.nodes, node)
	m.mu.Unlock()
	m.handled.retire(gone...)
}

func (p *port) observe(start clock.Mono, result any) {
	err, failed := result.(error)
	p.m.resolve().observe(clock.Since(start), failed && err != nil)
}
