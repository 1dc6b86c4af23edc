package cache

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/entrabroker/broker/internal/azure"
)

// Tests of what bounds the cache's traffic to Entra: the new-key budget, the
// per-identity cap on concurrent fetches, abandoned queued fetches,
// admission into a full cache and rate-limited warnings.

// unknownResource is Entra's answer to a scope whose resource does not
// exist in the tenant (AADSTS500011), a permanent error.
func unknownResource() *azure.Error {
	return &azure.Error{Op: "token", StatusCode: 400, Code: "invalid_resource", Description: "AADSTS500011: The resource principal was not found.", AADCodes: []int{500011}}
}

// hotOrUnknown issues one-hour tokens for testKey and refuses every other
// scope as unknown.
func hotOrUnknown(clk Clock) func(context.Context, Key, int) (azure.Token, error) {
	return func(_ context.Context, key Key, n int) (azure.Token, error) {
		if key == testKey {
			return issue(clk, n, time.Hour, 0), nil
		}
		return azure.Token{}, unknownResource()
	}
}

func TestNewDefaultsFanOut(t *testing.T) {
	t.Parallel()
	c, err := New(&fakeSource{}, Options{})
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	defer c.Close()
	if c.maxFetches != 4 || c.budget != (Budget{Burst: 20, Every: 3 * time.Second}) || c.forcedEvery != 30*time.Second {
		t.Errorf("defaults: max fetches %d, budget %+v, forced refresh interval %v; want 4, {20 3s}, 30s", c.maxFetches, c.budget, c.forcedEvery)
	}
	_, err = New(&fakeSource{}, Options{MaxConcurrentFetches: -1, NewKeyBudget: Budget{Burst: -1, Every: -1}})
	for _, want := range []string{"max concurrent fetches -1 is negative", "new-key budget burst -1 is negative", "new-key budget interval -1ns is negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New() with negative fan-out options error = %v, want it to contain %q", err, want)
		}
	}
}

func TestNewKeyBudget(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = hourTokens(src.clk)
	reg := prometheus.NewRegistry()
	c, clk := newTest(t, src, Options{NewKeyBudget: Budget{Burst: 3, Every: 10 * time.Second}, Registerer: reg}, true)
	k := func(i int) Key { return keyFor(fmt.Sprintf("https://r%d/.default", i)) }

	for i := range 3 {
		mustGet(t, c, k(i))
	}
	_, err := c.Get(context.Background(), k(3))
	var ce *Error
	if !errors.Is(err, ErrNewKeyBudget) || !errors.As(err, &ce) {
		t.Fatalf("Get of a fourth new key = %v, want an *Error wrapping ErrNewKeyBudget", err)
	}
	if want := t0.Add(10 * time.Second); !ce.NextAttempt.Equal(want) {
		t.Errorf("NextAttempt = %v, want %v (one interval after the burst started)", ce.NextAttempt, want)
	}
	if _, ok := c.lru.Peek(k(3)); ok {
		t.Errorf("a refused key entered the cache")
	}
	// Known keys are still served and refreshed; prefetched keys are exempt.
	mustGet(t, c, k(0))
	c.Prefetch(context.Background(), k(10), k(11))
	if !c.Status(k(10)).Servable || !c.Status(k(11)).Servable {
		t.Errorf("prefetched keys not servable: the budget must not apply to Prefetch")
	}
	if got := src.Calls(); got != 5 {
		t.Errorf("upstream calls = %d, want 5 (3 new keys, 2 prefetched)", got)
	}

	// The bucket earns one key per interval, and no more than the burst.
	clk.Advance(10 * time.Second)
	mustGet(t, c, k(3))
	if _, err := c.Get(context.Background(), k(4)); !errors.Is(err, ErrNewKeyBudget) {
		t.Errorf("Get of a new key right after the refill was spent = %v, want ErrNewKeyBudget", err)
	}
	clk.Advance(time.Hour)
	for i := 20; i < 23; i++ {
		mustGet(t, c, k(i))
	}
	if _, err := c.Get(context.Background(), k(23)); !errors.Is(err, ErrNewKeyBudget) {
		t.Errorf("Get of a new key past a refilled burst = %v, want ErrNewKeyBudget", err)
	}
	if got := sampleValue(t, reg, "broker_token_new_scope_refusals_total"); got != 3 {
		t.Errorf("broker_token_new_scope_refusals_total = %v, want 3", got)
	}
}

