package cache

import (
	"sync/atomic"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
)

// Fetch results, the values of the result label of broker_token_fetches_total.
const (
	resultSuccess   = "success"
	resultTransient = "transient_error"
	resultPermanent = "permanent_error"
)

// Invalidate outcomes, the values of the result label of
// broker_token_invalidations_total.
const (
	invalidateDropped  = "dropped"
	invalidateRationed = "rationed"
	invalidateNotHeld  = "not_held"
)

// metrics holds the cache's collectors. The counters bumped on the hit path
// are striped, lock-free and exported through CounterFuncs, so a hit writes
// to a cache line that other cores rarely touch and allocates nothing.
type metrics struct {
	hits, misses, sharedWaits, staleServed striped

	fetches       *prometheus.CounterVec // scope, result
	fetchDuration prometheus.Histogram
	expiry        *prometheus.GaugeVec // scope
	failures      *prometheus.GaugeVec // scope
	entries       prometheus.Gauge
	invalidations *prometheus.CounterVec // result

	invDropped, invRationed, invNotHeld prometheus.Counter // curried from invalidations

	inFlight, queued          prometheus.Gauge
	abandoned, budgetRefusals prometheus.Counter
	warningsSuppressed        prometheus.Counter

	collectors []prometheus.Collector
}

func newMetrics() *metrics {
	m := &metrics{
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_token_fetches_total",
			Help: "Upstream token fetches by scope and result (success, transient_error, permanent_error).",
		}, []string{"scope", "result"}),
		fetchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "broker_token_fetch_duration_seconds",
			Help:    "Duration of upstream token fetches, successful or not.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "broker_token_expiry_timestamp_seconds",
			Help: "Expiry (unix seconds) of the token held for a scope.",
		}, []string{"scope"}),
		failures: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "broker_token_refresh_failures_consecutive",
			Help: "Consecutive failed upstream fetches for a scope; 0 after a success.",
		}, []string{"scope"}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "broker_token_cache_entries",
			Help: "Keys held in the token cache.",
		}),
		invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_token_invalidations_total",
			Help: "Invalidate calls (an upstream refused a token) by result: dropped (a forced refresh follows), rationed (the token is too young or the key was refreshed by force too recently), not_held (the cache already holds another token).",
		}, []string{"result"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "broker_token_fetches_in_flight",
			Help: "Upstream token fetches calling Entra now (at most the per-identity cap for each identity).",
		}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "broker_token_fetches_queued",
			Help: "Upstream token fetches waiting for a slot under the per-identity cap.",
		}),
		abandoned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "broker_token_fetches_abandoned_total",
			Help: "Queued token fetches dropped before calling Entra because every caller waiting for them gave up.",
		}),
		budgetRefusals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "broker_token_new_scope_refusals_total",
			Help: "Get calls refused without an Entra call because their identity spent its budget of new scopes.",
		}),
		warningsSuppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "broker_token_fetch_warnings_suppressed_total",
			Help: "Token fetch failures not logged because the same key's failure was logged less than a minute before.",
		}),
	}
	m.invDropped = m.invalidations.WithLabelValues(invalidateDropped)
	m.invRationed = m.invalidations.WithLabelValues(invalidateRationed)
	m.invNotHeld = m.invalidations.WithLabelValues(invalidateNotHeld)
	m.collectors = []prometheus.Collector{
		m.fetches, m.fetchDuration, m.expiry, m.failures, m.entries, m.invalidations,
		m.inFlight, m.queued, m.abandoned, m.budgetRefusals, m.warningsSuppressed,
		counterFunc("broker_token_cache_hits_total", "Get calls answered from memory.", &m.hits),
		counterFunc("broker_token_cache_misses_total", "Get calls not answered from memory: they waited on a fetch or got a remembered error.", &m.misses),
		counterFunc("broker_token_cache_shared_waits_total", "Get calls that waited on a fetch started by another caller or by a background refresh.", &m.sharedWaits),
		counterFunc("broker_token_stale_served_total", "Tokens served while their refresh was failing.", &m.staleServed),
	}
	return m
}

func counterFunc(name, help string, s *striped) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 {
		return float64(s.load())
	})
}

// register registers every collector on reg; on failure it unregisters the
// ones already registered.
func (m *metrics) register(reg prometheus.Registerer) error {
	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}

func (m *metrics) unregister(reg prometheus.Registerer) {
	for _, c := range m.collectors {
		reg.Unregister(c)
	}
}

// scopeMetrics are the per-scope series, curried once when the first key
// with the scope enters the cache and deleted when the last one leaves.
// Keys that share a scope (several tenants or clients) share the series:
// the gauges then show the key that changed last.
type scopeMetrics struct {
	refs                          int
	success, transient, permanent prometheus.Counter
	expiry, failures              prometheus.Gauge
}

func (m *metrics) scope(scope string) *scopeMetrics {
	return &scopeMetrics{
		success:   m.fetches.WithLabelValues(scope, resultSuccess),
		transient: m.fetches.WithLabelValues(scope, resultTransient),
		permanent: m.fetches.WithLabelValues(scope, resultPermanent),
		expiry:    m.expiry.WithLabelValues(scope),
		failures:  m.failures.WithLabelValues(scope),
	}
}

func (m *metrics) deleteScope(scope string) {
	for _, result := range []string{resultSuccess, resultTransient, resultPermanent} {
		m.fetches.DeleteLabelValues(scope, result)
	}
	m.expiry.DeleteLabelValues(scope)
	m.failures.DeleteLabelValues(scope)
}

// stripeBits sets the number of cells of a striped counter: 1<<stripeBits.
const stripeBits = 4

// striped is a counter spread over cells of two cache lines each (so that
// neither false sharing nor the adjacent-line prefetcher couples them).
// inc picks the cell from the calling goroutine's stack address: one
// goroutine keeps using one cell, so the core running it keeps that line,
// and goroutines running at the same time seldom share one. (A random cell
// per increment is worse than a single counter: every line then bounces
// between cores.) load sums the cells; it may miss increments in progress.
type striped struct {
	cells [1 << stripeBits]struct {
		n atomic.Uint64
		_ [120]byte
	}
}

func (s *striped) inc() {
	var anchor byte
	// Stacks are at least 8 KiB apart; mix the bits above that.
	h := uint64(uintptr(unsafe.Pointer(&anchor))>>13) * 0x9e3779b97f4a7c15
	s.cells[h>>(64-stripeBits)].n.Add(1)
}

func (s *striped) load() uint64 {
	var n uint64
	for i := range s.cells {
		n += s.cells[i].n.Load()
	}
	return n
}
