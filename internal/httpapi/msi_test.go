package httpapi

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/entrabroker/broker/internal/emulator"
)

const msiHeader = "msi-identity-header-5d1b0a"

// msiHdr is the X-IDENTITY-HEADER the msi tests' broker expects.
var msiHdr = map[string]string{"X-IDENTITY-HEADER": msiHeader}

// checkMSIBody checks a managed-identity success answer: exactly the
// protocol's fields, every number a string of an integer, the resource
// echoed as sent, the client ID, and a token for the resource.
func checkMSIBody(t *testing.T, h *harness, r reply, resource string, imds bool) {
	t.Helper()
	now := h.now()
	if r.status != http.StatusOK {
		t.Fatalf("status = %d %s, want 200", r.status, r.body)
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	if got := r.header.Get("Content-Type"); got != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q, want application/json; charset=utf-8", got)
	}
	b := r.json(t)
	want := []string{"access_token", "client_id", "expires_in", "expires_on", "resource", "token_type"}
	if imds {
		want = []string{"access_token", "client_id", "expires_in", "expires_on", "ext_expires_in", "not_before", "resource", "token_type"}
	}
	if diff := cmp.Diff(want, keys(b)); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	if b["token_type"] != "Bearer" {
		t.Errorf("token_type = %v, want Bearer", b["token_type"])
	}
	if b["resource"] != resource {
		t.Errorf("resource = %v, want %q echoed", b["resource"], resource)
	}
	if b["client_id"] != emulator.DemoClientID {
		t.Errorf("client_id = %v, want %s", b["client_id"], emulator.DemoClientID)
	}
	in, on := stringInt(t, "expires_in", b["expires_in"]), stringInt(t, "expires_on", b["expires_on"])
	checkLifetime(t, now, in, on)
	if imds {
		if ext := stringInt(t, "ext_expires_in", b["ext_expires_in"]); ext != in {
			t.Errorf("ext_expires_in = %d, want expires_in %d", ext, in)
		}
		if nb := stringInt(t, "not_before", b["not_before"]); nb > now.Unix() || nb < now.Unix()-60 {
			t.Errorf("not_before = %d, want about now (%d)", nb, now.Unix())
		}
	}
	tok, _ := b["access_token"].(string)
	c, err := h.cloud.Entra.VerifyAccessToken(tok)
	if err != nil {
		t.Fatalf("VerifyAccessToken(access_token) = %v", err)
	}
	if aud := strings.TrimSuffix(resource, "/"); !strings.EqualFold(strings.TrimSuffix(c.Audience, "/"), aud) {
		t.Errorf("token aud = %s, want %s", c.Audience, aud)
	}
}

func TestMSIToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{IdentityHeader: msiHeader})
	q := "?api-version=2019-08-01&resource="

	t.Run("success", func(t *testing.T) {
		tests := []struct {
			name, target, resource string
			header                 map[string]string
		}{
			{"base", "/msi/token" + q + "https%3A%2F%2Fvault.azure.net", kvResource, msiHdr},
			{"trailing slash on path", "/msi/token/" + q + kvResource, kvResource, msiHdr},
			{"resource with trailing slash echoed", "/msi/token" + q + laResource + "/", laResource + "/", msiHdr},
			{"header name in lower case", "/msi/token" + q + kvResource, kvResource, map[string]string{"x-identity-header": msiHeader}},
			{"client_id of the configured app", "/msi/token" + q + kvResource + "&client_id=" + emulator.DemoClientID, kvResource, msiHdr},
			{"client_id in upper case", "/msi/token" + q + kvResource + "&client_id=" + strings.ToUpper(emulator.DemoClientID), kvResource, msiHdr},
			{"unknown parameters ignored", "/msi/token" + q + kvResource + "&foo=bar&claims=&bypass_cache=true", kvResource, msiHdr},
			{"empty selector ignored", "/msi/token" + q + kvResource + "&object_id=", kvResource, msiHdr},
			// JavaScript sends this content type on a GET; Python sends Metadata.
			{"extra headers", "/msi/token" + q + kvResource, kvResource, hdr(msiHdr, map[string]string{
				"Content-Type": "application/x-www-form-urlencoded;charset=utf-8", "x-ms-client-request-id": "abc", "Metadata": "true",
			})},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				checkMSIBody(t, h, h.do(request{target: tt.target, header: tt.header}), tt.resource, false)
			})
		}
	})

	t.Run("errors", func(t *testing.T) {
		base := "/msi/token" + q + kvResource
		const unknown = "00000000-0000-4000-8000-00000000beef"
		tests := []struct {
			name     string
			req      request
			status   int
			code     string
			contains string
		}{
			{"no identity header", request{target: base}, 401, "invalid_identity_header", "IDENTITY_HEADER"},
			{"wrong identity header", request{target: base, header: map[string]string{"X-IDENTITY-HEADER": "nope"}}, 401, "invalid_identity_header", "BROKER_IDENTITY_HEADER"},
			{"identity header prefix", request{target: base, header: map[string]string{"X-IDENTITY-HEADER": msiHeader[:5]}}, 401, "invalid_identity_header", "BROKER_IDENTITY_HEADER"},
			{"no api-version", request{target: "/msi/token?resource=" + kvResource, header: msiHdr}, 400, "invalid_request", "2019-08-01"},
			{"imds api-version", request{target: "/msi/token?api-version=2018-02-01&resource=" + kvResource, header: msiHdr}, 400, "wrong_dialect", "AZURE_POD_IDENTITY_AUTHORITY_HOST"},
			{"2017 api-version with the 2019 header", request{target: "/msi/token?api-version=2017-09-01&resource=" + kvResource, header: msiHdr}, 400, "wrong_dialect", "MSI_SECRET"},
			{"no resource", request{target: "/msi/token?api-version=2019-08-01", header: msiHdr}, 400, "invalid_request", "resource"},
			{"bad resource", request{target: "/msi/token" + q + "not-a-uri", header: msiHdr}, 400, "invalid_scope", ""},
			{"unknown client_id", request{target: base + "&client_id=" + unknown, header: msiHdr}, 400, "identity_not_found", "AZURE_CLIENT_ID"},
			{"unknown object_id", request{target: base + "&object_id=" + unknown, header: msiHdr}, 400, "identity_not_found", unknown},
			{"unknown principal_id", request{target: base + "&principal_id=" + unknown, header: msiHdr}, 400, "identity_not_found", unknown},
			{"unknown mi_res_id", request{target: base + "&mi_res_id=/subscriptions/x/resourceGroups/y/providers/Microsoft.ManagedIdentity/userAssignedIdentities/z", header: msiHdr}, 400, "identity_not_found", "userAssignedIdentities"},
			{"unknown msi_res_id", request{target: base + "&msi_res_id=/subscriptions/x/userAssignedIdentities/z", header: msiHdr}, 400, "identity_not_found", ""},
			{"two selectors", request{target: base + "&client_id=" + emulator.DemoClientID + "&object_id=" + unknown, header: msiHdr}, 400, "invalid_request", "more than one"},
			{"x-forwarded-for", request{target: base, header: hdr(msiHdr, map[string]string{"X-Forwarded-For": "10.1.1.1"})}, 403, "forwarded_request", "proxy"},
			{"forwarded", request{target: base, header: hdr(msiHdr, map[string]string{"Forwarded": "for=10.1.1.1"})}, 403, "forwarded_request", "proxy"},
			{"host evil.example", request{target: base, header: msiHdr, host: "evil.example"}, 421, "host_not_allowed", ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := h.do(tt.req)
				b := checkError(t, r, tt.status, tt.code, true)
				text := b["error_description"].(string) + " " + b["hint"].(string)
				if !strings.Contains(text, tt.contains) {
					t.Errorf("description+hint = %q, want it to mention %q", text, tt.contains)
				}
				// JavaScript and Python show only "message".
				if m, _ := b["message"].(string); tt.code != "forwarded_request" && tt.code != "host_not_allowed" && !strings.Contains(m, b["error_description"].(string)) {
					t.Errorf("message = %q, want the description (and hint)", m)
				}
				if strings.Contains(string(r.body), msiHeader) {
					t.Errorf("error body holds the identity header secret: %s", r.body)
				}
			})
		}
	})
}

