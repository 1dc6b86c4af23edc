package cache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/entrabroker/broker/internal/azure"
)

// Key identifies one cached token: who asks Entra (authority, tenant,
// client ID) and for what (scope). It never holds the credential, so
// rotating a secret keeps the tokens the old one already earned.
type Key struct {
	// Authority is the Entra host, e.g. "https://login.microsoftonline.com".
	Authority string
	// Tenant is the directory (tenant) ID or domain.
	Tenant string
	// ClientID is the application (client) ID.
	ClientID string
	// Scope is the normalized scope, e.g. "https://api.loganalytics.io/.default".
	// The cache does not normalize it; callers do, so that equal scopes
	// share one entry.
	Scope string
	// Capabilities are the client capabilities Entra ID is told of when the
	// token is fetched, e.g. "cp1" (the client handles continuous access
	// evaluation's claims challenges); empty for none. They are part of the
	// key because Entra answers them with a different token: a CP1 token
	// never reaches a client that did not declare CP1, and the other way
	// round.
	Capabilities string
}

// Source fetches a fresh token for key from upstream; it never caches. The
// cache calls it with key.Scope already normalized, on a context that is
// detached from the caller's cancellation and bounded by
// Options.FetchTimeout.
//
// Implementations are safe for concurrent use. A failure should be (or
// wrap) an *azure.Error so the cache can tell transient from permanent;
// any other error is treated as transient. Errors must not contain the
// credential or a token. When the fetch replaces a token the cache holds
// (a refresh), Held(ctx) returns that token, so that a Source shared with
// other processes can tell a newer token from the one already held.
type Source interface {
	Token(ctx context.Context, key Key) (azure.Token, error)
}

// Options configures a Cache. The zero value is valid: every field has a
// default.
type Options struct {
	// Size is the maximum number of keys held; 0 means DefaultSize (1024).
	// When a new key needs room, a key without a token in service leaves
	// first, else the least recently used key (see Cache for how "used" is
	// tracked).
	Size int
	// Margin is how long before its expiry a token stops being served; 0
	// means DefaultMargin (5 minutes). A token whose lifetime is shorter
	// than four margins uses a quarter of its lifetime instead, so that a
	// short token is still served for three quarters of its life.
	Margin time.Duration
	// NegativeTTL is how long a permanent error is remembered: until then,
	// Get answers it at once without an upstream call. 0 means
	// DefaultNegativeTTL (30 seconds).
	NegativeTTL time.Duration
	// FetchTimeout bounds one upstream fetch from the moment it calls the
	// Source (time spent waiting for a slot, see MaxConcurrentFetches, is
	// not counted); 0 means DefaultFetchTimeout (30 seconds). It uses the
	// real clock even when Clock is a fake.
	FetchTimeout time.Duration
	// MaxConcurrentFetches caps the upstream fetches that call the Source
	// at once for one identity (the Authority, Tenant and ClientID of a
	// Key); more wait for a slot in the order they started. 0 means
	// DefaultMaxConcurrentFetches (4).
	MaxConcurrentFetches int
	// NewKeyBudget limits how fast Get starts fetches for new keys of one
	// identity: keys that have not held a token since they entered the
	// cache. Past it, Get answers an *Error wrapping ErrNewKeyBudget at
	// once. Prefetched keys are exempt. A zero field takes its default
	// (DefaultNewKeyBurst, DefaultNewKeyEvery).
	NewKeyBudget Budget
	// ForcedRefreshInterval rations Invalidate: a token younger than this
	// is not dropped, and a key's token is dropped at most once per
	// interval. 0 means DefaultForcedRefreshInterval (30 seconds).
	ForcedRefreshInterval time.Duration
	// Clock tells the time and runs the refresh timers; nil means the real
	// clock.
	Clock Clock
	// Rand returns a uniform number in [0, 1) for jitter; nil means
	// math/rand/v2's Float64. The cache calls it with its lock held, so it
	// need not be safe for concurrent use by one Cache.
	Rand func() float64
	// Registerer receives the cache's metrics (see the package
	// documentation); nil means no metrics are registered. Close
	// unregisters them.
	Registerer prometheus.Registerer
	// Logger receives fetch failures (Warn, at most once a minute per key;
	// Debug otherwise) and lifecycle events (Debug); nil means no logging.
	// Tokens are never logged.
	Logger *zap.Logger
}

// Budget is a token bucket: Burst events at once, then one more every
// Every.
type Budget struct {
	// Burst is how many events the full bucket allows at once.
	Burst int
	// Every is how long the bucket takes to earn one more event.
	Every time.Duration
}

