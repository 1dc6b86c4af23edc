package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// holdingUpstream answers every request once gate is closed, counting the
// requests in flight and the most seen at once.
type holdingUpstream struct {
	*upstream
	gate          chan struct{}
	inflight, top atomic.Int32
	status        atomic.Int32 // answered status; 0 means 200
	retryAfter    atomic.Value // string
}

func newHoldingUpstream(t *testing.T) *holdingUpstream {
	h := &holdingUpstream{gate: make(chan struct{})}
	h.upstream = newUpstream(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		n := h.inflight.Add(1)
		defer h.inflight.Add(-1)
		for {
			top := h.top.Load()
			if n <= top || h.top.CompareAndSwap(top, n) {
				break
			}
		}
		select {
		case <-h.gate:
		case <-r.Context().Done():
			return
		}
		if s := h.status.Load(); s != 0 {
			if ra, _ := h.retryAfter.Load().(string); ra != "" {
				w.Header().Set("Retry-After", ra)
			}
			w.WriteHeader(int(s))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"tables":[]}`))
	})
	return h
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestQueueBurstWaitsInsteadOf429(t *testing.T) {
	t.Parallel()
	up := newHoldingUpstream(t)
	p := newTestProxy(t, up.url(t), Options{Tokens: newSeqTokens("tok"), Clock: newFakeClock()})

	const callers = 40
	codes := make(chan int, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := p.client.Get(p.URL + "/proxy/loganalytics/v1/workspaces/w/query?query=x")
			if err != nil {
				codes <- -1
				return
			}
			res.Body.Close()
			codes <- res.StatusCode
		}()
	}
	waitFor(t, "5 upstream and 35 queued", func() bool {
		return up.inflight.Load() == 5 && metricValue(t, p, "broker_proxy_queue_waiting_requests", "route", "loganalytics") == 35
	})
	if got := metricValue(t, p, "broker_proxy_queue_inflight_requests", "route", "loganalytics"); got != 5 {
		t.Errorf("inflight gauge = %v, want 5", got)
	}
	close(up.gate)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Errorf("a caller got %d, want 200", c)
		}
	}
	if top := up.top.Load(); top > DefaultQueryMaxConcurrent {
		t.Errorf("upstream saw %d queries at once, want at most %d", top, DefaultQueryMaxConcurrent)
	}
	if got := metricValue(t, p, "broker_proxy_queue_wait_seconds", "route", "loganalytics"); got != callers {
		t.Errorf("wait histogram count = %v, want %d", got, callers)
	}
}

func TestQueueFullAndExpired(t *testing.T) {
	t.Parallel()
	up := newHoldingUpstream(t)
	clock := newFakeClock()
	p := newTestProxy(t, up.url(t), Options{Tokens: newSeqTokens("tok"), Clock: clock,
		QueryQueue: QueueOptions{MaxConcurrent: 1, MaxQueued: 1, MaxWait: time.Minute}})

	type result struct {
		code int
		body string
		ra   string
	}
	get := func() chan result {
		ch := make(chan result, 1)
		go func() {
			res, body := p.get(t, "/proxy/loganalytics/v1/workspaces/w/query?query=x")
			ch <- result{res.StatusCode, body, res.Header.Get("Retry-After")}
		}()
		return ch
	}
	first := get()
	waitFor(t, "the first query upstream", func() bool { return up.inflight.Load() == 1 })
	second := get()
	waitFor(t, "the second query queued", func() bool {
		return metricValue(t, p, "broker_proxy_queue_waiting_requests", "route", "loganalytics") == 1
	})
	third := <-get()
	if third.code != http.StatusTooManyRequests || third.ra == "" {
		t.Fatalf("third query: status %d Retry-After %q, want 429 with Retry-After", third.code, third.ra)
	}
	var body struct{ Error, Hint string }
	if err := json.Unmarshal([]byte(third.body), &body); err != nil || body.Error != "query_queue_full" || body.Hint == "" {
		t.Errorf("third query body = %s (%v), want error query_queue_full with a hint", third.body, err)
	}

	clock.Advance(time.Minute)
	r2 := <-second
	if r2.code != http.StatusTooManyRequests || !strings.Contains(r2.body, "query_queue_timeout") {
		t.Errorf("queued past the wait: %d %s, want 429 query_queue_timeout", r2.code, r2.body)
	}
	close(up.gate)
	if r1 := <-first; r1.code != http.StatusOK {
		t.Errorf("first query: %d, want 200", r1.code)
	}
	if got := metricValue(t, p, "broker_proxy_queue_refused_total", "route", "loganalytics", "reason", "full"); got != 1 {
		t.Errorf("refused{full} = %v, want 1", got)
	}
	if got := metricValue(t, p, "broker_proxy_queue_refused_total", "route", "loganalytics", "reason", "timeout"); got != 1 {
		t.Errorf("refused{timeout} = %v, want 1", got)
	}
}

func TestQueueUpstream429PausesTheQueue(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "10")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		_, _ = w.Write([]byte(`{"tables":[]}`))
	})
	clock := newFakeClock()
	p := newTestProxy(t, up.url(t), Options{Tokens: newSeqTokens("tok"), Clock: clock})

	// The first query meets the 429: it waits out the Retry-After in the
	// queue and is sent again; the next query waits behind it.
	done := make(chan int, 2)
	for _, q := range []string{"a", "b"} {
		go func() {
			res, _ := p.get(t, "/proxy/loganalytics/v1/workspaces/w/query?query="+q)
			done <- res.StatusCode
		}()
		if q == "a" {
			waitFor(t, "the first query's 429 to pause the queue", func() bool {
				return metricValue(t, p, "broker_proxy_queue_pauses_total", "route", "loganalytics") == 1
			})
		}
	}
	waitFor(t, "both queries to wait out the pause", func() bool {
		return metricValue(t, p, "broker_proxy_queue_waiting_requests", "route", "loganalytics") == 2
	})
	if n := calls.Load(); n != 1 {
		t.Fatalf("upstream got %d requests during the pause, want 1", n)
	}
	clock.Advance(10 * time.Second)
	for range 2 {
		if c := <-done; c != http.StatusOK {
			t.Errorf("after the pause: %d, want 200 (the caller never sees the 429)", c)
		}
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("upstream got %d requests, want 3", n)
	}
	if got := metricValue(t, p, "broker_proxy_queue_pauses_total", "route", "loganalytics"); got != 1 {
		t.Errorf("pauses = %v, want 1", got)
	}
}

func TestQueueUpstream429LongerThanTheWaitPassesThrough(t *testing.T) {
	t.Parallel()
	up := newHoldingUpstream(t)
	close(up.gate)
	up.status.Store(http.StatusTooManyRequests)
	up.retryAfter.Store("60")
	clock := newFakeClock()
	p := newTestProxy(t, up.url(t), Options{Tokens: newSeqTokens("tok"), Clock: clock, QueryQueue: QueueOptions{MaxWait: 30 * time.Second}})
	res, _ := p.get(t, "/proxy/loganalytics/v1/workspaces/w/query?query=x")
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") != "60" {
		t.Fatalf("status = %d Retry-After %q, want the upstream's 429 with its Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
	up.status.Store(0)
	// The pause outlasts the queue's wait: the next query is answered the
	// broker's own 429 when its wait is over, never sent upstream.
	done := make(chan string, 1)
	go func() {
		res, body := p.get(t, "/proxy/loganalytics/v1/workspaces/w/query?query=y")
		done <- strconv.Itoa(res.StatusCode) + " " + body
	}()
	waitFor(t, "the next query to wait", func() bool {
		return metricValue(t, p, "broker_proxy_queue_waiting_requests", "route", "loganalytics") == 1
	})
	clock.Advance(30 * time.Second)
	if got := <-done; !strings.HasPrefix(got, "429 ") || !strings.Contains(got, "query_queue_timeout") {
		t.Errorf("query during the pause: %s, want 429 query_queue_timeout", got)
	}
	if n := len(up.requests()); n != 1 {
		t.Errorf("upstream got %d requests, want 1", n)
	}
}

func TestQueueCallerHangsUp(t *testing.T) {
	t.Parallel()
	up := newHoldingUpstream(t)
	p := newTestProxy(t, up.url(t), Options{Tokens: newSeqTokens("tok"), Clock: newFakeClock(),
		QueryQueue: QueueOptions{MaxConcurrent: 1}})

	first := make(chan int, 1)
	go func() {
		res, _ := p.get(t, "/proxy/loganalytics/v1/workspaces/w/query?query=x")
		first <- res.StatusCode
	}()
	waitFor(t, "the first query upstream", func() bool { return up.inflight.Load() == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/proxy/loganalytics/v1/workspaces/w/query?query=y", nil)
		res, err := p.client.Do(req)
		if err == nil {
			res.Body.Close()
		}
		gone <- err
	}()
	waitFor(t, "the second query queued", func() bool {
		return metricValue(t, p, "broker_proxy_queue_waiting_requests", "route", "loganalytics") == 1
	})
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled request error = %v", err)
	}
	waitFor(t, "the queue to be empty", func() bool {
		return metricValue(t, p, "broker_proxy_queue_waiting_requests", "route", "loganalytics") == 0
	})
	close(up.gate)
	if c := <-first; c != http.StatusOK {
		t.Errorf("first query: %d", c)
	}
	if n := len(up.requests()); n != 1 {
		t.Errorf("upstream got %d requests, want 1 (the canceled query never went)", n)
	}
	if got := metricValue(t, p, "broker_proxy_queue_refused_total", "route", "loganalytics", "reason", "canceled"); got != 1 {
		t.Errorf("refused{canceled} = %v, want 1", got)
	}
}
