package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/entrabroker/broker/internal/azure"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestNewValidatesOptions(t *testing.T) {
	t.Parallel()
	src := &fakeSource{token: hourTokens(realClock{})}
	tests := []struct {
		name string
		src  Source
		opts Options
		want []string // substrings of the error; none means success
	}{
		{"zero options", src, Options{}, nil},
		{"nil source", nil, Options{}, []string{"source is nil"}},
		{"every problem at once", src, Options{Size: -1, Margin: -1, NegativeTTL: -1, FetchTimeout: -1, ForcedRefreshInterval: -1},
			[]string{"size -1 is negative", "margin -1ns is negative", "negative TTL -1ns is negative", "fetch timeout -1ns is negative",
				"forced refresh interval -1ns is negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := New(tt.src, tt.opts)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("New() error = %v, want nil", err)
				}
				c.Close()
				return
			}
			if err == nil {
				c.Close()
				t.Fatalf("New() error = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New() error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	t.Parallel()
	c, err := New(&fakeSource{}, Options{})
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	defer c.Close()
	got := []any{c.size, c.margin, c.negativeTTL, c.fetchTimeout}
	want := []any{1024, 5 * time.Minute, 30 * time.Second, 30 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestNewRegisterConflict(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c1, err := New(&fakeSource{}, Options{Registerer: reg})
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	if c2, err := New(&fakeSource{}, Options{Registerer: reg}); err == nil {
		c2.Close()
		t.Fatalf("second New() on one registry: error = nil, want a registration error")
	}
	// Close unregisters, so the registry can take a new cache.
	c1.Close()
	c3, err := New(&fakeSource{}, Options{Registerer: reg})
	if err != nil {
		t.Fatalf("New() after Close error = %v", err)
	}
	c3.Close()
}

func TestGetHitServesFromMemory(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = hourTokens(src.clk)
	c, clk := newTest(t, src, Options{}, false)

	first := mustGet(t, c, testKey)
	clk.Advance(10 * time.Minute)
	second := mustGet(t, c, testKey)
	if first.Token.AccessToken != "tok-1" || second.Token.AccessToken != "tok-1" || second.Stale {
		t.Errorf("Get, Get = %q, %q (stale %v), want tok-1 twice, not stale", first.Token.AccessToken, second.Token.AccessToken, second.Stale)
	}
	if got := src.Calls(); got != 1 {
		t.Errorf("upstream calls = %d, want 1", got)
	}
	if got, want := countOf(c.m.hits), uint64(1); got != want {
		t.Errorf("hits = %d, want %d", got, want)
	}
	if got, want := countOf(c.m.misses), uint64(1); got != want {
		t.Errorf("misses = %d, want %d", got, want)
	}
}

// TestGetNeverServesWithinMargin drives a short token across its margin: a
// ten-minute token is served for 7.5 minutes, then fetched again.
func TestGetNeverServesWithinMargin(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = func(_ context.Context, _ Key, n int) (azure.Token, error) {
		return issue(src.clk, n, 10*time.Minute, 0), nil
	}
	// Rand high so the background refresh (at ~5.5 min) is not reached;
	// the key is idle anyway, so nothing refreshes it.
	c, clk := newTest(t, src, Options{}, true)

	mustGet(t, c, testKey)
	clk.Advance(7*time.Minute + 30*time.Second - time.Nanosecond)
	if got := c.Status(testKey); !got.Servable {
		t.Fatalf("Status just before 7.5 min = %+v, want servable", got)
	}
	c.Get(context.Background(), testKey) // mark used so the key stays
	clk.Advance(time.Nanosecond)
	res := mustGet(t, c, testKey)
	if res.Token.AccessToken == "tok-1" {
		t.Errorf("Get at 7.5 min of a 10 min token = tok-1, want a fresh token")
	}
}

func TestGetColdKeySingleFlight(t *testing.T) {
	t.Parallel()
	const callers = 1000
	release := make(chan struct{})
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = func(_ context.Context, _ Key, n int) (azure.Token, error) {
		<-release
		return issue(src.clk, n, time.Hour, 0), nil
	}
	c, _ := newTest(t, src, Options{}, false)

	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			res, err := c.Get(context.Background(), testKey)
			if err == nil && res.Token.AccessToken != "tok-1" {
				err = fmt.Errorf("token %q, want tok-1", res.Token.AccessToken)
			}
			errs <- err
		})
	}
	eventually(t, "every caller to wait", func() bool { return countOf(c.m.misses) == callers })
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Get() error = %v", err)
		}
	}
	if got := src.Calls(); got != 1 {
		t.Errorf("upstream calls for %d concurrent cold callers = %d, want 1", callers, got)
	}
	if got, want := countOf(c.m.sharedWaits), uint64(callers-1); got != want {
		t.Errorf("shared waits = %d, want %d", got, want)
	}
}

