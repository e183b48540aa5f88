package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/test/bench/benchutil"
)

// TestDeadlineTrafficLeavesNothingBehind sends messages with deadlines from
// every replica of alpha to beta over gRPC, as fast as the pacers go, every
// tenth one expiring on its way. After a warm-up it reads each replica's heap
// after a collection and its goroutines, lets flatMessages more messages
// cross, and reads them again: a leak of a few bytes a message, on the
// sending side or the receiving one, shows.
func TestDeadlineTrafficLeavesNothingBehind(t *testing.T) {
	const (
		replicas     = 2
		warmMessages = 20_000
		flatMessages = 100_000
		// perMessage is the heap a message may leave behind on a replica that
		// saw it. A context left on a stream per message is about 112 B.
		perMessage = 8
		slackHeap  = 3 << 19
		slackGo    = 20
	)
	p := profile{name: "flat", lease: 2 * time.Second, renew: 1500 * time.Millisecond, retry: 500 * time.Millisecond,
		pacerRate: 2500, pprof: true, limit: 6 * time.Minute}
	w := newWorld(t, p, 0)
	defer w.end()
	alpha, beta := newFleet(w, alphaName, replicas), newFleet(w, betaName, replicas)
	createNodes(t, w.ctx, w.env.Client, w.ns,
		node("b-hold", betaName, "hold", nil),
		node("a-pacer", alphaName, "pacer", pacerSettings(p.pacerRate, 64, 0),
			v1alpha1.TinyNodeEdge{ID: "to-beta", Port: "out", To: "b-hold.in"}))
	for i := range replicas {
		beta.start(i)
		alpha.start(i)
	}
	alpha.waitLeader(60 * time.Second)
	beta.waitLeader(60 * time.Second)

	handled := func() (float64, error) {
		total := 0.0
		for _, pr := range beta.replicas() {
			m, err := benchutil.Scrape(pr.metrics)
			if err != nil {
				return 0, err
			}
			for _, result := range []string{"ok", "error"} {
				total += m[fmt.Sprintf(`tinymod_messages_total{node="b-hold",port="in",result="%s"}`, result)]
			}
		}
		return total, nil
	}
	reach := func(n float64) float64 {
		var got float64
		poll(t, 3*time.Minute, func() error {
			var err error
			if got, err = handled(); err != nil || got < n {
				return fmt.Errorf("beta handled %.0f messages of %.0f (%v)", got, n, err)
			}
			return nil
		})
		return got
	}
	all := append(alpha.replicas(), beta.replicas()...)
	reading := func() map[*proc]footprint {
		out := map[*proc]footprint{}
		for _, pr := range all {
			f, err := footprintOf(w.ctx, pr.pprof)
			if err != nil {
				t.Fatalf("replica %s: %v", pr.ID, err)
			}
			out[pr] = f
		}
		return out
	}

	began := time.Now()
	from := reach(warmMessages)
	before := reading()
	to := reach(from + flatMessages)
	after := reading()
	crossed := to - from
	t.Logf("%.0f messages crossed in %s", crossed, time.Since(began).Round(time.Second))
	for _, pr := range all {
		b, a := before[pr], after[pr]
		// Each replica sends or handles about its share of the messages.
		share := crossed / replicas
		t.Logf("%s: heap after a collection %.1f → %.1f MiB (%+.1f B a message), goroutines %d → %d",
			pr.ID, float64(b.heap)/(1<<20), float64(a.heap)/(1<<20), float64(a.heap-b.heap)/share, b.goroutines, a.goroutines)
		if limit := b.heap + slackHeap + int64(perMessage*share); a.heap > limit {
			t.Errorf("replica %s's heap grew from %d to %d B over %.0f messages (more than %d B and %d B a message)",
				pr.ID, b.heap, a.heap, share, slackHeap, perMessage)
		}
		if a.goroutines > b.goroutines+slackGo {
			t.Errorf("replica %s's goroutines grew from %d to %d over %.0f messages", pr.ID, b.goroutines, a.goroutines, share)
		}
	}
	for _, f := range []*fleet{alpha, beta} {
		f.mu.Lock()
		if len(f.restarts) > 0 {
			t.Errorf("module %s's replicas exited: %v", f.name, f.restarts)
		}
		f.mu.Unlock()
	}
}

// footprint is a replica's live heap, read after a collection, and its
// goroutines.
type footprint struct {
	heap       int64
	goroutines int
}

// footprintOf reads a replica's footprint through net/http/pprof: the least
// of three heaps after a collection (a message in flight is not a leak), and
// the goroutines at the last.
func footprintOf(ctx context.Context, addr string) (footprint, error) {
	f := footprint{heap: -1}
	for range 3 {
		body, err := get(ctx, "http://"+addr+"/debug/pprof/heap?gc=1&debug=1")
		if err != nil {
			return f, err
		}
		heap, err := memStat(body, "HeapAlloc")
		if err != nil {
			return f, err
		}
		if f.heap < 0 || heap < f.heap {
			f.heap = heap
		}
	}
	body, err := get(ctx, "http://"+addr+"/debug/pprof/goroutine?debug=1")
	if err != nil {
		return f, err
	}
	first, _, _ := strings.Cut(body, "\n")
	n, ok := strings.CutPrefix(first, "goroutine profile: total ")
	if !ok {
		return f, fmt.Errorf("goroutine profile begins %q", first)
	}
	f.goroutines, err = strconv.Atoi(n)
	return f, err
}

// memStat finds "# name = value" in a heap profile's runtime.MemStats.
func memStat(profile, name string) (int64, error) {
	s := bufio.NewScanner(strings.NewReader(profile))
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "# "+name+" = "); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in the heap profile", name)
}

func get(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}
