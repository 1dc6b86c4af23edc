package loganalytics

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (s *Service) queued(id string) int {
	s.limMu.Lock()
	defer s.limMu.Unlock()
	if l := s.limiters[id]; l != nil {
		return len(l.queue)
	}
	return 0
}

func TestLimitsConcurrentQueriesQueue(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t)
	gate := make(chan struct{})
	s.HoldQueries(gate)
	const n = 8
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, _ := do(t, s, req{path: queryURL(testWorkspace, "Heartbeat | take 1"), token: tokGood})
			codes <- res.StatusCode
		}()
	}
	waitUntil(t, "3 queries queued", func() bool { return s.queued(testObjectID) == n-DefaultMaxConcurrent })
	close(gate)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Errorf("status = %d, want 200 (queued, not refused)", c)
		}
	}
	if got := s.MaxRunning(testObjectID); got != DefaultMaxConcurrent {
		t.Errorf("MaxRunning = %d, want %d", got, DefaultMaxConcurrent)
	}
}

func TestLimitsQueueFull(t *testing.T) {
	t.Parallel()
	c := newClock()
	s := New(Options{Verify: testVerifier(c), Now: c.Now, Limits: Limits{MaxConcurrent: 1, MaxQueued: 1}})
	s.AddWorkspace(testWorkspace)
	if err := s.Grant(testWorkspace, testAppID, RoleReader, time.Time{}); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	s.HoldQueries(gate)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do(t, s, req{path: queryURL(testWorkspace, "Heartbeat | take 1"), token: tokGood})
		}()
	}
	waitUntil(t, "one query queued", func() bool { return s.queued(testObjectID) == 1 })
	res, body := do(t, s, req{path: queryURL(testWorkspace, "Heartbeat | take 1"), token: tokGood})
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "ThrottledError") {
		t.Errorf("over the queue: %d Retry-After %q %s, want 429 ThrottledError with Retry-After", res.StatusCode, res.Header.Get("Retry-After"), body)
	}
	close(gate)
	wg.Wait()
}

func TestLimitsRate(t *testing.T) {
	t.Parallel()
	c := newClock()
	s := New(Options{Verify: testVerifier(c), Now: c.Now, Limits: Limits{RateLimit: 3}})
	s.AddWorkspace(testWorkspace)
	if err := s.Grant(testWorkspace, testAppID, RoleReader, time.Time{}); err != nil {
		t.Fatal(err)
	}
	q := req{path: queryURL(testWorkspace, "Heartbeat | take 1"), token: tokGood}
	for i := range 3 {
		if res, _ := do(t, s, q); res.StatusCode != http.StatusOK {
			t.Fatalf("query %d: %d", i, res.StatusCode)
		}
		c.Advance(time.Second)
	}
	res, _ := do(t, s, q)
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") != "27" {
		t.Fatalf("4th query in 30 s: %d Retry-After %q, want 429 with Retry-After 27", res.StatusCode, res.Header.Get("Retry-After"))
	}
	c.Advance(27 * time.Second)
	if res, _ := do(t, s, q); res.StatusCode != http.StatusOK {
		t.Errorf("after the window: %d, want 200", res.StatusCode)
	}
}

func TestAppendRowsQueryable(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t)
	rows := []map[string]any{
		{"TimeGenerated": "2024-05-01T12:00:00Z", "Id": float64(1), "Msg": "one"},
		{"Id": float64(2), "Msg": "two", "Extra": map[string]any{"a": true}},
	}
	if err := s.AppendRows(testWorkspace, "App_CL", rows); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendRows(testWorkspace, "App_CL", []map[string]any{{"Id": float64(3), "Late": 2.5}}); err != nil {
		t.Fatal(err)
	}
	res, body := do(t, s, req{path: queryURL(testWorkspace, "App_CL | count"), token: tokGood})
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"rows":[[3]]`) {
		t.Fatalf("count: %d %s, want 3 rows", res.StatusCode, body)
	}
	res, body = do(t, s, req{path: queryURL(testWorkspace, "App_CL | project Id, Late"), token: tokGood})
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"rows":[[1,null],[2,null],[3,2.5]]`) {
		t.Fatalf("project: %d %s", res.StatusCode, body)
	}
	if err := s.AppendRows(testWorkspace, "Heartbeat", rows); err == nil {
		t.Error("AppendRows to a table that is not custom: no error")
	}
}
