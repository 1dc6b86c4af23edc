package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/emulator"
	"github.com/entrabroker/broker/internal/httperr"
)

// TestBrowsersRefused sends what web pages send to every route of both
// listeners: each is refused with 403 browser_request before any handler,
// Entra sees nothing, and every answer is marked nosniff and same-origin.
func TestBrowsersRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{IdentityHeader: "browser-test-identity-header"})
	markers := []map[string]string{
		{"Origin": "http://attacker.test"},
		{"Origin": "null"},
		{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},
		{"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"},
		{"Referer": "http://attacker.test/page.html"},
	}
	api := []request{
		{target: "/token?resource=" + laResource, header: metadata},
		{target: "/msi/token?api-version=2019-08-01&resource=" + laResource, header: map[string]string{"X-IDENTITY-HEADER": "browser-test-identity-header"}},
		{target: "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=" + laResource, header: metadata},
		{target: "/proxy/loganalytics/v1/workspaces/w/query?query=x"},
		{method: http.MethodPost, target: "/proxy/loganalytics/v1/workspaces/w/query"},
		{method: http.MethodOptions, target: "/token"},
		{target: "/no-such-route"},
	}
	ops := []request{{target: "/metrics"}, {target: "/readyz"}, {target: "/healthz"}}
	for _, m := range markers {
		for _, listener := range []struct {
			name string
			reqs []request
			do   func(request) reply
		}{{"api", api, h.do}, {"ops", ops, h.doOps}} {
			for _, req := range listener.reqs {
				r := req
				r.header = map[string]string{}
				for k, v := range req.header {
					r.header[k] = v
				}
				for k, v := range m {
					r.header[k] = v
				}
				got := listener.do(r)
				checkError(t, got, http.StatusForbidden, "browser_request", true)
				for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Cross-Origin-Resource-Policy": "same-origin"} {
					if v := got.header.Values(k); len(v) != 1 || v[0] != want {
						t.Errorf("%s %s %s with %v: %s = %q, want %q", listener.name, r.method, r.target, m, k, v, want)
					}
				}
				if got.header.Get("Access-Control-Allow-Origin") != "" {
					t.Errorf("%s %s with %v answered Access-Control-Allow-Origin", listener.name, r.target, m)
				}
			}
		}
	}
	if n := h.cloud.Entra.Requests(emulator.DemoClientID, laScope); n != 0 {
		t.Errorf("Entra saw %d token requests from refused browser requests, want 0", n)
	}
	// A person who types the URL (Sec-Fetch-Site: none) is no page.
	typed := h.do(request{target: "/token?resource=" + laResource, header: map[string]string{"Metadata": "true", "Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"}})
	if typed.status != http.StatusOK {
		t.Errorf("GET /token with Sec-Fetch-Site: none = %d %s, want 200", typed.status, typed.body)
	}
}

// TestOpsHostGuard checks that the ops listener answers loopback names, IP
// literals (the pod IP) and its listen host, and refuses other names (a
// rebound DNS name) with 421.
func TestOpsHostGuard(t *testing.T) {
	t.Parallel()
	s, err := newServer(Options{Cache: nopCache{}, Identities: []Identity{{}}, OpsListenHost: "broker-ops.internal"})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"localhost:9400":           true,
		"127.0.0.1:9400":           true,
		"[::1]:9400":               true,
		"10.244.1.17:9400":         true,
		"[fd00::17]:9400":          true,
		"broker-ops.internal:9400": true,
		"0.0.0.0:9400":             false,
		"[::]:9400":                false,
		"attacker.test:9400":       false,
		"":                         false,
	} {
		if got := s.opsHostAllowed(host); got != want {
			t.Errorf("opsHostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
	h := newHarness(t, harnessOptions{})
	for _, target := range []string{"/metrics", "/readyz", "/healthz"} {
		checkError(t, h.doOps(request{target: target, host: "attacker.test:9400"}), http.StatusMisdirectedRequest, "host_not_allowed", true)
		if r := h.doOps(request{target: target, host: "10.244.1.17:9400"}); r.status != http.StatusOK {
			t.Errorf("GET %s with the pod IP as Host = %d, want 200", target, r.status)
		}
	}
}

// TestReadyzDetailsOnlyOnHost checks that /readyz names scopes, identities
// and Entra's words only to callers on the broker's host.
func TestReadyzDetailsOnlyOnHost(t *testing.T) {
	t.Parallel()
	c := &keyCache{now: time.Unix(1_800_000_000, 0)}
	_, ops, err := New(Options{Cache: c, Identities: threeIdentities()})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		remote  string
		details bool
	}{
		{"127.0.0.1:50000", true},
		{"[::1]:50000", true},
		{"@", true}, // a unix socket peer
		{"10.244.0.1:50000", false},
		{"[fd00::1]:50000", false},
	} {
		req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:9400/readyz", nil)
		req.RemoteAddr = tt.remote
		rec := httptest.NewRecorder()
		ops.ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("from %s: status %d, want 503", tt.remote, rec.Code)
		}
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		_, hasScopes := body["scopes"]
		leaks := strings.Contains(rec.Body.String(), "reports") || strings.Contains(rec.Body.String(), laScope)
		if hasScopes != tt.details || leaks != tt.details {
			t.Errorf("from %s: body %s; want details %v", tt.remote, rec.Body, tt.details)
		}
		if body["ready"] != false || body["scopes_ready"] != float64(0) || body["scopes_required"] != float64(2) {
			t.Errorf("from %s: body %s, want ready false and 0 of 2 scopes", tt.remote, rec.Body)
		}
	}
}

// TestProxyTokensPassTheGate checks that the proxy's tokens obey the
// identity's allowed scopes: a refused scope is 403 without a cache call.
func TestProxyTokensPassTheGate(t *testing.T) {
	t.Parallel()
	c := &keyCache{now: time.Unix(1_800_000_000, 0)}
	ids := threeIdentities()
	ids[0].AllowedScopes = []string{laScope}
	var tokens ProxyTokens
	_, _, err := New(Options{Cache: c, Identities: ids, Proxy: func(t ProxyTokens) (http.Handler, error) {
		tokens = t
		return http.NotFoundHandler(), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := tokens.Bearer(context.Background(), "loganalytics", laScope); err != nil || tok == "" {
		t.Errorf("Bearer(loganalytics, %s) = %q, %v; want a token", laScope, tok, err)
	}
	_, err = tokens.Bearer(context.Background(), "arm", "https://management.azure.com/.default")
	var e *httperr.Error
	if !errors.As(err, &e) || e.Status != http.StatusForbidden || e.Code != "scope_not_allowed" || !strings.Contains(e.Hint, "BROKER_ALLOWED_SCOPES") {
		t.Errorf("Bearer(arm) = %v, want 403 scope_not_allowed naming BROKER_ALLOWED_SCOPES", err)
	}
	if len(c.got) != 1 {
		t.Errorf("the cache was asked %d times (%v), want once: a refused scope must not reach it", len(c.got), c.got)
	}
}