// Result is what Get answers.
type Result struct {
	// Token is the access token served. It is a secret: never log it.
	Token azure.Token
	// Stale reports that the token is still in service but its refresh is
	// failing; the caller may want to say so (a response header).
	Stale bool
	// NextAttempt is when the cache will next ask upstream for this key; it
	// is set when Stale is true and zero otherwise.
	NextAttempt time.Time
}

// Status describes what the cache holds for a key, for readiness checks and
// diagnostics. It never contains the token.
type Status struct {
	// Servable reports that Get would now answer a token from memory.
	Servable bool
	// ExpiresOn is the expiry of the token held, or zero when none is held.
	ExpiresOn time.Time
	// Stale reports that the token held is served while its refresh fails.
	Stale bool
	// Err is the Source's error from the last upstream attempt, or nil when
	// it succeeded (or none was made).
	Err error
	// NextAttempt is when the cache will next ask upstream after a failure,
	// or zero.
	NextAttempt time.Time
}

// Cache serves tokens from memory and fetches them from a Source when
// needed. A Cache is safe for concurrent use; create it with New and stop
// it with Close.
//
// Serving. Get answers a held token while it has more than the margin left
// (see Options.Margin). That path holds the cache's lock for a map lookup
// and allocates nothing.
// Otherwise the caller waits for a fetch, shared by every concurrent caller
// of the key (single-flight). The fetch does not belong to any caller: one
// caller giving up does not cancel it for the others, and each caller's own
// context bounds only its own wait. Once it calls the Source, a fetch runs
// to its end (or Options.FetchTimeout) even when every caller has gone, so
// that the next caller finds the token.
//
// Upstream traffic. Every key of one identity (Authority, Tenant,
// ClientID) shares three limits, so that no caller can make the broker
// hammer Entra or hold sockets for it. At most Options.MaxConcurrentFetches
// fetches call the Source at once; the others wait in a queue, oldest
// first, and one that every caller has given up on leaves the queue without
// calling the Source (background refreshes and prefetches stay queued).
// Get starts a fetch for a new key (one that has held no token since it
// entered the cache: never fetched, evicted, or only ever failing) only
// within Options.NewKeyBudget, a token bucket; past it, Get answers an
// *Error wrapping ErrNewKeyBudget at once, with the time the budget allows
// the next one. Refreshes, retries of keys that once held a token and
// prefetched keys are not counted. Invalidate (an upstream refused a token)
// forces a refresh at most once per Options.ForcedRefreshInterval per key,
// and never for a token younger than that. A failing key's fetch failure
// is logged at Warn at most once a minute; the rest go to Debug and to a
// counter.
//
// Refreshing. After a successful fetch, the key is refreshed in the
// background at the token's RefreshOn (Entra's refresh_in) when set, else at
// half its lifetime, spread by ±10 %, and always before it leaves service.
// Only keys used since their last upstream attempt, or passed to Prefetch,
// are refreshed. An idle key is looked at once more when its token leaves
// service: refreshed if it was used in between, otherwise dropped (with its
// per-scope metrics). While an idle key's refresh is failing it is looked at
// after every backoff period instead, without an upstream call, so that a
// use soon leads to an attempt soon. A refresh never blocks readers.
//
// Failures. After a transient failure (an *azure.Error with Temporary()
// true, or any other error) a token still in service keeps being served,
// marked Stale, and the next attempt waits 1 s, doubling per consecutive
// failure up to 5 minutes, spread by ±10 %, and never less than the
// error's RetryAfter. After a permanent failure (an *azure.Error with
// Temporary() false) the next attempt waits Options.NegativeTTL (or
// RetryAfter, if longer); a token still in service is also kept. When no
// token is in service, Get returns an *Error at once, without an upstream
// call, until the next attempt is due; then the next Get (or, for a used
// or prefetched key, the background timer) tries again, and a success
// clears the error. A failing key that nobody uses keeps its failure count
// for five more minutes before it leaves, so that a caller polling slower
// than the backoff still sees the backoff grow. A token is never served
// within its margin, so never past its expiry.
//
// Bound. At most Options.Size keys are held. A new key that needs room
// first evicts the oldest key that holds no token in service and is not
// prefetched (a key being fetched for the first time, a failing one, an
// expired one), so keys that never succeed evict only their own kind and
// cannot push out a working token. When every key holds a token in
// service, the least recently used one that is not prefetched leaves;
// prefetched keys are evicted only when every key is prefetched. Evicting a
// key whose fetch is in flight does not strand its waiters: they get the
// fetch's result.
type Cache struct {
	src          Source
	size         int
	margin       time.Duration
	negativeTTL  time.Duration
	fetchTimeout time.Duration
	forcedEvery  time.Duration
	maxFetches   int
	budget       Budget
	clock        Clock
	rand         func() float64
	log          *zap.Logger
	reg          prometheus.Registerer
	m            *metrics

	// ctx is the parent of background fetches; Close cancels it, which also
	// cancels fetches started by callers.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // running fetches

	mu         sync.Mutex
	lru        *simplelru.LRU[Key, *entry]
	scopes     map[string]*scopeMetrics
	identities map[identityKey]*identity
	// warned holds when a key's fetch failure was last logged at Warn.
	warned map[Key]time.Time
	closed bool
}