func TestGetCancelledCallerLeavesOthersServed(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	fetchCtxErr := make(chan error, 1)
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = func(ctx context.Context, _ Key, n int) (azure.Token, error) {
		<-release
		fetchCtxErr <- ctx.Err()
		return issue(src.clk, n, time.Hour, 0), nil
	}
	c, _ := newTest(t, src, Options{}, false)

	ctx, cancel := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, testKey) // starts the fetch
		firstErr <- err
	}()
	eventually(t, "the fetch to start", func() bool { return src.Calls() == 1 })
	second := make(chan Result, 1)
	go func() {
		res, err := c.Get(context.Background(), testKey)
		if err != nil {
			t.Errorf("second Get() error = %v", err)
		}
		second <- res
	}()
	eventually(t, "the second caller to wait", func() bool { return countOf(c.m.sharedWaits) == 1 })

	cancel()
	if err := <-firstErr; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Get() error = %v, want context.Canceled", err)
	}
	close(release)
	if err := <-fetchCtxErr; err != nil {
		t.Errorf("fetch context error after the first caller gave up = %v, want nil", err)
	}
	if res := <-second; res.Token.AccessToken != "tok-1" {
		t.Errorf("second Get() = %q, want tok-1", res.Token.AccessToken)
	}
	if got := src.Calls(); got != 1 {
		t.Errorf("upstream calls = %d, want 1", got)
	}
}

func TestRefreshSchedule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		life      time.Duration
		refreshIn time.Duration
		r         float64
		want      time.Duration // refresh this long after the first fetch
	}{
		{"half-life, no jitter", time.Hour, 0, 0.5, 30 * time.Minute},
		{"half-life, earliest", time.Hour, 0, 0, 27 * time.Minute},
		{"half-life, latest", time.Hour, 0, 0.999999, time.Duration(float64(30*time.Minute) * (0.9 + 0.2*0.999999))},
		{"refresh_in, no jitter", 24 * time.Hour, 12 * time.Hour, 0.5, 12 * time.Hour},
		{"refresh_in, earliest", 24 * time.Hour, 12 * time.Hour, 0, 12 * time.Hour * 9 / 10},
		{"refresh_in, latest", 24 * time.Hour, 12 * time.Hour, 0.999999, time.Duration(float64(12*time.Hour) * (0.9 + 0.2*0.999999))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := &fakeSource{}
			src.clk = newFakeClock()
			src.token = func(_ context.Context, _ Key, n int) (azure.Token, error) {
				return issue(src.clk, n, tt.life, tt.refreshIn), nil
			}
			c, clk := newTest(t, src, Options{Rand: constRand(tt.r)}, true)

			mustGet(t, c, testKey)
			clk.Advance(time.Minute)
			mustGet(t, c, testKey) // a use: the key is worth refreshing
			clk.AdvanceTo(t0.Add(tt.want - time.Nanosecond))
			if got := src.Calls(); got != 1 {
				t.Fatalf("upstream calls just before %v = %d, want 1", tt.want, got)
			}
			clk.AdvanceTo(t0.Add(tt.want))
			if got := src.Calls(); got != 2 {
				t.Fatalf("upstream calls at %v = %d, want 2", tt.want, got)
			}
			if got := src.Times()[1].Sub(t0); got != tt.want {
				t.Errorf("refresh at +%v, want +%v", got, tt.want)
			}
			if res := mustGet(t, c, testKey); res.Token.AccessToken != "tok-2" {
				t.Errorf("Get after refresh = %q, want tok-2", res.Token.AccessToken)
			}
		})
	}
}

// TestRefreshDoesNotBlockReaders holds a background refresh upstream and
// checks that readers are answered from memory meanwhile.
func TestRefreshDoesNotBlockReaders(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = func(_ context.Context, _ Key, n int) (azure.Token, error) {
		if n == 2 {
			<-release
		}
		return issue(src.clk, n, time.Hour, 0), nil
	}
	c, clk := newTest(t, src, Options{}, false)

	mustGet(t, c, testKey)
	mustGet(t, c, testKey)
	clk.Advance(30 * time.Minute) // starts the refresh, which blocks
	eventually(t, "the refresh to start", func() bool { return src.Calls() == 2 })
	for range 10 {
		if res := mustGet(t, c, testKey); res.Token.AccessToken != "tok-1" || res.Stale {
			t.Fatalf("Get during refresh = %q (stale %v), want tok-1, not stale", res.Token.AccessToken, res.Stale)
		}
	}
	close(release)
	c.wg.Wait()
	if res := mustGet(t, c, testKey); res.Token.AccessToken != "tok-2" {
		t.Errorf("Get after refresh = %q, want tok-2", res.Token.AccessToken)
	}
}

