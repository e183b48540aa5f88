package clock

import (
	"os"
	"runtime"
	"strings"
)

// rdtsc reads the time-stamp counter.
func rdtsc() int64

// cpuid runs CPUID for leaf.
func cpuid(leaf uint32) (eax, ebx, ecx, edx uint32)

func ticks() int64 { return rdtsc() }

// counterUsable: the counter is invariant (CPUID 0x80000007, EDX bit 8: one
// rate in every P-, C- and T-state) and, on Linux, the kernel's clocksource,
// which it has checked to agree across processors.
func counterUsable() bool {
	if top, _, _, _ := cpuid(0x80000000); top < 0x80000007 {
		return false
	}
	if _, _, _, edx := cpuid(0x80000007); edx&(1<<8) == 0 {
		return false
	}
	if runtime.GOOS != "linux" {
		return false
	}
	src, err := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource")
	return err == nil && strings.TrimSpace(string(src)) == "tsc"
}