// identityKey is the part of a Key that names an app registration.
type identityKey struct{ authority, tenant, clientID string }

// identity is the upstream traffic state shared by the keys of one app
// registration. It is guarded by Cache.mu. The cache keeps one per identity
// it has seen for as long as it lives: identities come from the broker's
// configuration, not from callers.
type identity struct {
	running int       // fetches calling the Source
	queue   []*flight // fetches waiting for a slot, oldest first
	tokens  int       // new-key budget left
	refill  time.Time // when tokens last grew, or were last full
}

// takeNewKey spends one unit of the new-key budget b at now. When none is
// left it reports false and when the next unit will be earned.
func (id *identity) takeNewKey(b Budget, now time.Time) (ok bool, next time.Time) {
	if id.tokens >= b.Burst {
		id.refill = now
	} else if n := now.Sub(id.refill) / b.Every; n > 0 {
		id.tokens = min(b.Burst, id.tokens+int(n))
		id.refill = id.refill.Add(n * b.Every)
	}
	if id.tokens == 0 {
		return false, id.refill.Add(b.Every)
	}
	id.tokens--
	return true, time.Time{}
}

// refundNewKey gives back a unit spent on a fetch that never called the
// Source.
func (id *identity) refundNewKey(b Budget) { id.tokens = min(b.Burst, id.tokens+1) }

// entry is one key's slot. st is read without a lock; the fields after the
// comment are guarded by Cache.mu.
type entry struct {
	key   Key
	ident *identity
	st    atomic.Pointer[state]
	// used is set by every Get and cleared when an upstream attempt
	// starts: it says whether the key is worth refreshing.
	used atomic.Bool

	// Guarded by Cache.mu.
	sm       *scopeMetrics
	flight   *flight // the fetch in progress, or nil
	timer    Timer   // the next refresh, retry or idle check, or nil
	gen      uint64  // bumped whenever timer is replaced or dropped
	failures int     // consecutive failed upstream attempts
	prefetch bool
	removed  bool
	// succeeded is set by the first successful fetch since the key entered
	// the cache: from then on its fetches do not spend the new-key budget.
	succeeded bool
	// forcedAt is when Invalidate last dropped the key's token, or zero.
	forcedAt time.Time
	// lingering is set while an idle key with a failure and no token is
	// kept so that its backoff keeps growing (see tick).
	lingering bool
}

// state is an immutable snapshot of an entry.
type state struct {
	token  azure.Token // zero when none is held
	issued time.Time   // issuedAt(token); zero when none is held
	until  time.Time   // serveUntil(token); zero when none is held
	err    error       // the last attempt's error; nil after a success
	next   time.Time   // the next upstream attempt after a failure; zero after a success
}

// noState is the state of a key that has never been fetched.
var noState = &state{}

// servable reports whether the token held may be served at now.
func (s *state) servable(now time.Time) bool { return now.Before(s.until) }

// flight is one upstream fetch; done is closed, with mu held, once res or
// err is set. The other fields are guarded by Cache.mu.
type flight struct {
	done chan struct{}
	res  Result
	err  error
	// cause is the Source's error when the fetch failed, also when res
	// still serves the token held before (Refresh reports it).
	cause error

	e      *entry
	parent context.Context // provides the fetch's values, not its cancellation
	// waiters counts the Get calls waiting for the fetch; it drops when one
	// gives up.
	waiters int
	// keep marks a fetch that goes on without waiters: a background
	// refresh or retry, or one that Prefetch started or joined.
	keep bool
	// queued is set while the fetch waits for a slot of its identity.
	queued bool
	// newKey is set when the fetch spent the new-key budget.
	newKey bool
}

