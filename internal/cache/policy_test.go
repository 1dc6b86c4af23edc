package cache

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/entrabroker/broker/internal/azure"
)

func TestServeUntil(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		life   time.Duration
		margin time.Duration
		want   time.Duration // serve until issued + want
	}{
		{"one hour, default margin", time.Hour, 5 * time.Minute, 55 * time.Minute},
		{"24 hours (CAE)", 24 * time.Hour, 5 * time.Minute, 24*time.Hour - 5*time.Minute},
		{"exactly four margins", 20 * time.Minute, 5 * time.Minute, 15 * time.Minute},
		{"just under four margins: a quarter", 19 * time.Minute, 5 * time.Minute, 19 * time.Minute * 3 / 4},
		{"ten minutes: a quarter", 10 * time.Minute, 5 * time.Minute, 7*time.Minute + 30*time.Second},
		{"one minute: a quarter", time.Minute, 5 * time.Minute, 45 * time.Second},
		{"custom margin", 3 * time.Minute, time.Minute, 3 * time.Minute * 3 / 4},
		{"custom margin, long token", time.Hour, time.Minute, 59 * time.Minute},
		{"zero lifetime: never served", 0, 5 * time.Minute, 0},
		{"already expired: never served", -time.Minute, 5 * time.Minute, -time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok := azure.Token{IssuedAt: t0, ExpiresOn: t0.Add(tt.life)}
			got := serveUntil(tok, issuedAt(tok, t0), tt.margin).Sub(t0)
			if got != tt.want {
				t.Errorf("serveUntil(life %v, margin %v) = issued+%v, want issued+%v", tt.life, tt.margin, got, tt.want)
			}
		})
	}
}

// TestServeUntilStripsMonotonic checks that expiry is compared on the wall
// clock: a monotonic reading would stop while a machine sleeps.
func TestServeUntilStripsMonotonic(t *testing.T) {
	t.Parallel()
	now := time.Now() // has a monotonic reading
	tok := azure.Token{IssuedAt: now, ExpiresOn: now.Add(time.Hour)}
	until := serveUntil(tok, issuedAt(tok, now), 5*time.Minute)
	if until != until.Round(0) {
		t.Errorf("serveUntil() = %v, want no monotonic reading", until)
	}
	if got := issuedAt(azure.Token{}, now); got != got.Round(0) || !got.Equal(now) {
		t.Errorf("issuedAt(zero token, now) = %v, want now without monotonic reading", got)
	}
}

func TestRefreshDelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		life      time.Duration
		refreshIn time.Duration
		r         float64
		want      time.Duration
	}{
		{"half-life, low jitter", time.Hour, 0, 0, 27 * time.Minute},
		{"half-life, no jitter", time.Hour, 0, 0.5, 30 * time.Minute},
		{"half-life, high jitter", time.Hour, 0, 0.75, 31*time.Minute + 30*time.Second},
		{"refresh_in, low jitter", 24 * time.Hour, 12 * time.Hour, 0, 12 * time.Hour * 9 / 10},
		{"refresh_in, no jitter", 24 * time.Hour, 12 * time.Hour, 0.5, 12 * time.Hour},
		{"refresh_in, high jitter", 24 * time.Hour, 12 * time.Hour, 0.75, 12 * time.Hour * 21 / 20},
		{"refresh_in past the margin: nine tenths of the way", time.Hour, 58 * time.Minute, 0.5, 55 * time.Minute * 9 / 10},
		{"refresh_in zero-ish: floor", time.Hour, time.Nanosecond, 0.5, time.Second},
		{"short token: half-life", 4 * time.Second, 0, 0.5, 2 * time.Second},
		{"tiny token: floor", time.Second, 0, 0.5, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok := azure.Token{IssuedAt: t0, ExpiresOn: t0.Add(tt.life)}
			if tt.refreshIn != 0 {
				tok.RefreshOn = t0.Add(tt.refreshIn)
			}
			until := serveUntil(tok, t0, DefaultMargin)
			got := refreshDelay(tok, t0, until, t0, tt.r)
			if got != tt.want {
				t.Errorf("refreshDelay(life %v, refresh_in %v, r %v) = %v, want %v", tt.life, tt.refreshIn, tt.r, got, tt.want)
			}
		})
	}
}

