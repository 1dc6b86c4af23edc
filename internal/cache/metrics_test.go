package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/entrabroker/broker/internal/azure"
)

// countSeries returns how many series of the metric named name reg holds.
func countSeries(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather() error = %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

// gaugeValue returns the value of the unlabelled gauge named name.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather() error = %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// sampleValue returns the value of the counter or gauge named name whose
// labels include every pair of labels (name, value, name, value, …); 0 when
// there is none.
func sampleValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather() error = %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				if !found {
					continue metric
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = func(_ context.Context, _ Key, n int) (azure.Token, error) {
		if n == 1 {
			return issue(src.clk, n, time.Hour, 0), nil
		}
		return azure.Token{}, transientErr(503, 0)
	}
	reg := prometheus.NewRegistry()
	c, clk := newTest(t, src, Options{Registerer: reg}, true)

	mustGet(t, c, testKey) // miss, fetch succeeds
	mustGet(t, c, testKey) // hit
	mustGet(t, c, testKey) // hit
	clk.Advance(30 * time.Minute)
	mustGet(t, c, testKey) // refresh failed: stale hit

	scope := testKey.Scope
	want := fmt.Sprintf(`
# HELP broker_token_cache_entries Keys held in the token cache.
# TYPE broker_token_cache_entries gauge
broker_token_cache_entries 1
# HELP broker_token_cache_hits_total Get calls answered from memory.
# TYPE broker_token_cache_hits_total counter
broker_token_cache_hits_total 3
# HELP broker_token_cache_misses_total Get calls not answered from memory: they waited on a fetch or got a remembered error.
# TYPE broker_token_cache_misses_total counter
broker_token_cache_misses_total 1
# HELP broker_token_cache_shared_waits_total Get calls that waited on a fetch started by another caller or by a background refresh.
# TYPE broker_token_cache_shared_waits_total counter
broker_token_cache_shared_waits_total 0
# HELP broker_token_expiry_timestamp_seconds Expiry (unix seconds) of the token held for a scope.
# TYPE broker_token_expiry_timestamp_seconds gauge
broker_token_expiry_timestamp_seconds{scope=%[1]q} %[2]d
# HELP broker_token_fetches_total Upstream token fetches by scope and result (success, transient_error, permanent_error).
# TYPE broker_token_fetches_total counter
broker_token_fetches_total{result="permanent_error",scope=%[1]q} 0
broker_token_fetches_total{result="success",scope=%[1]q} 1
broker_token_fetches_total{result="transient_error",scope=%[1]q} 1
# HELP broker_token_refresh_failures_consecutive Consecutive failed upstream fetches for a scope; 0 after a success.
# TYPE broker_token_refresh_failures_consecutive gauge
broker_token_refresh_failures_consecutive{scope=%[1]q} 1
# HELP broker_token_stale_served_total Tokens served while their refresh was failing.
# TYPE broker_token_stale_served_total counter
broker_token_stale_served_total 1
`, scope, t0.Add(time.Hour).Unix())
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"broker_token_cache_entries", "broker_token_cache_hits_total", "broker_token_cache_misses_total",
		"broker_token_cache_shared_waits_total", "broker_token_expiry_timestamp_seconds", "broker_token_fetches_total",
		"broker_token_refresh_failures_consecutive", "broker_token_stale_served_total"); err != nil {
		t.Error(err)
	}
	if got := testutil.CollectAndCount(c.m.fetchDuration); got != 1 {
		t.Errorf("fetch duration series = %d, want 1", got)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP broker_token_fetch_duration_seconds Duration of upstream token fetches, successful or not.
# TYPE broker_token_fetch_duration_seconds histogram
broker_token_fetch_duration_seconds_bucket{le="0.01"} 2
broker_token_fetch_duration_seconds_bucket{le="0.025"} 2
broker_token_fetch_duration_seconds_bucket{le="0.05"} 2
broker_token_fetch_duration_seconds_bucket{le="0.1"} 2
broker_token_fetch_duration_seconds_bucket{le="0.25"} 2
broker_token_fetch_duration_seconds_bucket{le="0.5"} 2
broker_token_fetch_duration_seconds_bucket{le="1"} 2
broker_token_fetch_duration_seconds_bucket{le="2.5"} 2
broker_token_fetch_duration_seconds_bucket{le="5"} 2
broker_token_fetch_duration_seconds_bucket{le="10"} 2
broker_token_fetch_duration_seconds_bucket{le="30"} 2
broker_token_fetch_duration_seconds_bucket{le="+Inf"} 2
broker_token_fetch_duration_seconds_sum 0
broker_token_fetch_duration_seconds_count 2
`), "broker_token_fetch_duration_seconds"); err != nil {
		t.Error(err)
	}
}

// TestHitPathAllocatesNothing checks the 0 allocs/op target outside the
// benchmarks too, metrics included.
func TestHitPathAllocatesNothing(t *testing.T) {
	src := &fakeSource{token: func(_ context.Context, _ Key, n int) (azure.Token, error) {
		return issue(realClock{}, n, time.Hour, 0), nil
	}}
	c, err := New(src, Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	defer c.Close()
	ctx := context.Background()
	mustGet(t, c, testKey)
	if n := testing.AllocsPerRun(1000, func() { c.Get(ctx, testKey) }); n != 0 {
		t.Errorf("allocations per hit = %v, want 0", n)
	}
	// A stale hit too.
	c.mu.Lock()
	e, _ := c.lru.Peek(testKey)
	c.mu.Unlock()
	s := *e.st.Load()
	s.err, s.next = errors.New("refresh failing"), time.Now().Add(time.Minute)
	e.st.Store(&s)
	if n := testing.AllocsPerRun(1000, func() { c.Get(ctx, testKey) }); n != 0 {
		t.Errorf("allocations per stale hit = %v, want 0", n)
	}
}

// TestNoTokenInLogsMetricsOrErrors runs every path that logs, counts or
// fails, and looks for the token value everywhere it must not be.
func TestNoTokenInLogsMetricsOrErrors(t *testing.T) {
	t.Parallel()
	const secret = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.SECRET-ACCESS-TOKEN"
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = func(_ context.Context, key Key, n int) (azure.Token, error) {
		switch {
		case key.Scope == "https://other/.default":
			tok := issue(src.clk, n, time.Hour, 0)
			tok.AccessToken = secret + "-other"
			return tok, nil
		case n == 1:
			tok := issue(src.clk, n, time.Hour, 0)
			tok.AccessToken = secret
			return tok, nil
		case n%2 == 0:
			return azure.Token{}, transientErr(503, 0)
		default:
			return azure.Token{}, permanentErr()
		}
	}
	core, logs := observer.New(zapcore.DebugLevel)
	reg := prometheus.NewRegistry()
	c, clk := newTest(t, src, Options{Registerer: reg, Logger: zap.New(core), Size: 1}, true)

	var seen []string
	res := mustGet(t, c, testKey)
	seen = append(seen, fmt.Sprintf("%v %+v %#v", res, res, res))
	mustGet(t, c, testKey)
	clk.Advance(30 * time.Minute) // refresh fails: stale
	res = mustGet(t, c, testKey)
	seen = append(seen, fmt.Sprintf("%v %+v", res, res.Token))
	st := c.Status(testKey)
	seen = append(seen, fmt.Sprintf("%v %+v %v", st, st, st.Err))
	c.Invalidate(testKey, secret)
	_, err := c.Get(context.Background(), testKey)
	if err == nil {
		t.Fatalf("Get after Invalidate in backoff: error = nil, want the remembered error")
	}
	seen = append(seen, err.Error(), fmt.Sprintf("%+v", err))
	clk.Advance(10 * time.Minute)
	_, err = c.Get(context.Background(), testKey)
	if err != nil {
		seen = append(seen, err.Error())
	}
	mustGet(t, c, keyFor("https://other/.default")) // evicts testKey
	c.Close()

	for _, e := range logs.All() {
		seen = append(seen, e.LoggerName, e.Message, fmt.Sprint(e.ContextMap()))
	}
	mfs, gerr := reg.Gather()
	if gerr != nil {
		t.Fatalf("Gather() error = %v", gerr)
	}
	seen = append(seen, fmt.Sprint(mfs))
	if logs.Len() == 0 {
		t.Fatalf("no log entries: the test would prove nothing")
	}
	for _, s := range seen {
		if strings.Contains(s, "SECRET-ACCESS-TOKEN") {
			t.Errorf("token value leaked into %q", s)
		}
	}
}

// TestScopeSeriesSharedByKeys: two identities asking for one scope share
// its series, which go only when the last of them leaves.
func TestScopeSeriesSharedByKeys(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = hourTokens(src.clk)
	reg := prometheus.NewRegistry()
	c, _ := newTest(t, src, Options{Size: 2, Registerer: reg}, true)

	a := testKey
	b := testKey
	b.Tenant = "00000000-0000-0000-0000-00000000000b"
	other := keyFor("https://other/.default")
	mustGet(t, c, a)
	mustGet(t, c, b)
	mustGet(t, c, other) // evicts a: b still holds the scope
	if n := countSeries(t, reg, "broker_token_expiry_timestamp_seconds"); n != 2 {
		t.Errorf("expiry series after evicting one of two keys sharing a scope = %d, want 2", n)
	}
	mustGet(t, c, keyFor("https://third/.default")) // evicts b
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather() error = %v", err)
	}
	if s := fmt.Sprint(mfs); strings.Contains(s, testKey.Scope) {
		t.Errorf("series for %s remain after its last key left", testKey.Scope)
	}
}

// countOf reads a counter of the cache's metrics.
func countOf(c prometheus.Counter) uint64 { return uint64(testutil.ToFloat64(c)) }
