package httpapi

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/cache"
)

// The fuzz targets drive the real API router (middleware, guards and
// handlers) with arbitrary query strings and header values, against a cache
// that serves a fixed token for any key, so that every request that passes
// the parsing reaches the answer-writing code too. Each answer must be a
// well-formed JSON object in UTF-8, never a 500 (the recoverer turns a panic
// into one), and an error answer never carries the token. Seeds live in
// testdata/fuzz/<target>; `make fuzz` runs each target briefly.

// fuzzToken is the access token fuzzCache serves; it must never appear in an
// error body.
const fuzzToken = "fuzz-access-token-0123456789"

// fuzzIdentityHeader is the BROKER_IDENTITY_HEADER of the fuzzed router.
const fuzzIdentityHeader = "fuzz-identity-header-secret"

// fuzzCache serves fuzzToken for every key. It is safe for concurrent use.
type fuzzCache struct{ now time.Time }

func (c fuzzCache) Get(_ context.Context, key cache.Key) (cache.Result, error) {
	return cache.Result{Token: azure.Token{
		AccessToken: fuzzToken,
		IssuedAt:    c.now,
		ExpiresOn:   c.now.Add(time.Hour),
	}}, nil
}
func (fuzzCache) Status(cache.Key) cache.Status     { return cache.Status{Servable: true} }
func (fuzzCache) Invalidate(cache.Key, string) bool { return false }
func (fuzzCache) Keys() []cache.Key                 { return nil }
func (fuzzCache) Refresh(_ context.Context, keys ...cache.Key) []error {
	return make([]error, len(keys))
}

// fuzzRouter returns the API router over fuzzCache, with the demo
// identity's shape and a fixed clock.
func fuzzRouter(f *testing.F) http.Handler {
	f.Helper()
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	api, _, err := New(Options{
		Cache: fuzzCache{now: now},
		Identities: []Identity{{
			Name:      "default",
			Authority: "https://login.microsoftonline.com",
			TenantID:  "72f988bf-86f1-41af-91ab-2d7cd011db47",
			ClientID:  "11111111-2222-3333-4444-555555555555",
		}},
		IdentityHeader: fuzzIdentityHeader,
		ListenHost:     "127.0.0.1",
		Now:            func() time.Time { return now },
	})
	if err != nil {
		f.Fatalf("New() = %v", err)
	}
	return api
}

// fuzzServe sends GET path?rawQuery with header to h and checks what every
// answer must be. It returns the status and the decoded JSON object.
func fuzzServe(t *testing.T, h http.Handler, host, path, rawQuery string, header map[string]string) (int, map[string]any) {
	t.Helper()
	return fuzzServeBody(t, h, http.MethodGet, host, path, rawQuery, "", header)
}

