package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"time"

	"github.com/tinymod/tinymod/test/bench/benchutil"
)

// knee is how far one system went: its steps, the last that passed and why
// the next one failed.
type knee struct {
	name   string
	steps  []*phase
	passed *phase // nil: not even the first rate
	why    string // what failed at the step after passed
	lost   int64  // messages sent without error but never received, over the passing steps
}

// verdict says what, if anything, fails a step.
func (o options) verdict(ph *phase, duration time.Duration) string {
	switch {
	case ph.failed > 0:
		return fmt.Sprintf("%d sends failed", ph.failed)
	case ph.p99() > o.kneeP99:
		return fmt.Sprintf("p99 %s > %s", ph.p99().Round(time.Microsecond), o.kneeP99)
	case float64(ph.got) < 0.95*float64(ph.rate)*duration.Seconds():
		return fmt.Sprintf("%.0f msg/s received of %d offered (%d sends could not start in time)", float64(ph.got)/duration.Seconds(), ph.rate, ph.missed)
	}
	return ""
}

// findKnee raises the rate step by step until a step fails twice in a row.
func findKnee(ctx context.Context, o options, sys system) (*knee, error) {
	k := &knee{name: sys.name()}
	if err := sys.up(ctx); err != nil {
		sys.down()
		return nil, err
	}
	defer sys.down()
	retried := false
	for rate := float64(o.kneeFrom); ; rate *= o.kneeFactor {
		r := int(math.Round(rate/500) * 500)
		dir := ""
		if o.pprof != "" {
			dir = filepath.Join(o.pprof, fmt.Sprintf("knee-%d", r))
		}
		ph, err := step(ctx, o, sys, r, o.kneeWorkers, o.kneeStep, dir)
		if err != nil {
			return nil, err
		}
		k.steps = append(k.steps, ph)
		why := o.verdict(ph, o.kneeStep)
		fmt.Printf("knee: %s at %d msg/s: %.0f msg/s received, p99 %s, %d errors, %.1f µs CPU per message: %s\n",
			sys.name(), r, float64(ph.got)/o.kneeStep.Seconds(), ph.p99().Round(time.Microsecond), ph.failed, ph.cpu/float64(max(ph.got, 1))*1e6, or(why, "passed"))
		if why != "" && !retried && ph.failed == 0 {
			// One slow moment on a shared machine (a GC pause, a compile
			// next door) can fail a 10 s step's p99: a rate fails only
			// when it fails twice in a row.
			retried = true
			rate /= o.kneeFactor
			continue
		}
		retried = false
		if why != "" {
			k.why = why
			return k, nil
		}
		if ph.got < ph.sent {
			k.lost += ph.sent - ph.got
		}
		k.passed = ph
		if ctx.Err() != nil {
			return k, ctx.Err()
		}
	}
}

func or(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}

func reportKnees(o options, knees []*knee) error {
	fmt.Printf("\nknee: from %d msg/s, ×%.2f a step of %s, %d senders × %d concurrent sends; a rate fails when p99 > %s, a send fails, or under 95%% of it arrives, twice in a row\n\n",
		o.kneeFrom, o.kneeFactor, o.kneeStep, o.replicas, o.kneeWorkers, o.kneeP99)
	fmt.Println("| system | knee (last rate passed) | p50 / p99 there | CPU per message there | next step failed on | tinymod's knee over this |")
	fmt.Println("|---|---:|---:|---:|---|---:|")
	rateOf := func(k *knee) int {
		if k.passed == nil {
			return 0
		}
		return k.passed.rate
	}
	var rows []benchutil.Row
	tm := knees[0]
	for _, k := range knees {
		at, cpu := "", ""
		if k.passed != nil {
			at = latencyOf(k.passed)
			cpu = fmt.Sprintf("%.1f µs", k.passed.cpu/float64(max(k.passed.got, 1))*1e6)
		}
		r := ""
		if k != tm {
			r = fmt.Sprintf("%.2f×", ratio(float64(rateOf(tm)), float64(rateOf(k))))
			goal := ""
			if k == knees[1] {
				goal = "≥ 2×"
			}
			rows = append(rows, benchutil.Row{Figure: fmt.Sprintf("load: knee (p99 ≤ %s, no errors)", o.kneeP99), Value: fmt.Sprintf("%d msg/s", rateOf(tm)),
				Anchor: k.name, AnchorValue: fmt.Sprintf("%d msg/s", rateOf(k)), Ratio: r, Goal: goal, Command: "go run ./test/bench/load -knee"})
		}
		fmt.Printf("| %s | %d msg/s | %s | %s | %s | %s |\n", k.name, rateOf(k), at, cpu, k.why, r)
	}
	if o.rows != "" {
		if err := benchutil.WriteRows(o.rows, rows); err != nil {
			return err
		}
	}
	if tm.lost > 0 {
		return errors.New("tinymod lost messages in steps that passed")
	}
	return nil
}
