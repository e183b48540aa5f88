package transport

import (
	"github.com/prometheus/client_golang/prometheus"

	promreg "github.com/tinymod/tinymod/internal/metrics"
	"github.com/tinymod/tinymod/internal/transport/transportpb"
)

// Metrics counts what one replica's streams to and from other modules carry;
// one serves its Client and its Server. A nil *Metrics counts nothing.
type Metrics struct {
	client, server struct{ sent, received *flow }
	clientStreams  prometheus.Gauge
	serverStreams  prometheus.Gauge
	unavailable    prometheus.Counter
}

// flow counts the frames one way and the envelopes they carry.
type flow struct{ frames, envelopes prometheus.Counter }

// count counts a frame of n envelopes.
func (f *flow) count(n int) {
	if f != nil {
		f.frames.Inc()
		f.envelopes.Add(float64(n))
	}
}

// frame counts env, a frame of one envelope or a batch.
func (f *flow) frame(env *transportpb.Envelope) {
	f.count(max(len(env.GetBatch()), 1))
}

// NewMetrics registers the transport's series for module with reg.
func NewMetrics(reg prometheus.Registerer, module string) (*Metrics, error) {
	frames := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tinymod_transport_frames_total",
		Help: "gRPC messages on this replica's streams with other modules, by module, side (client: streams it opened to send messages; server: streams it serves) and direction (sent, received).",
	}, []string{"module", "side", "direction"})
	envelopes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tinymod_transport_envelopes_total",
		Help: "What those frames carried, by module, side and direction: messages and cancellations from clients; answers, refusals and drain notices from servers. Divided by frames: how many shared a frame.",
	}, []string{"module", "side", "direction"})
	streams := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tinymod_transport_streams",
		Help: "Open streams, by module and side: client (to other modules' replicas), server (from them).",
	}, []string{"module", "side"})
	unavailable := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tinymod_transport_unavailable_total",
		Help: "Attempts to send a message that a replica of another module did not take (it was draining, gone or unreachable), by module. The message goes to another replica, if one is left to try.",
	}, []string{"module"})
	var err error
	if frames, err = promreg.Register(reg, frames); err != nil {
		return nil, err
	}
	if envelopes, err = promreg.Register(reg, envelopes); err != nil {
		return nil, err
	}
	if streams, err = promreg.Register(reg, streams); err != nil {
		return nil, err
	}
	if unavailable, err = promreg.Register(reg, unavailable); err != nil {
		return nil, err
	}
	way := func(side, direction string) *flow {
		return &flow{frames: frames.WithLabelValues(module, side, direction), envelopes: envelopes.WithLabelValues(module, side, direction)}
	}
	m := &Metrics{
		clientStreams: streams.WithLabelValues(module, "client"),
		serverStreams: streams.WithLabelValues(module, "server"),
		unavailable:   unavailable.WithLabelValues(module),
	}
	m.client.sent, m.client.received = way("client", "sent"), way("client", "received")
	m.server.sent, m.server.received = way("server", "sent"), way("server", "received")
	return m, nil
}

// flows returns the counters of one side's frames, or nils.
func (m *Metrics) flows(client bool) (sent, received *flow) {
	switch {
	case m == nil:
		return nil, nil
	case client:
		return m.client.sent, m.client.received
	}
	return m.server.sent, m.server.received
}

func (m *Metrics) streamOpened(client bool) { m.streams(client, 1) }
func (m *Metrics) streamEnded(client bool)  { m.streams(client, -1) }

func (m *Metrics) streams(client bool, d float64) {
	switch {
	case m == nil:
	case client:
		m.clientStreams.Add(d)
	default:
		m.serverStreams.Add(d)
	}
}

func (m *Metrics) notTaken() {
	if m != nil {
		m.unavailable.Inc()
	}
}
