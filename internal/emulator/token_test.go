package emulator

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// tokenAnswer is the success body as a client decodes it.
type tokenAnswer struct {
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	ExtExpiresIn int64  `json:"ext_expires_in"`
	RefreshIn    int64  `json:"refresh_in"`
	AccessToken  string `json:"access_token"`
}

// getToken posts form and decodes a 200 answer.
func getToken(t *testing.T, h http.Handler, tenant string, form url.Values) (*http.Response, tokenAnswer) {
	t.Helper()
	r := newTokenRequest(http.MethodPost, tenant, form)
	r.Header.Set("client-request-id", requestID)
	res, body := serve(t, h, r)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("token: status %d, want 200: %s", res.StatusCode, body)
	}
	var a tokenAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("token: body is not JSON: %v", err)
	}
	return res, a
}

func TestTokenSuccess(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := newTokenRequest(http.MethodPost, testTenant, credentialForm())
	r.Header.Set("client-request-id", requestID)
	res, body := serve(t, f.e, r)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200: %s", res.StatusCode, body)
	}
	// The exact body, with the token's value masked: numbers are JSON
	// numbers, fields in Entra's order, no refresh_in for a 1 h token.
	masked := regexp.MustCompile(`"access_token":"[^"]+"`).ReplaceAllString(string(body), `"access_token":"…"`)
	if want := `{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"…"}`; masked != want {
		t.Errorf("body = %s, want %s", masked, want)
	}
	for h, want := range map[string]string{
		"Cache-Control":     "no-store, no-cache",
		"Pragma":            "no-cache",
		"Expires":           "-1",
		"Content-Type":      "application/json; charset=utf-8",
		"client-request-id": requestID,
		"x-ms-clitelem":     "1,0,0,,",
	} {
		if got := res.Header.Get(h); got != want {
			t.Errorf("header %s = %q, want %q", h, got, want)
		}
	}
	var a tokenAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatal(err)
	}
	got, err := f.e.VerifyAccessToken(a.AccessToken)
	if err != nil {
		t.Fatalf("VerifyAccessToken(issued token) = %v", err)
	}
	iss := "https://sts.windows.net/" + testTenant + "/"
	want := Claims{
		Audience: "https://api.loganalytics.io", Issuer: iss,
		IssuedAt: testNow, NotBefore: testNow, ExpiresAt: testNow.Add(3599 * time.Second),
		AppID: testClient, AppIDACR: "1", IdentityProvider: iss,
		ObjectID: testObjectID, Subject: testObjectID, Roles: []string{"Data.Read"},
		TenantID: testTenant, Version: "1.0",
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Claims{}, "UTI")); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
	if len(got.UTI) != 22 {
		t.Errorf("uti = %q, want 22 base64url characters", got.UTI)
	}
}

// TestTokenClaimsJSON pins the claims as a resource API decodes them: names,
// JSON types, and no roles claim when the app holds none.
func TestTokenClaimsJSON(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, a := getToken(t, f.e, testTenant, with(credentialForm(), map[string][]string{"scope": {"https://management.azure.com//.default"}}))
	parts := strings.Split(a.AccessToken, ".")
	if len(parts) != 3 {
		t.Fatalf("access token has %d parts, want 3", len(parts))
	}
	var header, claims map[string]any
	for i, v := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	if header["alg"] != "RS256" || header["typ"] != "JWT" || header["kid"] == nil || header["kid"] != header["x5t"] {
		t.Errorf("header = %v, want alg RS256, typ JWT, kid = x5t", header)
	}
	iat := float64(testNow.Unix())
	want := map[string]any{
		"aud": "https://management.azure.com/", "iss": "https://sts.windows.net/" + testTenant + "/",
		"iat": iat, "nbf": iat, "exp": iat + 3599,
		"appid": testClient, "appidacr": "1", "idp": "https://sts.windows.net/" + testTenant + "/",
		"oid": testObjectID, "sub": testObjectID, "tid": testTenant, "ver": "1.0",
	}
	if diff := cmp.Diff(want, claims, cmpopts.IgnoreMapEntries(func(k string, _ any) bool { return k == "uti" })); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
}

