package redis

import (
	"sync"
	"time"
)

// breakerState is the state of the circuit breaker, as the
// broker_redis_breaker_state gauge shows it.
type breakerState int

const (
	// closed: calls go to Redis.
	closed breakerState = iota
	// open: calls fail at once, without touching Redis, until the cooldown ends.
	open
	// halfOpen: one probe call goes to Redis; its outcome closes or reopens.
	halfOpen
)

// breaker stops calling Redis after failureThreshold consecutive failures,
// for a cooldown that doubles with each failed probe up to maxCooldown, so
// that a Redis that is down or slow costs each token fetch nothing rather
// than a timeout. It is safe for concurrent use; now is injected so tests
// never sleep.
type breaker struct {
	now       func() time.Time
	threshold int
	base, max time.Duration
	onChange  func(breakerState)

	mu       sync.Mutex
	state    breakerState
	failures int
	cooldown time.Duration
	until    time.Time // end of the open state
	probing  bool      // a half-open probe is out
}

func newBreaker(now func() time.Time, threshold int, base, max time.Duration, onChange func(breakerState)) *breaker {
	return &breaker{now: now, threshold: threshold, base: base, max: max, cooldown: base, onChange: onChange}
}

// allow reports whether a call may go to Redis now; every allowed call must
// be followed by done.
func (b *breaker) allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case closed:
		return true
	case open:
		if b.now().Before(b.until) {
			return false
		}
		b.set(halfOpen)
		fallthrough
	default: // halfOpen
		if b.probing {
			return false
		}
		b.probing = true
		return true
	}
}

// done records the outcome of an allowed call: ok is false when Redis
// failed or timed out (a miss is a success).
func (b *breaker) done(ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	probe := b.state == halfOpen && b.probing
	if probe {
		b.probing = false
	}
	if ok {
		b.failures = 0
		if b.state != closed {
			b.cooldown = b.base
			b.set(closed)
		}
		return
	}
	b.failures++
	switch {
	case probe:
		b.cooldown = min(2*b.cooldown, b.max)
		b.until = b.now().Add(b.cooldown)
		b.set(open)
	case b.state == closed && b.failures >= b.threshold:
		b.until = b.now().Add(b.cooldown)
		b.set(open)
	}
}

func (b *breaker) set(s breakerState) {
	b.state = s
	if b.onChange != nil {
		b.onChange(s)
	}
}

func (b *breaker) current() breakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}
