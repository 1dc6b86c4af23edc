package redis

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/cache"
	goredis "github.com/redis/go-redis/v9"
)

// t0 is when every fake clock starts.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a cache.Clock driven by the test: Advance runs the timers that
// fall due on the calling goroutine.
type clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
}

type timer struct {
	c    *clock
	at   time.Time
	f    func()
	done bool
}

func newClock() *clock { return &clock{now: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) AfterFunc(d time.Duration, f func()) cache.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.done
	t.done = true
	return was
}

// pending counts the timers not yet fired or stopped.
func (c *clock) pending() int {
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

// Advance moves the clock by d, firing due timers in order.
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	target := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		c.timers = slices.DeleteFunc(c.timers, func(t *timer) bool { return t.done })
		slices.SortFunc(c.timers, func(a, b *timer) int { return a.at.Compare(b.at) })
		if len(c.timers) == 0 || c.timers[0].at.After(target) {
			c.now = target
			c.mu.Unlock()
			return
		}
		t := c.timers[0]
		t.done = true
		if t.at.After(c.now) {
			c.now = t.at
		}
		c.mu.Unlock()
		t.f()
	}
}

// upstream is a fake Entra: it counts calls per scope and answers numbered
// tokens of a fixed lifetime on the fake clock. When gate is set, calls
// wait for it to close.
type upstream struct {
	now      func() time.Time
	lifetime time.Duration

	mu    sync.Mutex
	n     int
	calls map[string]int
	gate  chan struct{}
	err   error
}

func newUpstream(now func() time.Time) *upstream {
	return &upstream{now: now, lifetime: time.Hour, calls: map[string]int{}}
}

func (u *upstream) Token(ctx context.Context, key cache.Key) (azure.Token, error) {
	u.mu.Lock()
	u.calls[key.Scope]++
	u.n++
	n, gate, err := u.n, u.gate, u.err
	u.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return azure.Token{}, ctx.Err()
		}
	}
	if err != nil {
		return azure.Token{}, err
	}
	now := u.now()
	return azure.Token{
		AccessToken: fmt.Sprintf("eyJ0eXAiOiJKV1QifQ.secret-token-%d", n),
		IssuedAt:    now,
		ExpiresOn:   now.Add(u.lifetime),
	}, nil
}

func (u *upstream) count(scope string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls[scope]
}

func (u *upstream) total() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n
}

// broker is one broker of a test fleet: a Source on the shared Redis and,
// when a test needs it, a cache in front of it.
type broker struct {
	src  *Source
	reg  *prometheus.Registry
	logs *observer.ObservedLogs
}

// newBroker returns a Source on srv with the key file text keys, wrapping
// up, on clk's time.
func newBroker(t *testing.T, url, keys string, up cache.Source, now func() time.Time) *broker {
	t.Helper()
	// Generous: a test under -race on a busy machine must not see a
	// timeout it does not cause.
	return newBrokerTimeout(t, url, keys, up, now, time.Second)
}

// newBrokerTimeout is newBroker with the given Redis call timeout (0: the
// default).
func newBrokerTimeout(t *testing.T, url, keys string, up cache.Source, now func() time.Time, opTimeout time.Duration) *broker {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	reg := prometheus.NewRegistry()
	src, err := New(up, Options{
		URL:        url,
		Keys:       mustKeys(t, keys),
		Now:        now,
		OpTimeout:  opTimeout,
		Registerer: reg,
		Logger:     zap.New(core),
		// Fast polling: the tests wait for other brokers' tokens.
		PollInterval: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	return &broker{src: src, reg: reg, logs: logs}
}

// counter reads a counter of the broker's metrics.
func (b *broker) counter(name, label string) float64 {
	switch name {
	case "lookups":
		return testutil.ToFloat64(b.src.m.lookups.WithLabelValues(label))
	case "errors":
		return testutil.ToFloat64(b.src.m.errors.WithLabelValues(label))
	case "leases":
		return testutil.ToFloat64(b.src.m.leases.WithLabelValues(label))
	}
	panic(name)
}

// newCache puts a cache in front of src on clk, with the given jitter.
func newCache(t *testing.T, src cache.Source, clk *clock, r float64) *cache.Cache {
	t.Helper()
	c, err := cache.New(src, cache.Options{Clock: clk, Rand: func() float64 { return r }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// writeKeyFile writes a key file to a temporary directory.
func writeKeyFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "redis.key")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// keyOf returns the test key with scope.
func keyOf(scope string) cache.Key {
	k := testKey
	k.Scope = scope
	return k
}

// goredisOptions names the client's options for the table test.
type goredisOptions = goredis.Options