// TestNewKeyBudgetFailingKey: a key that never succeeded keeps spending the
// budget on each retry, so scopes that always fail cannot exceed it either;
// one that succeeded once does not.
func TestNewKeyBudgetFailingKey(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = hotOrUnknown(src.clk)
	c, clk := newTest(t, src, Options{NewKeyBudget: Budget{Burst: 2, Every: time.Hour}}, true)
	bad := keyFor("https://unknown/.default")

	mustGet(t, c, testKey)
	if _, err := c.Get(context.Background(), bad); !errors.As(err, new(*azure.Error)) {
		t.Fatalf("Get(bad) = %v, want Entra's error", err)
	}
	clk.Advance(DefaultNegativeTTL)
	if _, err := c.Get(context.Background(), bad); !errors.Is(err, ErrNewKeyBudget) {
		t.Errorf("retry of a never-successful key with the budget spent = %v, want ErrNewKeyBudget", err)
	}
	c.Invalidate(testKey, "tok-1")
	mustGet(t, c, testKey) // succeeded before: no budget needed
	if got := src.Calls(); got != 3 {
		t.Errorf("upstream calls = %d, want 3", got)
	}
}

// blockingSource blocks every fetch until release is closed or the fetch's
// context ends, and counts the fetches calling it at once.
type blockingSource struct {
	release chan struct{}
	mu      sync.Mutex
	running int
	peak    int
	calls   int
	scopes  []string
}

func newBlockingSource() *blockingSource { return &blockingSource{release: make(chan struct{})} }

func (s *blockingSource) Token(ctx context.Context, key Key) (azure.Token, error) {
	s.mu.Lock()
	s.calls++
	s.running++
	s.peak = max(s.peak, s.running)
	s.scopes = append(s.scopes, key.Scope)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running--
		s.mu.Unlock()
	}()
	select {
	case <-s.release:
		return azure.Token{}, unknownResource()
	case <-ctx.Done():
		return azure.Token{}, &azure.Error{Op: "token", Transient: true, Err: ctx.Err()}
	}
}

func (s *blockingSource) stats() (calls, running, peak int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, s.running, s.peak
}

func TestConcurrentFetchCap(t *testing.T) {
	t.Parallel()
	src := newBlockingSource()
	reg := prometheus.NewRegistry()
	clk := newFakeClock()
	c, err := New(src, Options{Clock: clk, Rand: constRand(0.5), MaxConcurrentFetches: 2, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	other := Key{Authority: testKey.Authority, Tenant: testKey.Tenant, ClientID: "another-app", Scope: testKey.Scope}

	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() { c.Get(context.Background(), keyFor(fmt.Sprintf("https://r%d/.default", i))) })
	}
	eventually(t, "two fetches running and four queued", func() bool {
		calls, _, _ := src.stats()
		return calls == 2 && sampleValue(t, reg, "broker_token_fetches_queued") == 4
	})
	// The cap is per identity: another app's fetch runs at once.
	wg.Go(func() { c.Get(context.Background(), other) })
	eventually(t, "the other identity's fetch to run", func() bool { calls, _, _ := src.stats(); return calls == 3 })
	if got := sampleValue(t, reg, "broker_token_fetches_in_flight"); got != 3 {
		t.Errorf("broker_token_fetches_in_flight = %v, want 3", got)
	}
	close(src.release)
	wg.Wait()
	calls, _, peak := src.stats()
	if calls != 7 || peak > 3 {
		t.Errorf("upstream calls = %d with at most %d at once, want 7 with at most 3 (2 + 1 for the other app)", calls, peak)
	}
	if q, f := sampleValue(t, reg, "broker_token_fetches_queued"), sampleValue(t, reg, "broker_token_fetches_in_flight"); q != 0 || f != 0 {
		t.Errorf("queued, in flight = %v, %v after every fetch ended, want 0, 0", q, f)
	}
}

