package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/entrabroker/broker/internal/emulator"
)

// secretHdr is the 2017-09-01 secret header the dialect tests' broker
// expects.
var secretHdr = map[string]string{"secret": msiHeader}

// formHdr are the headers of a Cloud Shell token request.
var formHdr = map[string]string{"Metadata": "true", "Content-Type": "application/x-www-form-urlencoded"}

func TestAppService2017(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{IdentityHeader: msiHeader, ListenAddress: "127.0.0.1:18400"})

	t.Run("success", func(t *testing.T) {
		for _, tt := range []struct{ name, target string }{
			// msrestazure (the Azure CLI's managed-identity client) appends
			// "/?resource=…" to MSI_ENDPOINT without escaping the resource.
			{"azure cli", "/msi/token/?resource=" + laResource + "&api-version=2017-09-01"},
			{"azure-identity", "/msi/token?api-version=2017-09-01&resource=https%3A%2F%2Fapi.loganalytics.io"},
			{"clientid", "/msi/token?api-version=2017-09-01&resource=" + laResource + "&clientid=" + emulator.DemoClientID},
			{"client_id", "/msi/token?api-version=2017-09-01&resource=" + laResource + "&client_id=" + strings.ToUpper(emulator.DemoClientID)},
			{"both agree", "/msi/token?api-version=2017-09-01&resource=" + laResource + "&clientid=" + emulator.DemoClientID + "&client_id=" + emulator.DemoClientID},
		} {
			t.Run(tt.name, func(t *testing.T) {
				r := h.do(request{target: tt.target, header: secretHdr})
				if r.status != http.StatusOK {
					t.Fatalf("GET %s = %d %s", tt.target, r.status, r.body)
				}
				b := r.json(t)
				if diff := cmp.Diff([]string{"access_token", "client_id", "expires_on", "resource", "token_type"}, keys(b)); diff != "" {
					t.Errorf("fields (-want +got):\n%s", diff)
				}
				if b["resource"] != laResource || b["token_type"] != "Bearer" || b["client_id"] != emulator.DemoClientID {
					t.Errorf("body = %s", r.body)
				}
				on, _ := b["expires_on"].(string)
				exp, err := time.Parse("01/02/2006 15:04:05 -07:00", on)
				if err != nil {
					t.Fatalf("expires_on = %q, want a date like 12/07/2026 18:04:05 +00:00: %v", on, err)
				}
				c, err := h.cloud.Entra.VerifyAccessToken(b["access_token"].(string))
				if err != nil {
					t.Fatalf("VerifyAccessToken = %v", err)
				}
				if !exp.Equal(c.ExpiresAt) || !strings.HasSuffix(on, " +00:00") {
					t.Errorf("expires_on = %q, want the token's exp %v in UTC", on, c.ExpiresAt.UTC())
				}
			})
		}
	})

	t.Run("errors", func(t *testing.T) {
		v17 := "/msi/token?api-version=2017-09-01&resource=" + laResource
		v19 := "/msi/token?api-version=2019-08-01&resource=" + laResource
		for _, tt := range []struct {
			name     string
			req      request
			status   int
			code     string
			contains []string
		}{
			{"no secret", request{target: v17}, 401, "invalid_identity_header", []string{"secret header", "MSI_SECRET"}},
			{"wrong secret", request{target: v17, header: map[string]string{"secret": "nope"}}, 401, "invalid_identity_header", []string{"MSI_SECRET"}},
			{"2017 with X-IDENTITY-HEADER", request{target: v17, header: msiHdr}, 400, "wrong_dialect", []string{"2019-08-01", "MSI_SECRET", "http://127.0.0.1:18400/msi/token"}},
			{"2019 with secret", request{target: v19, header: secretHdr}, 400, "wrong_dialect", []string{"2017-09-01", "IDENTITY_HEADER", "http://127.0.0.1:18400/msi/token"}},
			{"2019 with clientid", request{target: v19 + "&clientid=" + emulator.DemoClientID, header: msiHdr}, 400, "wrong_dialect", []string{"client_id="}},
			{"service fabric", request{target: "/msi/token?api-version=2019-07-01-preview&resource=" + laResource, header: msiHdr}, 400, "wrong_dialect", []string{"Service Fabric", "IDENTITY_SERVER_THUMBPRINT"}},
			{"azure arc", request{target: "/msi/token?api-version=2020-06-01&resource=" + laResource, header: map[string]string{"Metadata": "true"}}, 400, "wrong_dialect", []string{"Azure Arc", "IMDS_ENDPOINT"}},
			{"imds", request{target: "/msi/token?api-version=2018-02-01&resource=" + laResource, header: metadata}, 400, "wrong_dialect", []string{"IMDS", "AZURE_POD_IDENTITY_AUTHORITY_HOST=http://127.0.0.1:18400"}},
			{"no api-version", request{target: "/msi/token?resource=" + laResource, header: msiHdr}, 400, "invalid_request", []string{"IDENTITY_ENDPOINT to http://127.0.0.1:18400/msi/token"}},
			{"2017 object_id", request{target: v17 + "&object_id=" + emulator.DemoClientID, header: secretHdr}, 400, "invalid_request", []string{"clientid"}},
			{"2017 two identities", request{target: v17 + "&clientid=" + emulator.DemoClientID + "&client_id=00000000-0000-0000-0000-000000000001", header: secretHdr}, 400, "invalid_request", []string{"one of them"}},
			{"2017 unknown clientid", request{target: v17 + "&clientid=00000000-0000-0000-0000-000000000001", header: secretHdr}, 400, "identity_not_found", nil},
			{"2017 no resource", request{target: "/msi/token?api-version=2017-09-01", header: secretHdr}, 400, "invalid_request", []string{"resource"}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				r := h.do(tt.req)
				b := checkError(t, r, tt.status, tt.code, true)
				text := string(r.body)
				for _, s := range tt.contains {
					if !strings.Contains(text, s) {
						t.Errorf("body lacks %q: %s", s, text)
					}
				}
				if m, _ := b["message"].(string); m == "" {
					t.Errorf("message = %v, want the description and hint for the SDKs", b["message"])
				}
			})
		}
	})
}

