package proxy

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/entrabroker/broker/internal/httperr"
	"github.com/prometheus/client_golang/prometheus"
)

// Log Analytics counts its query limits per user, and everyone behind one
// broker is one user (the app registration): 5 concurrent queries, a FIFO
// queue of 200 that waits at most 3 minutes, then 429 (reference §5.7). The
// proxy keeps the same rules itself, per identity, so that a burst from
// many local threads waits in the broker instead of coming back as 429s.
const (
	// DefaultQueryMaxConcurrent is QueueOptions.MaxConcurrent when 0.
	DefaultQueryMaxConcurrent = 5
	// DefaultQueryMaxQueued is QueueOptions.MaxQueued when 0.
	DefaultQueryMaxQueued = 200
	// DefaultQueryMaxWait is QueueOptions.MaxWait when 0.
	DefaultQueryMaxWait = 3 * time.Minute
)

// maxPause bounds how long an upstream 429's Retry-After pauses a queue: a
// larger value is more likely a misparse than advice, and the queue's own
// maximum wait still answers the waiting callers.
const maxPause = 5 * time.Minute

// QueueOptions configure the query queue of the Log Analytics route.
type QueueOptions struct {
	// MaxConcurrent is how many queries of one identity may be upstream at
	// once; 0 means DefaultQueryMaxConcurrent, a negative value turns the
	// queue off.
	MaxConcurrent int
	// MaxQueued is how many queries of one identity may wait; 0 means
	// DefaultQueryMaxQueued, a negative value none (over MaxConcurrent: 429).
	MaxQueued int
	// MaxWait is the longest a query waits for its turn before it is
	// answered 429; 0 means DefaultQueryMaxWait.
	MaxWait time.Duration
}

// IdentityNamer is implemented by a Tokens that knows which identity's token
// a route's requests carry; the query queue is kept per identity. Without
// it, all of a route's requests share one queue (one identity).
type IdentityNamer interface {
	Identity(ctx context.Context, route string) string
}

// queues are one route's query queues, one per identity.
type queues struct {
	opts  QueueOptions
	clock Clock
	route string
	m     *queueMetrics

	mu  sync.Mutex
	ids map[string]*queue
}

func newQueues(opts QueueOptions, clock Clock, route string, m *queueMetrics) *queues {
	if opts.MaxConcurrent == 0 {
		opts.MaxConcurrent = DefaultQueryMaxConcurrent
	}
	if opts.MaxQueued == 0 {
		opts.MaxQueued = DefaultQueryMaxQueued
	}
	if opts.MaxQueued < 0 {
		opts.MaxQueued = 0
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = DefaultQueryMaxWait
	}
	return &queues{opts: opts, clock: clock, route: route, m: m, ids: map[string]*queue{}}
}

// of returns the queue of identity id.
func (qs *queues) of(id string) *queue {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	q := qs.ids[id]
	if q == nil {
		q = &queue{qs: qs}
		qs.ids[id] = q
	}
	return q
}

// queue is one identity's queue: at most MaxConcurrent requests upstream, the
// rest waiting in arrival order. A pause (after an upstream 429) lets none
// through until it ends.
type queue struct {
	qs *queues

	mu          sync.Mutex
	inflight    int
	waiting     []*waiter
	pausedUntil time.Time
	stopResume  func() bool
}

// waiter is one request waiting for its turn.
type waiter struct {
	ready    chan struct{} // closed when admitted or expired
	admitted bool
	expired  bool
	since    time.Time
	stop     func() bool // cancels the expiry
}

// acquire waits for a turn upstream. It returns the function that gives the
// turn back (call it exactly once, when the upstream answer is done), or
// the 429 to answer when the queue is full or the wait is over, or the
// context's error when the caller went away while waiting.
func (q *queue) acquire(ctx context.Context) (func(), error) {
	qs := q.qs
	now := qs.clock.Now()
	q.mu.Lock()
	if len(q.waiting) == 0 && q.inflight < qs.opts.MaxConcurrent && !now.Before(q.pausedUntil) {
		q.inflight++
		q.mu.Unlock()
		qs.m.inflight.Inc()
		qs.m.wait.Observe(0)
		return q.release, nil
	}
	if len(q.waiting) >= qs.opts.MaxQueued {
		retry := q.retryAfter(now)
		q.mu.Unlock()
		qs.m.refused("full")
		return nil, qs.fullError(retry)
	}
	w := &waiter{ready: make(chan struct{}), since: now}
	q.waiting = append(q.waiting, w)
	w.stop = qs.clock.AfterFunc(qs.opts.MaxWait, func() { q.expire(w) })
	q.mu.Unlock()
	qs.m.queued.Inc()

	select {
	case <-w.ready:
	case <-ctx.Done():
		q.mu.Lock()
		admitted, expired := w.admitted, w.expired
		if !admitted && !expired {
			q.remove(w)
		}
		q.mu.Unlock()
		switch {
		case admitted:
			q.release() // admitted as the caller left: pass the turn on
		case !expired:
			w.stop()
			qs.m.queued.Dec()
			qs.m.refused("canceled")
		}
		return nil, ctx.Err()
	}
	if w.expired {
		qs.m.refused("timeout")
		return nil, qs.timeoutError()
	}
	return q.release, nil
}

// retryAfter is what a refused caller is told to wait: what is left of a
// pause, else one second. q.mu is held.
func (q *queue) retryAfter(now time.Time) time.Duration {
	if d := q.pausedUntil.Sub(now); d > time.Second {
		return d
	}
	return time.Second
}

// remove drops w from the waiting list. q.mu is held.
func (q *queue) remove(w *waiter) {
	for i, x := range q.waiting {
		if x == w {
			q.waiting = append(q.waiting[:i], q.waiting[i+1:]...)
			return
		}
	}
}