func TestIdleKeyNotRefreshedThenLeaves(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = hourTokens(src.clk)
	reg := prometheus.NewRegistry()
	c, clk := newTest(t, src, Options{Registerer: reg}, true)

	mustGet(t, c, testKey)
	clk.Advance(30 * time.Minute) // refresh time: idle, not refreshed
	if got := src.Calls(); got != 1 {
		t.Errorf("upstream calls after the refresh time of an idle key = %d, want 1", got)
	}
	if got := c.Status(testKey); !got.Servable {
		t.Errorf("Status at 30 min = %+v, want servable", got)
	}
	clk.Advance(25 * time.Minute) // leaves service at 55 min: the idle key leaves
	if got := src.Calls(); got != 1 {
		t.Errorf("upstream calls after 55 min = %d, want 1", got)
	}
	if diff := cmp.Diff(Status{}, c.Status(testKey)); diff != "" {
		t.Errorf("Status of the idle key after it left (-want +got):\n%s", diff)
	}
	if got := clk.Pending(); got != 0 {
		t.Errorf("timers pending after the only key left = %d, want 0", got)
	}
	if n := countSeries(t, reg, "broker_token_expiry_timestamp_seconds"); n != 0 {
		t.Errorf("expiry series after the key left = %d, want 0", n)
	}
	if n := countSeries(t, reg, "broker_token_fetches_total"); n != 0 {
		t.Errorf("fetch series after the key left = %d, want 0", n)
	}
	if got := gaugeValue(t, reg, "broker_token_cache_entries"); got != 0 {
		t.Errorf("broker_token_cache_entries = %v, want 0", got)
	}
}

// TestKeyUsedAfterIdleRefreshIsRefreshed: a key skipped at its refresh time
// but used afterwards is refreshed when its token leaves service.
func TestKeyUsedAfterIdleRefreshIsRefreshed(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = hourTokens(src.clk)
	c, clk := newTest(t, src, Options{}, true)

	mustGet(t, c, testKey)
	clk.Advance(40 * time.Minute)
	mustGet(t, c, testKey) // used after the skipped refresh
	clk.Advance(15 * time.Minute)
	if got := src.Calls(); got != 2 {
		t.Fatalf("upstream calls at 55 min = %d, want 2", got)
	}
	if res := mustGet(t, c, testKey); res.Token.AccessToken != "tok-2" {
		t.Errorf("Get = %q, want tok-2", res.Token.AccessToken)
	}
}

func TestTransientFailureServesStaleUntilMargin(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = func(_ context.Context, _ Key, n int) (azure.Token, error) {
		if n == 1 {
			return issue(src.clk, n, time.Hour, 0), nil
		}
		return azure.Token{}, transientErr(503, 0)
	}
	c, clk := newTest(t, src, Options{}, true)

	mustGet(t, c, testKey)
	mustGet(t, c, testKey)
	clk.Advance(30 * time.Minute) // refresh fails
	res := mustGet(t, c, testKey)
	want := Result{Token: res.Token, Stale: true, NextAttempt: t0.Add(30*time.Minute + time.Second)}
	if diff := cmp.Diff(want, res); diff != "" || res.Token.AccessToken != "tok-1" {
		t.Fatalf("Get after a failed refresh (-want +got):\n%s", diff)
	}
	if st := c.Status(testKey); !st.Servable || !st.Stale || st.Err == nil {
		t.Errorf("Status = %+v, want servable, stale, with the error", st)
	}
	// Keep using the key; it stays stale until 55 min.
	for clk.Now().Before(t0.Add(55*time.Minute - time.Minute)) {
		clk.Advance(time.Minute)
		if res := mustGet(t, c, testKey); !res.Stale || res.Token.AccessToken != "tok-1" || !res.NextAttempt.After(clk.Now()) {
			t.Fatalf("Get at +%v = %q stale %v next %v, want tok-1, stale, next attempt ahead", clk.Now().Sub(t0), res.Token.AccessToken, res.Stale, res.NextAttempt)
		}
	}
	clk.AdvanceTo(t0.Add(55 * time.Minute))
	calls := src.Calls()
	_, err := c.Get(context.Background(), testKey)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Get at 55 min error = %v, want *cache.Error", err)
	}
	if !ce.NextAttempt.After(clk.Now()) {
		t.Errorf("Error.NextAttempt = %v, want after now %v", ce.NextAttempt, clk.Now())
	}
	var ae *azure.Error
	if !errors.As(err, &ae) || ae.StatusCode != 503 {
		t.Errorf("Get at 55 min error = %v, want it to wrap the *azure.Error (503)", err)
	}
	if got := src.Calls(); got != calls {
		t.Errorf("Get in backoff made %d upstream calls, want 0", got-calls)
	}
	if got := countOf(c.m.staleServed); got == 0 {
		t.Errorf("stale served = 0, want > 0")
	}
}

