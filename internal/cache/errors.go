package cache

import (
	"errors"
	"time"
)

// ErrClosed is returned by Get once Close has been called.
var ErrClosed = errors.New("cache: closed")

// ErrNewKeyBudget is the cause of the *Error that Get returns, without an
// upstream call, when the key is new (it has held no token since it entered
// the cache) and its identity has spent its budget of new keys (see
// Options.NewKeyBudget). The *Error's NextAttempt says when the budget
// allows the next new key.
var ErrNewKeyBudget = errors.New("too many new scopes for this identity")

// ErrNotHeld is Refresh's answer for a key the cache does not hold.
var ErrNotHeld = errors.New("cache: key not held")

// errAbandoned answers a fetch that was dropped before it called the Source
// because every caller waiting for it had given up. Nobody receives it but
// Get callers that race with the abandonment.
var errAbandoned = errors.New("cache: fetch abandoned: every caller gave up")

// Error is returned by Cache.Get when no token can be served because the
// last upstream attempt for the key failed. It wraps the Source's error, so
// errors.As(err, new(*azure.Error)) still finds Entra's explanation, and it
// says when the cache will next ask upstream, so an HTTP handler can send
// Retry-After.
//
// Error never holds a token or a credential: it holds the scope, which is
// not secret, and the Source's error, which by the azure.TokenSource
// contract carries neither.
type Error struct {
	// Scope is the normalized scope that was asked for.
	Scope string
	// NextAttempt is the earliest time at which the cache will ask the
	// Source again for this key. Until then, Get answers the same error at
	// once, without an upstream call. It is never zero.
	NextAttempt time.Time
	// Err is the Source's error.
	Err error
}

// Error returns "cache: <scope>: <source error>".
func (e *Error) Error() string {
	return "cache: " + e.Scope + ": " + e.Err.Error()
}

// Unwrap returns the Source's error.
func (e *Error) Unwrap() error { return e.Err }

// RetryAfter returns how long from now the next upstream attempt is, rounded
// up to whole seconds and at least one second, as an HTTP Retry-After
// header wants it.
func (e *Error) RetryAfter(now time.Time) time.Duration {
	d := e.NextAttempt.Sub(now)
	if d < time.Second {
		return time.Second
	}
	return (d + time.Second - 1).Truncate(time.Second)
}
