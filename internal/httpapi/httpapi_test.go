package httpapi

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/entrabroker/broker/internal/emulator"
)

// keys returns the sorted keys of m.
func keys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// jsonInt returns v as an integer when it is a JSON number holding one.
func jsonInt(t testing.TB, field string, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%s = %#v (%T), want a JSON number", field, v, v)
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		t.Fatalf("%s = %s, want an integer", field, n)
	}
	return i
}

// stringInt returns v as an integer when it is a JSON string holding one
// (digits only: no sign, no fraction, not empty).
func stringInt(t testing.TB, field string, v any) int64 {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		t.Fatalf("%s = %#v (%T), want a JSON string", field, v, v)
	}
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		t.Fatalf("%s = %q, want a string of an integer", field, s)
	}
	i, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%s = %q: %v", field, s, err)
	}
	return i
}

// checkLifetime checks expires_in and expires_on against the emulator's
// token lifetime (3599 s) and the time of the request.
func checkLifetime(t testing.TB, now time.Time, expiresIn, expiresOn int64) {
	t.Helper()
	lifetime := int64(emulator.DefaultTokenLifetime / time.Second)
	if expiresIn < lifetime-60 || expiresIn > lifetime {
		t.Errorf("expires_in = %d, want about %d", expiresIn, lifetime)
	}
	if want := now.Unix() + expiresIn; expiresOn < want-2 || expiresOn > want+2 {
		t.Errorf("expires_on = %d, want now+expires_in = %d (±2 s)", expiresOn, want)
	}
	// The SDKs treat a token with under 5 minutes left as expired.
	if expiresIn < 15*60 {
		t.Errorf("expires_in = %d, want well over 5 minutes", expiresIn)
	}
}