func TestBackoffSchedule(t *testing.T) {
	t.Parallel()
	for _, r := range []float64{0, 0.5, 0.999999} {
		t.Run(fmt.Sprint("rand ", r), func(t *testing.T) {
			t.Parallel()
			src := &fakeSource{}
			src.clk = newFakeClock()
			src.token = func(context.Context, Key, int) (azure.Token, error) {
				return azure.Token{}, transientErr(503, 0)
			}
			c, clk := newTest(t, src, Options{Rand: constRand(r)}, true)

			c.Prefetch(context.Background(), testKey) // kept trying without use
			const attempts = 13
			for src.Calls() < attempts {
				if !clk.FireNext() {
					t.Fatalf("no retry pending after %d attempts", src.Calls())
				}
			}
			times := src.Times()
			var got, want []time.Duration
			for i := 1; i < len(times); i++ {
				got = append(got, times[i].Sub(times[i-1]))
				base := min(time.Second<<(i-1), 5*time.Minute)
				want = append(want, time.Duration(float64(base)*(0.9+0.2*r)))
				if lo, hi := time.Duration(float64(base)*0.9), time.Duration(float64(base)*1.1); got[i-1] < lo || got[i-1] >= hi {
					t.Errorf("wait before attempt %d = %v, want in [%v, %v)", i+1, got[i-1], lo, hi)
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("waits between attempts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRetryAfterRespected(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = func(_ context.Context, _ Key, n int) (azure.Token, error) {
		if n == 1 {
			return azure.Token{}, transientErr(429, time.Minute)
		}
		return issue(src.clk, n, time.Hour, 0), nil
	}
	c, clk := newTest(t, src, Options{}, true)

	_, err := c.Get(context.Background(), testKey)
	var ce *Error
	if !errors.As(err, &ce) || !ce.NextAttempt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("Get after a 429 with Retry-After 60 = %v, want *cache.Error with NextAttempt +1m", err)
	}
	if got := ce.RetryAfter(clk.Now()); got != time.Minute {
		t.Errorf("Error.RetryAfter(now) = %v, want 1m", got)
	}
	clk.Advance(59 * time.Second)
	if _, err := c.Get(context.Background(), testKey); !errors.As(err, &ce) {
		t.Fatalf("Get at +59s error = %v, want the remembered *cache.Error", err)
	}
	if got := src.Calls(); got != 1 {
		t.Fatalf("upstream calls before Retry-After elapsed = %d, want 1", got)
	}
	clk.Advance(time.Second) // the key was used: retried in the background
	if got := src.Times(); len(got) != 2 || !got[1].Equal(t0.Add(time.Minute)) {
		t.Fatalf("upstream call times = %v, want a second call at +1m", got)
	}
	if res := mustGet(t, c, testKey); res.Token.AccessToken != "tok-2" || res.Stale {
		t.Errorf("Get after the retry = %q (stale %v), want tok-2", res.Token.AccessToken, res.Stale)
	}
}

func TestPermanentErrorRememberedThenCleared(t *testing.T) {
	t.Parallel()
	for _, usedMeanwhile := range []bool{true, false} {
		t.Run(fmt.Sprint("used meanwhile ", usedMeanwhile), func(t *testing.T) {
			t.Parallel()
			src := &fakeSource{}
			src.clk = newFakeClock()
			src.token = func(_ context.Context, _ Key, n int) (azure.Token, error) {
				if n == 1 {
					return azure.Token{}, permanentErr()
				}
				return issue(src.clk, n, time.Hour, 0), nil
			}
			c, clk := newTest(t, src, Options{NegativeTTL: 30 * time.Second}, true)

			_, err := c.Get(context.Background(), testKey)
			var ae *azure.Error
			if !errors.As(err, &ae) || ae.Code != "invalid_client" {
				t.Fatalf("Get() error = %v, want invalid_client", err)
			}
			if usedMeanwhile {
				clk.Advance(29 * time.Second)
				_, err := c.Get(context.Background(), testKey)
				var ce *Error
				if !errors.As(err, &ce) || !ce.NextAttempt.Equal(t0.Add(30*time.Second)) {
					t.Fatalf("Get within NegativeTTL error = %v, want the remembered error, next attempt at +30s", err)
				}
				if got := src.Calls(); got != 1 {
					t.Fatalf("upstream calls within NegativeTTL = %d, want 1", got)
				}
			}
			clk.Advance(time.Minute)
			res := mustGet(t, c, testKey)
			if res.Token.AccessToken != "tok-2" || res.Stale {
				t.Errorf("Get after NegativeTTL = %q (stale %v), want tok-2", res.Token.AccessToken, res.Stale)
			}
			if st := c.Status(testKey); st.Err != nil || !st.NextAttempt.IsZero() {
				t.Errorf("Status after success = %+v, want the error cleared", st)
			}
			if got := src.Calls(); got != 2 {
				t.Errorf("upstream calls = %d, want 2", got)
			}
		})
	}
}

// TestPermanentRefreshFailureKeepsValidToken: a refresh refused for good
// (the secret was revoked) does not take away a token still in service.
func TestPermanentRefreshFailureKeepsValidToken(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = func(_ context.Context, _ Key, n int) (azure.Token, error) {
		if n == 1 {
			return issue(src.clk, n, time.Hour, 0), nil
		}
		return azure.Token{}, permanentErr()
	}
	c, clk := newTest(t, src, Options{}, true)
	mustGet(t, c, testKey)
	mustGet(t, c, testKey)
	clk.Advance(30 * time.Minute)
	res := mustGet(t, c, testKey)
	if res.Token.AccessToken != "tok-1" || !res.Stale || !res.NextAttempt.Equal(clk.Now().Add(30*time.Second)) {
		t.Errorf("Get after a permanent refresh failure = %q stale %v next %v, want tok-1, stale, next in 30s", res.Token.AccessToken, res.Stale, res.NextAttempt)
	}
}

func TestUnusableTokenIsAnError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		tok  func(clk Clock) azure.Token
		want error
	}{
		{"already expired", func(clk Clock) azure.Token { return issue(clk, 1, 0, 0) }, errExpiredOnArrival},
		{"issued long ago, within margin", func(clk Clock) azure.Token {
			tok := issue(clk, 1, time.Hour, 0)
			tok.IssuedAt, tok.ExpiresOn = tok.IssuedAt.Add(-58*time.Minute), tok.ExpiresOn.Add(-58*time.Minute)
			return tok
		}, errExpiredOnArrival},
		{"empty", func(clk Clock) azure.Token {
			tok := issue(clk, 1, time.Hour, 0)
			tok.AccessToken = ""
			return tok
		}, errEmptyToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := &fakeSource{}
			src.clk = newFakeClock()
			src.token = func(context.Context, Key, int) (azure.Token, error) { return tt.tok(src.clk), nil }
			c, _ := newTest(t, src, Options{}, true)
			_, err := c.Get(context.Background(), testKey)
			var ce *Error
			if !errors.Is(err, tt.want) || !errors.As(err, &ce) || !ce.NextAttempt.Equal(t0.Add(time.Second)) {
				t.Errorf("Get() error = %v, want %v as a transient *cache.Error retried in 1s", err, tt.want)
			}
		})
	}
}

func TestLRUBound(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = hourTokens(src.clk)
	reg := prometheus.NewRegistry()
	c, _ := newTest(t, src, Options{Size: 3, Registerer: reg}, true)

	for i := range 10 {
		mustGet(t, c, keyFor(fmt.Sprintf("https://r%d/.default", i)))
		if n := c.lru.Len(); n > 3 {
			t.Fatalf("entries after %d keys = %d, want ≤ 3", i+1, n)
		}
	}
	c.mu.Lock()
	got := c.lru.Len()
	c.mu.Unlock()
	if got != 3 {
		t.Errorf("published entries = %d, want 3", got)
	}
	if got := gaugeValue(t, reg, "broker_token_cache_entries"); got != 3 {
		t.Errorf("broker_token_cache_entries = %v, want 3", got)
	}
	if n := countSeries(t, reg, "broker_token_expiry_timestamp_seconds"); n != 3 {
		t.Errorf("expiry series = %d, want 3 (evicted keys' series deleted)", n)
	}
	if st := c.Status(keyFor("https://r0/.default")); st.Servable {
		t.Errorf("Status of an evicted key = %+v, want not servable", st)
	}
}

// TestLRUSecondChance: a key hit since it was added survives an eviction
// that takes an older, unused key.
func TestLRUSecondChance(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = hourTokens(src.clk)
	c, _ := newTest(t, src, Options{Size: 2}, true)

	a, b, d := keyFor("https://a/.default"), keyFor("https://b/.default"), keyFor("https://d/.default")
	mustGet(t, c, a)
	mustGet(t, c, b)
	mustGet(t, c, a) // hit: a is now more recent than b
	mustGet(t, c, d)
	if !c.Status(a).Servable || c.Status(b).Servable {
		t.Errorf("after adding a third key: a servable %v, b servable %v; want a kept, b evicted", c.Status(a).Servable, c.Status(b).Servable)
	}
}

func TestEvictionDuringFetchServesWaiters(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	a, b := keyFor("https://a/.default"), keyFor("https://b/.default")
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = func(_ context.Context, key Key, n int) (azure.Token, error) {
		if key == a {
			<-release
		}
		tok := issue(src.clk, n, time.Hour, 0)
		tok.AccessToken = key.Scope
		return tok, nil
	}
	c, clk := newTest(t, src, Options{Size: 1}, false)

	const waiters = 3
	results := make(chan string, waiters)
	for range waiters {
		go func() {
			res, err := c.Get(context.Background(), a)
			if err != nil {
				t.Errorf("Get(a) error = %v", err)
			}
			results <- res.Token.AccessToken
		}()
	}
	eventually(t, "every caller of a to wait", func() bool { return countOf(c.m.misses) == waiters })
	if res := mustGet(t, c, b); res.Token.AccessToken != b.Scope { // evicts a
		t.Fatalf("Get(b) = %q, want %q", res.Token.AccessToken, b.Scope)
	}
	if _, ok := c.lru.Peek(a); ok {
		t.Fatalf("a still cached after b was added to a size-1 cache")
	}
	close(release)
	for range waiters {
		if got := <-results; got != a.Scope {
			t.Errorf("waiter of evicted a got %q, want %q", got, a.Scope)
		}
	}
	c.wg.Wait()
	if got := clk.Pending(); got != 1 {
		t.Errorf("timers pending = %d, want 1 (b's refresh; none for the evicted a)", got)
	}
	if got := c.lru.Len(); got != 1 {
		t.Errorf("entries = %d, want 1", got)
	}
}

func TestInvalidate(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = func(_ context.Context, _ Key, n int) (azure.Token, error) {
		if n == 2 {
			<-release
		}
		return issue(src.clk, n, time.Hour, 0), nil
	}
	c, clk := newTest(t, src, Options{}, false)

	mustGet(t, c, testKey)
	clk.Advance(DefaultForcedRefreshInterval) // old enough to be dropped
	for _, tt := range []struct {
		key   Key
		token string
	}{{testKey, "not-the-token"}, {testKey, ""}, {keyFor("https://unknown/.default"), "tok-1"}} {
		if c.Invalidate(tt.key, tt.token) {
			t.Errorf("Invalidate(%s, %q) = true, want false", tt.key.Scope, tt.token)
		}
	}
	if res := mustGet(t, c, testKey); res.Token.AccessToken != "tok-1" {
		t.Fatalf("Get after Invalidate of another token = %q, want tok-1", res.Token.AccessToken)
	}

	if !c.Invalidate(testKey, "tok-1") {
		t.Fatalf("Invalidate(tok-1) = false, want true")
	}
	if st := c.Status(testKey); st.Servable {
		t.Errorf("Status after Invalidate = %+v, want not servable", st)
	}
	const callers = 50
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			if res, err := c.Get(context.Background(), testKey); err != nil || res.Token.AccessToken != "tok-2" {
				t.Errorf("Get after Invalidate = %q, %v, want tok-2", res.Token.AccessToken, err)
			}
		})
	}
	eventually(t, "callers to wait on one fetch", func() bool { return countOf(c.m.sharedWaits) == callers-1 })
	if c.Invalidate(testKey, "tok-1") { // a second 401 for the same token: nothing to drop
		t.Errorf("second Invalidate(tok-1) = true, want false")
	}
	close(release)
	wg.Wait()
	if c.Invalidate(testKey, "tok-1") { // late 401 for the old token: tok-2 stays
		t.Errorf("late Invalidate(tok-1) = true, want false")
	}
	if res := mustGet(t, c, testKey); res.Token.AccessToken != "tok-2" {
		t.Errorf("Get after a late Invalidate of tok-1 = %q, want tok-2", res.Token.AccessToken)
	}
	if got := src.Calls(); got != 2 {
		t.Errorf("upstream calls = %d, want 2", got)
	}
}

