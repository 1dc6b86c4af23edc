package cache

import (
	"errors"
	"time"

	"github.com/entrabroker/broker/internal/azure"
)

// Policy constants. They are fixed by the design; only the margin, the
// negative TTL and the fetch timeout are configurable (see Options).
const (
	// DefaultSize is the number of keys held when Options.Size is zero.
	DefaultSize = 1024
	// DefaultMargin is Options.Margin's default: a token is not served in
	// the last five minutes of its life, like MSAL and azcore.
	DefaultMargin = 5 * time.Minute
	// DefaultNegativeTTL is how long a permanent error is remembered when
	// Options.NegativeTTL is zero.
	DefaultNegativeTTL = 30 * time.Second
	// DefaultFetchTimeout bounds one upstream fetch when
	// Options.FetchTimeout is zero. It matches msal-go's HTTP timeout.
	DefaultFetchTimeout = 30 * time.Second
	// DefaultForcedRefreshInterval is Options.ForcedRefreshInterval's
	// default. An upstream that answers 401 to every token (a missing role
	// assignment, a wrong audience) would otherwise turn each request into
	// an Entra request; 30 s is long enough to make that harmless and short
	// enough that a token revoked for real is replaced within a minute.
	DefaultForcedRefreshInterval = 30 * time.Second
	// DefaultMaxConcurrentFetches is Options.MaxConcurrentFetches' default.
	// A broker needs one fetch per scope it uses, spread over an hour; four
	// at once start a handful of scopes together, while a hung Entra ties
	// up four sockets and goroutines per identity, not one per caller.
	DefaultMaxConcurrentFetches = 4
	// DefaultNewKeyBurst and DefaultNewKeyEvery are the defaults of
	// Options.NewKeyBudget. A workload asks for a few scopes, which all fit
	// in the burst of 20 at start; after that, one new scope per 3 s (20 a
	// minute) still lets a new scope through within seconds, while a flood
	// of distinct scopes reaches Entra at that rate, far below the rates at
	// which Entra throttles an application, instead of at the caller's.
	DefaultNewKeyBurst = 20
	DefaultNewKeyEvery = 3 * time.Second

	// minBackoff is the wait after the first transient failure; it doubles
	// with every consecutive failure up to maxBackoff.
	minBackoff = time.Second
	maxBackoff = 5 * time.Minute
	// jitter spreads refreshes and retries by ±10 % so that many keys (or
	// many brokers) do not call Entra in lockstep.
	jitter = 0.1
	// minRefreshDelay is the shortest wait before a background refresh, so
	// that a token with a refresh_in of zero (or already past) cannot make
	// the cache fetch in a loop.
	minRefreshDelay = time.Second
	// warnInterval is how often a failing key's fetch failure is logged at
	// Warn; the failures in between are counted in
	// broker_token_fetch_warnings_suppressed_total.
	warnInterval = time.Minute
)

// errExpiredOnArrival is the failure recorded when the Source returns a
// token that is already out of service (expired, or within its margin):
// serving it would break the never-serve-expired rule, so it is treated as
// a transient failure and retried with backoff.
var errExpiredOnArrival = errors.New("cache: source returned a token already within its expiry margin")

// errEmptyToken is the failure recorded when the Source returns no error and
// no token; like errExpiredOnArrival it is treated as transient.
var errEmptyToken = errors.New("cache: source returned an empty token")

// margin returns the safety margin for a token with the given lifetime:
// the configured margin, or a quarter of the lifetime when the lifetime is
// shorter than four margins (so a 10-minute token with a 5-minute margin is
// served for 7.5 minutes, not 5). A non-positive lifetime has no margin.
func margin(lifetime, configured time.Duration) time.Duration {
	switch {
	case lifetime <= 0:
		return 0
	case lifetime < 4*configured:
		return lifetime / 4
	default:
		return configured
	}
}

