package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/entrabroker/broker/internal/cache"
	"github.com/entrabroker/broker/internal/emulator"
)

// nopCache is a Cache for tests of the routers alone: every Get fails.
type nopCache struct{}

func (nopCache) Get(context.Context, cache.Key) (cache.Result, error) {
	return cache.Result{}, errors.New("nop cache")
}
func (nopCache) Status(cache.Key) cache.Status     { return cache.Status{} }
func (nopCache) Invalidate(cache.Key, string) bool { return false }
func (nopCache) Keys() []cache.Key                 { return nil }
func (nopCache) Refresh(_ context.Context, keys ...cache.Key) []error {
	return make([]error, len(keys))
}

// tokenRequestCounts scrapes /metrics and returns the non-zero values of
// broker_token_requests_total as "endpoint/result" → value.
func tokenRequestCounts(t testing.TB, h *harness) map[string]float64 {
	t.Helper()
	r := h.doOps(request{target: "/metrics"})
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics = %d %s", r.status, r.body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	fam, ok := fams["broker_token_requests_total"]
	if !ok {
		t.Fatalf("/metrics lacks broker_token_requests_total")
	}
	out := map[string]float64{}
	for _, m := range fam.GetMetric() {
		var ep, res string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "endpoint":
				ep = l.GetValue()
			case "result":
				res = l.GetValue()
			}
		}
		if v := m.GetCounter().GetValue(); v != 0 {
			out[ep+"/"+res] = v
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{IdentityHeader: msiHeader, AllowedScopes: []string{laScope, kvScope, armResource + "/.default"}})
	msi := "/msi/token?api-version=2019-08-01&resource="
	imds := "/metadata/identity/oauth2/token?api-version=2018-02-01&resource="
	for _, req := range []request{
		{target: "/token?resource=" + laResource, header: metadata},
		{target: "/token?resource=" + laResource, header: metadata},
		{target: "/token?resource=" + laResource},                                    // bad_request
		{target: "/token?resource=https://storage.azure.com", header: metadata},      // forbidden
		{target: "/token?resource=" + laResource + "&client_id=x", header: metadata}, // identity_not_found
		{target: msi + kvResource, header: msiHdr},
		{target: msi + kvResource},                                  // unauthorized
		{target: msi + kvResource + "&object_id=y", header: msiHdr}, // identity_not_found
		{target: imds + kvResource, header: metadata},
		{target: imds + kvResource, header: metadata},
		{target: imds + kvResource, header: metadata},
		{target: imds + kvResource}, // bad_request (probe)
	} {
		h.do(req)
	}
	// An Entra failure, transient, on a scope not yet held.
	h.cloud.Entra.InjectFault(emulator.DemoClientID, emulator.Fault{Kind: emulator.FaultUnavailable})
	h.do(request{target: "/token?resource=" + armResource, header: metadata})

	want := map[string]float64{
		"token/success":            2,
		"token/bad_request":        1,
		"token/forbidden":          1,
		"token/identity_not_found": 1,
		"token/unavailable":        1,
		"msi/success":              1,
		"msi/unauthorized":         1,
		"msi/identity_not_found":   1,
		"imds/success":             3,
		"imds/bad_request":         1,
	}
	if diff := cmp.Diff(want, tokenRequestCounts(t, h)); diff != "" {
		t.Errorf("broker_token_requests_total (-want +got):\n%s", diff)
	}

	r := h.doOps(request{target: "/metrics"})
	for _, name := range []string{
		"broker_token_requests_total", "broker_http_requests_total", "broker_http_request_duration_seconds",
		"broker_token_fetches_total", "broker_token_fetch_duration_seconds", "broker_token_expiry_timestamp_seconds",
	} {
		if !bytes.Contains(r.body, []byte("\n"+name)) && !bytes.HasPrefix(r.body, []byte(name)) && !bytes.Contains(r.body, []byte("# TYPE "+name)) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	// Route patterns label the HTTP metrics, never raw paths or queries.
	if bytes.Contains(r.body, []byte("resource=")) || bytes.Contains(r.body, []byte(msiHeader)) {
		t.Errorf("/metrics holds a query or a secret")
	}
	if !bytes.Contains(r.body, []byte(`route="/msi/token"`)) {
		t.Errorf("/metrics lacks the /msi/token route label")
	}
}

