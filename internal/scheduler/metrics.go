package scheduler

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
	messages  *prometheus.CounterVec
	handle    *prometheus.HistogramVec
	instances *prometheus.GaugeVec
	forwarded *prometheus.CounterVec

	// Module-wide: every message, whatever its node.
	moduleOK, moduleFailed prometheus.Counter
	moduleSeconds          prometheus.Observer

	perNode int                 // nodes that may have series of their own
	mu      sync.Mutex          // guards nodes
	nodes   map[string]struct{} // nodes that have them
}

// portMetrics counts one port's messages. Its own series are made with its
// first message, so that idle ports (most _control and _reconcile ports)
// cost nothing.
type portMetrics struct {
	m          *metrics
	node, port string
	own        atomic.Pointer[nodeSeries] // nil: not resolved yet
	// failed counts a message that failed before its handler ran.
	failed failedCounter
}

// failedCounter counts a port's message that failed before its handler ran
// (it did not decode): an error in the module's and the port's totals.
type failedCounter struct{ p *portMetrics }

func (f failedCounter) Inc() {
	f.p.m.moduleFailed.Inc()
	if s := f.p.series(); s != noSeries {
		s.failed.Inc()
	}
}

type nodeSeries struct {
	ok, failed prometheus.Counter
	seconds    prometheus.Observer
}

// noSeries marks a port whose node is past the bound.
var noSeries = &nodeSeries{}

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
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tinymod_messages_total",
			Help: "Messages handled by node components, by node, port and result (ok or error); only for the first nodes to handle messages, up to the replica's bound (see tinymod_module_messages_total).",
		}, []string{"node", "port", "result"}),
		handle: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tinymod_handle_seconds",
			Help:    "Time node components spent handling a message, downstream hops included, by node and port; only for the first nodes to handle messages, up to the replica's bound.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 4, 12),
		}, []string{"node", "port"}),
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tinymod_node_instances",
			Help: "Node instances this replica runs, by module: every replica runs every node of its module.",
		}, []string{"module"}),
		perNode: opts.PerNode,
		nodes:   map[string]struct{}{},
	}
	if m.perNode == 0 {
		m.perNode = DefaultPerNodeMetrics
	}
	moduleMessages := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tinymod_module_messages_total",
		Help: "Messages handled by the module's node components on this replica, by module and result (ok or error).",
	}, []string{"module", "result"})
	moduleHandle := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tinymod_module_handle_seconds",
		Help:    "Time the module's node components spent handling a message on this replica, downstream hops included.",
		Buckets: prometheus.ExponentialBuckets(0.00001, 4, 12),
	}, []string{"module"})
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
	if m.messages, err = promreg.Register(reg, m.messages); err != nil {
		return nil, err
	}
	if m.handle, err = promreg.Register(reg, m.handle); err != nil {
		return nil, err
	}
	if moduleMessages, err = promreg.Register(reg, moduleMessages); err != nil {
		return nil, err
	}
	if moduleHandle, err = promreg.Register(reg, moduleHandle); err != nil {
		return nil, err
	}
	m.moduleOK = moduleMessages.WithLabelValues(opts.Module, "ok")
	m.moduleFailed = moduleMessages.WithLabelValues(opts.Module, "error")
	m.moduleSeconds = moduleHandle.WithLabelValues(opts.Module)
	return m, nil
}

// forPort returns the port's counters; its own series wait for its first
// message.
func (m *metrics) forPort(node, port string) *portMetrics {
	p := &portMetrics{m: m, node: node, port: port}
	p.failed = failedCounter{p}
	return p
}

// series returns the port's own series, making them with the first message
// if its node is within the bound, or noSeries.
func (p *portMetrics) series() *nodeSeries {
	if s := p.own.Load(); s != nil {
		return s
	}
	m := p.m
	s := noSeries
	m.mu.Lock()
	_, has := m.nodes[p.node]
	if !has && len(m.nodes) < m.perNode {
		m.nodes[p.node] = struct{}{}
		has = true
	}
	if has {
		// Made under mu, so that forget cannot interleave and leave
		// series of a node it has already dropped.
		s = &nodeSeries{
			ok:      m.messages.WithLabelValues(p.node, p.port, "ok"),
			failed:  m.messages.WithLabelValues(p.node, p.port, "error"),
			seconds: m.handle.WithLabelValues(p.node, p.port),
		}
	}
	m.mu.Unlock()
	p.own.Store(s)
	return s
}

func (m *metrics) forget(node string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.nodes[node]; !ok {
		return
	}
	delete(m.nodes, node)
	m.messages.DeletePartialMatch(prometheus.Labels{"node": node})
	m.handle.DeletePartialMatch(prometheus.Labels{"node": node})
}

func (p *port) observe(start time.Time, result any) {
	seconds := time.Since(start).Seconds()
	err, failed := result.(error)
	failed = failed && err != nil
	m := p.m.m
	m.moduleSeconds.Observe(seconds)
	if failed {
		m.moduleFailed.Inc()
	} else {
		m.moduleOK.Inc()
	}
	s := p.m.series()
	if s == noSeries {
		return
	}
	s.seconds.Observe(seconds)
	if failed {
		s.failed.Inc()
		return
	}
	s.ok.Inc()
}