// errorBody checks an error answer: status, JSON content type, no-store,
// the error code, a description, and the hint when wantHint. It returns the
// body.
func checkError(t testing.TB, r reply, wantStatus int, wantCode string, wantHint bool) map[string]any {
	t.Helper()
	if r.status != wantStatus {
		t.Errorf("status = %d, want %d (body %s)", r.status, wantStatus, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	b := r.json(t)
	if got := b["error"]; got != wantCode {
		t.Errorf("error = %v, want %q (body %s)", got, wantCode, r.body)
	}
	if d, _ := b["error_description"].(string); d == "" {
		t.Errorf("error_description = %v, want a sentence", b["error_description"])
	}
	if h, _ := b["hint"].(string); wantHint && h == "" {
		t.Errorf("hint = %v, want what to do (body %s)", b["hint"], r.body)
	}
	for _, k := range keys(b) {
		switch k {
		case "error", "error_description", "hint", "aad_error_codes", "correlation_id", "message":
		default:
			t.Errorf("error body has field %q; want only the contract's fields", k)
		}
	}
	return b
}

func TestToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})

	t.Run("success", func(t *testing.T) {
		for _, target := range []string{
			"/token?resource=" + laResource,
			"/token?resource=" + laResource + "/",
			"/token?scope=" + laScope,
			"/token?scope=" + laResource + "//.default",
			"/token?scope=" + laScope + "&client_id=" + emulator.DemoClientID,
			"/token?scope=" + laScope + "&client_id=" + strings.ToUpper(emulator.DemoClientID),
			"/token?scope=" + laScope + "&unknown=ignored",
		} {
			t.Run(target, func(t *testing.T) {
				now := h.now()
				r := h.do(request{target: target, header: metadata})
				if r.status != http.StatusOK {
					t.Fatalf("GET %s = %d %s, want 200", target, r.status, r.body)
				}
				if got := r.header.Get("Cache-Control"); got != "no-store" {
					t.Errorf("Cache-Control = %q, want no-store", got)
				}
				if got := r.header.Get("Content-Type"); got != "application/json; charset=utf-8" {
					t.Errorf("Content-Type = %q, want application/json; charset=utf-8", got)
				}
				if got := r.header.Get(staleHeader); got != "" {
					t.Errorf("%s = %q, want none", staleHeader, got)
				}
				b := r.json(t)
				if diff := cmp.Diff([]string{"access_token", "expires_in", "expires_on", "scope", "token_type"}, keys(b)); diff != "" {
					t.Errorf("fields (-want +got):\n%s", diff)
				}
				if b["token_type"] != "Bearer" || b["scope"] != laScope {
					t.Errorf("token_type, scope = %v, %v; want Bearer, %s", b["token_type"], b["scope"], laScope)
				}
				checkLifetime(t, now, jsonInt(t, "expires_in", b["expires_in"]), jsonInt(t, "expires_on", b["expires_on"]))
				tok, _ := b["access_token"].(string)
				c, err := h.cloud.Entra.VerifyAccessToken(tok)
				if err != nil {
					t.Fatalf("VerifyAccessToken(access_token) = %v", err)
				}
				if c.Audience != laResource || c.AppID != emulator.DemoClientID {
					t.Errorf("token aud, appid = %s, %s; want %s, %s", c.Audience, c.AppID, laResource, emulator.DemoClientID)
				}
			})
		}
		// Every spelling above is one cache key: one upstream fetch.
		if got := h.cloud.Entra.Requests(emulator.DemoClientID, laScope); got != 1 {
			t.Errorf("emulator saw %d token requests for %s, want 1", got, laScope)
		}
	})

	t.Run("errors", func(t *testing.T) {
		ok := "/token?resource=" + laResource
		tests := []struct {
			name     string
			req      request
			status   int
			code     string
			contains string // in error_description or hint
		}{
			{"no metadata header", request{target: ok}, 400, "metadata_header_required", "Metadata: true"},
			{"metadata false", request{target: ok, header: map[string]string{"Metadata": "false"}}, 400, "metadata_header_required", "Metadata: true"},
			{"x-forwarded-for", request{target: ok, header: hdr(metadata, map[string]string{"X-Forwarded-For": "10.0.0.1"})}, 403, "forwarded_request", "proxy"},
			{"forwarded", request{target: ok, header: hdr(metadata, map[string]string{"Forwarded": "for=10.0.0.1"})}, 403, "forwarded_request", "proxy"},
			{"host evil.example", request{target: ok, header: metadata, host: "evil.example"}, 421, "host_not_allowed", "localhost"},
			{"host evil.example with port", request{target: ok, header: metadata, host: "evil.example:8400"}, 421, "host_not_allowed", "localhost"},
			{"host rebinding subdomain", request{target: ok, header: metadata, host: "127.0.0.1.evil.example"}, 421, "host_not_allowed", "localhost"},
			{"no scope", request{target: "/token", header: metadata}, 400, "missing_scope", "resource="},
			{"scope and resource", request{target: ok + "&scope=" + laScope, header: metadata}, 400, "ambiguous_scope", "one of them"},
			{"permission scope", request{target: "/token?scope=" + laResource + "/Data.Read", header: metadata}, 400, "invalid_scope", ".default"},
			{"two resources", request{target: "/token?scope=" + laScope + "%20" + kvScope, header: metadata}, 400, "invalid_scope", ""},
			{"resource not a URI", request{target: "/token?resource=not-a-uri", header: metadata}, 400, "invalid_scope", ""},
			{"unknown client_id", request{target: ok + "&client_id=00000000-0000-4000-8000-000000000000", header: metadata}, 400, "identity_not_found", "client"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := h.do(tt.req)
				b := checkError(t, r, tt.status, tt.code, true)
				text := b["error_description"].(string) + " " + b["hint"].(string)
				if !strings.Contains(text, tt.contains) {
					t.Errorf("description+hint = %q, want it to mention %q", text, tt.contains)
				}
			})
		}
	})

	t.Run("host allowed", func(t *testing.T) {
		for _, host := range []string{"localhost", "localhost:8400", "LOCALHOST", "127.0.0.1", "127.0.0.1:8400", "127.0.0.2", "[::1]", "[::1]:8400"} {
			r := h.do(request{target: "/token?resource=" + laResource, header: metadata, host: host})
			if r.status != http.StatusOK {
				t.Errorf("GET /token with Host %s = %d %s, want 200", host, r.status, r.body)
			}
		}
	})
}

