// Package clock times short spans of work, such as a message's handling, at
// less cost than the time package.
//
// time.Since reads the system's monotonic clock, which costs about 20 ns in a
// virtual machine even through the vDSO. Where the processor's time-stamp
// counter runs at a constant rate in every power state and the kernel itself
// keeps time by it, Now reads the counter instead (about 8 ns) and Since
// converts counts to time at the rate measured against the system clock over
// a few milliseconds on first use. Anywhere else both fall back to the
// monotonic clock.
package clock

import (
	"sync"
	"sync/atomic"
	"time"
)

// Mono is a reading of the clock, for Since only.
type Mono int64

// Now reads the clock.
func Now() Mono {
	if useCounter() {
		return Mono(ticks())
	}
	return Mono(time.Since(base))
}

// Since is the time from m, never negative.
func Since(m Mono) time.Duration {
	var d time.Duration
	if useCounter() {
		d = time.Duration(float64(ticks()-int64(m)) * nsPerTick)
	} else {
		d = time.Since(base) - time.Duration(m)
	}
	return max(d, 0)
}

// Counter says whether Now reads the time-stamp counter, and at what rate.
func Counter() (on bool, nsPerTick float64) {
	return useCounter(), nsPerTick
}

var (
	// base anchors the fallback's readings.
	base = time.Now()

	measured  atomic.Bool // on and nsPerTick are set
	once      sync.Once
	on        bool
	nsPerTick float64
)

func useCounter() bool {
	if !measured.Load() {
		once.Do(func() {
			if counterUsable() {
				t0, c0 := time.Now(), ticks()
				for time.Since(t0) < 2*time.Millisecond {
				}
				on, nsPerTick = rateOf(time.Since(t0), ticks()-c0)
			}
			measured.Store(true)
		})
	}
	return on
}

// rateOf is the counter's rate from n ticks over d. A rate outside 10 MHz to
// 100 GHz says the counter is not what it seems.
func rateOf(d time.Duration, n int64) (ok bool, nsPerTick float64) {
	if n <= 0 {
		return false, 0
	}
	ns := float64(d) / float64(n)
	if ns < 0.01 || ns > 100 {
		return false, 0
	}
	return true, ns
}
