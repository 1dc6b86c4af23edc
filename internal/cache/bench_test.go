package cache

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/entrabroker/broker/internal/azure"
)

// The hit-path benchmarks run beside a sync.Map baseline loading the same
// keys, in the same run, so that the ratio is measured on the same machine
// under the same load. The cache runs with the real clock and with metrics
// registered, as in production.

func benchKeys(n int) []Key {
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = keyFor(fmt.Sprintf("https://resource-%d.example.com/.default", i))
	}
	return keys
}

// benchCache returns a cache holding a one-hour token for every key.
func benchCache(b *testing.B, keys []Key) *Cache {
	b.Helper()
	src := &fakeSource{token: func(_ context.Context, _ Key, n int) (azure.Token, error) {
		return issue(realClock{}, n, time.Hour, 0), nil
	}}
	// The new-key budget would refuse most of 1000 keys of one identity
	// at warm-up; the benchmarks measure hits, so it is wide open here.
	c, err := New(src, Options{
		Size:         max(len(keys), DefaultSize),
		NewKeyBudget: Budget{Burst: len(keys), Every: time.Nanosecond},
		Registerer:   prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatalf("New() error = %v", err)
	}
	b.Cleanup(func() { c.Close() })
	for _, k := range keys {
		if _, err := c.Get(context.Background(), k); err != nil {
			b.Fatalf("Get() error = %v", err)
		}
	}
	return c
}

// checkAllHits fails the benchmark if any Get in it was not a hit.
func checkAllHits(b *testing.B, c *Cache, keys int) {
	b.Helper()
	if got := countOf(c.m.misses); got != uint64(keys) {
		b.Fatalf("misses = %d, want %d (only the warm-up): the benchmark measured more than hits", got, keys)
	}
}

func benchSyncMap(keys []Key) *sync.Map {
	var m sync.Map
	for _, k := range keys {
		tok := issue(realClock{}, 0, time.Hour, 0)
		m.Store(k, &tok)
	}
	return &m
}

// runSerial and runParallel call get with the keys in turn.
func runSerial(b *testing.B, keys []Key, get func(Key) bool) {
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if !get(keys[i]) {
			b.Fatal("miss")
		}
		if i++; i == len(keys) {
			i = 0
		}
	}
}

func runParallel(b *testing.B, keys []Key, get func(Key) bool) {
	b.ReportAllocs()
	var start atomic.Int64
	b.ResetTimer() // the warm-up is not measured
	b.RunParallel(func(pb *testing.PB) {
		i := int(start.Add(7919)) % len(keys) // goroutines start on different keys
		for pb.Next() {
			if !get(keys[i]) {
				panic("miss")
			}
			if i++; i == len(keys) {
				i = 0
			}
		}
	})
}

func cacheGet(c *Cache) func(Key) bool {
	ctx := context.Background()
	return func(k Key) bool {
		res, err := c.Get(ctx, k)
		return err == nil && res.Token.AccessToken != ""
	}
}

func syncMapGet(m *sync.Map) func(Key) bool {
	return func(k Key) bool {
		v, ok := m.Load(k)
		return ok && v.(*azure.Token).AccessToken != ""
	}
}

func BenchmarkGetHit(b *testing.B) {
	keys := benchKeys(1)
	b.Run("serial", func(b *testing.B) {
		c := benchCache(b, keys)
		runSerial(b, keys, cacheGet(c))
		checkAllHits(b, c, len(keys))
	})
	b.Run("parallel", func(b *testing.B) {
		c := benchCache(b, keys)
		runParallel(b, keys, cacheGet(c))
		checkAllHits(b, c, len(keys))
	})
}

func BenchmarkGetHit1000Keys(b *testing.B) {
	keys := benchKeys(1000)
	b.Run("serial", func(b *testing.B) {
		c := benchCache(b, keys)
		runSerial(b, keys, cacheGet(c))
		checkAllHits(b, c, len(keys))
	})
	b.Run("parallel", func(b *testing.B) {
		c := benchCache(b, keys)
		runParallel(b, keys, cacheGet(c))
		checkAllHits(b, c, len(keys))
	})
}

func BenchmarkSyncMapLoad(b *testing.B) {
	one, many := benchKeys(1), benchKeys(1000)
	b.Run("serial", func(b *testing.B) { runSerial(b, one, syncMapGet(benchSyncMap(one))) })
	b.Run("parallel", func(b *testing.B) { runParallel(b, one, syncMapGet(benchSyncMap(one))) })
	b.Run("1000keys/serial", func(b *testing.B) { runSerial(b, many, syncMapGet(benchSyncMap(many))) })
	b.Run("1000keys/parallel", func(b *testing.B) { runParallel(b, many, syncMapGet(benchSyncMap(many))) })
}