// TestInvalidateRationed is an upstream that answers 401 to every token:
// each 401 asks the cache to drop the token it was sent.
func TestInvalidateRationed(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = func(_ context.Context, _ Key, n int) (azure.Token, error) {
		tok := issue(src.clk, n, time.Hour, 0)
		if n > 1 {
			// Later tokens come back already a minute old, so that only
			// the one-per-interval rule can refuse the next drop.
			tok.IssuedAt = tok.IssuedAt.Add(-time.Minute)
		}
		return tok, nil
	}
	reg := prometheus.NewRegistry()
	c, clk := newTest(t, src, Options{Registerer: reg}, true)

	// A storm of 401s for a token fetched now drops nothing.
	tok := mustGet(t, c, testKey).Token.AccessToken
	for i := range 30 {
		if c.Invalidate(testKey, tok) {
			t.Fatalf("Invalidate #%d of a token fetched now = true, want false", i+1)
		}
		mustGet(t, c, testKey)
	}
	if got := src.Calls(); got != 1 {
		t.Fatalf("upstream calls after 30 401s for a fresh token = %d, want 1", got)
	}

	// Once the token is old, one 401 drops it and the next Get fetches
	// exactly once.
	clk.Advance(DefaultForcedRefreshInterval)
	if !c.Invalidate(testKey, tok) {
		t.Fatalf("Invalidate of a %v old token = false, want true", DefaultForcedRefreshInterval)
	}
	tok = mustGet(t, c, testKey).Token.AccessToken
	for range 30 {
		mustGet(t, c, testKey)
	}
	if got := src.Calls(); got != 2 {
		t.Fatalf("upstream calls after one forced refresh = %d, want 2", got)
	}

	// The new token is old enough, but the key was refreshed by force less
	// than an interval ago.
	clk.Advance(DefaultForcedRefreshInterval - time.Second)
	if c.Invalidate(testKey, tok) {
		t.Errorf("Invalidate %v after the last forced refresh = true, want false", DefaultForcedRefreshInterval-time.Second)
	}
	clk.Advance(time.Second)
	if !c.Invalidate(testKey, tok) {
		t.Errorf("Invalidate %v after the last forced refresh = false, want true", DefaultForcedRefreshInterval)
	}
	mustGet(t, c, testKey)
	if got := src.Calls(); got != 3 {
		t.Errorf("upstream calls = %d, want 3", got)
	}
	c.Invalidate(testKey, "tok-1") // no longer held

	for result, want := range map[string]float64{invalidateDropped: 2, invalidateRationed: 31, invalidateNotHeld: 1} {
		if got := sampleValue(t, reg, "broker_token_invalidations_total", "result", result); got != want {
			t.Errorf("broker_token_invalidations_total{result=%q} = %v, want %v", result, got, want)
		}
	}
}