// TestRefreshDelayJitterBounds checks, over the whole range of Rand, that a
// refresh falls within ±10 % of its target and before the token leaves
// service.
func TestRefreshDelayJitterBounds(t *testing.T) {
	t.Parallel()
	for _, refreshIn := range []time.Duration{0, 40 * time.Minute, 58 * time.Minute} {
		tok := azure.Token{IssuedAt: t0, ExpiresOn: t0.Add(time.Hour)}
		target := 30 * time.Minute
		if refreshIn != 0 {
			tok.RefreshOn = t0.Add(refreshIn)
			target = min(refreshIn, 55*time.Minute*9/10)
		}
		until := serveUntil(tok, t0, DefaultMargin)
		for i := range 1000 {
			r := float64(i) / 1000
			got := refreshDelay(tok, t0, until, t0, r)
			lo, hi := time.Duration(float64(target)*0.9), time.Duration(float64(target)*1.1)
			if got < lo || got >= hi || !t0.Add(got).Before(until) {
				t.Fatalf("refreshDelay(refresh_in %v, r %v) = %v, want in [%v, %v) and before %v", refreshIn, r, got, lo, hi, until.Sub(t0))
			}
		}
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300}
	var got []time.Duration
	for n := 1; n <= len(want); n++ {
		got = append(got, backoff(n, 0.5)/time.Second)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("backoff(1…12, no jitter) in seconds (-want +got):\n%s", diff)
	}
	if got := backoff(1000, 0.5); got != maxBackoff {
		t.Errorf("backoff(1000) = %v, want %v", got, maxBackoff)
	}
	for n := 1; n <= 12; n++ {
		base := want[n-1] * time.Second
		lo, hi := time.Duration(float64(base)*0.9), time.Duration(float64(base)*1.1)
		for _, r := range []float64{0, 0.25, 0.999999} {
			if got := backoff(n, r); got < lo || got >= hi {
				t.Errorf("backoff(%d, r %v) = %v, want in [%v, %v)", n, r, got, lo, hi)
			}
		}
	}
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		err           error
		n             int
		wantWait      time.Duration
		wantPermanent bool
	}{
		{"transient, first failure", transientErr(503, 0), 1, time.Second, false},
		{"transient, fifth failure", transientErr(503, 0), 5, 16 * time.Second, false},
		{"transient, capped", transientErr(503, 0), 30, 5 * time.Minute, false},
		{"429 with Retry-After beats backoff", transientErr(429, time.Minute), 1, time.Minute, false},
		{"Retry-After shorter than backoff", transientErr(429, time.Second), 5, 16 * time.Second, false},
		{"network error (not azure): transient", errors.New("dial tcp: connection refused"), 2, 2 * time.Second, false},
		{"expired on arrival: transient", errExpiredOnArrival, 1, time.Second, false},
		{"permanent: negative TTL", permanentErr(), 1, 30 * time.Second, true},
		{"permanent: no backoff growth", permanentErr(), 9, 30 * time.Second, true},
		{"permanent, wrapped", fmt.Errorf("source: %w", permanentErr()), 1, 30 * time.Second, true},
		{"permanent with longer Retry-After", &azure.Error{Code: "invalid_client", RetryAfter: 2 * time.Minute}, 1, 2 * time.Minute, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wait, permanent := retryDelay(tt.err, tt.n, 30*time.Second, 0.5)
			if wait != tt.wantWait || permanent != tt.wantPermanent {
				t.Errorf("retryDelay(%v, %d) = %v, %v, want %v, %v", tt.err, tt.n, wait, permanent, tt.wantWait, tt.wantPermanent)
			}
		})
	}
}

func TestErrorRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		next time.Duration
		want time.Duration
	}{
		{60 * time.Second, 60 * time.Second},
		{1500 * time.Millisecond, 2 * time.Second},
		{0, time.Second},
		{-time.Minute, time.Second},
	}
	for _, tt := range tests {
		e := &Error{Scope: "s", NextAttempt: t0.Add(tt.next), Err: errors.New("x")}
		if got := e.RetryAfter(t0); got != tt.want {
			t.Errorf("Error{NextAttempt: now+%v}.RetryAfter(now) = %v, want %v", tt.next, got, tt.want)
		}
	}
}