// fuzzServeBody is fuzzServe with a method and a request body.
func fuzzServeBody(t *testing.T, h http.Handler, method, host, path, rawQuery, reqBody string, header map[string]string) (int, map[string]any) {
	t.Helper()
	r := httptest.NewRequest(method, "http://127.0.0.1:8400"+path, strings.NewReader(reqBody))
	r.URL.RawQuery = rawQuery
	r.RequestURI = path + "?" + rawQuery
	r.Host = host
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	res := w.Result()
	body := w.Body.Bytes()
	if res.StatusCode >= 500 {
		t.Fatalf("GET %s?%q (Host %q) = %d %s, want no 5xx from parsing", path, rawQuery, host, res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("GET %s?%q Content-Type = %q, want JSON", path, rawQuery, ct)
	}
	if !utf8.Valid(body) {
		t.Fatalf("GET %s?%q body is not UTF-8: %q", path, rawQuery, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("GET %s?%q body %q is not a JSON object: %v", path, rawQuery, body, err)
	}
	if res.StatusCode != http.StatusOK {
		if s, _ := m["error"].(string); s == "" {
			t.Fatalf("GET %s?%q = %d %s, want an error code", path, rawQuery, res.StatusCode, body)
		}
		if s, _ := m["error_description"].(string); s == "" {
			t.Fatalf("GET %s?%q = %d %s, want an error description", path, rawQuery, res.StatusCode, body)
		}
		if strings.Contains(string(body), fuzzToken) || strings.Contains(string(body), fuzzIdentityHeader) {
			t.Fatalf("GET %s?%q error body %s carries a secret", path, rawQuery, body)
		}
	}
	return res.StatusCode, m
}

// parseQuery is how the handlers read the query: url.Values from
// URL.Query, which drops malformed pairs.
func parseQuery(raw string) url.Values {
	q, _ := url.ParseQuery(raw)
	return q
}

func FuzzTokenQuery(f *testing.F) {
	for _, s := range []struct{ q, metadata string }{
		{"resource=https://api.loganalytics.io", "true"},
		{"scope=https://api.loganalytics.io/.default", "TRUE"},
		{"scope=https://database.windows.net//.default+openid+profile", "true"},
		{"scope=Data.Read", "true"},
		{"scope=a&resource=b", "true"},
		{"resource=https://api.loganalytics.io&client_id=00000000-0000-0000-0000-000000000001", "true"},
		{"resource=%ff%fe", "true"},
		{"scope=%00", "true"},
		{"", "true"},
		{"resource=https://api.loganalytics.io", ""},
		{";;;&&==", "true"},
	} {
		f.Add(s.q, s.metadata)
	}
	h := fuzzRouter(f)
	f.Fuzz(func(t *testing.T, rawQuery, metadata string) {
		code, m := fuzzServe(t, h, "127.0.0.1:8400", "/token", rawQuery, map[string]string{"Metadata": metadata})
		if code != http.StatusOK {
			return
		}
		q := parseQuery(rawQuery)
		want, err := azure.NormalizeScope(q.Get("scope"))
		if q.Get("scope") == "" {
			want, err = azure.ScopeForResource(q.Get("resource"))
		}
		if err != nil {
			t.Fatalf("GET /token?%q = 200 %v, but the scope does not normalize: %v", rawQuery, m, err)
		}
		if m["scope"] != want || m["access_token"] != fuzzToken || m["token_type"] != "Bearer" {
			t.Fatalf("GET /token?%q = %v, want scope %q with the token", rawQuery, m, want)
		}
	})
}

func FuzzMSITokenQuery(f *testing.F) {
	for _, s := range []struct{ q, header string }{
		{"api-version=2019-08-01&resource=https://vault.azure.net", fuzzIdentityHeader},
		{"api-version=2019-08-01&resource=https://vault.azure.net&client_id=11111111-2222-3333-4444-555555555555", fuzzIdentityHeader},
		{"api-version=2019-08-01&resource=https://vault.azure.net&object_id=1&mi_res_id=2", fuzzIdentityHeader},
		{"api-version=2017-09-01&resource=https://vault.azure.net", fuzzIdentityHeader},
		{"api-version=2019-08-01&resource=%e2%82%ac", fuzzIdentityHeader},
		{"api-version=2019-08-01&resource=https://vault.azure.net", "guess"},
		{"api-version=2019-08-01", fuzzIdentityHeader},
		{"api-version=2019-08-01&resource=https://vault.azure.net", ""},
	} {
		f.Add(s.q, s.header)
	}
	h := fuzzRouter(f)
	f.Fuzz(func(t *testing.T, rawQuery, header string) {
		code, m := fuzzServe(t, h, "localhost:8400", "/msi/token", rawQuery, map[string]string{"X-IDENTITY-HEADER": header})
		if code != http.StatusOK {
			return
		}
		if header != fuzzIdentityHeader {
			t.Fatalf("GET /msi/token?%q with X-IDENTITY-HEADER %q = 200, want 401", rawQuery, header)
		}
		checkManagedIdentityBody(t, "/msi/token", rawQuery, m)
	})
}

// FuzzMSI2017Query: the 2017-09-01 dialect answers 200 only to the right
// secret, with the resource echoed and expires_on a UTC date.
func FuzzMSI2017Query(f *testing.F) {
	for _, s := range []struct{ q, secret string }{
		{"api-version=2017-09-01&resource=https://vault.azure.net", fuzzIdentityHeader},
		{"resource=https://vault.azure.net&api-version=2017-09-01&clientid=11111111-2222-3333-4444-555555555555", fuzzIdentityHeader},
		{"api-version=2017-09-01&resource=https://vault.azure.net&clientid=a&client_id=b", fuzzIdentityHeader},
		{"api-version=2017-09-01&resource=https://vault.azure.net&token_sha256_to_refresh=zz&xms_cc=cp1", fuzzIdentityHeader},
		{"api-version=2017-09-01&resource=https://vault.azure.net", "guess"},
	} {
		f.Add(s.q, s.secret)
	}
	h := fuzzRouter(f)
	f.Fuzz(func(t *testing.T, rawQuery, secret string) {
		code, m := fuzzServe(t, h, "localhost:8400", "/msi/token/", rawQuery, map[string]string{"secret": secret})
		if code != http.StatusOK {
			return
		}
		if secret != fuzzIdentityHeader {
			t.Fatalf("GET /msi/token?%q with secret %q = 200, want 401", rawQuery, secret)
		}
		q := parseQuery(rawQuery)
		if m["access_token"] != fuzzToken || m["resource"] != q.Get("resource") {
			t.Fatalf("GET /msi/token?%q = %v, want the token and resource %q", rawQuery, m, q.Get("resource"))
		}
		on, _ := m["expires_on"].(string)
		if _, err := time.Parse(appService2017Expiry, on); err != nil {
			t.Fatalf("GET /msi/token?%q: expires_on = %q, want a 2017 date: %v", rawQuery, on, err)
		}
	})
}

// FuzzCloudShellForm: whatever the form body, the Cloud Shell dialect
// answers JSON, never 5xx from parsing, and 200 only with the resource
// echoed.
func FuzzCloudShellForm(f *testing.F) {
	for _, b := range []string{
		"resource=https://management.core.windows.net/",
		"resource=https%3A%2F%2Fvault.azure.net&client_id=11111111-2222-3333-4444-555555555555",
		"resource=https://vault.azure.net&client_id=x&object_id=y",
		"resource=%ff&xms_cc=cp1,cp2",
		"",
		"=&&;;resource",
	} {
		f.Add(b)
	}
	h := fuzzRouter(f)
	header := map[string]string{"Metadata": "true", "Content-Type": "application/x-www-form-urlencoded"}
	f.Fuzz(func(t *testing.T, body string) {
		code, m := fuzzServeBody(t, h, http.MethodPost, "localhost:8400", "/msi/token", "", body, header)
		if code != http.StatusOK {
			return
		}
		checkManagedIdentityBody(t, "/msi/token (form)", body, m)
	})
}

func FuzzIMDSTokenQuery(f *testing.F) {
	for _, s := range []struct{ q, metadata, host string }{
		{"api-version=2018-02-01&resource=https://management.azure.com/", "true", "169.254.169.254"},
		{"api-version=2019-08-01&resource=https://storage.azure.com", "true", "127.0.0.1:8400"},
		{"api-version=2018-02-01&resource=https://storage.azure.com&client_id=x", "true", "169.254.169.254:80"},
		{"api-version=2018-13-45&resource=https://storage.azure.com", "true", "localhost"},
		{"api-version=1999-01-01&resource=https://storage.azure.com", "true", "[::1]:8400"},
		{"api-version=2018-02-01", "true", "127.0.0.1"},
		{"", "", "169.254.169.254"},
		{"api-version=2018-02-01&resource=https://storage.azure.com", "true", "evil.example"},
	} {
		f.Add(s.q, s.metadata, s.host)
	}
	h := fuzzRouter(f)
	f.Fuzz(func(t *testing.T, rawQuery, metadata, host string) {
		code, m := fuzzServe(t, h, host, "/metadata/identity/oauth2/token", rawQuery, map[string]string{"Metadata": metadata})
		if code != http.StatusOK {
			return
		}
		if !strings.EqualFold(metadata, "true") {
			t.Fatalf("IMDS request without Metadata: true (%q) = 200, want 400", metadata)
		}
		checkManagedIdentityBody(t, "/metadata/identity/oauth2/token", rawQuery, m)
	})
}

// checkManagedIdentityBody checks a 200 answer of a managed-identity
// endpoint: the token, the resource echoed, every number a string.
func checkManagedIdentityBody(t *testing.T, path, rawQuery string, m map[string]any) {
	t.Helper()
	q := parseQuery(rawQuery)
	if _, err := azure.ScopeForResource(q.Get("resource")); err != nil {
		t.Fatalf("GET %s?%q = 200, but the resource is not valid: %v", path, rawQuery, err)
	}
	if m["access_token"] != fuzzToken || m["resource"] != q.Get("resource") {
		t.Fatalf("GET %s?%q = %v, want the token and resource %q", path, rawQuery, m, q.Get("resource"))
	}
	for _, k := range []string{"expires_in", "expires_on"} {
		if _, ok := m[k].(string); !ok {
			t.Fatalf("GET %s?%q: %s = %#v, want a string", path, rawQuery, k, m[k])
		}
	}
}

// FuzzGuard checks the Host, X-Forwarded-For and Metadata guards of /token:
// whatever the headers, the answer is JSON; a forwarded request or a Host
// that is not loopback, localhost or the listen host is refused.
func FuzzGuard(f *testing.F) {
	for _, s := range []struct{ host, xff, forwarded string }{
		{"127.0.0.1:8400", "", ""},
		{"localhost", "", ""},
		{"LOCALHOST:1", "", ""},
		{"[::1]:8400", "", ""},
		{"127.1.2.3", "", ""},
		{"evil.example:8400", "", ""},
		{"127.0.0.1.nip.io", "", ""},
		{"[", "", ""},
		{"", "", ""},
		{"127.0.0.1:8400", "10.0.0.1", ""},
		{"127.0.0.1:8400", "", "for=10.0.0.1"},
		{"169.254.169.254", "", ""},
	} {
		f.Add(s.host, s.xff, s.forwarded)
	}
	h := fuzzRouter(f)
	f.Fuzz(func(t *testing.T, host, xff, forwarded string) {
		// A forwarding header counts when present at all, even empty; the
		// harness sends only the non-empty ones.
		hdr := map[string]string{"Metadata": "true"}
		if xff != "" {
			hdr["X-Forwarded-For"] = xff
		}
		if forwarded != "" {
			hdr["Forwarded"] = forwarded
		}
		code, m := fuzzServe(t, h, host, "/token", "resource=https://api.loganalytics.io", hdr)
		switch {
		case xff != "" || forwarded != "":
			if code != http.StatusForbidden || m["error"] != "forwarded_request" {
				t.Fatalf("forwarded /token (X-Forwarded-For %q, Forwarded %q) = %d %v, want 403 forwarded_request", xff, forwarded, code, m)
			}
		case code == http.StatusOK:
			if !loopbackHost(host) {
				t.Fatalf("/token with Host %q = 200, want 421", host)
			}
		case code != http.StatusMisdirectedRequest:
			t.Fatalf("/token with Host %q = %d %v, want 200 or 421", host, code, m)
		}
	})
}

// loopbackHost reports whether hostport names localhost or a loopback IP
// literal, with or without a port: the only Hosts that /token may answer for
// a router whose listen host is 127.0.0.1.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
