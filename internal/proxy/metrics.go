package proxy

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// routeUnknown is the route label of requests that name no configured route.
const routeUnknown = "unknown"

// metrics holds the proxy's collectors.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_proxy_requests_total",
			Help: "Proxied requests by route and HTTP status answered to the caller.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "broker_proxy_request_duration_seconds",
			Help: "Time from receiving a proxied request to the end of its answer, by route.",
			// Log Analytics queries run from milliseconds up to 10 minutes.
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 180, 600},
		}, []string{"route"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_proxy_token_retries_total",
			Help: "Requests retried once with a fresh token after the upstream answered 401.",
		}, []string{"route"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.duration, m.retries} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register proxy metrics: %w", err)
			}
		}
	}
	return m, nil
}

// routeMetrics is one route's collectors.
type routeMetrics struct {
	name     string
	vec      *prometheus.CounterVec
	duration prometheus.Observer
	retries  prometheus.Counter
}

func (m *metrics) forRoute(name string) *routeMetrics {
	return &routeMetrics{
		name:     name,
		vec:      m.requests,
		duration: m.duration.WithLabelValues(name),
		retries:  m.retries.WithLabelValues(name),
	}
}

// count adds one request answered with status code; a code outside
// 100–599 counts as "other".
func (rm *routeMetrics) count(code int) {
	label := "other"
	if code >= 100 && code < 600 {
		label = strconv.Itoa(code)
	}
	rm.vec.WithLabelValues(rm.name, label).Inc()
}