// New returns a Cache that fetches tokens from src. It reports every invalid
// option at once. The caller must Close the Cache to stop its timers.
func New(src Source, opts Options) (*Cache, error) {
	var errs []error
	if src == nil {
		errs = append(errs, errors.New("source is nil"))
	}
	if opts.Size < 0 {
		errs = append(errs, fmt.Errorf("size %d is negative", opts.Size))
	}
	if opts.Margin < 0 {
		errs = append(errs, fmt.Errorf("margin %v is negative", opts.Margin))
	}
	if opts.NegativeTTL < 0 {
		errs = append(errs, fmt.Errorf("negative TTL %v is negative", opts.NegativeTTL))
	}
	if opts.FetchTimeout < 0 {
		errs = append(errs, fmt.Errorf("fetch timeout %v is negative", opts.FetchTimeout))
	}
	if opts.ForcedRefreshInterval < 0 {
		errs = append(errs, fmt.Errorf("forced refresh interval %v is negative", opts.ForcedRefreshInterval))
	}
	if opts.MaxConcurrentFetches < 0 {
		errs = append(errs, fmt.Errorf("max concurrent fetches %d is negative", opts.MaxConcurrentFetches))
	}
	if opts.NewKeyBudget.Burst < 0 {
		errs = append(errs, fmt.Errorf("new-key budget burst %d is negative", opts.NewKeyBudget.Burst))
	}
	if opts.NewKeyBudget.Every < 0 {
		errs = append(errs, fmt.Errorf("new-key budget interval %v is negative", opts.NewKeyBudget.Every))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cache: new: %w", err)
	}

	c := &Cache{
		src:          src,
		size:         cmpOr(opts.Size, DefaultSize),
		margin:       cmpOr(opts.Margin, DefaultMargin),
		negativeTTL:  cmpOr(opts.NegativeTTL, DefaultNegativeTTL),
		fetchTimeout: cmpOr(opts.FetchTimeout, DefaultFetchTimeout),
		forcedEvery:  cmpOr(opts.ForcedRefreshInterval, DefaultForcedRefreshInterval),
		maxFetches:   cmpOr(opts.MaxConcurrentFetches, DefaultMaxConcurrentFetches),
		budget: Budget{
			Burst: cmpOr(opts.NewKeyBudget.Burst, DefaultNewKeyBurst),
			Every: cmpOr(opts.NewKeyBudget.Every, DefaultNewKeyEvery),
		},
		clock:      opts.Clock,
		rand:       opts.Rand,
		log:        opts.Logger,
		reg:        opts.Registerer,
		m:          newMetrics(),
		scopes:     make(map[string]*scopeMetrics),
		identities: make(map[identityKey]*identity),
		warned:     make(map[Key]time.Time),
	}
	if c.clock == nil {
		c.clock = realClock{}
	}
	if c.rand == nil {
		c.rand = rand.Float64
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	c.log = c.log.Named("cache")
	lru, err := simplelru.NewLRU(c.size, c.evicted)
	if err != nil {
		return nil, fmt.Errorf("cache: new: %w", err)
	}
	c.lru = lru
	if c.reg != nil {
		if err := c.m.register(c.reg); err != nil {
			return nil, fmt.Errorf("cache: new: register metrics: %w", err)
		}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// cmpOr returns v, or def when v is zero.
func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Get returns a token for key: from memory while it has more than the margin
// left, else from a fetch shared with every concurrent caller of key. ctx
// bounds only this caller's wait; the fetch itself goes on for the others.
//
// When no token can be served because the last upstream attempt failed,
// Get returns an *Error carrying the Source's error and the time of the next
// attempt. When ctx ends first, it returns an error wrapping ctx's cause.
// After Close it returns ErrClosed.
func (c *Cache) Get(ctx context.Context, key Key) (Result, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return Result{}, ErrClosed
	}
	now := c.clock.Now()
	e, held := c.lru.Get(key) // a use: the key moves to the front
	s := noState
	if held {
		e.used.Store(true)
		s = e.st.Load()
		if s.servable(now) {
			c.mu.Unlock()
			return c.serve(s), nil
		}
	}
	c.m.misses.Inc()
	var fl *flight
	switch {
	case held && e.flight != nil:
		fl = e.flight
		c.m.sharedWaits.Inc()
	case s.err != nil && now.Before(s.next):
		c.mu.Unlock()
		return Result{}, &Error{Scope: key.Scope, NextAttempt: s.next, Err: s.err}
	default:
		newKey := !held || (!e.succeeded && !e.prefetch)
		if newKey {
			if ok, next := c.identityLocked(key).takeNewKey(c.budget, now); !ok {
				c.mu.Unlock()
				c.m.budgetRefusals.Inc()
				return Result{}, &Error{Scope: key.Scope, NextAttempt: next, Err: ErrNewKeyBudget}
			}
		}
		if !held {
			e = c.addLocked(key, now)
		}
		fl = c.startLocked(ctx, e, e.prefetch)
		fl.newKey = newKey
	}
	fl.waiters++
	c.mu.Unlock()

	select {
	case <-fl.done:
	case <-ctx.Done():
		select {
		case <-fl.done: // both ready: the answer wins
		default:
			c.leave(fl)
			return Result{}, fmt.Errorf("cache: waiting for %s: %w", key.Scope, context.Cause(ctx))
		}
	}
	if fl.err == nil && fl.res.Stale {
		c.m.staleServed.Inc()
	}
	return fl.res, fl.err
}

// serve counts a hit and answers the token held in s.
func (c *Cache) serve(s *state) Result {
	c.m.hits.Inc()
	if s.err == nil {
		return Result{Token: s.token}
	}
	c.m.staleServed.Inc()
	return Result{Token: s.token, Stale: true, NextAttempt: s.next}
}

// leave records that a Get caller stopped waiting for fl. A fetch still
// queued for a slot that nobody waits for any more, and that is not a
// background or prefetch fetch, is abandoned: it never calls the Source.
func (c *Cache) leave(fl *flight) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-fl.done:
		return
	default:
	}
	fl.waiters--
	if fl.waiters == 0 && fl.queued && !fl.keep {
		c.abandonLocked(fl)
	}
}