// TestMSITokenNotConfigured checks /msi/token with BROKER_IDENTITY_HEADER
// unset: a clear error naming the variable, whatever the caller sends.
func TestMSITokenNotConfigured(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	for _, hd := range []map[string]string{nil, {"X-IDENTITY-HEADER": ""}, {"X-IDENTITY-HEADER": "anything"}} {
		r := h.do(request{target: "/msi/token?api-version=2019-08-01&resource=" + kvResource, header: hd})
		b := checkError(t, r, http.StatusForbidden, "msi_not_configured", true)
		for _, f := range []string{"error_description", "hint", "message"} {
			if s, _ := b[f].(string); !strings.Contains(s, "BROKER_IDENTITY_HEADER") {
				t.Errorf("%s = %q, want it to name BROKER_IDENTITY_HEADER", f, s)
			}
		}
	}
	if n := h.cloud.Entra.TotalRequests(); n != 0 {
		t.Errorf("emulator saw %d requests, want 0", n)
	}
}

func TestIMDSToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{IdentityHeader: msiHeader})
	const path = "/metadata/identity/oauth2/token"
	q := "?api-version=2018-02-01&resource="

	t.Run("success", func(t *testing.T) {
		tests := []struct {
			name, target, resource string
			header                 map[string]string
			host                   string
		}{
			{"base", path + q + "https%3A%2F%2Fvault.azure.net", kvResource, metadata, ""},
			// The JavaScript SDK sends the trailing slash.
			{"trailing slash", path + "/" + q + kvResource, kvResource, metadata, ""},
			{"metadata True", path + q + kvResource, kvResource, map[string]string{"Metadata": "True"}, ""},
			{"client_id of the configured app", path + q + kvResource + "&client_id=" + emulator.DemoClientID, kvResource, metadata, ""},
			{"newer api-version", path + "?api-version=2019-08-01&resource=" + kvResource, kvResource, metadata, ""},
			{"unknown parameters ignored", path + q + kvResource + "&bogus=1", kvResource, metadata, ""},
			{"resource with trailing slash echoed", path + q + laResource + "/", laResource + "/", metadata, ""},
			// A Go app reaches the broker through a redirect of
			// 169.254.169.254:80 (iptables DNAT or a dial override), so
			// its Host is the IMDS address.
			{"host is the IMDS address", path + q + kvResource, kvResource, metadata, "169.254.169.254"},
			{"host is the IMDS address with port", path + q + kvResource, kvResource, metadata, "169.254.169.254:80"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				checkMSIBody(t, h, h.do(request{target: tt.target, header: tt.header, host: tt.host}), tt.resource, true)
			})
		}
	})

	t.Run("probe", func(t *testing.T) {
		// The SDKs' probes send no Metadata header (Go and JavaScript: no
		// query either) and need a fast 400 with exactly this body.
		before := h.cloud.Entra.TotalRequests()
		for _, tt := range []struct {
			target string
			header map[string]string
			host   string
		}{
			{path, nil, ""},
			{path + "/", nil, ""},
			{path, nil, "169.254.169.254"},
			{path + q + kvResource, nil, ""},
			{path + q + kvResource, map[string]string{"Metadata": "false"}, ""},
			{path + q + kvResource, msiHdr, ""},
		} {
			r := h.do(request{target: tt.target, header: tt.header, host: tt.host})
			if r.status != http.StatusBadRequest {
				t.Errorf("GET %s (Host %q) = %d, want 400", tt.target, tt.host, r.status)
			}
			want := map[string]any{"error": "invalid_request", "error_description": "Required metadata header not specified"}
			if diff := cmp.Diff(want, r.json(t)); diff != "" {
				t.Errorf("GET %s body (-want +got):\n%s", tt.target, diff)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("Content-Type = %q, want application/json; charset=utf-8", ct)
			}
		}
		if n := h.cloud.Entra.TotalRequests() - before; n != 0 {
			t.Errorf("probes caused %d Entra requests, want 0", n)
		}
	})

	t.Run("errors", func(t *testing.T) {
		base := path + q + kvResource
		const unknown = "00000000-0000-4000-8000-00000000cafe"
		tests := []struct {
			name     string
			req      request
			status   int
			code     string
			contains string
		}{
			{"no api-version", request{target: path + "?resource=" + kvResource, header: metadata}, 400, "invalid_request", "api-version"},
			{"bad api-version", request{target: path + "?api-version=latest&resource=" + kvResource, header: metadata}, 400, "invalid_request", "2018-02-01"},
			{"old api-version", request{target: path + "?api-version=2017-12-01&resource=" + kvResource, header: metadata}, 400, "invalid_request", "2018-02-01"},
			{"no resource", request{target: path + "?api-version=2018-02-01", header: metadata}, 400, "invalid_request", "resource"},
			{"unknown client_id", request{target: base + "&client_id=" + unknown, header: metadata}, 400, "identity_not_found", unknown},
			{"unknown object_id", request{target: base + "&object_id=" + unknown, header: metadata}, 400, "identity_not_found", unknown},
			{"unknown msi_res_id", request{target: base + "&msi_res_id=/subscriptions/x/userAssignedIdentities/z", header: metadata}, 400, "identity_not_found", ""},
			{"unknown mi_res_id", request{target: base + "&mi_res_id=/subscriptions/x/userAssignedIdentities/z", header: metadata}, 400, "identity_not_found", ""},
			{"two selectors", request{target: base + "&client_id=" + unknown + "&msi_res_id=/x", header: metadata}, 400, "invalid_request", "more than one"},
			{"x-forwarded-for", request{target: base, header: hdr(metadata, map[string]string{"X-Forwarded-For": "10.0.0.9"})}, 403, "forwarded_request", "proxy"},
			{"forwarded", request{target: base, header: hdr(metadata, map[string]string{"Forwarded": "for=10.0.0.9"})}, 403, "forwarded_request", "proxy"},
			{"host evil.example", request{target: base, header: metadata, host: "evil.example"}, 421, "host_not_allowed", ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				b := checkError(t, h.do(tt.req), tt.status, tt.code, true)
				text := b["error_description"].(string) + " " + b["hint"].(string)
				if !strings.Contains(text, tt.contains) {
					t.Errorf("description+hint = %q, want it to mention %q", text, tt.contains)
				}
			})
		}
	})

	// The IMDS address names the IMDS route only: elsewhere it is not a
	// name of this broker.
	t.Run("IMDS host elsewhere", func(t *testing.T) {
		r := h.do(request{target: "/token?resource=" + kvResource, header: metadata, host: "169.254.169.254"})
		checkError(t, r, 421, "host_not_allowed", true)
	})
}

