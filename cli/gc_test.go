package cli

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestGCPercentKeepsTheHeadroom(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 100},
		{8 << 20, 100},
		{GCHeadroom, 100},
		{48 << 20, 66},
		{2 * GCHeadroom, DefaultGCPercent},
		{1 << 30, DefaultGCPercent},
	} {
		if got := gcPercent(c.live); got != c.want {
			t.Errorf("live %d MiB: %d, want %d", c.live>>20, got, c.want)
		}
	}
}

func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// awaitGOGC collects until the tuner has set want, or fails after 10 s.
func awaitGOGC(t *testing.T, want int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for gogc() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: GOGC %d after 10 s of collections, want %d", what, gogc(), want)
		}
		runtime.GC()
	}
}

// TestGCTunerFollowsTheLiveHeap: a replica of a few nodes collects at 100; as
// its live heap passes twice GCHeadroom, at DefaultGCPercent; and at 100
// again when it shrinks.
func TestGCTunerFollowsTheLiveHeap(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	stop := tuneGCUnlessSet(func(string) string { return "" })
	defer stop()
	awaitGOGC(t, 100, "a small heap")

	held := make([]byte, 3*GCHeadroom)
	awaitGOGC(t, DefaultGCPercent, "a heap of 96 MiB")
	runtime.KeepAlive(held)
	held = nil

	awaitGOGC(t, 100, "the heap shrunk again")

	stop()
	debug.SetGCPercent(77)
	runtime.GC()
	runtime.GC()
	if got := gogc(); got != 77 {
		t.Errorf("after stop: GOGC %d, want it left alone (77)", got)
	}
}

// TestGOGCSetIsLeftAlone: GOGC in the environment wins.
func TestGOGCSetIsLeftAlone(t *testing.T) {
	prev := debug.SetGCPercent(200)
	defer debug.SetGCPercent(prev)
	defer tuneGCUnlessSet(func(string) string { return "200" })()
	runtime.GC()
	runtime.GC()
	if got := gogc(); got != 200 {
		t.Errorf("with GOGC set: %d, want it left alone", got)
	}
}
