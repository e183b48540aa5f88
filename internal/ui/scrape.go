package ui

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"

	"github.com/tinymod/tinymod/internal/debugring"
	"github.com/tinymod/tinymod/internal/replica"
)

// Rates are messages per second over the last interval, summed over the
// replicas, each counted from its own previous reading. A node's messages
// are those of its business ports; its errors, those of any port.
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

// Readings are counters read from replicas: replica -> series -> value.
type Readings map[string]map[string]float64

// Increase is how much counters grew from before to now, per series,
// summed over replicas. It takes the difference per replica and series, as
// Prometheus' rate() does, so that a replica that restarts or vanishes does
// not look like traffic: a counter that went down was reset (its process
// restarted) and grew by its new value; a series new in a replica read
// before grew from zero; a replica not read before, or not read now, adds
// nothing.
func Increase(before, now Readings) map[string]float64 {
	out := map[string]float64{}
	for id, series := range now {
		prev, ok := before[id]
		if !ok {
			continue
		}
		for name, v := range series {
			delta := v
			if p, ok := prev[name]; ok && v >= p {
				delta = v - p
			}
			out[name] += delta
		}
	}
	return out
}

// maxParallelReads bounds how many replicas are read at once.
const maxParallelReads = 32

// scrape reads every live replica's metrics, health and debug messages
// each interval. Replicas are read at once, each within the interval, so
// one that hangs delays no other.
func (w *watcher) scrape(ctx context.Context) {
	var (
		before    Readings
		lastAt    = time.Now()
		debugSeen = map[string]debugCursor{}
		answered  = map[string]bool{} // in the last round
		lastTurn  = map[string]int{}  // the round each replica last had a turn in
		round     = 0
		transport http.RoundTripper
	)
	if rt, err := rest.TransportFor(w.opts.Config); err == nil {
		transport = rt
	}
	r := newReader(w.opts.Config, w.opts.Namespace, transport)
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
		readings := Readings{}
		listed := map[string]bool{}
		var live []ReplicaLiveness
		for _, rep := range replicas {
			listed[rep.Identity] = true
			if rep.Alive && rep.MetricsAddr != "" {
				live = append(live, rep)
			}
		}
		// Past maxParallelReads, replicas that hang must not keep the
		// others from a turn: those that answered last round go first,
		// then the others by how long they have waited for a turn.
		round++
		sort.SliceStable(live, func(i, j int) bool {
			a, b := live[i].Identity, live[j].Identity
			if answered[a] != answered[b] {
				return answered[a]
			}
			return lastTurn[a] < lastTurn[b]
		})
		results := w.readAll(ctx, r, live, debugSeen)
		clear(answered)
		newest := map[string]time.Time{} // of each node's failure
		for i, rep := range live {
			res := results[i]
			if res.tried {
				lastTurn[rep.Identity] = round
			}
			if res.counters != nil {
				readings[rep.Identity] = res.counters
				answered[rep.Identity] = true
			}
			if h := res.health; h != nil {
				for node, nh := range h.Nodes {
					nr := rates.Nodes[node]
					if at, seen := newest[node]; nh.LastError != "" && (!seen || nh.LastErrorAt.After(at)) {
						newest[node] = nh.LastErrorAt
						nr.LastError, nr.LastErrorAt = nh.LastError, nh.LastErrorAt.UTC().Format(time.RFC3339Nano)
					}
					rates.Nodes[node] = nr
				}
			}
			if page := res.debug; page != nil {
				debugSeen[rep.Identity] = debugCursor{epoch: page.Epoch, last: page.Last}
				for _, e := range page.Entries {
					w.hub.publish("debug", DebugMessage{Node: e.Node, At: e.At.UTC().Format(time.RFC3339Nano), Replica: rep.Identity, Data: e.Data})
				}
			}
		}
		// What is kept of replicas no longer listed goes.
		for id := range debugSeen {
			if !listed[id] {
				delete(debugSeen, id)
			}
		}
		for id := range lastTurn {
			if !listed[id] {
				delete(lastTurn, id)
			}
		}
		r.forget(replicas)
		addRates(&rates, Increase(before, readings), elapsed)
		before = readings
		w.hub.publish("rates", rates)
	}
}

