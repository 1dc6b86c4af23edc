package loganalytics

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The service's per-user query limits (reference §5.7): 5 queries run at
// once, up to 200 more wait in a FIFO queue for at most 3 minutes, and at
// most 200 queries are taken per 30 seconds; past any of these, 429.
const (
	DefaultMaxConcurrent = 5
	DefaultMaxQueued     = 200
	DefaultMaxQueueWait  = 3 * time.Minute
	DefaultRateLimit     = 200
	RateWindow           = 30 * time.Second
)

// Limits are the query limits a Service enforces per principal (a token's
// oid, else its appid). The zero value means the service's own limits.
type Limits struct {
	// MaxConcurrent is how many queries of one principal run at once; 0
	// means DefaultMaxConcurrent, negative means no limit.
	MaxConcurrent int
	// MaxQueued is how many more may wait; 0 means DefaultMaxQueued.
	MaxQueued int
	// MaxQueueWait is the longest a query waits; 0 means
	// DefaultMaxQueueWait. The wait is real time: the emulator's queue
	// holds real requests.
	MaxQueueWait time.Duration
	// RateLimit is how many queries one principal may send per RateWindow
	// by the Service's clock; 0 means DefaultRateLimit, negative no limit.
	RateLimit int
}

// limiter keeps one principal's running queries, queue and recent starts.
type limiter struct {
	running int
	top     int // most running at once, for tests
	queue   []chan struct{}
	starts  []time.Time // within the rate window, oldest first
}

// queryGate holds running queries for tests (HoldQueries).
type queryGate struct {
	mu sync.Mutex
	ch <-chan struct{}
}

// HoldQueries makes every query that gets a turn wait, while counted as
// running, until gate is closed (nil: no more holding). Tests use it to keep
// queries running without sleeping.
func (s *Service) HoldQueries(gate <-chan struct{}) {
	s.gate.mu.Lock()
	defer s.gate.mu.Unlock()
	s.gate.ch = gate
}

// MaxRunning returns the most queries of principal id (the token's oid, or
// its appid when it has none) that ran at once; "" means of any principal.
func (s *Service) MaxRunning(id string) int {
	s.limMu.Lock()
	defer s.limMu.Unlock()
	top := 0
	for k, l := range s.limiters {
		if id == "" || k == strings.ToLower(id) {
			top = max(top, l.top)
		}
	}
	return top
}

// Running returns how many queries of any principal run now.
func (s *Service) Running() int {
	s.limMu.Lock()
	defer s.limMu.Unlock()
	n := 0
	for _, l := range s.limiters {
		n += l.running
	}
	return n
}

func principalKey(p Principal) string {
	if p.ObjectID != "" {
		return strings.ToLower(p.ObjectID)
	}
	return strings.ToLower(p.AppID)
}

// admit takes a turn for p's query, waiting in the queue when p has as many
// running as allowed. It returns the function that ends the turn, or the
// failure to answer (429), or nil and no failure when the client went away.
func (s *Service) admit(ctx context.Context, cid string, p Principal) (func(), *failure) {
	lim := s.limits
	key := principalKey(p)
	now := s.now()
	s.limMu.Lock()
	l := s.limiters[key]
	if l == nil {
		l = &limiter{}
		s.limiters[key] = l
	}
	if lim.RateLimit > 0 {
		cut := 0
		for cut < len(l.starts) && !l.starts[cut].After(now.Add(-RateWindow)) {
			cut++
		}
		l.starts = l.starts[cut:]
		if len(l.starts) >= lim.RateLimit {
			retry := l.starts[0].Add(RateWindow).Sub(now)
			s.limMu.Unlock()
			return nil, throttled(cid, retry, "Your request was throttled: more than "+strconv.Itoa(lim.RateLimit)+" queries in 30 seconds.")
		}
		l.starts = append(l.starts, now)
	}
	if lim.MaxConcurrent < 0 {
		s.limMu.Unlock()
		return func() {}, nil
	}
	if l.running < lim.MaxConcurrent && len(l.queue) == 0 {
		l.start()
		s.limMu.Unlock()
		return s.finish(l), nil
	}
	if len(l.queue) >= lim.MaxQueued {
		s.limMu.Unlock()
		return nil, throttled(cid, time.Second, "Your request was throttled: too many queries are queued.")
	}
	ch := make(chan struct{})
	l.queue = append(l.queue, ch)
	s.limMu.Unlock()
	t := time.NewTimer(lim.MaxQueueWait)
	defer t.Stop()
	select {
	case <-ch:
		return s.finish(l), nil
	case <-t.C:
	case <-ctx.Done():
	}
	s.limMu.Lock()
	for i, c := range l.queue {
		if c == ch {
			l.queue = append(l.queue[:i], l.queue[i+1:]...)
			s.limMu.Unlock()
			if ctx.Err() != nil {
				return nil, nil
			}
			return nil, throttled(cid, time.Second, "Your request was throttled: it waited in the queue for too long.")
		}
	}
	s.limMu.Unlock()
	// Admitted while leaving: take the turn and end it.
	<-ch
	s.finish(l)()
	if ctx.Err() != nil {
		return nil, nil
	}
	return nil, throttled(cid, time.Second, "Your request was throttled: it waited in the queue for too long.")
}

// start counts a running query; s.limMu is held.
func (l *limiter) start() {
	l.running++
	l.top = max(l.top, l.running)
}

// finish returns the function that ends a turn and admits the next query.
func (s *Service) finish(l *limiter) func() {
	return func() {
		s.limMu.Lock()
		defer s.limMu.Unlock()
		l.running--
		if len(l.queue) > 0 {
			ch := l.queue[0]
			l.queue = l.queue[1:]
			l.start()
			close(ch)
		}
	}
}

// hold waits while HoldQueries holds queries.
func (s *Service) hold(ctx context.Context) {
	s.gate.mu.Lock()
	ch := s.gate.ch
	s.gate.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// throttled is the service's 429 with Retry-After.
func throttled(cid string, retry time.Duration, msg string) *failure {
	f := newFailure(http.StatusTooManyRequests, "ThrottledError", msg, cid, nil)
	if retry < time.Second {
		retry = time.Second
	}
	f.header = http.Header{"Retry-After": {retryAfterSeconds(retry)}}
	return f
}
