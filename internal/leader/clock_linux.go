package leader

import (
	"time"

	"golang.org/x/sys/unix"
)

func bootNow() time.Duration { return clockGettime(unix.CLOCK_BOOTTIME, "CLOCK_BOOTTIME") }

func monotonicNow() time.Duration { return clockGettime(unix.CLOCK_MONOTONIC, "CLOCK_MONOTONIC") }

func clockGettime(id int32, name string) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(id, &ts); err != nil {
		panic("leader: " + name + ": " + err.Error())
	}
	return time.Duration(ts.Nano())
}
