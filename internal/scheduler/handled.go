package scheduler

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// handleBounds are the upper bounds of tinymod_handle_seconds' buckets:
// 10 µs × 4^i, up to 42 s.
var handleBounds = func() (b [12]time.Duration) {
	d := 10 * time.Microsecond
	for i := range b {
		b[i] = d
		d *= 4
	}
	return b
}()

// portStats counts one port's handled messages: plain atomics, one set per
// message, from which a scrape makes both the port's own series and the
// module's totals. A message thus costs three atomic adds, where a
// Prometheus histogram and counter for each of the two would cost twice
// that and more.
type portStats struct {
	module, node, port string
	own                bool // has series of its own (within the bound)

	ok, failed atomic.Uint64
	nanos      atomic.Uint64                        // handling time, summed
	buckets    [len(handleBounds) + 1]atomic.Uint64 // not cumulative; the last is +Inf
}

func (s *portStats) observe(d time.Duration, failed bool) {
	if failed {
		s.failed.Add(1)
	} else {
		s.ok.Add(1)
	}
	if d < 0 {
		d = 0
	}
	s.nanos.Add(uint64(d))
	i := 0
	for i < len(handleBounds) && d > handleBounds[i] {
		i++
	}
	s.buckets[i].Add(1)
}

// tally is a snapshot of counts, summed over ports.
type tally struct {
	ok, failed, nanos uint64
	buckets           [len(handleBounds) + 1]uint64
}

func (t *tally) add(s *portStats) {
	t.ok += s.ok.Load()
	t.failed += s.failed.Load()
	t.nanos += s.nanos.Load()
	for i := range t.buckets {
		t.buckets[i] += s.buckets[i].Load()
	}
}

func (t *tally) addTally(o *tally) {
	t.ok += o.ok
	t.failed += o.failed
	t.nanos += o.nanos
	for i := range t.buckets {
		t.buckets[i] += o.buckets[i]
	}
}

// histogram returns the tally as a constant histogram of desc.
func (t *tally) histogram(desc *prometheus.Desc, labels ...string) prometheus.Metric {
	cumulative := make(map[float64]uint64, len(handleBounds))
	var n uint64
	for i, b := range handleBounds {
		n += t.buckets[i]
		cumulative[b.Seconds()] = n
	}
	n += t.buckets[len(handleBounds)]
	return prometheus.MustNewConstHistogram(desc, n, time.Duration(t.nanos).Seconds(), cumulative, labels...)
}

// handled is the collector of tinymod_messages_total,
// tinymod_handle_seconds and their module-wide totals. Schedulers that share
// a registry (replicas in one process, in tests) share it: each attaches
// its metrics, and series with the same labels are summed.
type handled struct {
	messages, seconds, moduleMessages, moduleSeconds *prometheus.Desc

	mu      sync.Mutex
	sources map[*metrics]struct{}
	retired map[string]*tally // by module: what ports of forgotten nodes counted
}

func newHandled() *handled {
	return &handled{
		messages: prometheus.NewDesc("tinymod_messages_total",
			"Messages handled by node components, by node, port and result (ok or error); only for the first nodes to handle messages, up to the replica's bound (see tinymod_module_messages_total).",
			[]string{"node", "port", "result"}, nil),
		seconds: prometheus.NewDesc("tinymod_handle_seconds",
			"Time node components spent handling a message, downstream hops included, by node and port; only for the first nodes to handle messages, up to the replica's bound.",
			[]string{"node", "port"}, nil),
		moduleMessages: prometheus.NewDesc("tinymod_module_messages_total",
			"Messages handled by the module's node components on this replica, by module and result (ok or error).",
			[]string{"module", "result"}, nil),
		moduleSeconds: prometheus.NewDesc("tinymod_module_handle_seconds",
			"Time the module's node components spent handling a message on this replica, downstream hops included.",
			[]string{"module"}, nil),
		sources: map[*metrics]struct{}{},
		retired: map[string]*tally{},
	}
}

func (h *handled) Describe(ch chan<- *prometheus.Desc) {
	ch <- h.messages
	ch <- h.seconds
	ch <- h.moduleMessages
	ch <- h.moduleSeconds
}

func (h *handled) attach(m *metrics) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sources[m] = struct{}{}
}

// retire keeps what ports counted in their module's totals once they go.
func (h *handled) retire(ports ...*portStats) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range ports {
		t := h.retired[s.module]
		if t == nil {
			t = &tally{}
			h.retired[s.module] = t
		}
		t.add(s)
	}
}

func (h *handled) Collect(ch chan<- prometheus.Metric) {
	type ownKey struct{ node, port string }
	modules := map[string]*tally{}
	own := map[ownKey]*tally{}
	total := func(into map[string]*tally, module string) *tally {
		t := into[module]
		if t == nil {
			t = &tally{}
			into[module] = t
		}
		return t
	}
	h.mu.Lock()
	for module, t := range h.retired {
		total(modules, module).addTally(t)
	}
	for m := range h.sources {
		m.mu.Lock()
		total(modules, m.module).add(m.others) // present from the start
		for _, byPort := range m.stats {
			for _, s := range byPort {
				total(modules, s.module).add(s)
				if !s.own {
					continue
				}
				k := ownKey{s.node, s.port}
				t := own[k]
				if t == nil {
					t = &tally{}
					own[k] = t
				}
				t.add(s)
			}
		}
		m.mu.Unlock()
	}
	h.mu.Unlock()
	for k, t := range own {
		ch <- prometheus.MustNewConstMetric(h.messages, prometheus.CounterValue, float64(t.ok), k.node, k.port, "ok")
		ch <- prometheus.MustNewConstMetric(h.messages, prometheus.CounterValue, float64(t.failed), k.node, k.port, "error")
		ch <- t.histogram(h.seconds, k.node, k.port)
	}
	for module, t := range modules {
		ch <- prometheus.MustNewConstMetric(h.moduleMessages, prometheus.CounterValue, float64(t.ok), module, "ok")
		ch <- prometheus.MustNewConstMetric(h.moduleMessages, prometheus.CounterValue, float64(t.failed), module, "error")
		ch <- t.histogram(h.moduleSeconds, module)
	}
}