// Prefetch fetches keys that hold no token in service, and keeps every one
// of them refreshed from now on, used or not. It returns when the fetches it
// started or joined have finished, or when ctx ends; the fetches go on
// regardless. Failures are not returned: Status reports them, and the keys
// are retried in the background with the usual backoff.
func (c *Cache) Prefetch(ctx context.Context, keys ...Key) {
	var wait []*flight
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	now := c.clock.Now()
	for _, key := range keys {
		e, held := c.lru.Peek(key)
		if !held {
			e = c.addLocked(key, now)
		}
		e.prefetch = true
		s := e.st.Load()
		switch {
		case e.flight != nil:
			e.flight.keep = true
			wait = append(wait, e.flight)
		case s.servable(now) && s.err == nil:
			// Warm; its refresh timer is running.
		case s.err != nil && now.Before(s.next):
			// Backing off; the retry timer will try again.
		default:
			wait = append(wait, c.startLocked(ctx, e, true))
		}
	}
	c.mu.Unlock()
	for _, fl := range wait {
		select {
		case <-fl.done:
		case <-ctx.Done():
			return
		}
	}
}

// Status reports what the cache holds for key. It does not count as a use
// and never calls upstream.
func (c *Cache) Status(key Key) Status {
	c.mu.Lock()
	e, ok := c.lru.Peek(key)
	c.mu.Unlock()
	if !ok {
		return Status{}
	}
	s := e.st.Load()
	servable := s.servable(c.clock.Now())
	return Status{
		Servable:    servable,
		ExpiresOn:   s.token.ExpiresOn,
		Stale:       servable && s.err != nil,
		Err:         s.err,
		NextAttempt: s.next,
	}
}

// Invalidate drops the token held for key if it is still accessToken (an
// upstream answered 401 to it), so that the next Get fetches a new one,
// shared among concurrent callers. It reports whether it dropped the token.
//
// A forced refresh costs an Entra request, and an upstream that refuses
// every token (a missing role assignment, a wrong audience) would otherwise
// turn every request into one, so Invalidate is rationed: it does nothing
// when the cache holds another token (a burst of 401s for one token causes
// one fetch), when the token was issued less than
// Options.ForcedRefreshInterval ago (a fresh token is no more likely to be
// accepted), or when the key's token was already dropped within that
// interval. A failure the key is backing off from is kept: the next Get then
// answers that error until the next attempt is due.
func (c *Cache) Invalidate(key Key, accessToken string) bool {
	if accessToken == "" {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.lru.Peek(key)
	if !ok || c.closed {
		return false
	}
	s := e.st.Load()
	if s.token.AccessToken != accessToken {
		c.m.invNotHeld.Inc()
		return false
	}
	now := c.clock.Now()
	if now.Sub(s.issued) < c.forcedEvery || (!e.forcedAt.IsZero() && now.Sub(e.forcedAt) < c.forcedEvery) {
		c.m.invRationed.Inc()
		c.log.Debug("token not invalidated: refreshed too recently", zap.String("scope", key.Scope),
			zap.String("tenant", key.Tenant), zap.String("client_id", key.ClientID),
			zap.Duration("token_age", now.Sub(s.issued)))
		return false
	}
	e.forcedAt = now
	e.st.Store(&state{err: s.err, next: s.next})
	c.m.invDropped.Inc()
	c.log.Info("token invalidated", zap.String("scope", key.Scope), zap.String("tenant", key.Tenant), zap.String("client_id", key.ClientID))
	return true
}

// Keys returns the keys the cache holds, oldest use first. It never calls
// upstream.
func (c *Cache) Keys() []Key {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Keys()
}

// Refresh fetches a fresh token for each of keys now, whatever their
// tokens' age, and returns when every fetch has finished, or when ctx ends.
// The token held stays in service meanwhile, and after a failed fetch too
// (as for a background refresh). A key whose fetch is already in flight
// joins it (single-flight), so concurrent Refresh calls cost one Entra
// request per key. Refresh is meant for an operator (a permission changed
// and the tokens should say so now): it spends no new-key budget and is not
// rationed like Invalidate.
//
// The answer has one error per key, in order: nil when the fetch
// succeeded, ErrNotHeld for a key the cache does not hold, the Source's
// error (wrapped in an *Error) when the fetch failed, or ctx's cause.
func (c *Cache) Refresh(ctx context.Context, keys ...Key) []error {
	errs := make([]error, len(keys))
	fls := make([]*flight, len(keys))
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		for i := range errs {
			errs[i] = ErrClosed
		}
		return errs
	}
	for i, key := range keys {
		e, held := c.lru.Peek(key)
		switch {
		case !held:
			errs[i] = ErrNotHeld
		case e.flight != nil:
			e.flight.keep = true
			fls[i] = e.flight
		default:
			fls[i] = c.startLocked(ctx, e, true)
		}
	}
	c.mu.Unlock()
	for i, fl := range fls {
		if fl == nil {
			continue
		}
		select {
		case <-fl.done:
		case <-ctx.Done():
			errs[i] = fmt.Errorf("cache: refreshing %s: %w", keys[i].Scope, context.Cause(ctx))
			continue
		}
		switch {
		case fl.err != nil:
			errs[i] = fl.err
		case fl.cause != nil:
			errs[i] = &Error{Scope: keys[i].Scope, NextAttempt: fl.res.NextAttempt, Err: fl.cause}
		}
	}
	return errs
}

