package scheduler

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	promreg "github.com/tinymod/tinymod/internal/metrics"
)

type metrics struct {
	failures  *prometheus.CounterVec
	panics    *prometheus.CounterVec
	messages  *prometheus.CounterVec
	handle    *prometheus.HistogramVec
	instances *prometheus.GaugeVec
	forwarded *prometheus.CounterVec
}

type portMetrics struct {
	ok, failed prometheus.Counter
	seconds    prometheus.Observer
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tinymod_messages_total",
			Help: "Messages handled by node components, by node, port and result (ok or error).",
		}, []string{"node", "port", "result"}),
		handle: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tinymod_handle_seconds",
			Help:    "Time node components spent handling a message, downstream hops included.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 4, 12),
		}, []string{"node", "port"}),
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tinymod_node_instances",
			Help: "Node instances this replica runs, by module: every replica runs every node of its module.",
		}, []string{"module"}),
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
	if m.messages, err = promreg.Register(reg, m.messages); err != nil {
		return nil, err
	}
	if m.handle, err = promreg.Register(reg, m.handle); err != nil {
		return nil, err
	}
	return m, nil
}

// forPort resolves the label values once, so counting costs no map lookups.
func (m *metrics) forPort(node, port string) *portMetrics {
	return &portMetrics{
		ok:      m.messages.WithLabelValues(node, port, "ok"),
		failed:  m.messages.WithLabelValues(node, port, "error"),
		seconds: m.handle.WithLabelValues(node, port),
	}
}

func (m *metrics) forget(node string) {
	m.messages.DeletePartialMatch(prometheus.Labels{"node": node})
	m.handle.DeletePartialMatch(prometheus.Labels{"node": node})
}

func (p *port) observe(start time.Time, result any) {
	p.m.seconds.Observe(time.Since(start).Seconds())
	if err, ok := result.(error); ok && err != nil {
		p.m.failed.Inc()
		return
	}
	p.m.ok.Inc()
}
