package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
)

// PacerSettings: each replica sends Rate messages a second on out, each with
// a deadline of TimeoutMs; every ShortEvery-th gets 1 ms instead, to expire on
// its way. At most InFlight are out at once; a tick finding them all out is
// skipped.
type PacerSettings struct {
	Rate       int `json:"rate"`
	TimeoutMs  int `json:"timeoutMs"`
	ShortEvery int `json:"shortEvery"`
	InFlight   int `json:"inFlight"`
	// HoldMs is what each message asks its receiver to hold it for.
	HoldMs int `json:"holdMs"`
}

// Paced is a pacer's message.
type Paced struct {
	Seq    int64 `json:"seq"`
	HoldMs int   `json:"holdMs"`
}

// LogEvery is how often a pacer logs what it sent.
const LogEvery = 2 * time.Second

// pacer sends on every replica: business traffic.
type pacer struct {
	mu     sync.Mutex
	cancel context.CancelFunc
}

func (p *pacer) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: "pacer", Description: "Sends messages with deadlines at a steady rate"}
}

func (p *pacer) Instance() module.Component { return &pacer{} }

func (p *pacer) Ports() []module.Port {
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Label: "Settings", Configuration: PacerSettings{}},
		{Name: "out", Label: "Out", Source: true, Position: module.Right, Configuration: Paced{}},
	}
}

func (p *pacer) Destroy() { p.stop() }

func (p *pacer) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel != nil {
		p.cancel()
		p.cancel = nil
	}
}

func (p *pacer) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	if port != v1alpha1.SettingsPort {
		return nil
	}
	s := msg.(PacerSettings)
	p.stop()
	if s.Rate <= 0 {
		return nil
	}
	// The loop outlives this delivery and any leadership term: it is business.
	run, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.mu.Lock()
	p.cancel = cancel
	p.mu.Unlock()
	go p.run(run, output, s)
	return nil
}

func (p *pacer) run(ctx context.Context, output module.Handler, s PacerSettings) {
	timeout := time.Duration(max(s.TimeoutMs, 1)) * time.Millisecond
	slots := make(chan struct{}, max(s.InFlight, 1))
	tick := time.NewTicker(time.Second / time.Duration(s.Rate))
	defer tick.Stop()
	report := time.NewTicker(LogEvery)
	defer report.Stop()
	var seq int64
	var sent, ok, expired, failed, skipped atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-report.C:
			module.Log(ctx).Info("pacer", "sent", sent.Load(), "ok", ok.Load(), "expired", expired.Load(), "failed", failed.Load(), "skipped", skipped.Load())
			continue
		case <-tick.C:
		}
		select {
		case slots <- struct{}{}:
		default:
			skipped.Add(1)
			continue
		}
		seq++
		d := timeout
		if s.ShortEvery > 0 && seq%int64(s.ShortEvery) == 0 {
			d = time.Millisecond
		}
		sent.Add(1)
		wg.Add(1)
		go func(m Paced) {
			defer wg.Done()
			defer func() { <-slots }()
			mctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			res := output(mctx, "out", m)
			err, _ := res.(error)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, context.DeadlineExceeded):
				expired.Add(1)
			default:
				failed.Add(1)
			}
		}(Paced{Seq: seq, HoldMs: s.HoldMs})
	}
}

// hold holds each message for its HoldMs, or until its deadline.
type hold struct{}

func (h *hold) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: "hold", Description: "Holds each message for a while, or until its deadline"}
}

func (h *hold) Instance() module.Component { return &hold{} }

func (h *hold) Ports() []module.Port {
	return []module.Port{{Name: "in", Label: "In", Position: module.Left, Configuration: Paced{}}}
}

func (h *hold) Handle(ctx context.Context, _ module.Handler, port string, msg any) any {
	if port != "in" {
		return nil
	}
	t := time.NewTimer(time.Duration(msg.(Paced).HoldMs) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