// TestMSIOffWithoutHeader: without BROKER_IDENTITY_HEADER both App Service
// dialects are off, and say how to turn them on.
func TestMSIOffWithoutHeader(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	for _, v := range []string{"2017-09-01", "2019-08-01"} {
		r := h.do(request{target: "/msi/token?api-version=" + v + "&resource=" + laResource, header: secretHdr})
		checkError(t, r, http.StatusForbidden, "msi_not_configured", true)
	}
}

func TestCloudShell(t *testing.T) {
	t.Parallel()
	// Cloud Shell has no secret: it answers without BROKER_IDENTITY_HEADER,
	// as the IMDS route does.
	h := newHarness(t, harnessOptions{ListenAddress: "[::1]:18401"})
	for _, tt := range []struct{ name, target, body string }{
		{"azure-identity", "/msi/token", "resource=" + laResource},
		{"azure cli", "/msi/token/", "resource=https%3A%2F%2Fapi.loganalytics.io"},
		{"client_id", "/msi/token", "resource=" + laResource + "&client_id=" + emulator.DemoClientID},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do(request{method: http.MethodPost, target: tt.target, header: formHdr, body: tt.body})
			checkMSIBody(t, h, r, laResource, true)
		})
	}

	big := "resource=" + laResource + "&pad=" + strings.Repeat("x", maxFormBytes)
	for _, tt := range []struct {
		name     string
		req      request
		status   int
		code     string
		contains string
	}{
		{"no metadata", request{method: http.MethodPost, target: "/msi/token", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "resource=" + laResource}, 400, "invalid_request", "MSI_ENDPOINT=http://[::1]:18401/msi/token"},
		{"json body", request{method: http.MethodPost, target: "/msi/token", header: map[string]string{"Metadata": "true", "Content-Type": "application/json"}, body: `{"resource":"x"}`}, 415, "invalid_request", "form"},
		{"too large", request{method: http.MethodPost, target: "/msi/token", header: formHdr, body: big}, 413, "request_too_large", "resource="},
		{"no resource", request{method: http.MethodPost, target: "/msi/token", header: formHdr, body: "client_id=" + emulator.DemoClientID}, 400, "invalid_request", "resource"},
		{"unknown identity", request{method: http.MethodPost, target: "/msi/token", header: formHdr, body: "resource=" + laResource + "&client_id=00000000-0000-0000-0000-000000000001"}, 400, "identity_not_found", ""},
		{"app service api-version", request{method: http.MethodPost, target: "/msi/token?api-version=2019-08-01", header: formHdr, body: "resource=" + laResource}, 400, "wrong_dialect", "GET"},
		{"app service secret", request{method: http.MethodPost, target: "/msi/token", header: hdr(formHdr, secretHdr), body: "resource=" + laResource}, 400, "wrong_dialect", "no MSI_SECRET"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do(tt.req)
			checkError(t, r, tt.status, tt.code, true)
			if !strings.Contains(string(r.body), tt.contains) {
				t.Errorf("body lacks %q: %s", tt.contains, r.body)
			}
		})
	}
}

