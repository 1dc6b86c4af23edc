package httpapi

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Token endpoints and results, the bounded label values of
// broker_token_requests_total.
const (
	endpointToken = iota
	endpointMSI
	endpointIMDS
	endpointMSI2017
	endpointCloudShell
	numEndpoints
)

var endpointNames = [numEndpoints]string{"token", "msi", "imds", "msi2017", "cloudshell"}

type result int

const (
	resultSuccess      result = iota // a token was served
	resultStale                      // a token was served while its refresh is failing
	resultBadRequest                 // the request was malformed
	resultForbidden                  // scope or caller not allowed
	resultUnauthorized               // identity header missing or wrong
	resultNotFound                   // no such identity
	resultEntraError                 // Entra refused (permanent)
	resultUnavailable                // Entra unreachable or throttled (transient)
	resultRateLimited                // refused by the broker's own limits (429): the caller's rate or the new-scope budget
	resultInternal                   // a bug
	numResults
)

var resultNames = [numResults]string{"success", "stale", "bad_request", "forbidden", "unauthorized", "identity_not_found", "entra_error", "unavailable", "rate_limited", "internal_error"}

// metrics are the HTTP layer's metrics. The token request counters are
// created up front so that counting on the hot path needs no label lookup.
type metrics struct {
	tokenRequests [numEndpoints][numResults]prometheus.Counter
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec

	// children remembers the per-route metrics, so that a request neither
	// hashes label values nor formats its code (about 4 % of /token's
	// throughput end to end; bench/README.md, "Ablation"). Its keys are
	// bounded: route patterns are a fixed set, codes a few.
	mu       sync.Mutex
	children map[childKey]routeMetrics
}

type childKey struct {
	listener, route string
	code            int
}

type routeMetrics struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	tokenRequests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "broker_token_requests_total",
		Help: "Token requests answered, by endpoint (token, msi, msi2017, cloudshell, imds) and result.",
	}, []string{"endpoint", "result"})
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_http_requests_total",
			Help: "HTTP requests answered, by listener, route pattern and status code.",
		}, []string{"listener", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "broker_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by listener and route pattern.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"listener", "route"}),
	}
	for e := range numEndpoints {
		for r := range numResults {
			m.tokenRequests[e][r] = tokenRequests.WithLabelValues(endpointNames[e], resultNames[r])
		}
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{tokenRequests, m.requests, m.duration} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) observe(listener, route string, code int, d time.Duration) {
	k := childKey{listener, route, code}
	m.mu.Lock()
	rm, ok := m.children[k]
	if !ok {
		rm = routeMetrics{
			requests: m.requests.WithLabelValues(listener, route, strconv.Itoa(code)),
			duration: m.duration.WithLabelValues(listener, route),
		}
		if m.children == nil {
			m.children = make(map[childKey]routeMetrics)
		}
		m.children[k] = rm
	}
	m.mu.Unlock()
	rm.requests.Inc()
	rm.duration.Observe(d.Seconds())
}

func (m *metrics) token(endpoint int, r result) { m.tokenRequests[endpoint][r].Inc() }