func TestPrefetchKeepsKeyWarm(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = hourTokens(src.clk)
	c, clk := newTest(t, src, Options{}, true)

	c.Prefetch(context.Background(), testKey)
	if got := src.Calls(); got != 1 {
		t.Fatalf("upstream calls after Prefetch = %d, want 1", got)
	}
	c.Prefetch(context.Background(), testKey) // already warm: no fetch
	for range 6 * 60 {
		clk.Advance(time.Minute)
		if st := c.Status(testKey); !st.Servable || st.Stale {
			t.Fatalf("Status at +%v = %+v, want servable", clk.Now().Sub(t0), st)
		}
	}
	// Never used: refreshed every 30 minutes for six hours.
	if got, want := src.Calls(), 1+12; got != want {
		t.Errorf("upstream calls over six hours = %d, want %d", got, want)
	}
	if got := countOf(c.m.hits) + countOf(c.m.misses); got != 0 {
		t.Errorf("hits + misses = %d, want 0 (Prefetch and Status are not uses)", got)
	}
}

func TestPrefetchReturnsWhenContextEnds(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = func(_ context.Context, _ Key, n int) (azure.Token, error) {
		<-release
		return issue(src.clk, n, time.Hour, 0), nil
	}
	c, _ := newTest(t, src, Options{}, false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.Prefetch(ctx, testKey) // returns at once; the fetch goes on
	close(release)
	c.wg.Wait()
	if st := c.Status(testKey); !st.Servable {
		t.Errorf("Status after the prefetch finished = %+v, want servable", st)
	}
}

func TestPrefetchFailureRetriedInBackground(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = func(_ context.Context, _ Key, n int) (azure.Token, error) {
		if n <= 2 {
			return azure.Token{}, transientErr(0, 0)
		}
		return issue(src.clk, n, time.Hour, 0), nil
	}
	c, clk := newTest(t, src, Options{}, true)
	c.Prefetch(context.Background(), testKey)
	st := c.Status(testKey)
	if st.Servable || st.Err == nil || !st.NextAttempt.Equal(t0.Add(time.Second)) {
		t.Fatalf("Status after a failed prefetch = %+v, want the error and a retry in 1s", st)
	}
	clk.Advance(3 * time.Second)
	if st := c.Status(testKey); !st.Servable || st.Err != nil {
		t.Errorf("Status after retries = %+v, want servable, no error", st)
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = hourTokens(src.clk)
	c, _ := newTest(t, src, Options{}, true)
	if diff := cmp.Diff(Status{}, c.Status(testKey)); diff != "" {
		t.Errorf("Status of an unknown key (-want +got):\n%s", diff)
	}
	mustGet(t, c, testKey)
	want := Status{Servable: true, ExpiresOn: t0.Add(time.Hour)}
	if diff := cmp.Diff(want, c.Status(testKey)); diff != "" {
		t.Errorf("Status after a fetch (-want +got):\n%s", diff)
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = hourTokens(src.clk)
	c, clk := newTest(t, src, Options{}, true)
	mustGet(t, c, testKey)
	if err := c.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close() = %v", err)
	}
	if _, err := c.Get(context.Background(), testKey); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close error = %v, want ErrClosed", err)
	}
	if got := clk.Pending(); got != 0 {
		t.Errorf("timers pending after Close = %d, want 0", got)
	}
	c.Prefetch(context.Background(), testKey)
	c.Invalidate(testKey, "tok-1")
	if got := src.Calls(); got != 1 {
		t.Errorf("upstream calls after Close = %d, want 1", got)
	}
}

// TestCloseLeavesNoGoroutine runs on the real clock with a fetch blocked
// upstream and a caller waiting on it: Close cancels the fetch, answers the
// caller and stops the timers.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	started := make(chan struct{})
	src := &fakeSource{token: func(ctx context.Context, key Key, n int) (azure.Token, error) {
		if key.Scope == "https://blocked/.default" {
			close(started)
			<-ctx.Done()
			return azure.Token{}, &azure.Error{Op: "token", Transient: true, Err: ctx.Err()}
		}
		return issue(realClock{}, n, time.Hour, 0), nil
	}}
	c, err := New(src, Options{})
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	mustGet(t, c, testKey)                                         // a real refresh timer now runs
	c.Prefetch(context.Background(), keyFor("https://p/.default")) // and another
	waited := make(chan error, 1)
	go func() {
		_, err := c.Get(context.Background(), keyFor("https://blocked/.default"))
		waited <- err
	}()
	<-started
	if err := c.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Errorf("Get waiting during Close error = %v, want context.Canceled", err)
	}
}