// Close stops every timer, cancels the fetches in flight, waits for them to
// return and unregisters the metrics. Callers waiting on a fetch get its
// result (usually a cancellation error; ErrClosed for a fetch still waiting
// for a slot); later calls to Get return ErrClosed. Close is idempotent and
// always returns nil.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.cancel()
	for _, id := range c.identities {
		for _, fl := range id.queue {
			fl.e.flight = nil
			fl.err = ErrClosed
			close(fl.done)
		}
		id.queue = nil
	}
	c.m.queued.Set(0)
	c.lru.Purge()
	c.m.entries.Set(0)
	c.mu.Unlock()
	c.wg.Wait()
	if c.reg != nil {
		c.m.unregister(c.reg)
	}
	return nil
}

// addLocked adds an entry for key, which must be absent, evicting another
// when the cache is full. A new entry goes to the front of the LRU list.
func (c *Cache) addLocked(key Key, now time.Time) *entry {
	c.makeRoomLocked(now)
	e := &entry{key: key, ident: c.identityLocked(key), sm: c.acquireScopeLocked(key.Scope)}
	e.st.Store(noState)
	c.lru.Add(key, e)
	c.m.entries.Set(float64(c.lru.Len()))
	return e
}

// identityLocked returns the traffic state of key's identity, creating it
// with a full new-key budget.
func (c *Cache) identityLocked(key Key) *identity {
	ik := identityKey{key.Authority, key.Tenant, key.ClientID}
	id := c.identities[ik]
	if id == nil {
		id = &identity{tokens: c.budget.Burst, refill: c.clock.Now()}
		c.identities[ik] = id
	}
	return id
}

// makeRoomLocked evicts until a key can be added. First go the oldest keys
// that hold no token in service and are not prefetched (keys still being
// fetched for the first time, failing keys, expired ones), so that a flood
// of scopes that never succeed evicts only its own kind and never a
// working token. When every key holds a token in service, the least
// recently used key leaves, passing over prefetched keys (each moves to the
// front once; after a full turn the oldest key leaves regardless).
func (c *Cache) makeRoomLocked(now time.Time) {
	if c.lru.Len() < c.size {
		return
	}
	for _, e := range c.lru.Values() { // oldest first
		if c.lru.Len() < c.size {
			return
		}
		if !e.prefetch && !e.st.Load().servable(now) {
			c.lru.Remove(e.key)
		}
	}
	for scanned := 0; c.lru.Len() >= c.size; scanned++ {
		key, e, _ := c.lru.GetOldest()
		if scanned < c.size && e.prefetch {
			c.lru.Get(key)
			continue
		}
		c.lru.Remove(key)
	}
}

// evicted is the LRU's eviction callback, called with mu held for every key
// that leaves (evicted, idle, or purged by Close). A fetch in flight for the
// key finishes and answers its waiters, but schedules nothing.
func (c *Cache) evicted(key Key, e *entry) {
	e.removed = true
	c.stopTimerLocked(e)
	c.releaseScopeLocked(key.Scope)
	if !c.closed {
		c.m.entries.Set(float64(c.lru.Len()))
	}
	c.log.Debug("token cache entry removed", zap.String("scope", key.Scope), zap.String("tenant", key.Tenant), zap.String("client_id", key.ClientID))
}

func (c *Cache) acquireScopeLocked(scope string) *scopeMetrics {
	sm := c.scopes[scope]
	if sm == nil {
		sm = c.m.scope(scope)
		c.scopes[scope] = sm
	}
	sm.refs++
	return sm
}

