package redis

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the second level's Prometheus metrics (see the package
// documentation). Every label has a fixed, small set of values.
type metrics struct {
	lookups *prometheus.CounterVec
	errors  *prometheus.CounterVec
	leases  *prometheus.CounterVec
	breaker prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_redis_lookups_total",
			Help: "Token fetches that looked in Redis first, by result: hit (a usable token taken into memory), miss, undecryptable (an entry no key of the key file opens).",
		}, []string{"result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_redis_errors_total",
			Help: "Redis calls that failed or timed out, by operation (get, set, lease, release); the broker then goes on without Redis.",
		}, []string{"op"}),
		leases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_redis_leases_total",
			Help: "Refresh leases, by result: won (this broker asked Entra), lost (another broker held it), waited (the other broker's token arrived while waiting), timeout (it did not; this broker asked Entra itself).",
		}, []string{"result"}),
		breaker: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "broker_redis_breaker_state",
			Help: "The Redis circuit breaker: 0 closed (Redis in use), 1 open (Redis skipped after failures), 2 half-open (one probe call).",
		}),
	}
	for _, r := range []string{"hit", "miss", "undecryptable"} {
		m.lookups.WithLabelValues(r)
	}
	for _, op := range []string{opGet, opSet, opLease, opRelease} {
		m.errors.WithLabelValues(op)
	}
	for _, r := range []string{"won", "lost", "waited", "timeout"} {
		m.leases.WithLabelValues(r)
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.lookups, m.errors, m.leases, m.breaker}
}

func (m *metrics) register(r prometheus.Registerer) error {
	var errs []error
	for _, c := range m.collectors() {
		errs = append(errs, r.Register(c))
	}
	return errors.Join(errs...)
}

func (m *metrics) unregister(r prometheus.Registerer) {
	for _, c := range m.collectors() {
		r.Unregister(c)
	}
}

// Redis operations, the values of the op label.
const (
	opGet     = "get"
	opSet     = "set"
	opLease   = "lease"
	opRelease = "release"
)
