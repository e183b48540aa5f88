// Package apicall bounds calls to the API server, so that one the server
// holds does not hold its caller.
//
// A context deadline alone is not enough: a controller-runtime client asks its
// REST mapper which resource a kind is before it sends anything, and the
// mapper's first look-up of an API group is a discovery request that heeds no
// context. Bounded therefore returns when the bound passes even if the call
// has not: the call is left to end on its own, with its context cancelled, so
// it sends nothing once its caller has been told it failed.
package apicall

import (
	"context"
	"fmt"
	"time"
)

// DefaultTimeout bounds one API call where the caller does not choose: far
// longer than a healthy API server takes, short enough that a hung one does
// not hold work for long.
const DefaultTimeout = 30 * time.Second

// Bounded runs call with ctx bounded by timeout (DefaultTimeout if zero or
// less) and returns its error, or, once the bound passes or ctx ends first, an
// error that wraps context.DeadlineExceeded or ctx's error, without waiting
// for call to return.
func Bounded(ctx context.Context, timeout time.Duration, call func(context.Context) error) error {
	_, err := BoundedValue(ctx, timeout, func(ctx context.Context) (struct{}, error) { return struct{}{}, call(ctx) })
	return err
}

// BoundedValue is Bounded for a call that returns a value: the zero value
// when it did not return in time.
func BoundedValue[T any](ctx context.Context, timeout time.Duration, call func(context.Context) (T, error)) (T, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1) // the call never blocks on its answer, even when no one waits for it
	go func() {
		v, err := call(cctx)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-cctx.Done():
	}
	select {
	case r := <-done: // it returned as the bound passed: its own answer says more
		return r.v, r.err
	default:
	}
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	return zero, fmt.Errorf("no answer from the API server within %s: %w", timeout, context.DeadlineExceeded)
}
