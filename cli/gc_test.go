package cli

import (
	"runtime"
	"runtime/debug"
	"sync/atomic"
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

// fakeHeap is a live heap the test sets, and counts its reads.
type fakeHeap struct{ bytes, reads atomic.Uint64 }

func (h *fakeHeap) read() (uint64, bool) {
	h.reads.Add(1)
	return h.bytes.Load(), true
}

// tuneFake starts the tuner on a fake heap of bytes; it stops, and GOGC is
// put back, when the test ends.
func tuneFake(t *testing.T, bytes uint64) (*fakeHeap, func()) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	heap := &fakeHeap{}
	heap.bytes.Store(bytes)
	stop := tuneGC(heap.read)
	t.Cleanup(stop)
	return heap, stop
}

// awaitGOGC collects until the tuner has set want, or fails after 10 s.
func awaitGOGC(t *testing.T, want int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for gcTarget() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: GOGC %d after 10 s of collections, want %d", what, gcTarget(), want)
		}
		runtime.GC()
	}
}

// TestGCTunerFollowsTheLiveHeap: a replica of a few nodes collects at 100; as
// its live heap passes twice GCHeadroom, at DefaultGCPercent; at 100 again
// when it shrinks; and once something else sets the target, at theirs.
func TestGCTunerFollowsTheLiveHeap(t *testing.T) {
	heap, _ := tuneFake(t, 8<<20)
	awaitGOGC(t, 100, "a small heap")
	heap.bytes.Store(96 << 20)
	awaitGOGC(t, DefaultGCPercent, "a heap of 96 MiB")
	heap.bytes.Store(40 << 20)
	awaitGOGC(t, 80, "a heap of 40 MiB")
	heap.bytes.Store(8 << 20)
	awaitGOGC(t, 100, "the heap shrunk again")

	debug.SetGCPercent(77) // as a component might
	heap.bytes.Store(96 << 20)
	seen := heap.reads.Load()
	for deadline := time.Now().Add(10 * time.Second); heap.reads.Load() == seen; runtime.GC() {
		if time.Now().After(deadline) {
			t.Fatal("the tuner stopped before the target was set")
		}
	}
	for range 20 {
		runtime.GC()
		if got := gcTarget(); got != 77 {
			t.Fatalf("after another's SetGCPercent(77): GOGC %d", got)
		}
	}
	if n := heap.reads.Load(); n != seen+1 {
		t.Errorf("the tuner read the heap %d more times after it gave the target up, want 1", n-seen)
	}
}

// TestGCTunerStops: after stop, the target is left alone.
func TestGCTunerStops(t *testing.T) {
	heap, stop := tuneFake(t, 96<<20)
	awaitGOGC(t, DefaultGCPercent, "a heap of 96 MiB")
	stop()
	heap.bytes.Store(8 << 20)
	seen := heap.reads.Load()
	for range 20 {
		runtime.GC()
		if got := gcTarget(); got != DefaultGCPercent {
			t.Fatalf("after stop: GOGC %d, want it left at %d", got, DefaultGCPercent)
		}
	}
	if n := heap.reads.Load(); n != seen {
		t.Errorf("the tuner read the heap %d times after stop", n-seen)
	}
}

// TestGOGCSetIsLeftAlone: GOGC in the environment wins.
func TestGOGCSetIsLeftAlone(t *testing.T) {
	prev := debug.SetGCPercent(200)
	defer debug.SetGCPercent(prev)
	defer tuneGCUnlessSet(func(string) string { return "200" })()
	runtime.GC()
	runtime.GC()
	if got := gcTarget(); got != 200 {
		t.Errorf("with GOGC set: %d, want it left alone", got)
	}
}

func TestLiveHeapReads(t *testing.T) {
	if n, ok := liveHeap(); !ok || n == 0 {
		t.Errorf("liveHeap: %d, %v", n, ok)
	}
}