func (c *Cache) releaseScopeLocked(scope string) {
	sm := c.scopes[scope]
	if sm == nil {
		return
	}
	if sm.refs--; sm.refs == 0 {
		delete(c.scopes, scope)
		c.m.deleteScope(scope)
	}
}

// startLocked starts an upstream fetch for e, replacing its timer: at once
// when its identity has a free slot, else queued for one. parent provides
// the fetch's values; its cancellation is ignored. keep marks a fetch that
// goes on when nobody waits for it.
func (c *Cache) startLocked(parent context.Context, e *entry, keep bool) *flight {
	c.stopTimerLocked(e)
	fl := &flight{done: make(chan struct{}), e: e, parent: parent, keep: keep}
	e.flight = fl
	e.lingering = false
	e.used.Store(false) // uses from now on count for the next refresh
	if id := e.ident; id.running < c.maxFetches {
		c.runLocked(fl)
	} else {
		fl.queued = true
		id.queue = append(id.queue, fl)
		c.m.queued.Inc()
	}
	return fl
}

// runLocked takes a slot of fl's identity and calls the Source.
func (c *Cache) runLocked(fl *flight) {
	fl.e.ident.running++
	c.m.inFlight.Inc()
	c.wg.Go(func() { c.fetch(fl) })
}

// runQueuedLocked gives the free slots of id to its queued fetches, oldest
// first. A queued fetch whose key has left the cache and that nobody waits
// for is dropped instead.
func (c *Cache) runQueuedLocked(id *identity) {
	for !c.closed && id.running < c.maxFetches && len(id.queue) > 0 {
		fl := id.queue[0]
		if fl.e.removed && fl.waiters == 0 {
			c.abandonLocked(fl)
			continue
		}
		id.queue[0] = nil
		id.queue = id.queue[1:]
		fl.queued = false
		c.m.queued.Dec()
		c.runLocked(fl)
	}
}

// abandonLocked drops fl, which is queued, without calling the Source: its
// waiters get errAbandoned, the new-key budget it spent is refunded, and its
// key is looked at as an idle timer would (so a key that never held
// anything leaves at once).
func (c *Cache) abandonLocked(fl *flight) {
	id := fl.e.ident
	if i := slices.Index(id.queue, fl); i >= 0 {
		id.queue = slices.Delete(id.queue, i, i+1)
	}
	fl.queued = false
	c.m.queued.Dec()
	c.m.abandoned.Inc()
	if fl.newKey {
		id.refundNewKey(c.budget)
	}
	e := fl.e
	e.flight = nil
	e.used.Store(false) // whoever used the key has given up
	fl.err = errAbandoned
	close(fl.done)
	if !e.removed {
		c.reviewLocked(e, c.clock.Now())
	}
}

// heldKey is the context key under which fetch passes the token held to
// the Source.
type heldKey struct{}

// Held returns the token the cache holds for the key a Source is asked to
// fetch on ctx (a refresh, or a retry after a failed refresh), and false
// when it holds none (a miss). The token is a secret: never log it.
func Held(ctx context.Context) (azure.Token, bool) {
	tok, ok := ctx.Value(heldKey{}).(azure.Token)
	return tok, ok
}

// fetch asks the Source on a context detached from the cancellation of the
// flight's parent, bounded by the fetch timeout and cancelled by Close,
// carrying the token held (see Held).
func (c *Cache) fetch(fl *flight) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(fl.parent), c.fetchTimeout)
	if s := fl.e.st.Load(); s.token.AccessToken != "" {
		ctx = context.WithValue(ctx, heldKey{}, s.token)
	}
	stop := context.AfterFunc(c.ctx, cancel)
	start := c.clock.Now()
	tok, err := c.src.Token(ctx, fl.e.key)
	stop()
	cancel()
	c.complete(fl.e, fl, tok, err, start)
}

