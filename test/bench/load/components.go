package main

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
)

// Settings of the generator: every replica sends Rate messages a second on
// out, for Seconds, from StartAt (Unix milliseconds), over Workers concurrent
// senders.
type Settings struct {
	Rate    int   `json:"rate"`
	Seconds int   `json:"seconds"`
	StartAt int64 `json:"startAt"`
	Workers int   `json:"workers"`
}

// Message is what the generator sends.
type Message struct {
	Seq    int64  `json:"seq"`
	Sender string `json:"sender"`
}

// generator runs on every replica of its module: load is business traffic,
// handled wherever it lands.
type generator struct {
	mu     sync.Mutex
	cancel context.CancelFunc
}

func (g *generator) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: "generator", Description: "Sends messages at a fixed rate"}
}

func (g *generator) Ports() []module.Port {
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Configuration: Settings{}},
		{Name: "out", Source: true, Configuration: Message{}},
	}
}

func (g *generator) Instance() module.Component { return &generator{} }

func (g *generator) Destroy() { g.stop() }

func (g *generator) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cancel != nil {
		g.cancel()
		g.cancel = nil
	}
}

func (g *generator) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	if port != v1alpha1.SettingsPort {
		return nil
	}
	s := msg.(Settings)
	g.stop()
	if s.Rate <= 0 || s.Seconds <= 0 || s.StartAt == 0 {
		return nil
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g.mu.Lock()
	g.cancel = cancel
	g.mu.Unlock()
	go g.run(runCtx, output, s)
	return nil
}

// run sends from StartAt, then logs the totals.
func (g *generator) run(ctx context.Context, output module.Handler, s Settings) {
	log := module.Log(ctx)
	select {
	case <-time.After(time.Until(time.UnixMilli(s.StartAt))):
	case <-ctx.Done():
		return
	}
	var logged atomic.Int64
	r := pace(ctx, s, func(seq int64) error {
		res := output(ctx, "out", Message{Seq: seq})
		if err, ok := res.(error); ok && err != nil {
			if logged.Add(1) <= 5 {
				log.Error(err, "send failed")
			}
			return err
		}
		return nil
	})
	log.Info("load finished", "sent", r.Sent, "failed", r.Failed, "missed", r.Missed, "p50", r.P50, "p99", r.P99, "p999", r.P999)
}

// result is what a paced run did; it is also the line a sender logs.
type result struct {
	Msg                  string `json:"msg"`
	Sent, Failed, Missed int64
	P50, P99, P999       string
}

// pace calls send at s.Rate a second for s.Seconds from s.Workers goroutines.
// A 10 ms tick hands out that tick's share of the rate; up to 100 ms of shares
// wait for a worker (a GC pause is caught up), and beyond that they are
// counted as missed, so a sender that cannot keep up shows in the figures.
func pace(ctx context.Context, s Settings, send func(seq int64) error) result {
	if s.Workers <= 0 {
		s.Workers = 32
	}
	const tick = 10 * time.Millisecond
	perTick := max(1, s.Rate*int(tick)/int(time.Second))
	tokens := make(chan struct{}, 10*perTick)
	var sent, failed, missed, seq atomic.Int64
	var lmu sync.Mutex
	var latencies []time.Duration
	var wg sync.WaitGroup
	for range s.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for range tokens {
				n := seq.Add(1)
				start := time.Now()
				err := send(n)
				if n%16 == 0 {
					mine = append(mine, time.Since(start))
				}
				if err != nil {
					failed.Add(1)
					continue
				}
				sent.Add(1)
			}
			lmu.Lock()
			latencies = append(latencies, mine...)
			lmu.Unlock()
		}()
	}
	ticker := time.NewTicker(tick)
	end := time.Now().Add(time.Duration(s.Seconds) * time.Second)
	for now := range ticker.C {
		if now.After(end) || ctx.Err() != nil {
			break
		}
		for range perTick {
			select {
			case tokens <- struct{}{}:
			default:
				missed.Add(1)
			}
		}
	}
	ticker.Stop()
	close(tokens)
	wg.Wait()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	q := func(p float64) string {
		if len(latencies) == 0 {
			return "0s"
		}
		return latencies[int(p*float64(len(latencies)-1))].String()
	}
	return result{Msg: "load finished", Sent: sent.Load(), Failed: failed.Load(), Missed: missed.Load(), P50: q(0.50), P99: q(0.99), P999: q(0.999)}
}

// counter counts what reaches it (the scheduler's own metrics do the
// counting: tinymod_messages_total for the node's in port).
type counter struct{}

func (counter) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: "counter", Description: "Accepts anything"}
}

func (counter) Ports() []module.Port {
	return []module.Port{{Name: "in", Configuration: Message{}}}
}

func (counter) Instance() module.Component { return counter{} }

func (counter) Handle(context.Context, module.Handler, string, any) any { return nil }