func TestTokenVariants(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		tenant    string
		form      url.Values
		basic     [2]string
		wantAud   string
		wantExp   int64
		wantRefIn int64
	}{
		{name: "tenant by domain", tenant: testDomain, form: credentialForm(), wantAud: "https://api.loganalytics.io", wantExp: 3599},
		{name: "tenant in upper case", tenant: strings.ToUpper(testTenant), form: credentialForm(), wantAud: "https://api.loganalytics.io", wantExp: 3599},
		{name: "msal extra scopes", form: with(credentialForm(), map[string][]string{"scope": {laScope + " openid offline_access profile"}}), wantAud: "https://api.loganalytics.io", wantExp: 3599},
		{name: "cae claims", form: with(credentialForm(), map[string][]string{"claims": {`{"access_token":{"xms_cc":{"values":["CP1"]}}}`}}), wantAud: "https://api.loganalytics.io", wantExp: 3599},
		{name: "resource in other case", form: with(credentialForm(), map[string][]string{"scope": {"HTTPS://API.LogAnalytics.io/.default"}}), wantAud: "https://api.loganalytics.io", wantExp: 3599},
		{name: "same resource twice", form: with(credentialForm(), map[string][]string{"scope": {laScope + " " + laScope}}), wantAud: "https://api.loganalytics.io", wantExp: 3599},
		{name: "basic auth", form: with(credentialForm(), map[string][]string{"client_id": nil, "client_secret": nil}), basic: [2]string{testClient, testSecret}, wantAud: "https://api.loganalytics.io", wantExp: 3599},
		{name: "basic auth with form client id", form: with(credentialForm(), map[string][]string{"client_secret": nil}), basic: [2]string{testClient, testSecret}, wantAud: "https://api.loganalytics.io", wantExp: 3599},
		{name: "long-lived app gets refresh_in", form: with(credentialForm(), map[string][]string{"client_id": {longLivedClient}}), wantAud: "https://api.loganalytics.io", wantExp: 86399, wantRefIn: 43199},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			tenant := tt.tenant
			if tenant == "" {
				tenant = testTenant
			}
			r := newTokenRequest(http.MethodPost, tenant, tt.form)
			if tt.basic[0] != "" {
				r.SetBasicAuth(url.QueryEscape(tt.basic[0]), url.QueryEscape(tt.basic[1]))
			}
			res, body := serve(t, f.e, r)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200: %s", res.StatusCode, body)
			}
			var a tokenAnswer
			if err := json.Unmarshal(body, &a); err != nil {
				t.Fatal(err)
			}
			if a.ExpiresIn != tt.wantExp || a.ExtExpiresIn != tt.wantExp || a.RefreshIn != tt.wantRefIn {
				t.Errorf("expires_in, ext_expires_in, refresh_in = %d, %d, %d, want %d, %d, %d",
					a.ExpiresIn, a.ExtExpiresIn, a.RefreshIn, tt.wantExp, tt.wantExp, tt.wantRefIn)
			}
			c, err := f.e.VerifyAccessToken(a.AccessToken)
			if err != nil {
				t.Fatalf("VerifyAccessToken = %v", err)
			}
			if c.Audience != tt.wantAud || c.TenantID != testTenant {
				t.Errorf("aud, tid = %q, %q, want %q, %q", c.Audience, c.TenantID, tt.wantAud, testTenant)
			}
		})
	}
}

func TestTokenLifetimeOption(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(o *Options) { o.TokenLifetime = 24 * time.Hour })
	_, a := getToken(t, f.e, testTenant, credentialForm())
	if a.ExpiresIn != 86400 || a.RefreshIn != 43200 {
		t.Errorf("expires_in, refresh_in = %d, %d, want 86400, 43200", a.ExpiresIn, a.RefreshIn)
	}
	f = newFixture(t, func(o *Options) { o.TokenLifetime = 200 * time.Second })
	_, a = getToken(t, f.e, testTenant, credentialForm())
	if a.ExpiresIn != 200 || a.RefreshIn != 0 {
		t.Errorf("expires_in, refresh_in = %d, %d, want 200, 0 (absent)", a.ExpiresIn, a.RefreshIn)
	}
}

