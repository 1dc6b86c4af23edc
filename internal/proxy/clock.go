package proxy

import "time"

// Clock is the time source of the query queue (maximum wait, pauses after an
// upstream 429) and of the ingestion retries (Retry-After and backoff). Tests
// inject a fake one, so that no test waits for real time. Its methods are
// called concurrently.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed and returns a
	// function that cancels the call, reporting whether it did (false: f
	// already ran or is running).
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}
