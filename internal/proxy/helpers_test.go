package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// fakeTokens is a Tokens with function fields.
type fakeTokens struct {
	bearer     func(ctx context.Context, scope string) (string, error)
	invalidate func(scope, token string)
}

func (f *fakeTokens) Bearer(ctx context.Context, _, scope string) (string, error) {
	return f.bearer(ctx, scope)
}

// Invalidate always allows the retry.
func (f *fakeTokens) Invalidate(_, scope, token string) bool {
	if f.invalidate != nil {
		f.invalidate(scope, token)
	}
	return true
}

// seqTokens hands out "<prefix>1", then "<prefix>2" after that one is
// invalidated, and so on, recording the calls.
type seqTokens struct {
	prefix string
	mu     sync.Mutex
	n      int
	scopes []string
	drops  []string // "scope token"
}

func newSeqTokens(prefix string) *seqTokens { return &seqTokens{prefix: prefix, n: 1} }

func (s *seqTokens) Bearer(_ context.Context, _, scope string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scopes = append(s.scopes, scope)
	return s.prefix + strconv.Itoa(s.n), nil
}

func (s *seqTokens) Invalidate(_, scope, token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drops = append(s.drops, scope+" "+token)
	if token == s.prefix+strconv.Itoa(s.n) {
		s.n++
	}
	return true
}

func (s *seqTokens) dropped() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.drops...)
}

// seenRequest is what a fake upstream received.
type seenRequest struct {
	Method, Path, RawPath, RawQuery, Host string
	Header                                http.Header
	Body                                  string
}

// upstream is a fake upstream that records every request.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seenRequest
}

// newUpstream starts a fake upstream; handle answers after the request and
// its body are recorded.
func newUpstream(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, body []byte)) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, seenRequest{
			Method: r.Method, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery,
			Host: r.Host, Header: r.Header.Clone(), Body: string(body),
		})
		u.mu.Unlock()
		if err != nil {
			return
		}
		handle(w, r, body)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) requests() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.reqs...)
}

func (u *upstream) url(t *testing.T) *url.URL {
	t.Helper()
	p, err := url.Parse(u.URL)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const (
	laScope = "https://api.loganalytics.io/.default"
	aiScope = "https://api.applicationinsights.io/.default"
)

// testProxy is a proxy under test behind a real HTTP server.
type testProxy struct {
	*httptest.Server
	reg    *prometheus.Registry
	logs   *observer.ObservedLogs
	client *http.Client
}

// stepClock advances by step on every reading.
type stepClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

// newTestProxy serves New(opts) with a "loganalytics" route to up (when
// opts.Routes is empty), a fresh registry and observed logs.
func newTestProxy(t *testing.T, up *url.URL, opts Options) *testProxy {
	t.Helper()
	if opts.Routes == nil {
		opts.Routes = []Route{{Name: "loganalytics", Upstream: up, Scope: laScope}}
	}
	reg := prometheus.NewRegistry()
	core, logs := observer.New(zapcore.DebugLevel)
	opts.Registerer = reg
	opts.Logger = zap.New(core)
	h, err := New(opts)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &testProxy{Server: srv, reg: reg, logs: logs, client: &http.Client{Transport: tr}}
}

// do sends req to the proxy and returns the response with its body read.
func (p *testProxy) do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	res, err := p.client.Do(req)
	if err != nil {
		t.Fatalf("Do(%s %s) error = %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body of %s %s: %v", req.Method, req.URL, err)
	}
	return res, string(b)
}

func (p *testProxy) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p.do(t, req)
}

// metricValue returns the value of the counter (or the sample count of the
// histogram) name with the given label pairs, or 0 when it does not exist.
func metricValue(t *testing.T, p *testProxy, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := p.reg.Gather()
	if err != nil {
		t.Fatalf("Gather() error = %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if got[labels[i]] != labels[i+1] {
					continue metric
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
