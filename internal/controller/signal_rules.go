package controller

import (
	"errors"
	"time"

	"github.com/tinymod/tinymod/internal/scheduler"
	"github.com/tinymod/tinymod/module"
)

// The rules of signal delivery, as plain functions.

// outcome is how one delivery attempt ended.
type outcome int

const (
	// returned: Handle returned without an error.
	returned outcome = iota
	// accepted: Handle has run longer than the acceptance window; it keeps running.
	accepted
	// transient: an error that may pass (the node not running yet, a plain error).
	transient
	// permanent: an error that retrying cannot fix.
	permanent
)

// classify turns Handle's result into an outcome.
func classify(result any) outcome {
	err, ok := result.(error)
	if !ok || err == nil {
		return returned
	}
	if errors.Is(err, scheduler.ErrNoNode) {
		return transient // the node may not be running yet: wait for it
	}
	if module.IsPermanent(err) {
		return permanent
	}
	return transient
}

// action is what to do with a signal after an attempt.
type action int

const (
	deleteSignal action = iota // delivered
	retrySignal                // try again after the backoff
	failSignal                 // give up: phase Failed
)

// retryPolicy bounds retries of one signal.
type retryPolicy struct {
	MaxAttempts int32
	Base, Max   time.Duration
}

var defaultRetry = retryPolicy{MaxAttempts: 8, Base: 100 * time.Millisecond, Max: 5 * time.Second}

// next decides what follows attempt number attempts (1 for the first) ending in o.
func (p retryPolicy) next(o outcome, attempts int32) (action, time.Duration) {
	switch o {
	case returned, accepted:
		return deleteSignal, 0
	case permanent:
		return failSignal, 0
	}
	if attempts >= p.MaxAttempts {
		return failSignal, 0
	}
	return retrySignal, p.backoff(attempts)
}

// backoff doubles from Base for each attempt made, up to Max.
func (p retryPolicy) backoff(attempts int32) time.Duration {
	d := p.Base
	for i := int32(1); i < attempts && d < p.Max; i++ {
		d *= 2
	}
	return min(d, p.Max)
}
