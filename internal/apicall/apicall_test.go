package apicall_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tinymod/tinymod/internal/apicall"
)

// TestBoundedReturnsWithoutTheCall: a call that heeds no context (as a REST
// mapper's discovery does not) still returns DeadlineExceeded at the bound,
// and its context is cancelled so that it sends nothing later.
func TestBoundedReturnsWithoutTheCall(t *testing.T) {
	stuck := make(chan struct{})
	defer close(stuck)
	cancelled := make(chan struct{})
	start := time.Now()
	err := apicall.Bounded(context.Background(), 50*time.Millisecond, func(ctx context.Context) error {
		<-stuck
		<-ctx.Done()
		close(cancelled)
		return ctx.Err()
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("returned after %s, bound 50ms", d)
	}
	stuck <- struct{}{}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Error("the abandoned call's context was not cancelled")
	}
}

// TestBoundedValue: a call that answers in time gives its answer and error;
// one whose caller's context ends gives the caller's error.
func TestBoundedValue(t *testing.T) {
	v, err := apicall.BoundedValue(context.Background(), 0, func(ctx context.Context) (int, error) {
		if _, ok := ctx.Deadline(); !ok {
			return 0, errors.New("no deadline")
		}
		return 7, nil
	})
	if v != 7 || err != nil {
		t.Errorf("got %d, %v; want 7, nil", v, err)
	}
	boom := errors.New("boom")
	if _, err := apicall.BoundedValue(context.Background(), time.Minute, func(context.Context) (int, error) { return 1, boom }); !errors.Is(err, boom) {
		t.Errorf("err %v, want boom", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	block := make(chan struct{})
	defer close(block)
	if v, err := apicall.BoundedValue(ctx, time.Minute, func(context.Context) (int, error) { <-block; return 1, nil }); v != 0 || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %d, %v; want 0, Canceled", v, err)
	}
}