// debugCursor is where reading a replica's debug ring goes on from.
type debugCursor struct {
	epoch string
	last  uint64
}

// readResult is what one replica served in one round; nil where reading
// failed.
type readResult struct {
	tried    bool // it had a turn
	counters map[string]float64
	health   *replica.Health
	debug    *debugring.Page
}

// readAll reads replicas in parallel, all within one interval, giving
// them turns in their order. A read starts only while half the interval
// is left: one with less would fail for want of time, not for its
// replica's fault.
func (w *watcher) readAll(ctx context.Context, r *reader, replicas []ReplicaLiveness, debugSeen map[string]debugCursor) []readResult {
	out := make([]readResult, len(replicas))
	ctx, cancel := context.WithTimeout(ctx, w.opts.Interval)
	defer cancel()
	lastStart := time.Now().Add(w.opts.Interval / 2)
	starting, stop := context.WithDeadline(ctx, lastStart)
	defer stop()
	sem := make(chan struct{}, maxParallelReads)
	var wg sync.WaitGroup
	defer wg.Wait()
	for i, rep := range replicas {
		select {
		case sem <- struct{}{}:
		case <-starting.Done():
			return out
		}
		if time.Now().After(lastStart) {
			<-sem
			return out
		}
		after := debugSeen[rep.Identity]
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res := readResult{tried: true}
			if values, err := r.counters(ctx, rep); err == nil {
				res.counters = values
			}
			if h, err := r.health(ctx, rep); err == nil {
				res.health = h
			}
			page, err := r.debug(ctx, rep, after.last)
			if err == nil && after.last > 0 && (page.Epoch != after.epoch || page.Last < after.last) {
				// Another process, whose seqs started again: all of its
				// ring is new.
				page, err = r.debug(ctx, rep, 0)
			}
			if err == nil {
				res.debug = page
			}
			out[i] = res
		}()
	}
	return out
}

