package controller

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tinymod/tinymod/internal/scheduler"
	"github.com/tinymod/tinymod/module"
)

func TestClassify(t *testing.T) {
	cases := map[outcome][]any{
		returned:  {nil, "ok", 42},
		transient: {errors.New("busy"), module.Permanent(fmt.Errorf("x: %w", scheduler.ErrNoNode))},
		permanent: {module.Permanent(errors.New("bad data")), fmt.Errorf("wrapped: %w", module.Permanent(scheduler.ErrNoPort))},
	}
	for want, results := range cases {
		for _, r := range results {
			if got := classify(r); got != want {
				t.Errorf("classify(%v) = %v, want %v", r, got, want)
			}
		}
	}
}

// TestRetryPolicy walks every outcome at every attempt count.
func TestRetryPolicy(t *testing.T) {
	p := retryPolicy{MaxAttempts: 5, Base: 100 * time.Millisecond, Max: 1 * time.Second}
	for attempts := int32(1); attempts <= 7; attempts++ {
		for _, o := range []outcome{returned, accepted, transient, permanent} {
			a, wait := p.next(o, attempts)
			switch {
			case o == returned || o == accepted:
				if a != deleteSignal {
					t.Errorf("%v at %d: %v", o, attempts, a)
				}
			case o == permanent:
				if a != failSignal {
					t.Errorf("permanent at %d: %v", attempts, a)
				}
			case attempts >= p.MaxAttempts:
				if a != failSignal {
					t.Errorf("transient at %d (max %d): %v", attempts, p.MaxAttempts, a)
				}
			default:
				if a != retrySignal || wait <= 0 || wait > p.Max {
					t.Errorf("transient at %d: %v after %s", attempts, a, wait)
				}
			}
		}
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := p.backoff(int32(i + 1)); got != w*time.Millisecond {
			t.Errorf("backoff(%d) = %s, want %s", i+1, got, w*time.Millisecond)
		}
	}
}