// complete records a fetch's outcome, answers its waiters and schedules the
// key's next refresh or retry.
func (c *Cache) complete(e *entry, fl *flight, tok azure.Token, err error, start time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.ident.running--
	c.m.inFlight.Dec()
	defer c.runQueuedLocked(e.ident)
	now := c.clock.Now()
	c.m.fetchDuration.Observe(now.Sub(start).Seconds())
	var (
		ns    *state
		delay time.Duration
	)
	if err == nil && tok.AccessToken == "" {
		err = errEmptyToken
	}
	if err == nil {
		issued := issuedAt(tok, now)
		until := serveUntil(tok, issued, c.margin)
		if now.Before(until) {
			e.failures = 0
			e.succeeded = true
			ns = &state{token: tok, issued: issued, until: until}
			delay = refreshDelay(tok, issued, until, now, c.rand())
			e.sm.success.Inc()
			e.sm.expiry.Set(float64(tok.ExpiresOn.Unix()))
			e.sm.failures.Set(0)
			c.log.Debug("token fetched", zap.String("scope", e.key.Scope),
				zap.Time("expires_on", tok.ExpiresOn), zap.Duration("refresh_in", delay))
		} else {
			err = errExpiredOnArrival
		}
	}
	if err != nil {
		e.failures++
		var permanent bool
		delay, permanent = retryDelay(err, e.failures, c.negativeTTL, c.rand())
		ns = &state{err: err, next: now.Add(delay)}
		if old := e.st.Load(); old.servable(now) {
			ns.token, ns.issued, ns.until = old.token, old.issued, old.until
		}
		if permanent {
			e.sm.permanent.Inc()
		} else {
			e.sm.transient.Inc()
		}
		e.sm.failures.Set(float64(e.failures))
		level := zap.WarnLevel
		switch {
		case c.closed:
			level = zap.DebugLevel
		case !c.warnLocked(e.key, now):
			level = zap.DebugLevel
			c.m.warningsSuppressed.Inc()
		}
		c.log.Log(level, "token fetch failed", zap.String("scope", e.key.Scope),
			zap.String("tenant", e.key.Tenant), zap.String("client_id", e.key.ClientID),
			zap.Error(err), zap.Bool("permanent", permanent), zap.Bool("stale", ns.servable(now)),
			zap.Int("consecutive_failures", e.failures), zap.Time("next_attempt", ns.next))
	}
	e.st.Store(ns)
	fl.cause = err
	if ns.servable(now) {
		fl.res = Result{Token: ns.token, Stale: ns.err != nil, NextAttempt: ns.next}
	} else {
		fl.err = &Error{Scope: e.key.Scope, NextAttempt: ns.next, Err: err}
	}
	e.flight = nil
	close(fl.done)
	if !c.closed && !e.removed {
		c.scheduleLocked(e, delay)
	}
}

// scheduleLocked replaces e's timer with a tick after d.
func (c *Cache) scheduleLocked(e *entry, d time.Duration) {
	c.stopTimerLocked(e)
	gen := e.gen
	e.timer = c.clock.AfterFunc(d, func() { c.tick(e, gen) })
}

// stopTimerLocked stops e's timer; a tick already waiting for mu sees the
// bumped generation and does nothing.
func (c *Cache) stopTimerLocked(e *entry) {
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
	e.gen++
}

// tick runs when a key's refresh, retry or idle check is due: a used or
// prefetched key is fetched; an idle key is looked at again when its token
// leaves service (or, while its refresh is failing, after the current
// backoff), and leaves the cache when it holds no token in service: at
// once after a success, or after five more idle minutes after a failure.
func (c *Cache) tick(e *entry, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || e.removed || e.gen != gen {
		return
	}
	e.timer = nil
	c.reviewLocked(e, c.clock.Now())
}

// reviewLocked is the body of tick, for an entry with no timer and no
// fetch in flight.
func (c *Cache) reviewLocked(e *entry, now time.Time) {
	s := e.st.Load()
	switch {
	case e.prefetch || e.used.Load():
		c.startLocked(c.ctx, e, true)
	case s.servable(now) && s.err != nil:
		// Stale but idle: no upstream call, but keep the retry cadence, so
		// that a use soon leads to an attempt soon, and keep NextAttempt
		// truthful.
		wait, _ := retryDelay(s.err, e.failures, c.negativeTTL, c.rand())
		next := minTime(now.Add(wait), s.until)
		e.st.Store(&state{token: s.token, issued: s.issued, until: s.until, err: s.err, next: next})
		c.scheduleLocked(e, next.Sub(now))
	case s.servable(now):
		c.scheduleLocked(e, s.until.Sub(now))
	case s.err != nil && !e.lingering:
		// Failed, idle, nothing to serve: keep the failure count for a
		// while, so that a caller polling slower than the backoff still
		// sees the backoff grow instead of restarting at 1 s.
		e.lingering = true
		c.scheduleLocked(e, maxBackoff)
	default:
		c.lru.Remove(e.key)
	}
}

// warnLocked reports whether a fetch failure of key may be logged at Warn
// now: at most once per warnInterval per key. The record of a key is
// forgotten once warnInterval has passed and the record has grown past
// the cache's size, so it stays bounded by the failures of one interval.
func (c *Cache) warnLocked(key Key, now time.Time) bool {
	if last, ok := c.warned[key]; ok && now.Sub(last) < warnInterval {
		return false
	}
	if len(c.warned) >= c.size {
		for k, last := range c.warned {
			if now.Sub(last) >= warnInterval {
				delete(c.warned, k)
			}
		}
	}
	c.warned[key] = now
	return true
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