// tokenOf returns the access token of a managed-identity answer.
func tokenOf(t *testing.T, r reply) string {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status = %d %s, want 200", r.status, r.body)
	}
	tok, _ := r.json(t)["access_token"].(string)
	return tok
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestRevocation: a token flagged by token_sha256_to_refresh is never
// served again; a wrong hash changes nothing; a flood of flags makes at most
// one Entra call per forced-refresh interval.
func TestRevocation(t *testing.T) {
	t.Parallel()
	for _, route := range []struct {
		name, target string
		header       map[string]string
	}{
		{"app service", "/msi/token?api-version=2019-08-01&resource=" + laResource, msiHdr},
		{"app service 2017", "/msi/token?api-version=2017-09-01&resource=" + laResource, secretHdr},
		{"imds", "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=" + laResource, metadata},
	} {
		t.Run(route.name, func(t *testing.T) {
			t.Parallel()
			clk := newFakeClock(time.Now())
			h := newHarness(t, harnessOptions{IdentityHeader: msiHeader, Clock: clk})
			get := func(hash string) reply {
				target := route.target
				if hash != "" {
					target += "&token_sha256_to_refresh=" + hash
				}
				return h.do(request{target: target, header: route.header})
			}
			first := tokenOf(t, get(""))
			if got := h.fetches.Load(); got != 1 {
				t.Fatalf("Entra calls = %d, want 1", got)
			}

			// A wrong hash, upper-case or not, changes nothing.
			for _, wrong := range []string{sha256Hex("another token"), strings.ToUpper(sha256Hex("x"))} {
				if tok := tokenOf(t, get(wrong)); tok != first {
					t.Errorf("with a wrong hash: a new token, want the cached one")
				}
			}
			if got := h.fetches.Load(); got != 1 {
				t.Errorf("Entra calls after wrong hashes = %d, want 1", got)
			}
			checkError(t, get("not-hex"), http.StatusBadRequest, "invalid_request", true)

			// A flag for a token fetched just now: the ration refuses a new
			// fetch, and the flagged token is not served.
			r := get(strings.ToUpper(sha256Hex(first)))
			checkError(t, r, http.StatusServiceUnavailable, "token_refresh_rationed", true)
			if ra := r.header.Get("Retry-After"); ra != "30" {
				t.Errorf("Retry-After = %q, want 30", ra)
			}
			if got := h.fetches.Load(); got != 1 {
				t.Errorf("Entra calls after a rationed flag = %d, want 1", got)
			}

			// Old enough: a flood of flags for it costs one Entra call, and
			// every flagger gets the new token.
			clk.Advance(31 * time.Second)
			var wg sync.WaitGroup
			var mu sync.Mutex
			got := map[string]int{}
			for range 20 {
				wg.Go(func() {
					r := get(sha256Hex(first))
					mu.Lock()
					defer mu.Unlock()
					if r.status != http.StatusOK {
						got["status "+http.StatusText(r.status)]++
						return
					}
					tok, _ := r.json(t)["access_token"].(string)
					got[sha256Hex(tok)]++
				})
			}
			wg.Wait()
			if got[sha256Hex(first)] > 0 {
				t.Errorf("the flagged token was served again: %v", got)
			}
			if len(got) != 1 {
				t.Errorf("answers to the flood = %v, want one new token for all", got)
			}
			if n := h.fetches.Load(); n != 2 {
				t.Errorf("Entra calls after a flood of flags = %d, want 2", n)
			}
			second := tokenOf(t, get(""))
			if second == first {
				t.Fatalf("the flagged token is still served")
			}
			// Late flags of the old token get the new one at no cost.
			if tok := tokenOf(t, get(sha256Hex(first))); tok != second {
				t.Errorf("a late flag of the old token: another token, want the new one")
			}
			// The new token flagged within the interval: refused, not served.
			clk.Advance(10 * time.Second)
			checkError(t, get(sha256Hex(second)), http.StatusServiceUnavailable, "token_refresh_rationed", true)
			clk.Advance(25 * time.Second)
			if tok := tokenOf(t, get(sha256Hex(second))); tok == second || tok == first {
				t.Errorf("a flag after the interval: an old token, want a third")
			}
			if n := h.fetches.Load(); n != 3 {
				t.Errorf("Entra calls = %d, want 3", n)
			}
		})
	}
}

