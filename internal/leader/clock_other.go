//go:build !linux

package leader

import "time"

// processStart carries Go's monotonic reading; time.Since uses only that.
var processStart = time.Now()

func bootNow() time.Duration { return time.Since(processStart) }

func monotonicNow() time.Duration { return time.Since(processStart) }