// issuedAt returns when tok was issued, without a monotonic clock reading:
// tok.IssuedAt when set, else now.
func issuedAt(tok azure.Token, now time.Time) time.Time {
	if tok.IssuedAt.IsZero() {
		return now.Round(0)
	}
	return tok.IssuedAt.Round(0)
}

// serveUntil returns the instant from which tok is no longer served:
// ExpiresOn minus margin(lifetime). Times are compared on the wall clock
// (monotonic readings are stripped, as x/oauth2 does), because Entra's
// expiry is a wall-clock instant and a monotonic clock stops while a laptop
// sleeps.
func serveUntil(tok azure.Token, issued time.Time, configured time.Duration) time.Time {
	exp := tok.ExpiresOn.Round(0)
	return exp.Add(-margin(exp.Sub(issued), configured))
}

// Usable reports whether a Cache with the given margin (Options.Margin; 0
// means DefaultMargin) would take tok into service at now: it is not empty
// and has more than its margin left. A Source that answers tokens it did
// not fetch just now (a shared second level) answers only usable ones: the
// cache counts any other as a failed fetch.
func Usable(tok azure.Token, margin time.Duration, now time.Time) bool {
	if tok.AccessToken == "" {
		return false
	}
	return now.Before(serveUntil(tok, issuedAt(tok, now), cmpOr(margin, DefaultMargin)))
}

// spread applies the ±10 % jitter to d; r is uniform in [0, 1).
func spread(d time.Duration, r float64) time.Duration {
	return time.Duration(float64(d) * (1 - jitter + 2*jitter*r))
}

// refreshDelay returns how long after now a freshly fetched tok should be
// refreshed in the background: at tok.RefreshOn (Entra's refresh_in) when
// set, else at half its lifetime, spread by ±10 %. The target is pulled in
// to nine tenths of the way to serveUntil when it lies later than that, so
// a refresh always starts while the token is still served; the result is at
// least minRefreshDelay.
func refreshDelay(tok azure.Token, issued, until, now time.Time, r float64) time.Duration {
	at := tok.RefreshOn.Round(0)
	if tok.RefreshOn.IsZero() {
		at = issued.Add(tok.ExpiresOn.Round(0).Sub(issued) / 2)
	}
	d := at.Sub(now)
	if limit := until.Sub(now) * 9 / 10; d > limit {
		d = limit
	}
	d = spread(d, r)
	if d < minRefreshDelay {
		d = minRefreshDelay
	}
	return d
}

// backoff returns the wait after the n-th consecutive transient failure
// (n ≥ 1): 1 s doubling (1, 2, 4, …, 256 s) capped at 5 minutes, spread by
// ±10 % (so the capped wait lies in [270 s, 330 s)).
func backoff(n int, r float64) time.Duration {
	d := maxBackoff
	if n < 1 {
		n = 1
	}
	if n <= 20 {
		if b := minBackoff << (n - 1); b < maxBackoff {
			d = b
		}
	}
	return spread(d, r)
}

// classify reports whether err is permanent and the Retry-After it carries.
// A permanent error is an *azure.Error whose Temporary method returns false;
// every other error (an *azure.Error marked transient, a network error, a
// timeout, an expired-on-arrival token) is transient.
func classify(err error) (permanent bool, retryAfter time.Duration) {
	var ae *azure.Error
	if errors.As(err, &ae) {
		return !ae.Temporary(), ae.RetryAfter
	}
	return false, 0
}

// retryDelay returns how long to wait before the next upstream attempt after
// the n-th consecutive failure err: the negative TTL for a permanent error,
// backoff(n) for a transient one, and never less than the error's
// Retry-After.
func retryDelay(err error, n int, negativeTTL time.Duration, r float64) (wait time.Duration, permanent bool) {
	permanent, retryAfter := classify(err)
	if permanent {
		wait = negativeTTL
	} else {
		wait = backoff(n, r)
	}
	return max(wait, retryAfter), permanent
}
