package leader

import "time"

// Clock reads a monotonic clock.
type Clock interface {
	Now() time.Duration
}

// BootClock is the clock a term's validity is read on. On Linux it reads
// CLOCK_BOOTTIME: monotonic, shared by every process on the machine, and still
// counting while the machine is suspended, so a leader that slept past its
// validity knows it on waking. Elsewhere (macOS, Windows: development
// machines, never a cluster's nodes) it reads Go's monotonic clock from the
// process's start, which does not count suspended time: a leader suspended
// there may act for up to the renew deadline after waking before it learns
// that its term has ended.
type BootClock struct{}

// Now returns the time since boot on Linux, since the process started elsewhere.
func (BootClock) Now() time.Duration { return bootNow() }

// MonotonicNow reads CLOCK_MONOTONIC on Linux, comparable between processes
// on one machine, as the leader journal's times must be. Elsewhere it reads
// Go's monotonic clock from the process's start, so journals of different
// processes cannot be held against each other there.
func MonotonicNow() time.Duration { return monotonicNow() }