// TestClientCapabilityCP1: xms_cc=cp1 reaches Entra as the claims
// parameter, and CP1 tokens are cached apart from the others.
func TestClientCapabilityCP1(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{IdentityHeader: msiHeader})
	base := "/msi/token?api-version=2019-08-01&resource=" + laResource
	caps := func(tok string) []string {
		c, err := h.cloud.Entra.VerifyAccessToken(tok)
		if err != nil {
			t.Fatalf("VerifyAccessToken = %v", err)
		}
		return c.ClientCapabilities
	}
	plain := tokenOf(t, h.do(request{target: base, header: msiHdr}))
	cp1 := tokenOf(t, h.do(request{target: base + "&xms_cc=cp1", header: msiHdr}))
	cp1again := tokenOf(t, h.do(request{target: base + "&xms_cc=cp2%2CCP1", header: msiHdr}))
	other := tokenOf(t, h.do(request{target: base + "&xms_cc=cp2", header: msiHdr}))
	imds := tokenOf(t, h.do(request{target: "/metadata/identity/oauth2/token?api-version=2018-02-01&xms_cc=cp1&resource=" + laResource, header: metadata}))
	if caps(plain) != nil || caps(other) != nil {
		t.Errorf("xms_cc of tokens without CP1 = %q, %q, want none", caps(plain), caps(other))
	}
	if !slices.Equal(caps(cp1), []string{"cp1"}) {
		t.Errorf("xms_cc of the CP1 token = %q, want [cp1]", caps(cp1))
	}
	if plain == cp1 || cp1again != cp1 || other != plain || imds != cp1 {
		t.Errorf("CP1 and plain tokens share a cache entry, or CP1 requests do not")
	}
	if n := h.fetches.Load(); n != 2 {
		t.Errorf("Entra calls = %d, want 2 (one plain, one CP1)", n)
	}
}

