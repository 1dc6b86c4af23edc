package cache

import (
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

// metrics holds the cache's collectors.
type metrics struct {
	hits, misses, sharedWaits, staleServed prometheus.Counter

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
	m.hits = counter("broker_token_cache_hits_total", "Get calls answered from memory.")
	m.misses = counter("broker_token_cache_misses_total", "Get calls not answered from memory: they waited on a fetch or got a remembered error.")
	m.sharedWaits = counter("broker_token_cache_shared_waits_total", "Get calls that waited on a fetch started by another caller or by a background refresh.")
	m.staleServed = counter("broker_token_stale_served_total", "Tokens served while their refresh was failing.")
	m.invDropped = m.invalidations.WithLabelValues(invalidateDropped)
	m.invRationed = m.invalidations.WithLabelValues(invalidateRationed)
	m.invNotHeld = m.invalidations.WithLabelValues(invalidateNotHeld)
	m.collectors = []prometheus.Collector{
		m.fetches, m.fetchDuration, m.expiry, m.failures, m.entries, m.invalidations,
		m.inFlight, m.queued, m.abandoned, m.budgetRefusals, m.warningsSuppressed,
		m.hits, m.misses, m.sharedWaits, m.staleServed,
	}
	return m
}

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
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
