package cache

import "time"

// Clock tells the time and schedules callbacks. The real clock is used when
// Options.Clock is nil; tests pass a fake one and drive it by hand, so no
// test sleeps.
//
// Implementations are safe for concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has elapsed, like
	// time.AfterFunc. Calling Stop on the result prevents the call if it has
	// not started yet.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a callback scheduled by Clock.AfterFunc. *time.Timer satisfies it.
type Timer interface {
	// Stop prevents the callback from running and reports whether it did so
	// (false when the callback already ran or started, or Stop was called).
	Stop() bool
}

// realClock is the Clock of the time package.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