func TestRegistrationChanges(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	status := func(form url.Values) int {
		res, _ := serve(t, f.e, newTokenRequest(http.MethodPost, testTenant, form))
		return res.StatusCode
	}
	// Rotate: the new secret works, the old one no longer does.
	if err := f.e.SetSecrets(testClient, Secret{Value: "rotated"}); err != nil {
		t.Fatal(err)
	}
	if got := status(credentialForm()); got != http.StatusUnauthorized {
		t.Errorf("old secret after rotation: status %d, want 401", got)
	}
	if got := status(with(credentialForm(), map[string][]string{"client_secret": {"rotated"}})); got != http.StatusOK {
		t.Errorf("new secret after rotation: status %d, want 200", got)
	}
	// A secret expires when the clock passes ExpiresOn.
	if err := f.e.SetSecrets(testClient, Secret{Value: testSecret, ExpiresOn: testNow.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if got := status(credentialForm()); got != http.StatusOK {
		t.Errorf("before expiry: status %d, want 200", got)
	}
	f.clock.Advance(time.Minute)
	if got := status(credentialForm()); got != http.StatusUnauthorized {
		t.Errorf("at expiry: status %d, want 401", got)
	}
	// Disable and enable.
	if err := f.e.SetSecrets(testClient, Secret{Value: testSecret}); err != nil {
		t.Fatal(err)
	}
	if err := f.e.SetEnabled(testClient, false); err != nil {
		t.Fatal(err)
	}
	if got := status(credentialForm()); got != http.StatusBadRequest {
		t.Errorf("disabled: status %d, want 400", got)
	}
	if err := f.e.SetEnabled(testClient, true); err != nil {
		t.Fatal(err)
	}
	// Grants set the roles claim; no roles removes it.
	if err := f.e.Grant(testClient, "https://api.loganalytics.io", "Data.Read", "Data.Write"); err != nil {
		t.Fatal(err)
	}
	_, a := getToken(t, f.e, testTenant, credentialForm())
	if c, _ := f.e.VerifyAccessToken(a.AccessToken); !cmp.Equal(c.Roles, []string{"Data.Read", "Data.Write"}) {
		t.Errorf("roles = %v, want [Data.Read Data.Write]", c.Roles)
	}
	if err := f.e.Grant(testClient, "https://api.loganalytics.io"); err != nil {
		t.Fatal(err)
	}
	_, a = getToken(t, f.e, testTenant, credentialForm())
	if c, _ := f.e.VerifyAccessToken(a.AccessToken); c.Roles != nil {
		t.Errorf("roles = %v, want none", c.Roles)
	}
	for name, err := range map[string]error{
		"SetSecrets": f.e.SetSecrets(unknownClient),
		"SetEnabled": f.e.SetEnabled(unknownClient, true),
		"Grant":      f.e.Grant(testClient, "https://nowhere.example"),
	} {
		if !errors.Is(err, ErrNotRegistered) {
			t.Errorf("%s(unregistered) = %v, want ErrNotRegistered", name, err)
		}
	}
}

func TestAddErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"tenant not a GUID", f.e.AddTenant(Tenant{ID: "contoso", Domains: []string{"bad domain"}}),
			`add tenant: id: "contoso" is not a GUID; domains[0]: "bad domain" is not a DNS name`},
		{"tenant twice", f.e.AddTenant(Tenant{ID: testTenant}), "add tenant: " + testTenant + " is already registered"},
		{"domain twice", f.e.AddTenant(Tenant{ID: "6f1c2a9e-1111-4000-8000-0000000000bb", Domains: []string{"CONTOSO.onmicrosoft.com"}}),
			"add tenant: domain CONTOSO.onmicrosoft.com is already registered"},
		{"app fields", f.e.AddApp(App{TenantID: "x", ClientID: "y", ObjectID: "z", Secrets: []Secret{{}}, TokenLifetime: -time.Second}),
			`add app: tenant: "x" is not a GUID; client_id: "y" is not a GUID; object_id: "z" is not a GUID; secrets[0].value: is empty; token_lifetime: -1s is negative`},
		{"app of unknown tenant", f.e.AddApp(App{TenantID: "6f1c2a9e-1111-4000-8000-0000000000cc", ClientID: unknownClient}),
			"add app " + unknownClient + ": tenant 6f1c2a9e-1111-4000-8000-0000000000cc is not registered"},
		{"app twice", f.e.AddApp(App{TenantID: testTenant, ClientID: testClient}), "add app: " + testClient + " is already registered"},
		{"resource fields", f.e.AddResource(Resource{URIs: []string{"loganalytics"}, Roles: map[string][]string{"me": {"x"}}}),
			`add resource: uris[0]: "loganalytics" is not an absolute URI or a GUID; roles.me: the key is not a client ID (GUID)`},
		{"resource without uris", f.e.AddResource(Resource{}), "add resource: uris: is empty"},
		{"resource twice", f.e.AddResource(Resource{URIs: []string{"https://API.loganalytics.io"}}),
			"add resource: https://API.loganalytics.io is already registered"},
	}
	for _, tt := range tests {
		if tt.err == nil || tt.err.Error() != tt.want {
			t.Errorf("%s: error = %v, want %q", tt.name, tt.err, tt.want)
		}
	}
}

func TestVerifyAccessToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, a := getToken(t, f.e, testTenant, credentialForm())

	// Another emulator shares the process-wide key but not the tokens.
	other := newFixture(t)
	if _, err := other.e.VerifyAccessToken(a.AccessToken); !errors.Is(err, ErrTokenInvalid) {
		t.Errorf("VerifyAccessToken at another emulator = %v, want ErrTokenInvalid", err)
	}
	parts := strings.Split(a.AccessToken, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"aud":"https://evil"}`)) + "." + parts[2]
	for name, raw := range map[string]string{"empty": "", "garbage": "a.b.c", "tampered": tampered,
		"unsigned": parts[0] + "." + parts[1] + "."} {
		if _, err := f.e.VerifyAccessToken(raw); !errors.Is(err, ErrTokenInvalid) {
			t.Errorf("VerifyAccessToken(%s) = %v, want ErrTokenInvalid", name, err)
		}
	}
	// Expiry follows the injected clock.
	f.clock.Advance(3598 * time.Second)
	if _, err := f.e.VerifyAccessToken(a.AccessToken); err != nil {
		t.Errorf("VerifyAccessToken 1 s before exp = %v, want nil", err)
	}
	f.clock.Advance(time.Second)
	if _, err := f.e.VerifyAccessToken(a.AccessToken); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("VerifyAccessToken at exp = %v, want ErrTokenExpired", err)
	}
	// Revocation: earlier tokens fail, later ones (same second) verify.
	_, before := getToken(t, f.e, testTenant, credentialForm())
	_, otherApp := getToken(t, f.e, testTenant, with(credentialForm(), map[string][]string{"client_id": {longLivedClient}}))
	f.e.RevokeTokens(strings.ToUpper(testClient))
	_, after := getToken(t, f.e, testTenant, credentialForm())
	if _, err := f.e.VerifyAccessToken(before.AccessToken); !errors.Is(err, ErrTokenRevoked) {
		t.Errorf("VerifyAccessToken(token before revocation) = %v, want ErrTokenRevoked", err)
	}
	if _, err := f.e.VerifyAccessToken(after.AccessToken); err != nil {
		t.Errorf("VerifyAccessToken(token after revocation) = %v, want nil", err)
	}
	if _, err := f.e.VerifyAccessToken(otherApp.AccessToken); err != nil {
		t.Errorf("VerifyAccessToken(other app's token) = %v, want nil", err)
	}
	// No error text carries the token.
	if _, err := f.e.VerifyAccessToken(tampered); err == nil || strings.Contains(err.Error(), parts[2]) {
		t.Errorf("VerifyAccessToken error %v must not quote the token", err)
	}
}

func TestOwnSigningKey(t *testing.T) {
	t.Parallel()
	// 1024 bits: enough to show the key is used, cheap to generate.
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *Options) { o.SigningKey = key })
	_, a := getToken(t, f.e, testTenant, credentialForm())
	if _, err := jwt.Parse(a.AccessToken, func(*jwt.Token) (any, error) { return &key.PublicKey, nil }, jwt.WithTimeFunc(f.clock.Now)); err != nil {
		t.Errorf("token does not verify with the given key: %v", err)
	}
	if _, err := f.e.VerifyAccessToken(a.AccessToken); err != nil {
		t.Errorf("VerifyAccessToken = %v", err)
	}
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	srv := httptest.NewTLSServer(f.e)
	t.Cleanup(srv.Close)
	get := func(path string, v any) *http.Response {
		t.Helper()
		res, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status %d", path, res.StatusCode)
		}
		if err := json.NewDecoder(res.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return res
	}

	t.Run("openid-configuration", func(t *testing.T) {
		// msal-go appends "?" even without a query; by domain it names the GUID.
		var doc map[string]any
		res := get("/"+testDomain+"/v2.0/.well-known/openid-configuration?", &doc)
		if got := res.Header.Get("Cache-Control"); got != "max-age=86400, private" {
			t.Errorf("Cache-Control = %q", got)
		}
		base := srv.URL + "/" + testTenant
		for k, want := range map[string]string{
			"issuer":                 base + "/v2.0",
			"token_endpoint":         base + "/oauth2/v2.0/token",
			"authorization_endpoint": base + "/oauth2/v2.0/authorize",
			"jwks_uri":               base + "/discovery/v2.0/keys",
		} {
			if doc[k] != want {
				t.Errorf("%s = %v, want %s", k, doc[k], want)
			}
		}
		if len(doc) != 23 {
			t.Errorf("document has %d fields, want the 23 of the recorded one", len(doc))
		}
	})
	t.Run("openid-configuration common", func(t *testing.T) {
		var doc map[string]any
		get("/common/v2.0/.well-known/openid-configuration", &doc)
		if want := srv.URL + "/{tenantid}/v2.0"; doc["issuer"] != want {
			t.Errorf("issuer = %v, want %s", doc["issuer"], want)
		}
	})
	t.Run("instance", func(t *testing.T) {
		var doc struct {
			Endpoint string `json:"tenant_discovery_endpoint"`
			Version  string `json:"api-version"`
			Metadata []struct {
				PreferredNetwork string   `json:"preferred_network"`
				Aliases          []string `json:"aliases"`
			} `json:"metadata"`
		}
		q := url.Values{"api-version": {"1.1"}, "authorization_endpoint": {srv.URL + "/" + testTenant + "/oauth2/v2.0/authorize"}}
		get("/common/discovery/instance?"+q.Encode(), &doc)
		if want := srv.URL + "/" + testTenant + "/v2.0/.well-known/openid-configuration"; doc.Endpoint != want || doc.Version != "1.1" {
			t.Errorf("tenant_discovery_endpoint, api-version = %q, %q, want %q, 1.1", doc.Endpoint, doc.Version, want)
		}
		host := strings.TrimPrefix(srv.URL, "https://")
		if len(doc.Metadata) != 6 || doc.Metadata[0].PreferredNetwork != host || doc.Metadata[1].PreferredNetwork != "login.microsoftonline.com" {
			t.Errorf("metadata = %+v, want the emulator's host then the 5 known clouds", doc.Metadata)
		}
	})
	t.Run("jwks verifies a token", func(t *testing.T) {
		var jwks struct {
			Keys []struct {
				Kty, Use, Kid, X5t, N, E, Issuer string
				X5c                              []string
			} `json:"keys"`
		}
		get("/"+testTenant+"/discovery/v2.0/keys", &jwks)
		if len(jwks.Keys) != 1 {
			t.Fatalf("JWKS has %d keys, want 1", len(jwks.Keys))
		}
		k := jwks.Keys[0]
		if k.Kty != "RSA" || k.Use != "sig" || k.Kid == "" || k.Kid != k.X5t || len(k.X5c) != 1 || k.Issuer != srv.URL+"/"+testTenant+"/v2.0" {
			t.Errorf("key = %+v, want RSA sig with kid = x5t, one x5c, the tenant's issuer", k)
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		_, a := getToken(t, f.e, testTenant, credentialForm())
		tok, err := jwt.Parse(a.AccessToken, func(tok *jwt.Token) (any, error) {
			if tok.Header["kid"] != k.Kid {
				return nil, errors.New("kid not in JWKS")
			}
			return pub, nil
		}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(f.clock.Now))
		if err != nil || !tok.Valid {
			t.Errorf("token does not verify with the JWKS key: %v", err)
		}
	})
}

func TestUnknownRouteAndMethod(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/nothing/here", http.StatusNotFound},
		{http.MethodPost, "/" + testTenant + "/v2.0/.well-known/openid-configuration", http.StatusMethodNotAllowed},
		{http.MethodOptions, "/" + testTenant + "/oauth2/v2.0/token", http.StatusOK},
	} {
		res, _ := serve(t, f.e, httptest.NewRequest(tt.method, tt.path, nil))
		if res.StatusCode != tt.want {
			t.Errorf("%s %s: status %d, want %d", tt.method, tt.path, res.StatusCode, tt.want)
		}
	}
}