// TestMSITokenLifetimeOverTime follows a prefetched token for six hours of
// the cache's clock, through its background refreshes, and checks that
// every token served through the managed-identity endpoints has well over
// five minutes left: the SDKs treat less as expired and would ask again on
// every call.
func TestMSITokenLifetimeOverTime(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Now())
	h := newHarness(t, harnessOptions{IdentityHeader: msiHeader, Clock: clock, PrefetchScopes: []string{kvScope}})
	const step = 4 * time.Minute
	seen := map[string]bool{}
	for elapsed := time.Duration(0); elapsed < 6*time.Hour; elapsed += step {
		clock.Advance(step)
		h.prefetch(kvScope) // waits for a refresh the step started
		for _, target := range []string{
			"/msi/token?api-version=2019-08-01&resource=" + kvResource,
			"/metadata/identity/oauth2/token?api-version=2018-02-01&resource=" + kvResource,
		} {
			hd := msiHdr
			if strings.HasPrefix(target, "/metadata") {
				hd = metadata
			}
			r := h.do(request{target: target, header: hd})
			if r.status != http.StatusOK {
				t.Fatalf("at +%v: GET %s = %d %s", elapsed+step, target, r.status, r.body)
			}
			b := r.json(t)
			left := stringInt(t, "expires_in", b["expires_in"])
			if left < 20*60 {
				t.Errorf("at +%v: expires_in = %d s, want well over 5 minutes (at least 20)", elapsed+step, left)
			}
			if on := stringInt(t, "expires_on", b["expires_on"]); on < clock.Now().Unix()+left || on > clock.Now().Unix()+left+1 {
				t.Errorf("at +%v: expires_on = %d, want now+expires_in = %d", elapsed+step, on, clock.Now().Unix()+left)
			}
			seen[b["access_token"].(string)] = true
		}
	}
	// About two refreshes an hour.
	if len(seen) < 10 {
		t.Errorf("served %d distinct tokens over six hours, want the refreshed ones (about 12)", len(seen))
	}
}
