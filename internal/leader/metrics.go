package leader

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tinymod/tinymod/internal/metrics"
)

// Metrics of one elector.
type Metrics struct {
	leader      prometheus.Gauge
	transitions prometheus.Counter
	acquire     prometheus.Observer
}

// NewMetrics registers the leadership metrics for module and identity.
func NewMetrics(reg prometheus.Registerer, module, identity string) *Metrics {
	labels := prometheus.Labels{"module": module, "identity": identity}
	leader := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tinymod_leader", Help: "1 while this replica leads its module.",
	}, []string{"module", "identity"})
	transitions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tinymod_leader_transitions_total", Help: "Times this replica became or stopped being leader.",
	}, []string{"module", "identity"})
	acquire := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tinymod_leader_acquire_seconds",
		Help:    "Time from the lease becoming free for this replica to this replica holding it.",
		Buckets: prometheus.ExponentialBuckets(0.001, 3, 12),
	}, []string{"module", "identity"})
	leader, _ = metrics.Register(reg, leader)
	transitions, _ = metrics.Register(reg, transitions)
	acquire, _ = metrics.Register(reg, acquire)
	return &Metrics{leader: leader.With(labels), transitions: transitions.With(labels), acquire: acquire.With(labels)}
}

func (m *Metrics) started(waited time.Duration) {
	m.leader.Set(1)
	m.transitions.Inc()
	if waited > 0 {
		m.acquire.Observe(waited.Seconds())
	}
}

func (m *Metrics) stopped() {
	m.leader.Set(0)
	m.transitions.Inc()
}
