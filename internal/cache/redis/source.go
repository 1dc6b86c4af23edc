package redis

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/zap"

	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/cache"
)

// Defaults of Options.
const (
	// DefaultOpTimeout bounds one Redis call. Redis answers a GET or SET in
	// well under a millisecond on a healthy network; 50 ms leaves room for a
	// busy one while keeping a slow Redis from delaying a token fetch by
	// more than a few tens of milliseconds before the breaker opens.
	DefaultOpTimeout = 50 * time.Millisecond
	// DefaultLeaseTTL is how long a refresh lease lives when its holder
	// never releases it (it crashed): longer than an Entra token request
	// takes, short enough that a dead holder stalls nobody for long (the
	// others stop waiting after DefaultWait anyway).
	DefaultLeaseTTL = 10 * time.Second
	// DefaultWait is how long a broker that lost the lease waits for the
	// holder's token before it asks Entra itself: an Entra token request
	// usually takes 100 to 500 ms.
	DefaultWait = 3 * time.Second
	// DefaultPollInterval is how often a waiting broker looks for the
	// holder's token.
	DefaultPollInterval = 50 * time.Millisecond

	// breakerThreshold consecutive failed calls open the breaker, for
	// breakerCooldown at first, doubling with each failed probe up to
	// breakerMaxCooldown.
	breakerThreshold   = 3
	breakerCooldown    = time.Second
	breakerMaxCooldown = 30 * time.Second
	// maxLoggedKeyIDs bounds the key IDs whose decryption failure was
	// logged: IDs come from Redis, which anyone with access can write.
	maxLoggedKeyIDs = 64
)

// Options configures a Source. URL and Keys are required.
type Options struct {
	// URL is the Redis server: redis://[user:password@]host[:port][/db],
	// rediss:// (TLS) or unix://[user:password@]/path/to/socket[?db=N].
	// The timeouts and retries of the URL's query are replaced by the
	// Source's own.
	URL string
	// CAFile is a PEM file of the certificate authorities that sign the
	// server's certificate, for rediss://; empty means the system's.
	CAFile string
	// Keys encrypt the entries and name them (see ParseKeys).
	Keys *Keys
	// Margin is the cache's Options.Margin (0: cache.DefaultMargin): an
	// entry is taken only while the cache would serve it.
	Margin time.Duration
	// OpTimeout bounds each Redis call; 0 means DefaultOpTimeout.
	OpTimeout time.Duration
	// LeaseTTL, Wait and PollInterval shape the refresh lease; 0 means
	// DefaultLeaseTTL, DefaultWait and DefaultPollInterval.
	LeaseTTL, Wait, PollInterval time.Duration
	// Now tells the time for the margin and the breaker; nil means
	// time.Now.
	Now func() time.Time
	// Registerer receives the metrics; nil means none. Close unregisters
	// them.
	Registerer prometheus.Registerer
	// Logger receives Redis failures and undecryptable entries; nil means
	// no logging. Tokens are never logged.
	Logger *zap.Logger
}

// Source is a cache.Source that shares tokens through Redis: it answers a
// usable token from Redis when one is there, else takes the key's refresh
// lease and fetches from the Source it wraps, storing the token for the
// other brokers. It is safe for concurrent use; Close it when done.
type Source struct {
	src                       cache.Source
	rdb                       *goredis.Client
	keys                      *Keys
	margin                    time.Duration
	opTimeout, leaseTTL, wait time.Duration
	poll                      time.Duration
	now                       func() time.Time
	br                        *breaker
	m                         *metrics
	reg                       prometheus.Registerer
	log                       *zap.Logger

	mu     sync.Mutex
	logged map[string]bool // key IDs whose undecryptable entries were logged
}