// TestSlowPollerSeesBackoffGrow: one caller polling a failing key every 10 s
// (slower than the first backoff steps) must not cause an upstream call per
// poll: the failure count outlives the idle periods, so the backoff grows.
func TestSlowPollerSeesBackoffGrow(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = func(context.Context, Key, int) (azure.Token, error) {
		return azure.Token{}, transientErr(503, 0)
	}
	c, clk := newTest(t, src, Options{}, true)
	const polls = 180 // 30 minutes
	for range polls {
		if _, err := c.Get(context.Background(), testKey); err == nil {
			t.Fatalf("Get() error = nil, want the upstream failure")
		}
		clk.Advance(10 * time.Second)
	}
	if got := src.Calls(); got > 20 {
		t.Errorf("upstream calls for %d polls over 30 min = %d, want ≤ 20", polls, got)
	}
	times := src.Times()
	t.Logf("%d upstream calls at %v", len(times), times)
	for i := 2; i < len(times); i++ {
		if prev, gap := times[i-1].Sub(times[i-2]), times[i].Sub(times[i-1]); gap < prev {
			t.Errorf("gap before attempt %d = %v, shorter than the one before (%v)", i+1, gap, prev)
		}
	}
	// Left alone, the failing key leaves after five idle minutes.
	clk.Advance(15 * time.Minute)
	if _, ok := c.lru.Peek(testKey); ok {
		t.Errorf("failing idle key still held after 15 idle minutes")
	}
}
