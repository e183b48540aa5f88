package clock

import (
	"testing"
	"time"
)

// spin busies the goroutine for at least d, by the time package's clock.
func spin(d time.Duration) time.Duration {
	t0 := time.Now()
	for time.Since(t0) < d {
	}
	return time.Since(t0)
}

// TestSinceAgreesWithTheTimePackage: over a span, Since and time.Since agree
// to within 2 % (the counter's rate is measured over 2 ms) and a few
// microseconds (the readings are not taken at the same instant).
func TestSinceAgreesWithTheTimePackage(t *testing.T) {
	on, ns := Counter()
	t.Logf("time-stamp counter: %v, %.4f ns a tick", on, ns)
	if on && (ns < 0.01 || ns > 100) {
		t.Errorf("Counter: on at %v ns a tick", ns)
	}
	for _, span := range []time.Duration{time.Millisecond, 20 * time.Millisecond} {
		m := Now()
		want := spin(span)
		got := Since(m)
		if diff := (got - want).Abs(); diff > want/50+20*time.Microsecond {
			t.Errorf("over %v: Since %v, time.Since %v", span, got, want)
		}
	}
}

func TestSinceIsNeverNegative(t *testing.T) {
	if d := Since(Now() + 1<<40); d != 0 {
		t.Errorf("Since a reading in the future: %v, want 0", d)
	}
}

// TestRateRefusesAnOddCounter: a counter that does not advance, or runs at an
// impossible rate, is not used.
func TestRateRefusesAnOddCounter(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		n    int64
		want bool
	}{
		{2 * time.Millisecond, 5_200_000, true}, // 2.6 GHz
		{2 * time.Millisecond, 0, false},        // stopped
		{2 * time.Millisecond, -5, false},       // went back
		{2 * time.Millisecond, 10, false},       // 5 kHz
		{time.Millisecond, 1 << 40, false},      // 1 PHz
	} {
		if ok, ns := rateOf(c.d, c.n); ok != c.want {
			t.Errorf("%d ticks over %v: used %v (%.4f ns a tick), want %v", c.n, c.d, ok, ns, c.want)
		}
	}
}

func BenchmarkClock(b *testing.B) {
	var sink time.Duration
	b.Run("time.Since", func(b *testing.B) {
		t0 := time.Now()
		for b.Loop() {
			sink += time.Since(t0)
		}
	})
	b.Run("clock.Since", func(b *testing.B) {
		m := Now()
		for b.Loop() {
			sink += Since(m)
		}
	})
	_ = sink
}