// release deletes the lease only if it still holds this broker's fencing
// token: a lease that expired and was taken by another broker is left alone.
var release = goredis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`)

// New returns a Source that wraps src with the Redis at opts.URL. It does
// not connect: Redis may be down at start, and the broker works without it.
func New(src cache.Source, opts Options) (*Source, error) {
	if src == nil {
		return nil, errors.New("redis: source is nil")
	}
	if opts.Keys == nil {
		return nil, errors.New("redis: no keys")
	}
	ro, err := clientOptions(opts.URL, opts.CAFile)
	if err != nil {
		return nil, err
	}
	s := &Source{
		src:       src,
		keys:      opts.Keys,
		margin:    opts.Margin,
		opTimeout: or(opts.OpTimeout, DefaultOpTimeout),
		leaseTTL:  or(opts.LeaseTTL, DefaultLeaseTTL),
		wait:      or(opts.Wait, DefaultWait),
		poll:      or(opts.PollInterval, DefaultPollInterval),
		now:       opts.Now,
		m:         newMetrics(),
		reg:       opts.Registerer,
		log:       opts.Logger,
		logged:    map[string]bool{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.log = s.log.Named("redis")
	s.br = newBreaker(s.now, breakerThreshold, breakerCooldown, breakerMaxCooldown, func(st breakerState) {
		s.m.breaker.Set(float64(st))
		switch st {
		case open:
			s.log.Warn("redis is failing: going on without it for a while")
		case closed:
			s.log.Info("redis answers again")
		}
	})
	// Every call carries its own deadline (OpTimeout); the socket timeouts
	// are the same, so a stuck connection never outlives a call.
	ro.DialTimeout = s.opTimeout
	ro.ReadTimeout = s.opTimeout
	ro.WriteTimeout = s.opTimeout
	ro.PoolTimeout = s.opTimeout
	ro.ContextTimeoutEnabled = true
	// No retries: a failed call is a miss, and the breaker decides when to
	// try Redis again.
	ro.MaxRetries = -1
	ro.DialerRetries = 1
	// The broker needs no server push; a Redis older than 7.2 would refuse
	// these handshakes anyway.
	ro.DisableIdentity = true
	ro.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	quietOnce.Do(func() { goredis.SetLogger(quiet{}) })
	s.rdb = goredis.NewClient(ro)
	if s.reg != nil {
		if err := s.m.register(s.reg); err != nil {
			_ = s.rdb.Close()
			return nil, fmt.Errorf("redis: register metrics: %w", err)
		}
	}
	return s, nil
}

// clientOptions parses a Redis URL and applies the CA file. Errors never
// repeat the URL, which may hold a password.
func clientOptions(rawURL, caFile string) (*goredis.Options, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("redis: the URL does not parse: use redis://host:6379, rediss://host:6380 or unix:///path/to/redis.sock")
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
	default:
		return nil, fmt.Errorf("redis: URL scheme %q: use redis://, rediss:// or unix://", u.Scheme)
	}
	ro, err := goredis.ParseURL(rawURL)
	if err != nil {
		return nil, errors.New("redis: the URL does not parse: use redis://host:6379, rediss://host:6380 or unix:///path/to/redis.sock")
	}
	if caFile != "" {
		if ro.TLSConfig == nil {
			return nil, errors.New("redis: a CA file is set but the URL is not rediss://")
		}
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("redis: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis: CA file %s holds no PEM certificate", caFile)
		}
		ro.TLSConfig.RootCAs = pool
	}
	if ro.TLSConfig != nil {
		ro.TLSConfig.MinVersion = tls.VersionTLS12
	}
	return ro, nil
}

func or(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// Close closes the connections to Redis and unregisters the metrics.
func (s *Source) Close() error {
	if s.reg != nil {
		s.m.unregister(s.reg)
	}
	return s.rdb.Close()
}

// Token answers a token for key: a usable one from Redis (on a refresh,
// only one newer than the token the cache holds), else one fetched from
// the wrapped Source by whichever broker wins the key's lease, while the
// others wait for it on Redis for a bounded time. Any Redis failure makes
// this fetch go on as if there were no Redis.
func (s *Source) Token(ctx context.Context, key cache.Key) (azure.Token, error) {
	held, refresh := cache.Held(ctx)
	usable := func(t azure.Token) bool {
		return cache.Usable(t, s.margin, s.now()) && (!refresh || t.ExpiresOn.After(held.ExpiresOn))
	}
	tok, ok, err := s.lookup(ctx, key, usable, true)
	switch {
	case err != nil:
		return s.src.Token(ctx, key)
	case ok:
		s.m.lookups.WithLabelValues("hit").Inc()
		return tok, nil
	}
	s.m.lookups.WithLabelValues("miss").Inc()

	lease := s.keys.leaseName(key)
	fence := newFence()
	maxPolls := int(s.wait / s.poll)
	for polls := maxPolls; ; polls-- {
		won, err := s.acquire(ctx, lease, fence)
		if err != nil {
			return s.src.Token(ctx, key)
		}
		if won {
			defer s.release(ctx, lease, fence)
			// The previous holder may have stored its token between the
			// lookup and the lease.
			if tok, ok, err := s.lookup(ctx, key, usable, false); err == nil && ok {
				s.m.leases.WithLabelValues("waited").Inc()
				return tok, nil
			}
			s.m.leases.WithLabelValues("won").Inc()
			return s.fetch(ctx, key)
		}
		if polls == maxPolls {
			s.m.leases.WithLabelValues("lost").Inc()
		}
		if polls <= 0 {
			s.m.leases.WithLabelValues("timeout").Inc()
			return s.fetch(ctx, key)
		}
		t := time.NewTimer(s.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return azure.Token{}, fmt.Errorf("redis: waiting for another broker's token: %w", context.Cause(ctx))
		case <-t.C:
		}
		tok, ok, err := s.lookup(ctx, key, usable, false)
		switch {
		case err != nil:
			return s.src.Token(ctx, key)
		case ok:
			s.m.leases.WithLabelValues("waited").Inc()
			return tok, nil
		}
	}
}

// fetch asks the wrapped Source and stores a token it answers.
func (s *Source) fetch(ctx context.Context, key cache.Key) (azure.Token, error) {
	tok, err := s.src.Token(ctx, key)
	if err == nil {
		s.store(ctx, key, tok)
	}
	return tok, err
}

// lookup reads key's entries (one per key of the key file, in one MGET)
// and returns the first that decrypts and is usable.
// Only the first lookup of a fetch counts undecryptable entries.
func (s *Source) lookup(ctx context.Context, key cache.Key, usable func(azure.Token) bool, first bool) (azure.Token, bool, error) {
	var vals []any
	err := s.call(ctx, opGet, func(ctx context.Context) (err error) {
		vals, err = s.rdb.MGet(ctx, s.keys.names(key)...).Result()
		return err
	})
	if err != nil {
		return azure.Token{}, false, err
	}
	for _, v := range vals {
		b, ok := v.(string)
		if !ok {
			continue
		}
		tok, id, err := s.keys.open(key, []byte(b))
		if err != nil {
			if first {
				s.m.lookups.WithLabelValues("undecryptable").Inc()
				s.logUndecryptable(id, err)
			}
			continue
		}
		if usable(tok) {
			return tok, true, nil
		}
	}
	return azure.Token{}, false, nil
}

// logUndecryptable logs an entry that does not decrypt, once per key ID.
func (s *Source) logUndecryptable(id string, err error) {
	s.mu.Lock()
	first := !s.logged[id] && len(s.logged) < maxLoggedKeyIDs
	if first {
		s.logged[id] = true
	}
	s.mu.Unlock()
	if first {
		s.log.Warn("a Redis entry does not decrypt with the key file: treated as a miss (logged once per key ID); "+
			"the fleet's brokers need the same key file, see the README's Fleets section",
			zap.String("key_id", id), zap.Strings("key_file_ids", s.keys.IDs()), zap.String("reason", err.Error()))
	}
}

// store writes tok as key's entry, to expire with the token.
func (s *Source) store(ctx context.Context, key cache.Key, tok azure.Token) {
	now := s.now()
	ttl := tok.ExpiresOn.Sub(now)
	if ttl <= 0 || tok.AccessToken == "" {
		return
	}
	if tok.IssuedAt.IsZero() {
		// Every broker must compute the same margin: the cache takes a
		// token without IssuedAt as issued when it arrives.
		tok.IssuedAt = now
	}
	b, err := s.keys.seal(key, tok)
	if err != nil {
		s.log.Warn("redis: cannot encrypt an entry", zap.Error(err))
		return
	}
	_ = s.call(ctx, opSet, func(ctx context.Context) error {
		return s.rdb.Set(ctx, s.keys.names(key)[0], b, ttl).Err()
	})
}

// acquire tries to take the lease with this fetch's fencing token.
func (s *Source) acquire(ctx context.Context, lease, fence string) (bool, error) {
	var won bool
	err := s.call(ctx, opLease, func(ctx context.Context) (err error) {
		won, err = s.rdb.SetNX(ctx, lease, fence, s.leaseTTL).Result()
		return err
	})
	return won, err
}

// release gives the lease back, on a context of its own: the fetch's may
// have ended.
func (s *Source) release(ctx context.Context, lease, fence string) {
	_ = s.call(context.WithoutCancel(ctx), opRelease, func(ctx context.Context) error {
		return release.Run(ctx, s.rdb, []string{lease}, fence).Err()
	})
}

// quiet discards the client library's own log lines (dial failures of its
// pool, to stderr): the Source logs and counts every failed call itself.
// The logger is the library's global; the broker has no other Redis
// client.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

var quietOnce sync.Once

// errBreakerOpen is the error of a call the open breaker refused.
var errBreakerOpen = errors.New("redis: circuit breaker open")

// call runs one Redis operation within the breaker and OpTimeout. A nil
// reply (a missing key) is no failure.
func (s *Source) call(ctx context.Context, op string, f func(context.Context) error) error {
	if !s.br.allow() {
		return errBreakerOpen
	}
	cctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	err := f(cctx)
	cancel()
	if errors.Is(err, goredis.Nil) {
		err = nil
	}
	if err != nil && ctx.Err() != nil {
		// The fetch itself ended: not Redis's fault.
		s.br.done(true)
		return err
	}
	s.br.done(err == nil)
	if err != nil {
		s.m.errors.WithLabelValues(op).Inc()
		s.log.Debug("redis call failed", zap.String("op", op), zap.Error(err))
	}
	return err
}

// newFence returns a random fencing token for a lease.
func newFence() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