func TestReadyz(t *testing.T) {
	t.Parallel()

	type scope struct {
		Scope       string `json:"scope"`
		Ready       bool   `json:"ready"`
		ExpiresOn   int64  `json:"expires_on"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
		Hint        string `json:"hint"`
		AADCodes    []int  `json:"aad_error_codes"`
		NextAttempt string `json:"next_attempt"`
	}
	type body struct {
		Ready   bool     `json:"ready"`
		Scopes  []scope  `json:"scopes"`
		Missing []string `json:"missing"`
	}
	decode := func(t *testing.T, r reply) body {
		t.Helper()
		var b body
		if err := json.Unmarshal(r.body, &b); err != nil {
			t.Fatalf("/readyz body %s: %v", r.body, err)
		}
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("Content-Type = %q, want JSON", ct)
		}
		return b
	}

	t.Run("permanent error then ready", func(t *testing.T) {
		t.Parallel()
		clock := newFakeClock(time.Now())
		h := newHarness(t, harnessOptions{Clock: clock, PrefetchScopes: []string{laScope, kvScope}, Setup: func(a *emulator.Azure) error {
			return a.Entra.SetEnabled(emulator.DemoClientID, false)
		}})
		r := h.doOps(request{target: "/readyz"})
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("/readyz = %d %s, want 503", r.status, r.body)
		}
		b := decode(t, r)
		if b.Ready || len(b.Scopes) != 2 {
			t.Fatalf("/readyz = %+v, want not ready with two scopes", b)
		}
		if diff := cmp.Diff([]string{laScope, kvScope}, b.Missing); diff != "" {
			t.Errorf("missing (-want +got):\n%s", diff)
		}
		s := b.Scopes[0]
		if s.Scope != laScope || s.Ready || s.Error != "unauthorized_client" || s.Hint == "" || s.Description == "" || !cmp.Equal(s.AADCodes, []int{7000112}) || s.NextAttempt == "" {
			t.Errorf("/readyz scope = %+v, want %s not ready with unauthorized_client, 7000112, a description, a hint and the next attempt", s, laScope)
		}

		// The app is enabled again; the retry after the negative TTL succeeds.
		if err := h.cloud.Entra.SetEnabled(emulator.DemoClientID, true); err != nil {
			t.Fatal(err)
		}
		clock.Advance(cache.DefaultNegativeTTL + time.Second)
		h.prefetch(laScope, kvScope)
		r = h.doOps(request{target: "/readyz"})
		if r.status != http.StatusOK {
			t.Fatalf("/readyz after recovery = %d %s, want 200", r.status, r.body)
		}
		b = decode(t, r)
		if !b.Ready || len(b.Missing) != 0 || len(b.Scopes) != 2 || !b.Scopes[0].Ready || b.Scopes[0].ExpiresOn < clock.Now().Unix() {
			t.Errorf("/readyz = %+v, want ready with both scopes and their expiry", b)
		}
	})

	t.Run("pending then ready", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, harnessOptions{PrefetchScopes: []string{laScope}, SkipPrefetch: true})
		release := make(chan struct{})
		reached := make(chan struct{}, 1)
		h.cloud.Entra.InjectFault(emulator.DemoClientID, emulator.Fault{Kind: emulator.FaultDelay, Release: release, Reached: reached})
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.prefetch(laScope)
		}()
		<-reached
		r := h.doOps(request{target: "/readyz"})
		if r.status != http.StatusServiceUnavailable {
			t.Errorf("/readyz during the first fetch = %d, want 503", r.status)
		}
		if b := decode(t, r); len(b.Scopes) != 1 || b.Scopes[0].Error != "pending" || b.Scopes[0].Description == "" {
			t.Errorf("/readyz during the first fetch = %s, want the scope pending with why", r.body)
		}
		close(release)
		<-done
		if r := h.doOps(request{target: "/readyz"}); r.status != http.StatusOK {
			t.Errorf("/readyz after the first fetch = %d %s, want 200", r.status, r.body)
		}
	})

	t.Run("no prefetch scopes", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, harnessOptions{})
		r := h.doOps(request{target: "/readyz"})
		if r.status != http.StatusOK {
			t.Errorf("/readyz = %d, want 200", r.status)
		}
		if b := decode(t, r); !b.Ready || len(b.Scopes) != 0 {
			t.Errorf("/readyz = %s, want ready with no scopes", r.body)
		}
	})
}

func TestHealthzAndRouting(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{IdentityHeader: msiHeader})
	r := h.doOps(request{target: "/healthz"})
	if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != "ok" {
		t.Errorf("/healthz = %d %q, want 200 ok", r.status, r.body)
	}

	tests := []struct {
		name   string
		ops    bool
		req    request
		status int
		code   string
	}{
		{"unknown route", false, request{target: "/nope", header: metadata}, 404, "not_found"},
		{"proxy not mounted", false, request{target: "/proxy/loganalytics/v1/x", header: metadata}, 404, "not_found"},
		{"token case", false, request{target: "/TOKEN?resource=" + laResource, header: metadata}, 404, "not_found"},
		{"unknown ops route", true, request{target: "/nope"}, 404, "not_found"},
		{"token is not on ops", true, request{target: "/token?resource=" + laResource, header: metadata}, 404, "not_found"},
		{"post token", false, request{method: http.MethodPost, target: "/token?resource=" + laResource, header: metadata}, 405, "method_not_allowed"},
		{"delete msi", false, request{method: http.MethodDelete, target: "/msi/token", header: msiHdr}, 405, "method_not_allowed"},
		{"put imds", false, request{method: http.MethodPut, target: "/metadata/identity/oauth2/token", header: metadata}, 405, "method_not_allowed"},
		{"post healthz", true, request{method: http.MethodPost, target: "/healthz"}, 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r reply
			if tt.ops {
				r = h.doOps(tt.req)
			} else {
				r = h.do(tt.req)
			}
			checkError(t, r, tt.status, tt.code, true)
		})
	}
}

// TestRecoverer checks that a panic in a handler becomes a 500 JSON answer
// and an error log line, and that the server goes on serving.
func TestRecoverer(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	s, err := newServer(Options{Cache: nopCache{}, Identities: []Identity{{}}, Logger: zap.New(zapcore.NewTee(core, globalLogs()))})
	if err != nil {
		t.Fatal(err)
	}
	h := s.requestID(s.recoverer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic("boom: " + emulator.DemoClientSecret[:0] + "something broke")
		}
		w.WriteHeader(http.StatusNoContent)
	})))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	r := do(t, srv.Client(), srv, request{target: "/panic"})
	b := checkError(t, r, http.StatusInternalServerError, "internal_error", true)
	if strings.Contains(string(r.body), "boom") {
		t.Errorf("500 body %s holds the panic value", r.body)
	}
	_ = b
	if r.header.Get(requestIDHeader) == "" {
		t.Errorf("500 answer lacks %s", requestIDHeader)
	}
	entries := logs.FilterMessage("panic in handler").All()
	if len(entries) != 1 || entries[0].Level != zapcore.ErrorLevel {
		t.Fatalf("log = %v, want one error line \"panic in handler\"", logs.All())
	}
	if id := entries[0].ContextMap()["request_id"]; id != r.header.Get(requestIDHeader) {
		t.Errorf("log request_id = %v, want the answer's %s", id, r.header.Get(requestIDHeader))
	}
	if r := do(t, srv.Client(), srv, request{target: "/fine"}); r.status != http.StatusNoContent {
		t.Errorf("after a panic, GET /fine = %d, want 204", r.status)
	}
}

// TestAccessLog checks the access log: method, route pattern, status and
// duration, at info for client errors; never the query or a header value.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{IdentityHeader: msiHeader})
	h.do(request{target: "/msi/token?api-version=2019-08-01&resource=" + kvResource + "&client_id=secret-looking-value", header: hdr(msiHdr, map[string]string{"Authorization": "Bearer eyJhbGciOi.secret.value"})})
	var found bool
	for _, e := range h.logs.FilterMessage("request").All() {
		m := e.ContextMap()
		if m["route"] != "/msi/token" {
			continue
		}
		found = true
		if m["method"] != "GET" || m["status"] != int64(400) || e.Level != zapcore.InfoLevel {
			t.Errorf("access log = %v at %v, want GET, status 400 at info", m, e.Level)
		}
		if _, ok := m["duration"]; !ok {
			t.Errorf("access log = %v, want a duration", m)
		}
	}
	if !found {
		t.Fatalf("no access log line for /msi/token in %v", h.logs.All())
	}
	for _, e := range h.logs.All() {
		enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
		buf, _ := enc.EncodeEntry(e.Entry, e.Context)
		if s := buf.String(); strings.Contains(s, "secret-looking-value") || strings.Contains(s, "eyJhbGciOi") || strings.Contains(s, msiHeader) {
			t.Errorf("log line holds a query value or a header: %s", s)
		}
	}
}
