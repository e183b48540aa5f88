//go:build !amd64

package clock

func ticks() int64 { return 0 }

func counterUsable() bool { return false }