// addRates adds counters' increases over elapsed seconds to r: per node,
// its business ports' messages and any port's errors; per port, all.
func addRates(r *Rates, increase map[string]float64, elapsed float64) {
	if elapsed <= 0 {
		return
	}
	for k, inc := range increase {
		if math.IsNaN(inc) || math.IsInf(inc, 0) {
			continue
		}
		node, port, result := splitSeries(k)
		nr := r.Nodes[node]
		if !strings.HasPrefix(port, "_") {
			// The runtime's own messages (_settings, and _reconcile at every
			// leader change) are not traffic; a press that fails on _control
			// is an error.
			nr.Messages += inc / elapsed
		}
		if result == "error" {
			nr.Errors += inc / elapsed
		}
		r.Nodes[node] = nr
		r.Ports[node+"."+port] += inc / elapsed
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
// name, which is its identity). Neither follows redirects: the pod proxy
// carries the user's credentials, which must go nowhere else. It keeps,
// per replica, the way that worked, so that a pod address that does not
// answer from here costs time once, not every time.
type reader struct {
	config    *rest.Config
	namespace string
	direct    *http.Client
	proxy     *http.Client // nil: no pod proxy

	mu     sync.Mutex
	routes map[string]route // by routeKey
}

type route int

const (
	routeUnknown route = iota
	routeDirect
	routeProxy
)

func newReader(config *rest.Config, namespace string, proxy http.RoundTripper) *reader {
	noRedirects := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	r := &reader{
		config:    config,
		namespace: namespace,
		direct: &http.Client{CheckRedirect: noRedirects, Transport: &http.Transport{
			// A replica's address is reached as it is, never through an
			// HTTP proxy of the environment.
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     time.Minute,
		}},
		routes: map[string]route{},
	}
	if proxy != nil {
		r.proxy = &http.Client{Transport: proxy, CheckRedirect: noRedirects}
	}
	return r
}

func routeKey(rep ReplicaLiveness) string { return rep.Identity + "@" + rep.MetricsAddr }

// forget drops what is kept of replicas not in replicas.
func (r *reader) forget(replicas []ReplicaLiveness) {
	keep := map[string]bool{}
	for _, rep := range replicas {
		keep[routeKey(rep)] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.routes {
		if !keep[k] {
			delete(r.routes, k)
		}
	}
}

// proxyURL is where the API server proxies path of rep's pod; "" when rep
// cannot be reached that way: no pod proxy, or an identity that is not a
// pod's name (it comes from a Lease, which others may write) or an address
// without a port.
func (r *reader) proxyURL(rep ReplicaLiveness, path string) string {
	if r.proxy == nil || len(validation.IsDNS1123Subdomain(rep.Identity)) > 0 {
		return ""
	}
	_, port, err := net.SplitHostPort(rep.MetricsAddr)
	if err != nil {
		return ""
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return ""
	}
	base, _, err := rest.DefaultServerUrlFor(r.config)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%s/api/v1/namespaces/%s/pods/%s:%s/proxy%s", strings.TrimRight(base.String(), "/"), url.PathEscape(r.namespace), rep.Identity, port, path)
}

// get asks rep for path within ctx, by the way that worked last for it,
// else directly with half the time left and then through the pod proxy,
// and has read take the body of its answer.
func (r *reader) get(ctx context.Context, rep ReplicaLiveness, path string, read func(io.Reader) error) error {
	key := routeKey(rep)
	r.mu.Lock()
	known := r.routes[key]
	r.mu.Unlock()
	proxied := r.proxyURL(rep, path)
	if known == routeProxy && proxied != "" {
		resp, err := fetch(ctx, r.proxy, proxied)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		return read(resp.Body)
	}
	dctx := ctx
	if known == routeUnknown && proxied != "" {
		share := time.Second
		if deadline, ok := ctx.Deadline(); ok {
			share = time.Until(deadline) / 2
		}
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, share)
		defer cancel()
	}
	resp, derr := fetch(dctx, r.direct, "http://"+rep.MetricsAddr+path)
	if derr == nil {
		defer resp.Body.Close()
		r.remember(key, routeDirect)
		return read(resp.Body)
	}
	if proxied == "" || ctx.Err() != nil {
		return derr
	}
	resp, perr := fetch(ctx, r.proxy, proxied)
	if perr != nil {
		return fmt.Errorf("%v; through the pod proxy: %w", derr, perr)
	}
	defer resp.Body.Close()
	r.remember(key, routeProxy)
	return read(resp.Body)
}

func (r *reader) remember(key string, rt route) {
	r.mu.Lock()
	r.routes[key] = rt
	r.mu.Unlock()
}

// fetch asks for url; an answer other than 200 is an error. The caller
// closes the body of the answer.
func fetch(ctx context.Context, c *http.Client, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return resp, nil
}

// Bounds of what is read from a replica: more is an error, never a
// reading cut short.
const (
	maxMetricsBody = 64 << 20 // streamed through, keeping tinymod's counters
	maxMetricsLine = 64 << 10
	maxJSONBody    = 16 << 20 // health, and a page of debug messages
)

var errTooBig = errors.New("the answer is bigger than tinymod ui reads")

// limited reads at most n bytes of r and then fails with errTooBig.
type limited struct {
	r io.Reader
	n int64
}

func (l *limited) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errTooBig
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// readJSON decodes one JSON value of at most maxJSONBody bytes into v.
func readJSON(v any) func(io.Reader) error {
	return func(body io.Reader) error {
		return json.NewDecoder(&limited{r: body, n: maxJSONBody}).Decode(v)
	}
}

// counters reads tinymod_messages_total by node, port and result.
func (r *reader) counters(ctx context.Context, rep ReplicaLiveness) (map[string]float64, error) {
	var out map[string]float64
	err := r.get(ctx, rep, "/metrics", func(body io.Reader) error {
		var err error
		out, err = readMessages(body)
		return err
	})
	return out, err
}

// messagesFamily is the family of counters the page's rates come from.
const messagesFamily = "tinymod_messages_total"

// readMessages reads the text exposition format as it streams, keeping
// only the lines of messagesFamily, and parses those.
func readMessages(body io.Reader) (map[string]float64, error) {
	sc := bufio.NewScanner(&limited{r: body, n: maxMetricsBody})
	sc.Buffer(make([]byte, 0, 4096), maxMetricsLine)
	var kept bytes.Buffer
	for sc.Scan() {
		line := bytes.TrimLeft(sc.Bytes(), " \t")
		if ours(line) {
			kept.Write(line)
			kept.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return parseMessages(kept.Bytes())
}

// ours says whether a line of the exposition format is of messagesFamily:
// a sample, or its HELP or TYPE.
func ours(line []byte) bool {
	if rest, ok := bytes.CutPrefix(line, []byte(messagesFamily)); ok {
		return len(rest) == 0 || rest[0] == '{' || rest[0] == ' ' || rest[0] == '\t'
	}
	if rest, ok := bytes.CutPrefix(line, []byte("#")); ok {
		f := bytes.Fields(rest)
		return len(f) >= 2 && (string(f[0]) == "HELP" || string(f[0]) == "TYPE") && string(f[1]) == messagesFamily
	}
	return false
}

func parseMessages(body []byte) (map[string]float64, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	f := families[messagesFamily]
	if f == nil {
		return out, nil
	}
	for _, m := range f.GetMetric() {
		// A counter is finite and never negative; anything else (another
		// program's, a broken one) is no count, and NaN in the rates would
		// keep them from being sent at all.
		if v := m.GetCounter().GetValue(); v >= 0 && !math.IsInf(v, 0) {
			out[labelOf(m, "node")+"\x00"+labelOf(m, "port")+"\x00"+labelOf(m, "result")] += v
		}
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
	var h replica.Health
	if err := r.get(ctx, rep, replica.HealthPath, readJSON(&h)); err != nil {
		return nil, err
	}
	return &h, nil
}

// debug reads the debug messages rep has after seq: only those, at most
// a ring's worth, each bounded as a ring bounds it.
func (r *reader) debug(ctx context.Context, rep ReplicaLiveness, after uint64) (*debugring.Page, error) {
	var p debugring.Page
	if err := r.get(ctx, rep, fmt.Sprintf("%s?after=%d", debugring.Path, after), readJSON(&p)); err != nil {
		return nil, err
	}
	kept := p.Entries[:0]
	for _, e := range p.Entries {
		if e.Seq > after && e.Seq <= p.Last {
			e.Data = debugring.Bound(e.Data)
			kept = append(kept, e)
		}
	}
	if len(kept) > debugring.Size {
		kept = kept[len(kept)-debugring.Size:]
	}
	p.Entries = kept
	return &p, nil
}

// ReadHealth reads what one replica has seen go wrong (replica.HealthPath
// on its metrics address) as the page reads it: directly, else, with a
// config, through the API server's pod proxy by its pod name (its
// identity), following no redirects and bounded in size. tinymod status and
// dev read it this way too.
func ReadHealth(ctx context.Context, config *rest.Config, namespace, identity, metricsAddr string) (*replica.Health, error) {
	var proxy http.RoundTripper
	if config != nil {
		rt, err := rest.TransportFor(config)
		if err != nil {
			return nil, err
		}
		proxy = rt
	}
	return newReader(config, namespace, proxy).health(ctx, ReplicaLiveness{Identity: identity, MetricsAddr: metricsAddr, Alive: true})
}
