package cli

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// DefaultGCPercent is the garbage collector's target for a replica whose
// live heap has passed twice GCHeadroom, unless GOGC says otherwise. Such a
// heap is mostly nodes, kept for as long as they run, so Go's default of 100
// would hold as much again in garbage; at 50 a reader of 10 000 nodes held
// 11.9 KiB per node instead of 16.7 (docs/benchmarks.md), for more frequent
// collections.
const DefaultGCPercent = 50

// GCHeadroom is the garbage a replica lets its heap gather between
// collections while its live heap is between GCHeadroom and twice that. A
// smaller heap collects at Go's default of 100: halving the garbage of a small
// heap saves little memory and doubles the collector's CPU, which on a
// replica busy with messages is a tenth of its time.
const GCHeadroom = 32 << 20

// gcPercent is the collector's target for a live heap of live bytes: 100 up
// to GCHeadroom, then what leaves GCHeadroom of room, down to
// DefaultGCPercent.
func gcPercent(live uint64) int {
	if live <= GCHeadroom {
		return 100
	}
	return max(DefaultGCPercent, int(100*GCHeadroom/live))
}

// tuneGCUnlessSet sets the collector's target from the live heap after every
// collection, unless GOGC is set (the runtime has applied it then), until
// the returned func is called, or until something else in the process sets
// the target: from then on it is theirs.
func tuneGCUnlessSet(getenv func(string) string) (stop func()) {
	if getenv("GOGC") != "" {
		return func() {}
	}
	return tuneGC(liveHeap)
}

// liveHeap reads the live heap as of the last collection.
func liveHeap() (uint64, bool) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0, false
	}
	return s[0].Value.Uint64(), true
}

// gcTarget reads the collector's target, as debug.SetGCPercent last set it.
func gcTarget() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return -1
	}
	return int(s[0].Value.Uint64())
}

// gcSentinel is garbage made to be collected: its cleanup runs after each
// cycle. Too large for the tiny allocator, which would keep it alive with
// its neighbours.
type gcSentinel [32]byte

func tuneGC(live func() (uint64, bool)) (stop func()) {
	var stopped atomic.Bool
	debug.SetGCPercent(DefaultGCPercent)
	last := DefaultGCPercent
	var tune func(struct{})
	tune = func(struct{}) {
		if stopped.Load() {
			return
		}
		bytes, ok := live()
		if !ok || gcTarget() != last {
			// A runtime without the metric stays at DefaultGCPercent; a
			// target set by someone else stays theirs.
			return
		}
		if p := gcPercent(bytes); p != last {
			debug.SetGCPercent(p)
			last = p
		}
		runtime.AddCleanup(new(gcSentinel), tune, struct{}{})
	}
	tune(struct{}{})
	return func() { stopped.Store(true) }
}