// TestAbandonedQueuedFetch: a queued fetch whose callers all gave up never
// calls the Source, and leaves no entry behind; a queued prefetch or one
// with a caller left still runs.
func TestAbandonedQueuedFetch(t *testing.T) {
	t.Parallel()
	src := newBlockingSource()
	reg := prometheus.NewRegistry()
	c, err := New(src, Options{Clock: newFakeClock(), Rand: constRand(0.5), MaxConcurrentFetches: 1, Registerer: reg, NewKeyBudget: Budget{Burst: 5, Every: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	running, gone, stays, pre := keyFor("https://running/.default"), keyFor("https://gone/.default"), keyFor("https://stays/.default"), keyFor("https://pre/.default")

	var wg sync.WaitGroup
	wg.Go(func() { c.Get(context.Background(), running) })
	eventually(t, "the first fetch to run", func() bool { calls, _, _ := src.stats(); return calls == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	goneErr := make(chan error, 2)
	for range 2 {
		go func() { _, err := c.Get(ctx, gone); goneErr <- err }()
	}
	wg.Go(func() { c.Get(ctx, stays) })
	wg.Go(func() { c.Get(context.Background(), stays) })
	wg.Go(func() { c.Prefetch(ctx, pre) })
	eventually(t, "three queued fetches", func() bool {
		return sampleValue(t, reg, "broker_token_fetches_queued") == 3 && countOf(c.m.misses) == 5
	})
	cancel()
	for range 2 {
		if err := <-goneErr; !errors.Is(err, context.Canceled) {
			t.Errorf("Get(gone) after cancel = %v, want context.Canceled", err)
		}
	}
	if got := sampleValue(t, reg, "broker_token_fetches_abandoned_total"); got != 1 {
		t.Errorf("broker_token_fetches_abandoned_total = %v, want 1", got)
	}
	if _, ok := c.lru.Peek(gone); ok {
		t.Errorf("the abandoned key is still cached")
	}
	c.mu.Lock()
	tokens := c.identityLocked(gone).tokens
	c.mu.Unlock()
	if tokens != 3 { // 5 - running - gone - stays + gone's refund
		t.Errorf("new-key budget left = %d, want 3 (the abandoned fetch refunded)", tokens)
	}
	close(src.release)
	wg.Wait()
	c.wg.Wait()
	calls, _, peak := src.stats()
	if calls != 3 || peak != 1 {
		t.Errorf("upstream calls = %d, at most %d at once; want 3 (running, stays, pre), 1", calls, peak)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	for _, s := range src.scopes {
		if s == gone.Scope {
			t.Errorf("the abandoned fetch called the Source")
		}
	}
}

// TestHungSourceHoldsOnlyTheCap is Entra hanging while thousands of callers
// of distinct keys give up: only the capped fetches hold a goroutine, the
// rest are abandoned, and everything returns to the baseline once Entra
// answers.
func TestHungSourceHoldsOnlyTheCap(t *testing.T) {
	const callers = 1000 // within DefaultSize, so that no running fetch's key is evicted
	src := newBlockingSource()
	reg := prometheus.NewRegistry()
	c, err := New(src, Options{Clock: newFakeClock(), Rand: constRand(0.5), Registerer: reg,
		NewKeyBudget: Budget{Burst: callers, Every: time.Hour}}) // only the cap bounds this test
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	baseline := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { c.Get(ctx, keyFor(fmt.Sprintf("https://r%d.example.com/.default", i))) })
	}
	eventually(t, "every caller to wait", func() bool { return countOf(c.m.misses) == callers })
	cancel()
	wg.Wait()
	calls, running, _ := src.stats()
	if calls != DefaultMaxConcurrentFetches || running != DefaultMaxConcurrentFetches {
		t.Errorf("upstream calls = %d (%d running), want %d: the cap", calls, running, DefaultMaxConcurrentFetches)
	}
	if got := sampleValue(t, reg, "broker_token_fetches_abandoned_total"); got != callers-DefaultMaxConcurrentFetches {
		t.Errorf("abandoned fetches = %v, want %d", got, callers-DefaultMaxConcurrentFetches)
	}
	if got := c.lru.Len(); got != DefaultMaxConcurrentFetches {
		t.Errorf("entries = %d, want %d (the running fetches' keys)", got, DefaultMaxConcurrentFetches)
	}
	if n := runtime.NumGoroutine(); n > baseline+DefaultMaxConcurrentFetches+2 {
		t.Errorf("goroutines while Entra hangs = %d, want at most %d (baseline %d + the capped fetches)", n, baseline+DefaultMaxConcurrentFetches+2, baseline)
	}
	close(src.release)
	c.wg.Wait()
	eventually(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= baseline })
}

// TestFloodOfUnknownScopes is 20,000 Gets for distinct scopes that Entra
// does not know, from 64 concurrent callers, over one minute of fake time,
// against a small cache that holds a hot token: Entra sees the budget's
// worth of requests, the hot token is served from memory throughout, the
// cache stays bounded, each failing scope is logged once and the rest are
// counted.
func TestFloodOfUnknownScopes(t *testing.T) {
	const (
		requests = 20000
		workers  = 64
		rounds   = 20 // the flood lasts rounds × 3 s of fake time
		size     = 16
	)
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = hotOrUnknown(src.clk)
	core, logs := observer.New(zapcore.DebugLevel)
	reg := prometheus.NewRegistry()
	c, clk := newTest(t, src, Options{Size: size, Registerer: reg, Logger: zap.New(core)}, true)
	hot := mustGet(t, c, testKey).Token.AccessToken
	baseline := runtime.NumGoroutine()

	codes := make(map[string]int)
	var mu sync.Mutex
	for round := range rounds {
		next := make(chan int)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for i := range next {
					_, err := c.Get(context.Background(), keyFor(fmt.Sprintf("https://r%d.example.com/.default", i)))
					what := "other"
					switch {
					case errors.Is(err, ErrNewKeyBudget):
						what = "budget"
					case errors.As(err, new(*azure.Error)):
						what = "entra"
					}
					mu.Lock()
					codes[what]++
					mu.Unlock()
					if res, err := c.Get(context.Background(), testKey); err != nil || res.Token.AccessToken != hot {
						t.Errorf("hot key during the flood = %q, %v; want the cached %q", res.Token.AccessToken, err, hot)
					}
				}
			})
		}
		for i := round * requests / rounds; i < (round+1)*requests/rounds; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		if n := c.lru.Len(); n > size {
			t.Fatalf("entries = %d, want at most %d", n, size)
		}
		clk.Advance(DefaultNewKeyEvery)
	}

	maxCalls := DefaultNewKeyBurst + rounds - 1
	if got := src.Calls() - 1; got > maxCalls {
		t.Errorf("upstream calls for the flood = %d, want at most %d (the new-key budget)", got, maxCalls)
	}
	if codes["entra"] != src.Calls()-1 || codes["budget"] != requests-codes["entra"] {
		t.Errorf("answers = %v, want Entra's error for each upstream call and ErrNewKeyBudget for the rest", codes)
	}
	if st := c.Status(testKey); !st.Servable {
		t.Errorf("hot key after the flood: %+v, want servable", st)
	}
	calls := src.Calls()
	if res := mustGet(t, c, testKey); res.Token.AccessToken != hot || src.Calls() != calls {
		t.Errorf("hot key after the flood = %q with %d more upstream calls, want the cached token and none", res.Token.AccessToken, src.Calls()-calls)
	}
	warned := logs.FilterMessage("token fetch failed").FilterLevelExact(zapcore.WarnLevel).Len()
	if warned != src.Calls()-1 {
		t.Errorf("fetch failure warnings = %d, want one per failing scope (%d)", warned, src.Calls()-1)
	}
	c.mu.Lock()
	n := len(c.warned)
	c.mu.Unlock()
	if n > size+maxCalls {
		t.Errorf("warning records = %d, want them bounded", n)
	}
	eventually(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= baseline })
}

