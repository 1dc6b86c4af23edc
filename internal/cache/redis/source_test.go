package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/cache"
	"github.com/entrabroker/broker/internal/cache/redis/redistest"
)

var scopes = []string{
	"https://api.loganalytics.io/.default",
	"https://management.azure.com/.default",
	"https://storage.azure.com/.default",
}

// TestSecondLevelHit: a token one broker fetched is served to another from
// Redis, without an upstream call.
func TestSecondLevelHit(t *testing.T) {
	t.Parallel()
	srv := redistest.New(t)
	clk := newClock()
	keys := keyLine(t, "k1")
	up := newUpstream(clk.Now)
	a := newBroker(t, srv.UnixURL(), keys, up, clk.Now)
	b := newBroker(t, srv.URL(), keys, up, clk.Now)
	ctx := context.Background()

	ta, err := a.src.Token(ctx, testKey)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := b.src.Token(ctx, testKey)
	if err != nil {
		t.Fatal(err)
	}
	if tb.AccessToken != ta.AccessToken || !tb.ExpiresOn.Equal(ta.ExpiresOn) {
		t.Errorf("broker b got %v, want broker a's token %v", tb, ta)
	}
	if n := up.total(); n != 1 {
		t.Errorf("upstream calls = %d, want 1", n)
	}
	if got := b.counter("lookups", "hit"); got != 1 {
		t.Errorf("b: lookups{hit} = %v, want 1", got)
	}
	if got := a.counter("leases", "won"); got != 1 {
		t.Errorf("a: leases{won} = %v, want 1", got)
	}
	// A token within its margin is not taken: the cache would refuse it.
	clk.Advance(56 * time.Minute)
	if _, err := b.src.Token(ctx, testKey); err != nil {
		t.Fatal(err)
	}
	if n := up.total(); n != 2 {
		t.Errorf("upstream calls after the margin = %d, want 2", n)
	}
}

// TestColdStartOneFetchPerScope: many brokers asking for the same scopes
// at once cause one upstream call per scope; the others wait on Redis.
func TestColdStartOneFetchPerScope(t *testing.T) {
	t.Parallel()
	srv := redistest.New(t)
	clk := newClock()
	keys := keyLine(t, "k1")
	up := newUpstream(clk.Now)
	gate := make(chan struct{})
	up.gate = gate
	const n = 8
	var brokers []*broker
	for range n {
		brokers = append(brokers, newBroker(t, srv.UnixURL(), keys, up, clk.Now))
	}
	var wg sync.WaitGroup
	errs := make(chan error, n*len(scopes))
	for _, b := range brokers {
		for _, sc := range scopes {
			wg.Go(func() {
				if _, err := b.src.Token(context.Background(), keyOf(sc)); err != nil {
					errs <- err
				}
			})
		}
	}
	eventually(t, "every broker has tried the lease", func() bool {
		var tried float64
		for _, b := range brokers {
			tried += b.counter("leases", "won") + b.counter("leases", "lost")
		}
		return tried == n*float64(len(scopes))
	})
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var won, waited float64
	for _, b := range brokers {
		won += b.counter("leases", "won")
		waited += b.counter("leases", "waited")
	}
	for _, sc := range scopes {
		if got := up.count(sc); got != 1 {
			t.Errorf("upstream calls for %s = %d, want 1", sc, got)
		}
	}
	if won != float64(len(scopes)) || waited != float64((n-1)*len(scopes)) {
		t.Errorf("leases won %v, waited %v; want %d and %d", won, waited, len(scopes), (n-1)*len(scopes))
	}
}

