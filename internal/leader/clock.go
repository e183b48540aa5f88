package leader

import (
	"time"

	"golang.org/x/sys/unix"
)

// Clock reads a monotonic clock.
type Clock interface {
	Now() time.Duration
}

// BootClock reads CLOCK_BOOTTIME: monotonic, shared by every process on the
// machine, and still counting while the machine is suspended, so a leader that
// slept past its validity knows it on waking.
type BootClock struct{}

// Now returns the time since boot.
func (BootClock) Now() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		panic("leader: CLOCK_BOOTTIME: " + err.Error())
	}
	return time.Duration(ts.Nano())
}
