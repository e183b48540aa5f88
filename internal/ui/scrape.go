package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/rest"

	"github.com/tinymod/tinymod/internal/debugring"
	"github.com/tinymod/tinymod/internal/replica"
)

// Rates are messages per second over the last interval, summed over the
// replicas, each counted from its own previous reading.
type Rates struct {
	At    string               `json:"at"`
	Nodes map[string]NodeRates `json:"nodes"`
	// Ports: messages per second into "<node>.<port>"; an edge's rate is
	// its target port's.
	Ports map[string]float64 `json:"ports"`
}

// NodeRates are one node's rates and its newest failure on any replica.
type NodeRates struct {
	Messages    float64 `json:"messages"`
	Errors      float64 `json:"errors"`
	LastError   string  `json:"lastError,omitempty"`
	LastErrorAt string  `json:"lastErrorAt,omitempty"`
}

// DebugMessage is a message a debug node received on some replica.
type DebugMessage struct {
	Node    string          `json:"node"`
	At      string          `json:"at"`
	Replica string          `json:"replica"`
	Data    json.RawMessage `json:"data"`
}

// Counters turns readings of counters into rates. A counter is read per
// replica and series; its increase is the difference from the same
// replica's previous reading, or the new value when it went down (the
// replica restarted: counting starts again from zero), as Prometheus'
// rate() takes it. A replica that vanished contributes nothing, and one
// seen for the first time contributes nothing until its second reading.
type Counters struct {
	last map[string]map[string]float64 // replica -> series -> value
}

// Increase records a reading of replica's counters and returns each
// series' increase since its previous reading.
func (c *Counters) Increase(replica string, values map[string]float64) map[string]float64 {
	if c.last == nil {
		c.last = map[string]map[string]float64{}
	}
	prev, seen := c.last[replica]
	c.last[replica] = values
	out := map[string]float64{}
	if !seen {
		return out
	}
	for k, v := range values {
		p, ok := prev[k]
		switch {
		case !ok:
			out[k] = v // a series born since: all of it is new
		case v < p:
			out[k] = v // reset
		default:
			out[k] = v - p
		}
	}
	return out
}

// Forget drops replicas not in keep.
func (c *Counters) Forget(keep map[string]bool) {
	for r := range c.last {
		if !keep[r] {
			delete(c.last, r)
		}
	}
}

// scrape reads every live replica's metrics, health and debug messages
// each interval.
func (w *watcher) scrape(ctx context.Context) {
	var (
		counters  Counters
		lastAt    = time.Now()
		debugSeen = map[string]uint64{}
		transport http.RoundTripper
	)
	if rt, err := rest.TransportFor(w.opts.Config); err == nil {
		transport = rt
	}
	r := &reader{config: w.opts.Config, namespace: w.opts.Namespace, proxy: transport}
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		replicas := append([]ReplicaLiveness(nil), w.replicas...)
		w.mu.Unlock()
		now := time.Now()
		elapsed := now.Sub(lastAt).Seconds()
		lastAt = now
		rates := Rates{At: now.UTC().Format(time.RFC3339Nano), Nodes: map[string]NodeRates{}, Ports: map[string]float64{}}
		keep := map[string]bool{}
		for _, rep := range replicas {
			if !rep.Alive || rep.MetricsAddr == "" {
				continue
			}
			keep[rep.Identity] = true
			one, cancel := context.WithTimeout(ctx, w.opts.Interval)
			values, err := r.counters(one, rep)
			if err == nil {
				for k, inc := range counters.Increase(rep.Identity, values) {
					node, port, result := splitSeries(k)
					nr := rates.Nodes[node]
					nr.Messages += inc / elapsed
					if result == "error" {
						nr.Errors += inc / elapsed
					}
					rates.Nodes[node] = nr
					rates.Ports[node+"."+port] += inc / elapsed
				}
			}
			if h, err := r.health(one, rep); err == nil {
				for node, nh := range h.Nodes {
					nr := rates.Nodes[node]
					if nh.LastError != "" && (nr.LastErrorAt == "" || nh.LastErrorAt.UTC().Format(time.RFC3339Nano) > nr.LastErrorAt) {
						nr.LastError, nr.LastErrorAt = nh.LastError, nh.LastErrorAt.UTC().Format(time.RFC3339Nano)
					}
					rates.Nodes[node] = nr
				}
			}
			if page, err := r.debug(one, rep, debugSeen[rep.Identity]); err == nil {
				if page.Last < debugSeen[rep.Identity] {
					debugSeen[rep.Identity] = 0 // the replica restarted
				} else {
					debugSeen[rep.Identity] = page.Last
				}
				for _, e := range page.Entries {
					w.hub.publish("debug", DebugMessage{Node: e.Node, At: e.At.UTC().Format(time.RFC3339Nano), Replica: rep.Identity, Data: e.Data})
				}
			}
			cancel()
		}
		counters.Forget(keep)
		w.hub.publish("rates", rates)
	}
}

func splitSeries(k string) (node, port, result string) {
	parts := strings.SplitN(k, "\x00", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	return parts[0], parts[1], parts[2]
}

// reader fetches from a replica's metrics address: directly, or else
// through the API server's pod proxy (a replica in a cluster, by its pod
// name, which is its identity).
type reader struct {
	config    *rest.Config
	namespace string
	proxy     http.RoundTripper
}

func (r *reader) get(ctx context.Context, rep ReplicaLiveness, path string) ([]byte, error) {
	body, derr := fetch(ctx, http.DefaultClient, "http://"+rep.MetricsAddr+path)
	if derr == nil || r.proxy == nil {
		return body, derr
	}
	_, port, err := net.SplitHostPort(rep.MetricsAddr)
	if err != nil {
		return nil, derr
	}
	url := fmt.Sprintf("%s/api/v1/namespaces/%s/pods/%s:%s/proxy%s", strings.TrimRight(r.config.Host, "/"), r.namespace, rep.Identity, port, path)
	body, perr := fetch(ctx, &http.Client{Transport: r.proxy}, url)
	if perr != nil {
		return nil, fmt.Errorf("%v; through the pod proxy: %w", derr, perr)
	}
	return body, nil
}

func fetch(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
}

// counters reads tinymod_messages_total by node, port and result.
func (r *reader) counters(ctx context.Context, rep ReplicaLiveness) (map[string]float64, error) {
	body, err := r.get(ctx, rep, "/metrics")
	if err != nil {
		return nil, err
	}
	return parseMessages(body)
}

func parseMessages(body []byte) (map[string]float64, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	f := families["tinymod_messages_total"]
	if f == nil {
		return out, nil
	}
	for _, m := range f.GetMetric() {
		out[labelOf(m, "node")+"\x00"+labelOf(m, "port")+"\x00"+labelOf(m, "result")] += m.GetCounter().GetValue()
	}
	return out, nil
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func (r *reader) health(ctx context.Context, rep ReplicaLiveness) (*replica.Health, error) {
	body, err := r.get(ctx, rep, replica.HealthPath)
	if err != nil {
		return nil, err
	}
	var h replica.Health
	return &h, json.Unmarshal(body, &h)
}

func (r *reader) debug(ctx context.Context, rep ReplicaLiveness, after uint64) (*debugring.Page, error) {
	body, err := r.get(ctx, rep, fmt.Sprintf("%s?after=%d", debugring.Path, after))
	if err != nil {
		return nil, err
	}
	var p debugring.Page
	return &p, json.Unmarshal(body, &p)
}
