package module

import (
	"context"
	"errors"
)

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that must not be retried: bad input, a missing
// node, a rejected request. Plain errors are transient. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

type messageIDKey struct{}

// WithMessageID returns ctx carrying a message's ID. The runtime sets it; a
// signal's delivery carries the signal's UID.
func WithMessageID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, messageIDKey{}, id)
}

// MessageID returns the ID of the message ctx was delivered with, usable as an
// idempotency key: a signal delivered twice (its leader died during delivery)
// carries the same ID both times. Empty when the message has none.
func MessageID(ctx context.Context) string {
	id, _ := ctx.Value(messageIDKey{}).(string)
	return id
}