// expire ends w's wait when it is still waiting.
func (q *queue) expire(w *waiter) {
	q.mu.Lock()
	if w.admitted || w.expired {
		q.mu.Unlock()
		return
	}
	q.remove(w)
	w.expired = true
	q.mu.Unlock()
	q.qs.m.queued.Dec()
	close(w.ready)
}

// release gives a turn back and lets the next waiter in.
func (q *queue) release() {
	q.mu.Lock()
	q.inflight--
	q.mu.Unlock()
	q.qs.m.inflight.Dec()
	q.dispatch()
}

// dispatch admits waiters while there is room and no pause.
func (q *queue) dispatch() {
	qs := q.qs
	now := qs.clock.Now()
	var admitted []*waiter
	q.mu.Lock()
	for len(q.waiting) > 0 && q.inflight < qs.opts.MaxConcurrent && !now.Before(q.pausedUntil) {
		w := q.waiting[0]
		q.waiting = q.waiting[1:]
		w.admitted = true
		q.inflight++
		admitted = append(admitted, w)
	}
	q.mu.Unlock()
	for _, w := range admitted {
		w.stop()
		qs.m.queued.Dec()
		qs.m.inflight.Inc()
		qs.m.wait.Observe(now.Sub(w.since).Seconds())
		close(w.ready)
	}
}

// pause holds the queue for d (an upstream 429's Retry-After): no waiter is
// admitted and every new request waits until it ends.
func (q *queue) pause(d time.Duration) {
	if d <= 0 {
		return
	}
	d = min(d, maxPause)
	qs := q.qs
	until := qs.clock.Now().Add(d)
	q.mu.Lock()
	defer q.mu.Unlock()
	if !until.After(q.pausedUntil) {
		return
	}
	q.pausedUntil = until
	if q.stopResume != nil {
		q.stopResume()
	}
	q.stopResume = qs.clock.AfterFunc(d, q.dispatch)
	qs.m.pauses.Inc()
}

// fullError is the answer when the queue holds MaxQueued requests already.
func (qs *queues) fullError(retry time.Duration) *httperr.Error {
	return &httperr.Error{
		Status: http.StatusTooManyRequests,
		Code:   "query_queue_full",
		Description: "The broker already holds " + strconv.Itoa(qs.opts.MaxConcurrent) + " queries of this identity upstream and " +
			strconv.Itoa(qs.opts.MaxQueued) + " waiting, as many as Log Analytics itself would queue for one user.",
		Hint:       "Send fewer queries at once, or retry after the Retry-After delay; the limits are BROKER_LOGANALYTICS_MAX_CONCURRENT and BROKER_LOGANALYTICS_MAX_QUEUED.",
		RetryAfter: retry,
	}
}

// timeoutError is the answer when a query waited MaxWait without a turn.
func (qs *queues) timeoutError() *httperr.Error {
	return &httperr.Error{
		Status:      http.StatusTooManyRequests,
		Code:        "query_queue_timeout",
		Description: "The query waited " + qs.opts.MaxWait.String() + " in the broker's queue without a turn: the identity's earlier queries still run, or Log Analytics asked the broker to pause.",
		Hint:        "Retry after the Retry-After delay, or send fewer long queries at once; the wait is BROKER_LOGANALYTICS_MAX_WAIT.",
		RetryAfter:  time.Second,
	}
}

// queueMetrics are one route's queue collectors.
type queueMetrics struct {
	inflight, queued prometheus.Gauge
	wait             prometheus.Observer
	pauses           prometheus.Counter
	refusals         *prometheus.CounterVec
	route            string
}

func (m *queueMetrics) refused(reason string) { m.refusals.WithLabelValues(m.route, reason).Inc() }

// queueCollectors are the query queue's collectors, shared by its routes.
type queueCollectors struct {
	inflight, queued *prometheus.GaugeVec
	wait             *prometheus.HistogramVec
	pauses, refusals *prometheus.CounterVec
}

func newQueueCollectors(reg prometheus.Registerer) (*queueCollectors, error) {
	c := &queueCollectors{
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "broker_proxy_queue_inflight_requests",
			Help: "Queries the broker holds upstream now, over all identities, by route.",
		}, []string{"route"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "broker_proxy_queue_waiting_requests",
			Help: "Queries waiting in the broker's queue for a turn upstream, over all identities, by route.",
		}, []string{"route"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "broker_proxy_queue_wait_seconds",
			Help: "Time a query waited in the broker's queue before going upstream, by route.",
			// From no wait at all up to the 3-minute maximum.
			Buckets: []float64{0, .01, .05, .1, .5, 1, 5, 10, 30, 60, 120, 180},
		}, []string{"route"}),
		pauses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_proxy_queue_pauses_total",
			Help: "Times an upstream 429 with Retry-After paused an identity's query queue, by route.",
		}, []string{"route"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_proxy_queue_refused_total",
			Help: "Queries that left the queue without a turn, by route and reason (full, timeout: answered 429; canceled: the caller hung up).",
		}, []string{"route", "reason"}),
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{c.inflight, c.queued, c.wait, c.pauses, c.refusals} {
			if err := reg.Register(col); err != nil {
				return nil, fmt.Errorf("register proxy metrics: %w", err)
			}
		}
	}
	return c, nil
}

func (c *queueCollectors) forRoute(route string) *queueMetrics {
	return &queueMetrics{
		inflight: c.inflight.WithLabelValues(route),
		queued:   c.queued.WithLabelValues(route),
		wait:     c.wait.WithLabelValues(route),
		pauses:   c.pauses.WithLabelValues(route),
		refusals: c.refusals,
		route:    route,
	}
}

// parseRetryAfter reads a Retry-After header: whole seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return t.Sub(now)
	}
	return 0
}
