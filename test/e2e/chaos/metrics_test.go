package chaos

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/tinymod/tinymod/test/bench/benchutil"
)

// sample is one scrape of a replica's /metrics.
type sample struct {
	at               time.Time
	heap, goroutines float64
	handled          float64 // messages the hold node handled, every result
}

// scraper reads every live replica's heap and goroutines every interval.
type scraper struct {
	mu      sync.Mutex
	samples map[*proc][]sample
	stop    chan struct{}
	done    chan struct{}
}

func (w *world) scrape(every time.Duration, handledNode string) *scraper {
	s := &scraper{samples: map[*proc][]sample{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			for _, f := range w.mods {
				for _, p := range f.replicas() {
					m, err := benchutil.Scrape(p.metrics)
					if err != nil {
						continue // stopped, starting, or gone
					}
					handled := 0.0
					for _, result := range []string{"ok", "error"} {
						handled += m[fmt.Sprintf(`tinymod_messages_total{node="%s",port="in",result="%s"}`, handledNode, result)]
					}
					s.mu.Lock()
					s.samples[p] = append(s.samples[p], sample{at: time.Now(), heap: m["go_memstats_heap_inuse_bytes"], goroutines: m["go_goroutines"], handled: handled})
					s.mu.Unlock()
				}
			}
			select {
			case <-s.stop:
				return
			case <-w.ctx.Done():
				return
			case <-w.done:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *scraper) finish() {
	close(s.stop)
	<-s.done
}

// growth is how a replica's heap and goroutines moved over its life: the
// least of each over a window after warm-up, and over the last window (the
// least, because a heap saws with garbage collection and goroutines with
// the messages in flight).
type growth struct {
	p                            *proc
	span                         time.Duration
	heapStart, heapEnd           float64
	goroutineStart, goroutineEnd float64
	handled                      float64 // messages handled between the two windows
}

func (s *scraper) growth(p *proc, warm, window time.Duration) (growth, bool) {
	s.mu.Lock()
	samples := append([]sample(nil), s.samples[p]...)
	s.mu.Unlock()
	if len(samples) < 4 {
		return growth{}, false
	}
	first := samples[0].at.Add(warm)
	last := samples[len(samples)-1].at
	if last.Sub(first) < 2*window {
		return growth{}, false
	}
	g := growth{p: p, span: last.Sub(first), heapStart: -1, heapEnd: -1, goroutineStart: -1, goroutineEnd: -1}
	least := func(v *float64, x float64) {
		if *v < 0 || x < *v {
			*v = x
		}
	}
	var handledStart, handledEnd float64
	for _, sm := range samples {
		switch {
		case !sm.at.Before(first) && sm.at.Before(first.Add(window)):
			least(&g.heapStart, sm.heap)
			least(&g.goroutineStart, sm.goroutines)
			if handledStart == 0 {
				handledStart = sm.handled
			}
		case sm.at.After(last.Add(-window)):
			least(&g.heapEnd, sm.heap)
			least(&g.goroutineEnd, sm.goroutines)
			handledEnd = sm.handled
		}
	}
	if g.heapStart < 0 || g.heapEnd < 0 {
		return growth{}, false
	}
	g.handled = handledEnd - handledStart
	return g, true
}

// growths returns the growth of every incarnation of mods that lived long
// enough to tell, by identity.
func (s *scraper) growths(f *fleet, warm, window time.Duration) []growth {
	var out []growth
	for _, p := range f.incarnations() {
		if g, ok := s.growth(p, warm, window); ok {
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].p.ID < out[j].p.ID })
	return out
}

func (g growth) String() string {
	perMsg := ""
	if g.handled > 0 {
		perMsg = fmt.Sprintf(", %+.0f B of heap per message", (g.heapEnd-g.heapStart)/g.handled)
	}
	return fmt.Sprintf("%s over %s: heap %.1f → %.1f MiB, goroutines %.0f → %.0f, %.0f messages handled%s",
		g.p.ID, g.span.Round(time.Second), g.heapStart/(1<<20), g.heapEnd/(1<<20), g.goroutineStart, g.goroutineEnd, g.handled, perMsg)
}
