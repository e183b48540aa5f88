package leader

import (
	"fmt"
	"time"
)

// The rules of leadership, as plain functions of what a replica has observed
// and its own monotonic clock. Times are readings of that clock (Clock.Now):
// they are comparable within one machine's boot, never with the timestamps
// written in the Lease, so clock skew between machines does not matter; only
// clock rates must agree to within (LeaseDuration - RenewDeadline) / LeaseDuration.

// Config holds the durations of an election.
type Config struct {
	// LeaseDuration is how long other candidates wait, from the moment they see
	// a renewal, before they may take the lease. Defaults to 15 seconds.
	LeaseDuration time.Duration
	// RenewDeadline is how long a leader stays leader after sending its last
	// successful renewal. Defaults to 10 seconds.
	RenewDeadline time.Duration
	// RetryPeriod is the time between renewals and between attempts to
	// acquire. Defaults to 2 seconds.
	RetryPeriod time.Duration
}

// Default durations.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// WithDefaults fills in unset durations.
func (c Config) WithDefaults() Config {
	if c.LeaseDuration == 0 {
		c.LeaseDuration = DefaultLeaseDuration
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = DefaultRenewDeadline
	}
	if c.RetryPeriod == 0 {
		c.RetryPeriod = DefaultRetryPeriod
	}
	return c
}

// Validate checks lease duration > renew deadline > 1.2 × retry period, the
// margins that make the guarantees hold, and says which one a setting breaks.
func (c Config) Validate() error {
	switch {
	case c.LeaseDuration <= 0 || c.RenewDeadline <= 0 || c.RetryPeriod <= 0:
		return fmt.Errorf("lease duration (%s), renew deadline (%s) and retry period (%s) must all be positive",
			c.LeaseDuration, c.RenewDeadline, c.RetryPeriod)
	case c.LeaseDuration <= c.RenewDeadline:
		return fmt.Errorf("lease duration (%s) must be longer than the renew deadline (%s): a leader must stop before others may take over",
			c.LeaseDuration, c.RenewDeadline)
	case c.RenewDeadline <= c.RetryPeriod*6/5:
		return fmt.Errorf("renew deadline (%s) must be longer than 1.2 × the retry period (%s = %s): a leader needs room to retry a renewal",
			c.RenewDeadline, c.RetryPeriod, c.RetryPeriod*6/5)
	}
	return nil
}

// Observation is a version of the Lease as one replica saw it.
type Observation struct {
	// Exists is false when there is no Lease at all.
	Exists bool
	// Holder is the holder identity; empty when released.
	Holder string
	// LeaseDuration is the duration the holder wrote.
	LeaseDuration time.Duration
	// Transitions is the Lease's transition count.
	Transitions int32
	// Version is the resourceVersion; a new one means the record changed.
	Version string
	// SeenAt is when this replica first saw this version.
	SeenAt time.Duration
}

// Observe returns the observation after seeing next at now: a new version
// restarts the clock, the same version keeps the time it was first seen.
func Observe(prev, next Observation, now time.Duration) Observation {
	if prev.Exists == next.Exists && prev.Version == next.Version && prev.Version != "" {
		next.SeenAt = prev.SeenAt
		return next
	}
	next.SeenAt = now
	return next
}

// ExpiresAt is when others may take the lease held as observed.
func ExpiresAt(o Observation) time.Duration {
	return o.SeenAt + o.LeaseDuration
}

// CanAcquire reports whether identity may try to take the lease at now: there
// is none, it is released, it is its own, or it has gone unrenewed for its
// whole duration since this replica saw it change.
func CanAcquire(o Observation, identity string, now time.Duration) bool {
	return !o.Exists || o.Holder == "" || o.Holder == identity || now >= ExpiresAt(o)
}

// ValidUntil is when leadership ends for a leader whose last successful
// acquire or renewal was sent at sentAt. Every other replica saw that write
// only after it was sent, so it waits at least LeaseDuration from sentAt;
// stopping at RenewDeadline leaves the difference as margin.
func ValidUntil(c Config, sentAt time.Duration) time.Duration {
	return sentAt + c.RenewDeadline
}

// IsValid reports whether leadership granted until validUntil holds at now.
func IsValid(validUntil, now time.Duration) bool {
	return now < validUntil
}

// NextRenewal is when a leader whose last renewal was sent at sentAt renews again.
func NextRenewal(c Config, sentAt time.Duration) time.Duration {
	return sentAt + c.RetryPeriod
}
