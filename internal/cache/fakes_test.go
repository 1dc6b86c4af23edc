package cache

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/azure"
)

// t0 is when every fake clock starts. It has no monotonic reading.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is a Clock driven by the test: time moves only in Advance, which
// runs the timers that fall due, in order, on the calling goroutine.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	seq    int
	// settle, when set, runs after every timer callback so that the work a
	// callback started (a fetch) finishes and schedules its own timers
	// before time moves on.
	settle func()
}

type fakeTimer struct {
	clk  *fakeClock
	at   time.Time
	seq  int
	f    func()
	done bool // fired or stopped
}

func newFakeClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{clk: c, at: c.now.Add(d), seq: c.seq, f: f}
	c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool { return t.done })
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	return true
}

// Advance moves the clock forward by d.
func (c *fakeClock) Advance(d time.Duration) { c.AdvanceTo(c.Now().Add(d)) }

// AdvanceTo moves the clock to target, running each timer due by then at its
// own instant.
func (c *fakeClock) AdvanceTo(target time.Time) {
	for {
		c.mu.Lock()
		next := c.nextLocked()
		if next == nil || next.at.After(target) {
			if target.After(c.now) {
				c.now = target
			}
			c.mu.Unlock()
			return
		}
		next.done = true
		if next.at.After(c.now) {
			c.now = next.at
		}
		c.mu.Unlock()
		next.f()
		if c.settle != nil {
			c.settle()
		}
	}
}

// FireNext advances to the earliest pending timer and runs it; it reports
// false when no timer is pending.
func (c *fakeClock) FireNext() bool {
	at, ok := c.Next()
	if ok {
		c.AdvanceTo(at)
	}
	return ok
}

// Next returns the deadline of the earliest pending timer.
func (c *fakeClock) Next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.nextLocked(); t != nil {
		return t.at, true
	}
	return time.Time{}, false
}

// Pending returns the number of timers not yet fired or stopped.
func (c *fakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.done {
			n++
		}
	}
	return n
}

func (c *fakeClock) nextLocked() *fakeTimer {
	var next *fakeTimer
	for _, t := range c.timers {
		if t.done {
			continue
		}
		if next == nil || t.at.Before(next.at) || (t.at.Equal(next.at) && t.seq < next.seq) {
			next = t
		}
	}
	return next
}

// fakeSource is a Source whose behaviour is a function field. It counts
// calls and records the fake time of each.
type fakeSource struct {
	clk   *fakeClock
	token func(ctx context.Context, key Key, n int) (azure.Token, error)

	calls atomic.Int64
	mu    sync.Mutex
	at    []time.Time
}

func (s *fakeSource) Token(ctx context.Context, key Key) (azure.Token, error) {
	n := int(s.calls.Add(1))
	if s.clk != nil {
		s.mu.Lock()
		s.at = append(s.at, s.clk.Now())
		s.mu.Unlock()
	}
	return s.token(ctx, key, n)
}

// Calls returns how many times Token was called.
func (s *fakeSource) Calls() int { return int(s.calls.Load()) }

// Times returns the fake time of every call so far.
func (s *fakeSource) Times() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.at)
}

// issue returns a token numbered n, issued now by clk, living life, with
// refresh_in when refreshIn is not zero.
func issue(clk Clock, n int, life, refreshIn time.Duration) azure.Token {
	now := clk.Now()
	tok := azure.Token{
		AccessToken: fmt.Sprintf("tok-%d", n),
		IssuedAt:    now,
		ExpiresOn:   now.Add(life),
	}
	if refreshIn != 0 {
		tok.RefreshOn = now.Add(refreshIn)
	}
	return tok
}

// hourTokens returns a Source function issuing one-hour tokens with no
// refresh_in, numbered by call.
func hourTokens(clk Clock) func(context.Context, Key, int) (azure.Token, error) {
	return func(_ context.Context, _ Key, n int) (azure.Token, error) {
		return issue(clk, n, time.Hour, 0), nil
	}
}

// constRand returns a Rand that always answers r.
func constRand(r float64) func() float64 { return func() float64 { return r } }

// eventually spins (yielding, never sleeping) until cond holds; it fails the
// test after a generous real-time bound, which only a bug can reach.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

var testKey = Key{
	Authority: "https://login.microsoftonline.com",
	Tenant:    "00000000-0000-0000-0000-00000000000a",
	ClientID:  "00000000-0000-0000-0000-00000000000c",
	Scope:     "https://api.loganalytics.io/.default",
}

// keyFor returns testKey with another scope.
func keyFor(scope string) Key {
	k := testKey
	k.Scope = scope
	return k
}

// newTest returns a cache over src on a fake clock, closed when the test
// ends. With settle, every fired timer waits for the fetch it starts.
func newTest(t *testing.T, src *fakeSource, opts Options, settle bool) (*Cache, *fakeClock) {
	t.Helper()
	clk := src.clk
	if clk == nil {
		clk = newFakeClock()
		src.clk = clk
	}
	opts.Clock = clk
	if opts.Rand == nil {
		opts.Rand = constRand(0.5)
	}
	c, err := New(src, opts)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	if settle {
		clk.settle = c.wg.Wait
	}
	t.Cleanup(func() { c.Close() })
	return c, clk
}

// mustGet calls Get and fails the test on error.
func mustGet(t *testing.T, c *Cache, key Key) Result {
	t.Helper()
	res, err := c.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%s) error = %v", key.Scope, err)
	}
	return res
}

func transientErr(status int, retryAfter time.Duration) *azure.Error {
	return &azure.Error{Op: "token", StatusCode: status, Code: "temporarily_unavailable", Description: "AADSTS50000: try again later.", Transient: true, RetryAfter: retryAfter}
}

func permanentErr() *azure.Error {
	return &azure.Error{Op: "token", StatusCode: 401, Code: "invalid_client", Description: "AADSTS7000215: Invalid client secret provided.", AADCodes: []int{7000215}}
}