func TestCacheRefresh(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	post := func(query string) reply {
		return h.doOps(request{method: http.MethodPost, target: "/cache/refresh" + query})
	}
	checkError(t, post(""), http.StatusNotFound, "nothing_cached", true)

	tokenReq := request{target: "/token?resource=" + laResource, header: metadata}
	la := tokenOf(t, h.do(tokenReq))
	kv := tokenOf(t, h.do(request{target: "/token?resource=" + kvResource, header: metadata}))

	r := post("")
	if r.status != http.StatusOK {
		t.Fatalf("POST /cache/refresh = %d %s", r.status, r.body)
	}
	b := r.json(t)
	if b["refreshed"] != jsonNumber(2) || b["failed"] != jsonNumber(0) {
		t.Errorf("answer = %s, want 2 refreshed", r.body)
	}
	if strings.Contains(string(r.body), "eyJ") {
		t.Errorf("the answer holds a token: %s", r.body)
	}
	if tok := tokenOf(t, h.do(tokenReq)); tok == la {
		t.Errorf("after /cache/refresh the old token is served")
	}
	if n := h.fetches.Load(); n != 4 {
		t.Errorf("Entra calls = %d, want 4", n)
	}

	// One scope of one identity, by name or client ID, scope or resource.
	for _, q := range []string{"?identity=default&scope=" + kvScope, "?identity=" + emulator.DemoClientID + "&scope=" + kvResource} {
		r := post(q)
		if b := r.json(t); r.status != http.StatusOK || b["refreshed"] != jsonNumber(1) {
			t.Errorf("POST /cache/refresh%s = %d %s, want 1 refreshed", q, r.status, r.body)
		}
	}
	if tok := tokenOf(t, h.do(request{target: "/token?resource=" + kvResource, header: metadata})); tok == kv {
		t.Errorf("after /cache/refresh?scope= the old token is served")
	}
	checkError(t, post("?identity=nobody"), http.StatusNotFound, "identity_not_found", true)
	checkError(t, post("?scope=https://storage.azure.com/.default"), http.StatusNotFound, "nothing_cached", true)
	checkError(t, h.doOps(request{target: "/cache/refresh"}), http.StatusMethodNotAllowed, "method_not_allowed", true)

	// A failing fetch: 502, the key named, the old token still served.
	before := tokenOf(t, h.do(tokenReq))
	h.cloud.Entra.InjectFault(emulator.DemoClientID, emulator.Fault{Kind: emulator.FaultServerError})
	r = post("?scope=" + laScope)
	if r.status != http.StatusBadGateway {
		t.Fatalf("POST /cache/refresh with Entra failing = %d %s, want 502", r.status, r.body)
	}
	if !strings.Contains(string(r.body), `"result":"failed"`) || !strings.Contains(string(r.body), laScope) {
		t.Errorf("answer = %s, want the scope marked failed", r.body)
	}
	if tok := tokenOf(t, h.do(tokenReq)); tok != before {
		t.Errorf("after a failed refresh: another token, want the one held")
	}
}

// TestCacheRefreshLoopbackOnly: the ops listener is reached by pod IP too;
// only callers on the broker's host may refresh.
func TestCacheRefreshLoopbackOnly(t *testing.T) {
	t.Parallel()
	s, err := newServer(Options{Cache: nopCache{}, Identities: []Identity{{}}})
	if err != nil {
		t.Fatal(err)
	}
	ops := s.opsRoutes()
	for _, tt := range []struct {
		remote string
		status int
	}{{"192.0.2.7:40000", http.StatusForbidden}, {"127.0.0.1:40000", http.StatusNotFound}, {"[::1]:40000", http.StatusNotFound}, {"@", http.StatusNotFound}} {
		req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:9400/cache/refresh", nil)
		req.RemoteAddr = tt.remote
		rec := httptest.NewRecorder()
		ops.ServeHTTP(rec, req)
		if rec.Code != tt.status {
			t.Errorf("POST /cache/refresh from %s = %d %s, want %d", tt.remote, rec.Code, rec.Body, tt.status)
		}
	}
}

// jsonNumber is n as reply.json decodes it.
func jsonNumber(n int) any { return json.Number(strconv.Itoa(n)) }