// TestTokenListenHost checks that the configured listen name passes the
// Host guard beside the loopback names.
func TestTokenListenHost(t *testing.T) {
	t.Parallel()
	s, err := newServer(Options{Cache: nopCache{}, Identities: []Identity{{}}, ListenHost: "broker.internal"})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"broker.internal":      true,
		"broker.internal:8400": true,
		"BROKER.internal":      true,
		"localhost":            true,
		"[::1]:1":              true,
		"evil.example":         false,
		"":                     false,
		"0.0.0.0":              false,
		"10.0.0.1":             false,
	} {
		if got := s.hostAllowed(host); got != want {
			t.Errorf("hostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
	for _, lh := range []string{"0.0.0.0", "::", ""} {
		s.opts.ListenHost = lh
		if s.hostAllowed("0.0.0.0") || s.hostAllowed("::") {
			t.Errorf("with ListenHost %q, a wildcard Host is allowed; want refused", lh)
		}
	}
}

func TestTokenAllowedScopes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{AllowedScopes: []string{laScope}, IdentityHeader: "allowed-scopes-header-secret"})
	if r := h.do(request{target: "/token?resource=" + laResource, header: metadata}); r.status != http.StatusOK {
		t.Errorf("GET /token for an allowed scope = %d %s, want 200", r.status, r.body)
	}
	for _, req := range []request{
		{target: "/token?resource=" + kvResource, header: metadata},
		{target: "/msi/token?api-version=2019-08-01&resource=" + kvResource, header: map[string]string{"X-IDENTITY-HEADER": "allowed-scopes-header-secret"}},
		{target: "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=" + kvResource, header: metadata},
	} {
		t.Run(req.target, func(t *testing.T) {
			b := checkError(t, h.do(req), http.StatusForbidden, "scope_not_allowed", true)
			if !strings.Contains(b["hint"].(string), "BROKER_ALLOWED_SCOPES") || !strings.Contains(b["hint"].(string), laScope) {
				t.Errorf("hint = %q, want the allowed scopes and BROKER_ALLOWED_SCOPES", b["hint"])
			}
		})
	}
	if got := h.cloud.Entra.Requests(emulator.DemoClientID, kvScope); got != 0 {
		t.Errorf("emulator saw %d requests for a refused scope, want 0", got)
	}
}

// TestTokenEntraErrors checks how Entra's failures are answered on all three
// token endpoints: a permanent refusal with Entra's codes and the hint, a
// transient one with Retry-After.
func TestTokenEntraErrors(t *testing.T) {
	t.Parallel()
	const header = "entra-errors-identity-header"
	endpoints := []struct {
		name, target string
		header       map[string]string
		// permanentStatus is the status of a permanent Entra refusal. On
		// the managed-identity endpoints it is 400, never 5xx: the SDKs
		// retry 5xx (Go on IMDS for about 70 s) and a bad secret does not
		// mend itself.
		permanentStatus int
		message         bool
	}{
		{"token", "/token?resource=%s", metadata, http.StatusBadGateway, false},
		{"msi", "/msi/token?api-version=2019-08-01&resource=%s", map[string]string{"X-IDENTITY-HEADER": header}, http.StatusBadRequest, true},
		{"imds", "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=%s", metadata, http.StatusBadRequest, true},
	}
	resources := []string{laResource, kvResource, "https://management.azure.com"}

	t.Run("wrong secret", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, harnessOptions{ClientSecret: wrongSecret, IdentityHeader: header})
		for i, ep := range endpoints {
			t.Run(ep.name, func(t *testing.T) {
				r := h.do(request{target: strings.Replace(ep.target, "%s", resources[i], 1), header: ep.header})
				b := checkError(t, r, ep.permanentStatus, "invalid_client", true)
				if diff := cmp.Diff([]any{json.Number("7000215")}, b["aad_error_codes"]); diff != "" {
					t.Errorf("aad_error_codes (-want +got):\n%s", diff)
				}
				if id, _ := b["correlation_id"].(string); id == "" {
					t.Errorf("correlation_id = %v, want Entra's", b["correlation_id"])
				}
				if !strings.Contains(b["hint"].(string), "secret") {
					t.Errorf("hint = %q, want it to speak of the secret", b["hint"])
				}
				if m, _ := b["message"].(string); ep.message && !strings.Contains(m, b["hint"].(string)) {
					t.Errorf("message = %q, want the description and the hint", m)
				}
				if ra := r.header.Get("Retry-After"); ra != "" {
					t.Errorf("Retry-After = %q on a permanent error, want none", ra)
				}
			})
		}
	})

	t.Run("app disabled", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, harnessOptions{IdentityHeader: header, Setup: func(a *emulator.Azure) error {
			return a.Entra.SetEnabled(emulator.DemoClientID, false)
		}})
		for i, ep := range endpoints {
			t.Run(ep.name, func(t *testing.T) {
				r := h.do(request{target: strings.Replace(ep.target, "%s", resources[i], 1), header: ep.header})
				b := checkError(t, r, ep.permanentStatus, "unauthorized_client", true)
				if diff := cmp.Diff([]any{json.Number("7000112")}, b["aad_error_codes"]); diff != "" {
					t.Errorf("aad_error_codes (-want +got):\n%s", diff)
				}
			})
		}
	})

	faults := []struct {
		name       string
		fault      emulator.Fault
		retryAfter string
	}{
		{"throttled", emulator.Fault{Kind: emulator.FaultThrottle, RetryAfter: 42 * time.Second}, "42"},
		{"unavailable with retry-after", emulator.Fault{Kind: emulator.FaultUnavailable, RetryAfter: 17 * time.Second}, "17"},
		// Without Retry-After the cache's first backoff, 1 s (jitter fixed
		// at the middle), is the next attempt.
		{"server error", emulator.Fault{Kind: emulator.FaultServerError}, "1"},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock(time.Now())
			h := newHarness(t, harnessOptions{IdentityHeader: header, Clock: clock})
			for i, ep := range endpoints {
				t.Run(ep.name, func(t *testing.T) {
					h.cloud.Entra.InjectFault(emulator.DemoClientID, f.fault)
					r := h.do(request{target: strings.Replace(ep.target, "%s", resources[i], 1), header: ep.header})
					checkError(t, r, http.StatusServiceUnavailable, "entra_unavailable", true)
					if got := r.header.Get("Retry-After"); got != f.retryAfter {
						t.Errorf("Retry-After = %q, want %q", got, f.retryAfter)
					}
				})
			}
		})
	}
}