// TestRefreshFindsNewerToken: behind real caches, the broker whose
// jittered refresh comes first asks upstream; the later one finds the new
// token in Redis; a token equal to the one held is not taken for new.
func TestRefreshFindsNewerToken(t *testing.T) {
	t.Parallel()
	srv := redistest.New(t)
	clk := newClock()
	keys := keyLine(t, "k1")
	up := newUpstream(clk.Now)
	early := newCache(t, newBroker(t, srv.URL(), keys, up, clk.Now).src, clk, 0)   // refreshes at 27 min
	late := newCache(t, newBroker(t, srv.URL(), keys, up, clk.Now).src, clk, 0.99) // at about 33 min
	ctx := context.Background()

	r1, err := early.Get(ctx, testKey)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := late.Get(ctx, testKey)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Token.AccessToken != r1.Token.AccessToken || up.total() != 1 {
		t.Fatalf("late broker: %v after %d upstream calls, want the early broker's token after 1", r2.Token, up.total())
	}
	// A fetch answers its callers before it schedules the refresh.
	eventually(t, "both refreshes are scheduled", func() bool { return clk.pending() == 2 })
	// Used since their fetch: both keys are worth refreshing.
	for _, c := range []*cache.Cache{early, late} {
		if _, err := c.Get(ctx, testKey); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(28 * time.Minute)
	eventually(t, "the early broker refreshed", func() bool { return early.Status(testKey).ExpiresOn.After(r1.Token.ExpiresOn) })
	if n := up.total(); n != 2 {
		t.Fatalf("upstream calls after the early refresh = %d, want 2 (the token in Redis equals the one held)", n)
	}
	eventually(t, "the early broker's next refresh is scheduled", func() bool { return clk.pending() == 2 })
	clk.Advance(6 * time.Minute)
	want := early.Status(testKey).ExpiresOn
	eventually(t, "the late broker refreshed", func() bool { return !late.Status(testKey).ExpiresOn.Equal(r1.Token.ExpiresOn) })
	if got := late.Status(testKey).ExpiresOn; !got.Equal(want) {
		t.Errorf("late broker's token expires on %v, want the early broker's new token (%v)", got, want)
	}
	if n := up.total(); n != 2 {
		t.Errorf("upstream calls after the late refresh = %d, want still 2", n)
	}
}

// TestSurvivesRedis: Redis killed, paused and flushed — every fetch still
// answers a token, from upstream when Redis cannot help, and a killed
// Redis skips Redis (the breaker) rather than waiting for it.
func TestSurvivesRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.New(t)
	clk := newClock()
	up := newUpstream(clk.Now)
	b := newBrokerTimeout(t, srv.URL(), keyLine(t, "k1"), up, clk.Now, 0)
	ctx := context.Background()
	fetchAll := func(what string) {
		t.Helper()
		start := time.Now()
		for i := range 10 {
			if _, err := b.src.Token(ctx, keyOf(fmt.Sprintf("api://app-%d/.default", i))); err != nil {
				t.Fatalf("%s: fetch %d: %v", what, i, err)
			}
		}
		// Each call is bounded by its 50 ms timeout and the breaker opens
		// after three: ten fetches never wait for Redis for long.
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: ten fetches took %v", what, d)
		}
	}
	fetchAll("healthy")

	srv.Kill()
	fetchAll("killed")
	if b.counter("errors", opGet) == 0 || b.src.br.current() != open {
		t.Errorf("killed: errors{get} = %v, breaker %d; want errors and an open breaker", b.counter("errors", opGet), b.src.br.current())
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(breakerCooldown)
	fetchAll("restarted")
	if st := b.src.br.current(); st != closed {
		t.Errorf("after a restart and the cooldown: breaker %d, want closed", st)
	}

	if err := srv.Client.Do(ctx, "CLIENT", "PAUSE", "1000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	fetchAll("client pause")
	if err := srv.Client.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(breakerMaxCooldown)

	slept := make(chan error, 1)
	go func() { slept <- srv.Client.Do(context.Background(), "DEBUG", "SLEEP", "0.5").Err() }()
	eventually(t, "redis is asleep", func() bool {
		return b.src.rdb.Ping(ctx).Err() != nil
	})
	fetchAll("debug sleep")
	if err := <-slept; err != nil {
		t.Fatal(err)
	}
	clk.Advance(breakerMaxCooldown)

	before := up.total()
	if err := srv.Client.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	fetchAll("flushed")
	if up.total() != before+10 {
		t.Errorf("after FLUSHALL: %d upstream calls, want 10", up.total()-before)
	}
}

// TestUnderLoadRedisFails: three cached brokers under concurrent load
// across refreshes while Redis is killed, restarted, paused and flushed:
// no request fails.
func TestUnderLoadRedisFails(t *testing.T) {
	t.Parallel()
	srv := redistest.New(t)
	clk := newClock()
	keys := keyLine(t, "k1")
	up := newUpstream(clk.Now)
	up.lifetime = 10 * time.Minute
	var caches []*cache.Cache
	for i := range 3 {
		caches = append(caches, newCache(t, newBroker(t, srv.URL(), keys, up, clk.Now).src, clk, float64(i)/3))
	}
	events := map[int]func(){
		3:  srv.Kill,
		6:  func() { _ = srv.Restart() },
		9:  func() { _ = srv.Client.Do(context.Background(), "CLIENT", "PAUSE", "300", "ALL").Err() },
		12: func() { _ = srv.Client.FlushAll(context.Background()).Err() },
	}
	for step := range 16 {
		if ev := events[step]; ev != nil {
			ev()
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var failed []error
		for _, c := range caches {
			for _, sc := range scopes {
				wg.Go(func() {
					for range 20 {
						if _, err := c.Get(context.Background(), keyOf(sc)); err != nil {
							mu.Lock()
							failed = append(failed, err)
							mu.Unlock()
						}
					}
				})
			}
		}
		wg.Wait()
		if len(failed) > 0 {
			t.Fatalf("step %d: %d requests failed, first: %v", step, len(failed), failed[0])
		}
		clk.Advance(time.Minute)
	}
}

// TestRedisHoldsNothingInTheClear scans every key and value after a run.
func TestRedisHoldsNothingInTheClear(t *testing.T) {
	t.Parallel()
	srv := redistest.New(t)
	clk := newClock()
	up := newUpstream(clk.Now)
	keys := keyLine(t, "fleet-2026")
	a := newBroker(t, srv.URL(), keys, up, clk.Now)
	b := newBroker(t, srv.URL(), keys, up, clk.Now)
	var tokens []string
	for _, sc := range scopes {
		for _, br := range []*broker{a, b} {
			tok, err := br.src.Token(context.Background(), keyOf(sc))
			if err != nil {
				t.Fatal(err)
			}
			tokens = append(tokens, tok.AccessToken)
		}
	}
	// Hold a lease, so that lease keys are scanned too.
	if won, err := a.src.acquire(context.Background(), a.src.keys.leaseName(testKey), newFence()); err != nil || !won {
		t.Fatalf("acquire = %v, %v", won, err)
	}
	dump, err := srv.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(dump) != len(scopes)+1 {
		t.Errorf("Redis holds %d keys, want %d entries and a lease", len(dump), len(scopes)+1)
	}
	forbidden := append(tokens, "secret-token", "eyJ", testKey.Tenant, testKey.ClientID, testKey.Authority,
		"login.example", "loganalytics", "management", "storage", ".default")
	for k, v := range dump {
		for _, f := range forbidden {
			if strings.Contains(k, f) || strings.Contains(v, f) {
				t.Errorf("Redis key %q (or its value) holds %q in the clear", k, f)
			}
		}
	}
}

// TestWrongKeyFile: a broker with another key file never gets the fleet's
// tokens, only misses; an entry under a key ID it does not know is logged
// once per key ID.
func TestWrongKeyFile(t *testing.T) {
	t.Parallel()
	srv := redistest.New(t)
	clk := newClock()
	up := newUpstream(clk.Now)
	line := keyLine(t, "k1")
	a := newBroker(t, srv.URL(), line, up, clk.Now)
	ta, err := a.src.Token(context.Background(), testKey)
	if err != nil {
		t.Fatal(err)
	}

	other := newBroker(t, srv.URL(), keyLine(t, "k1"), up, clk.Now)
	to, err := other.src.Token(context.Background(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	if to.AccessToken == ta.AccessToken {
		t.Error("a broker with another key got the fleet's token")
	}

	// The same key bytes under another ID: the entry's name matches but its
	// key ID is unknown.
	renamed := newBroker(t, srv.URL(), strings.Replace(line, "k1", "k9", 1), up, clk.Now)
	for range 3 {
		tr, err := renamed.src.Token(context.Background(), testKey)
		if err != nil {
			t.Fatal(err)
		}
		if tr.AccessToken == ta.AccessToken {
			t.Fatal("a broker without the entry's key ID got its token")
		}
		// Its own token must not be found next time: put a's entry back.
		if _, err := a.src.rdb.Del(context.Background(), renamed.src.keys.names(testKey)[0]).Result(); err != nil {
			t.Fatal(err)
		}
		a.src.store(context.Background(), testKey, ta)
	}
	if got := renamed.counter("lookups", "undecryptable"); got != 3 {
		t.Errorf("lookups{undecryptable} = %v, want 3", got)
	}
	if n := renamed.logs.FilterMessageSnippet("does not decrypt").Len(); n != 1 {
		t.Errorf("undecryptable entries logged %d times, want once per key ID", n)
	}
	for _, e := range renamed.logs.All() {
		for _, f := range e.Context {
			if strings.Contains(f.String, "secret-token") {
				t.Errorf("log line %q holds a token", e.Message)
			}
		}
	}
}

// TestTamperedAndReplayedEntries: an entry changed in Redis, or copied to
// another key's name, is a miss, never a wrong token.
func TestTamperedAndReplayedEntries(t *testing.T) {
	t.Parallel()
	srv := redistest.New(t)
	clk := newClock()
	up := newUpstream(clk.Now)
	keys := keyLine(t, "k1")
	a := newBroker(t, srv.URL(), keys, up, clk.Now)
	b := newBroker(t, srv.URL(), keys, up, clk.Now)
	ctx := context.Background()
	ka, kb := keyOf(scopes[0]), keyOf(scopes[1])
	ta, err := a.src.Token(ctx, ka)
	if err != nil {
		t.Fatal(err)
	}
	nameA, nameB := a.src.keys.names(ka)[0], a.src.keys.names(kb)[0]
	entry, err := srv.Client.Get(ctx, nameA).Bytes()
	if err != nil {
		t.Fatal(err)
	}

	// Replayed under another cache key.
	if err := srv.Client.Set(ctx, nameB, entry, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	tb, err := b.src.Token(ctx, kb)
	if err != nil {
		t.Fatal(err)
	}
	if tb.AccessToken == ta.AccessToken {
		t.Error("an entry copied to another cache key's name was served")
	}

	// Tampered: the last byte of the ciphertext flipped.
	entry[len(entry)-1] ^= 1
	if err := srv.Client.Set(ctx, nameA, entry, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	tt, err := b.src.Token(ctx, ka)
	if err != nil {
		t.Fatal(err)
	}
	if tt.AccessToken == ta.AccessToken {
		t.Error("a tampered entry was served")
	}
	if got := b.counter("lookups", "undecryptable"); got != 2 {
		t.Errorf("lookups{undecryptable} = %v, want 2", got)
	}
}

// TestUpstreamErrorPassesThrough: the wrapped Source's error reaches the
// cache unchanged, and the lease is released for the next broker.
func TestUpstreamErrorPassesThrough(t *testing.T) {
	t.Parallel()
	srv := redistest.New(t)
	clk := newClock()
	up := newUpstream(clk.Now)
	up.err = &azure.Error{Op: "token", StatusCode: 503, Transient: true}
	b := newBroker(t, srv.URL(), keyLine(t, "k1"), up, clk.Now)
	_, err := b.src.Token(context.Background(), testKey)
	var ae *azure.Error
	if !errors.As(err, &ae) || ae.StatusCode != 503 {
		t.Fatalf("Token error = %v, want the upstream's *azure.Error", err)
	}
	if n, err := srv.Client.Exists(context.Background(), b.src.keys.leaseName(testKey)).Result(); err != nil || n != 0 {
		t.Errorf("the lease is still held after the fetch (exists = %d, %v)", n, err)
	}
}

// TestReleaseIsFenced: a holder whose lease expired and passed to another
// broker does not delete the other's lease.
func TestReleaseIsFenced(t *testing.T) {
	t.Parallel()
	srv := redistest.New(t)
	clk := newClock()
	b := newBroker(t, srv.URL(), keyLine(t, "k1"), newUpstream(clk.Now), clk.Now)
	ctx := context.Background()
	lease := b.src.keys.leaseName(testKey)
	if err := srv.Client.Set(ctx, lease, "someone-else", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	b.src.release(ctx, lease, newFence())
	if v, err := srv.Client.Get(ctx, lease).Result(); err != nil || v != "someone-else" {
		t.Errorf("lease after a stale release = %q, %v; want the other holder's", v, err)
	}
}

func TestClientOptions(t *testing.T) {
	t.Parallel()
	ca := writeKeyFile(t, "not a certificate")
	tests := []struct {
		name, url, ca, wantErr string
		check                  func(t *testing.T, o *goredisOptions)
	}{
		{name: "tcp with user and password", url: "redis://broker:s3cret@redis.example:6380/2",
			check: func(t *testing.T, o *goredisOptions) {
				if o.Addr != "redis.example:6380" || o.Username != "broker" || o.Password != "s3cret" || o.DB != 2 || o.TLSConfig != nil {
					t.Errorf("options = %s %s %d tls=%v", o.Addr, o.Username, o.DB, o.TLSConfig != nil)
				}
			}},
		{name: "tls", url: "rediss://:pw@redis.example:6380",
			check: func(t *testing.T, o *goredisOptions) {
				if o.TLSConfig == nil || o.TLSConfig.ServerName != "redis.example" || o.Password != "pw" {
					t.Errorf("rediss:// options: tls=%v password %q", o.TLSConfig, o.Password)
				}
			}},
		{name: "unix", url: "unix://:pw@/run/redis/redis.sock?db=1",
			check: func(t *testing.T, o *goredisOptions) {
				if o.Network != "unix" || o.Addr != "/run/redis/redis.sock" || o.DB != 1 || o.Password != "pw" {
					t.Errorf("unix:// options = %s %s %d", o.Network, o.Addr, o.DB)
				}
			}},
		{name: "bad scheme", url: "http://redis:6379", wantErr: `redis: URL scheme "http": use redis://, rediss:// or unix://`},
		{name: "ca without tls", url: "redis://r:6379", ca: ca, wantErr: "redis: a CA file is set but the URL is not rediss://"},
		{name: "ca not pem", url: "rediss://r:6379", ca: ca, wantErr: "redis: CA file " + ca + " holds no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := clientOptions(tt.url, tt.ca)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("clientOptions(%q) = %v, want %s", tt.url, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, o)
		})
	}
}
