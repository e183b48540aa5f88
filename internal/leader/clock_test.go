package leader

import (
	"runtime"
	"testing"
	"time"
)

// TestClocksCountSleep: both clocks advance by at least the time slept, and on
// Linux the boot clock is CLOCK_BOOTTIME, never behind CLOCK_MONOTONIC.
func TestClocksCountSleep(t *testing.T) {
	boot, mono := BootClock{}.Now(), MonotonicNow()
	time.Sleep(20 * time.Millisecond)
	if d := (BootClock{}).Now() - boot; d < 20*time.Millisecond {
		t.Errorf("boot clock moved %s over a 20ms sleep", d)
	}
	if d := MonotonicNow() - mono; d < 20*time.Millisecond {
		t.Errorf("monotonic clock moved %s over a 20ms sleep", d)
	}
	if runtime.GOOS == "linux" {
		if m, b := MonotonicNow(), (BootClock{}).Now(); b < m {
			t.Errorf("CLOCK_BOOTTIME %s is behind CLOCK_MONOTONIC %s", b, m)
		}
	}
}