// TestAdmissionKeepsServableKeys: in a full cache, keys without a token in
// service leave before any key with one, even an unused one.
func TestAdmissionKeepsServableKeys(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	good := func(i int) Key { return keyFor(fmt.Sprintf("https://good%d/.default", i)) }
	src.token = func(_ context.Context, key Key, n int) (azure.Token, error) {
		if key.Scope[:12] == "https://good" {
			return issue(src.clk, n, time.Hour, 0), nil
		}
		return azure.Token{}, unknownResource()
	}
	c, _ := newTest(t, src, Options{Size: 4}, true)
	for i := range 3 {
		mustGet(t, c, good(i)) // never used again
	}
	for i := range 10 {
		c.Get(context.Background(), keyFor(fmt.Sprintf("https://bad%d/.default", i)))
	}
	for i := range 3 {
		if !c.Status(good(i)).Servable {
			t.Errorf("good key %d evicted by keys that never succeeded", i)
		}
	}
	if n := c.lru.Len(); n != 4 {
		t.Errorf("entries = %d, want 4", n)
	}
	// A new good key still finds room: a failing key leaves for it.
	mustGet(t, c, good(3))
	for i := range 4 {
		if !c.Status(good(i)).Servable {
			t.Errorf("good key %d not servable after a fourth good key", i)
		}
	}
}

// TestFetchWarningsRateLimited: one Warn line per failing key per minute;
// the failures in between are counted.
func TestFetchWarningsRateLimited(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = hotOrUnknown(src.clk)
	core, logs := observer.New(zapcore.DebugLevel)
	reg := prometheus.NewRegistry()
	c, clk := newTest(t, src, Options{Registerer: reg, Logger: zap.New(core), NegativeTTL: 10 * time.Second}, true)
	bad := keyFor("https://unknown/.default")

	for range 7 { // at 0, 10, …, 60 s
		c.Get(context.Background(), bad)
		clk.Advance(10 * time.Second)
	}
	if got := src.Calls(); got != 7 {
		t.Fatalf("upstream calls = %d, want 7", got)
	}
	if got := logs.FilterMessage("token fetch failed").FilterLevelExact(zapcore.WarnLevel).Len(); got != 2 {
		t.Errorf("warnings = %d, want 2 (at 0 s and 60 s)", got)
	}
	if got := sampleValue(t, reg, "broker_token_fetch_warnings_suppressed_total"); got != 5 {
		t.Errorf("broker_token_fetch_warnings_suppressed_total = %v, want 5", got)
	}
}
