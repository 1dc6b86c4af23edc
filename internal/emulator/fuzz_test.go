package emulator

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzParseScope: any scope string gets either one well-formed resource or
// an invalid_scope error, never a panic.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{laScope, laScope + " openid offline_access profile", "https://a/.default https://b/.default",
		"Data.Read", "/.default", "openid", "", "api://x//.default", "6f1c2a9e-2222-4000-8000-000000000002/.default"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, scope string) {
		res, ae := parseScope(scope)
		if ae != nil {
			if ae.code != "invalid_scope" || ae.status != http.StatusBadRequest {
				t.Errorf("parseScope(%q) error %+v, want a 400 invalid_scope", scope, ae)
			}
			return
		}
		if !validResourceID(res) || !strings.Contains(scope, res+"/.default") {
			t.Errorf("parseScope(%q) = %q, want a valid resource named in the scope", scope, res)
		}
	})
}

// FuzzTokenEndpoint: any form body gets a well-formed answer, never a panic.
func FuzzTokenEndpoint(f *testing.F) {
	f.Add(credentialForm().Encode())
	f.Add("grant_type=client_credentials&client_id=" + testClient + "&client_assertion=a.b.c&client_assertion_type=" + url.QueryEscape(clientAssertionType))
	f.Add("%zz&&==")
	e := newFixture(f).e
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "/"+testTenant+"/oauth2/v2.0/token", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res, _ := serve(t, e, r)
		switch res.StatusCode {
		case http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized:
		default:
			t.Errorf("status %d for body %q", res.StatusCode, body)
		}
	})
}

// FuzzParseConfig: any file content decodes or fails with an error, never a
// panic.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("tenants:\n  - id: 6f1c2a9e-1111-4000-8000-000000000001\n"))
	f.Add([]byte("apps: [{tenant: x, client_id: y, secrets: [{value: ''}]}]\nresources: [{uris: [a], roles: {b: [c]}}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseConfig(data, "fuzz.yaml")
	})
}
