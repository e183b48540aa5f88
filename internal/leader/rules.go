package leader

import (
	"fmt"
	"strconv"
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

// Newer reports whether resourceVersion next is newer than prev. Versions of
// one object served by one etcd are increasing integers; a watch event may lag
// behind a version read by GET, and must not roll the view back. Versions that
// do not parse are compared for difference only.
func Newer(prev, next string) bool {
	if prev == "" {
		return next != ""
	}
	p, errP := strconv.ParseUint(prev, 10, 64)
	n, errN := strconv.ParseUint(next, 10, 64)
	if errP != nil || errN != nil {
		return prev != next
	}
	return n > p
}

// State is what an elector knows at a moment: the input of Decide.
type State struct {
	// Identity of this candidate.
	Identity string
	// Observed is true once the Lease, or its absence, has been seen.
	Observed bool
	// Lease is the newest version seen.
	Lease Observation
	// Leading is true while this replica holds a term.
	Leading bool
	// LastSent is when the last successful acquire or renewal was sent.
	LastSent time.Duration
	// ValidUntil is when the current term's validity ends.
	ValidUntil time.Duration
}

// Step is what an elector does next.
type Step int

// Steps.
const (
	// Wait does nothing until Decision.Wait has passed or something is seen.
	Wait Step = iota
	// Acquire writes the Lease with this replica as holder, starting a term.
	Acquire
	// Renew writes the Lease's renew time, extending the term.
	Renew
	// EndTerm ends the term at once: validity has run out, or another
	// replica holds the Lease.
	EndTerm
)

func (s Step) String() string {
	return [...]string{"wait", "acquire", "renew", "end term"}[s]
}

// Decision is a Step with how long to wait before deciding again, and why.
type Decision struct {
	Step   Step
	Wait   time.Duration
	Reason string
}

// Decide is the elector's whole policy: given what it knows and the time on
// its own monotonic clock, what to do now. It has no clock, goroutine or
// network of its own, so every interleaving can be walked through in tests.
func Decide(c Config, s State, now time.Duration) Decision {
	if s.Leading {
		switch {
		case !IsValid(s.ValidUntil, now):
			return Decision{Step: EndTerm, Reason: "renew deadline passed without a successful renewal"}
		case s.Observed && (!s.Lease.Exists || s.Lease.Holder != s.Identity):
			return Decision{Step: EndTerm, Reason: "another replica holds the lease"}
		}
		if due := NextRenewal(c, s.LastSent); now < due {
			return Decision{Step: Wait, Wait: min(due, s.ValidUntil) - now, Reason: "renewal not due"}
		}
		return Decision{Step: Renew, Wait: c.RetryPeriod, Reason: "renewal due"}
	}
	if !s.Observed {
		// Never act on a lease not yet seen: it is most likely held.
		return Decision{Step: Wait, Wait: c.RetryPeriod, Reason: "lease not observed yet"}
	}
	if !CanAcquire(s.Lease, s.Identity, now) {
		return Decision{Step: Wait, Wait: ExpiresAt(s.Lease) - now, Reason: "lease held by " + s.Lease.Holder}
	}
	return Decision{Step: Acquire, Wait: c.RetryPeriod, Reason: "lease free"}
}