// TestTokenStale drives the cache's clock to the background refresh, makes
// the refresh fail, and checks that the still valid token is served with
// X-Broker-Token-Stale on every endpoint, then no longer once a refresh
// succeeds.
func TestTokenStale(t *testing.T) {
	t.Parallel()
	const header = "stale-identity-header"
	clock := newFakeClock(time.Now())
	h := newHarness(t, harnessOptions{IdentityHeader: header, Clock: clock, PrefetchScopes: []string{laScope}})
	reqs := []request{
		{target: "/token?resource=" + laResource, header: metadata},
		{target: "/msi/token?api-version=2019-08-01&resource=" + laResource, header: map[string]string{"X-IDENTITY-HEADER": header}},
		{target: "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=" + laResource, header: metadata},
	}
	first := h.do(reqs[0]).json(t)["access_token"]

	// The refresh is due at half the lifetime; Entra is down by then.
	h.cloud.Entra.InjectFault(emulator.DemoClientID, emulator.Fault{Kind: emulator.FaultUnavailable, RetryAfter: 2 * time.Minute, Times: 100})
	clock.Advance(emulator.DefaultTokenLifetime/2 + time.Minute)
	h.prefetch(laScope) // waits for the refresh in flight
	if st := h.cache.Status(h.identity.Key(laScope)); !st.Stale {
		t.Fatalf("Status after a failed refresh = %+v, want Stale", st)
	}
	for _, req := range reqs {
		r := h.do(req)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s = %d %s, want 200", req.target, r.status, r.body)
		}
		if got := r.header.Get(staleHeader); got != "true" {
			t.Errorf("GET %s: %s = %q, want true", req.target, staleHeader, got)
		}
		if got := r.json(t)["access_token"]; got != first {
			t.Errorf("GET %s served another token while the refresh fails", req.target)
		}
	}
	if r := h.doOps(request{target: "/readyz"}); r.status != http.StatusOK {
		t.Errorf("/readyz while stale = %d %s, want 200 (the token is servable)", r.status, r.body)
	}

	// Entra is back; the retry succeeds.
	h.cloud.Entra.ClearFaults(emulator.DemoClientID)
	clock.Advance(2*time.Minute + time.Second)
	h.prefetch(laScope)
	for _, req := range reqs {
		r := h.do(req)
		if got := r.header.Get(staleHeader); r.status != http.StatusOK || got != "" {
			t.Errorf("GET %s after recovery = %d with %s %q, want 200 without it", req.target, r.status, staleHeader, got)
		}
	}
	m := tokenRequestCounts(t, h)
	for _, ep := range []string{"token", "msi", "imds"} {
		if m[ep+"/stale"] != 1 {
			t.Errorf("broker_token_requests_total{endpoint=%q,result=\"stale\"} = %v, want 1", ep, m[ep+"/stale"])
		}
	}
}
