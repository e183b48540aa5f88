package leadership

import (
	"context"
	"sync"
)

// Term is one acquisition of the lease by this replica: leadership as a value.
// Leader-only work takes the current term once, from a Source, and carries it:
// the work runs under Context, which ends when the term does, and checks Valid
// (or Confirm, which also journals the check) right before each step that only
// a leader may take. A term never comes back: once Valid turns false it stays
// false, and leadership won again is a new Term with a new Number.
//
// A nil *Term is no leadership: Valid is false and Context is already done.
type Term struct {
	number int64
	ctx    context.Context
	check  func(action string, journal bool) bool
}

// NewTerm returns a term numbered number whose leader-only work runs under ctx
// and whose validity check asks check. Electors make terms; tests use Manual.
func NewTerm(number int64, ctx context.Context, check func(action string, journal bool) bool) *Term {
	return &Term{number: number, ctx: ctx, check: check}
}

// Number is unique to this acquisition of the lease: the Lease's transition
// count when it was acquired. Terms of one Lease are numbered in the order they
// were won, whichever replica won them.
func (t *Term) Number() int64 {
	if t == nil {
		return 0
	}
	return t.number
}

// Context ends when the term does, or when a graceful stop ends leader-only
// work while the lease is still held to flush status writes.
func (t *Term) Context() context.Context {
	if t == nil {
		return doneContext
	}
	return t.ctx
}

// Valid reports, live, whether this term still holds: this replica holds the
// lease under this term and its validity has not run out on a clock that
// counts suspended time. It stays true during a graceful stop's flush, after
// Context has ended, until the lease is released.
func (t *Term) Valid() bool {
	return t != nil && t.check("", false)
}

// Confirm is Valid for a named piece of leader-only work: a true answer is
// recorded in the leader journal, if there is one, before the work goes ahead.
func (t *Term) Confirm(action string) bool {
	if action == "" {
		action = "unnamed"
	}
	return t != nil && t.check(action, true)
}

var doneContext = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// Source gives the term this replica holds now.
type Source interface {
	// Current returns the current term, or nil when this replica does not
	// lead or has begun to step down.
	Current() *Term
}

// Always is a Source whose one term never ends: a single replica that leads
// without an election, and tests.
var Always Source = always{}

// Never is a Source that never leads.
var Never Source = never{}

type always struct{}

var alwaysTerm = NewTerm(1, context.Background(), func(string, bool) bool { return true })

func (always) Current() *Term { return alwaysTerm }

type never struct{}

func (never) Current() *Term { return nil }

// Manual is a Source whose terms are started and ended by hand, for tests of
// what runs on top of leadership.
type Manual struct {
	mu     sync.Mutex
	number int64
	term   *Term
	end    context.CancelFunc
}

// Start begins a new term, ending the current one first.
func (m *Manual) Start() *Term {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.end != nil {
		m.end()
	}
	m.number++
	ctx, cancel := context.WithCancel(context.Background())
	number := m.number
	m.term = NewTerm(number, ctx, func(string, bool) bool { return m.holds(number) })
	m.end = cancel
	return m.term
}

// Stop ends the current term.
func (m *Manual) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.end != nil {
		m.end()
	}
	m.term, m.end = nil, nil
}

// Current returns the running term, or nil.
func (m *Manual) Current() *Term {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.term
}

func (m *Manual) holds(number int64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.term != nil && m.term.number == number
}

type termKey struct{}

// WithTerm returns ctx carrying t, without t's cancellation: a write made with
// this context is let through the Fence while t is Valid, even after t's
// leader-only work has stopped (a graceful stop's last status writes).
func WithTerm(ctx context.Context, t *Term) context.Context {
	return context.WithValue(ctx, termKey{}, t)
}

// TermFrom returns the term ctx carries, or nil.
func TermFrom(ctx context.Context) *Term {
	t, _ := ctx.Value(termKey{}).(*Term)
	return t
}
