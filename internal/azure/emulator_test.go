package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/entrabroker/broker/internal/emulator"
)

// These tests run the Client against the Entra ID emulator over TLS: the
// emulator is the ground truth for what Entra answers.

const (
	expiredAppID  = "e0000000-0000-4000-a000-00000000e001"
	disabledAppID = "e0000000-0000-4000-a000-00000000e002"
	unknownAppID  = "e0000000-0000-4000-a000-00000000e003"
	rotatingAppID = "e0000000-0000-4000-a000-00000000e004"
	unknownTenant = "e0000000-0000-4000-a000-00000000eeee"
)

// startEmulator returns an emulator with the demo registration and a few
// broken apps, served over TLS, and its server.
func startEmulator(t *testing.T, opts emulator.Options) (*emulator.Emulator, *httptest.Server) {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return t0 }
	}
	emu := emulator.New(opts)
	if err := emu.AddDemo(); err != nil {
		t.Fatal(err)
	}
	for _, a := range []emulator.App{
		{TenantID: emulator.DemoTenantID, ClientID: expiredAppID, Secrets: []emulator.Secret{{Value: "expired-secret-value", ExpiresOn: t0.Add(-time.Hour)}}},
		{TenantID: emulator.DemoTenantID, ClientID: disabledAppID, Disabled: true, Secrets: []emulator.Secret{{Value: "disabled-secret-value"}}},
		{TenantID: emulator.DemoTenantID, ClientID: rotatingAppID, Secrets: []emulator.Secret{{Value: "rotating-secret-one"}}},
	} {
		if err := emu.AddApp(a); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewTLSServer(emu)
	t.Cleanup(srv.Close)
	return emu, srv
}

// emulatorClient returns a Client for the emulator's server; cfg's zero
// fields are filled with the demo registration.
func emulatorClient(t *testing.T, srv *httptest.Server, cfg Config) *Client {
	t.Helper()
	cfg.AuthorityHost = srv.URL
	cfg.HTTPClient = srv.Client() // trusts the emulator's certificate
	if cfg.TenantID == "" {
		cfg.TenantID = emulator.DemoTenantID
	}
	if cfg.ClientID == "" {
		cfg.ClientID = emulator.DemoClientID
	}
	if cfg.Credential == nil {
		cfg.Credential = SecretCredential(emulator.DemoClientSecret)
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return t0 }
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	return c
}

// formCredential sends exactly the given form fields as its credential.
type formCredential url.Values

func (f formCredential) Apply(_ context.Context, r *TokenRequest) error {
	for k, v := range f {
		r.Form[k] = v
	}
	return nil
}

func TestEmulatorSuccess(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		lifetime time.Duration
		tenant   string
		scope    string
		aud      string
		refresh  time.Duration
	}{
		{name: "default lifetime", scope: AzurePublic.LogAnalytics.Scope(), aud: "https://api.loganalytics.io"},
		{name: "tenant domain", tenant: emulator.DemoTenantDomain, scope: AzurePublic.AppInsights.Scope(), aud: "https://api.applicationinsights.io"},
		{name: "MSAL extras and double slash", scope: "https://api.loganalytics.io//.default openid offline_access profile", aud: "https://api.loganalytics.io"},
		{name: "long-lived with refresh_in", lifetime: 24 * time.Hour, scope: AzurePublic.LogAnalytics.Scope(), aud: "https://api.loganalytics.io", refresh: 12 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			emu, srv := startEmulator(t, emulator.Options{TokenLifetime: tt.lifetime})
			c := emulatorClient(t, srv, Config{TenantID: tt.tenant})
			tok, err := c.Token(context.Background(), tt.scope)
			if err != nil {
				t.Fatalf("Token(%q) error = %v", tt.scope, err)
			}
			lifetime := tt.lifetime
			if lifetime == 0 {
				lifetime = emulator.DefaultTokenLifetime
			}
			want := Token{AccessToken: tok.AccessToken, IssuedAt: t0, ExpiresOn: t0.Add(lifetime), ExtExpiresOn: t0.Add(lifetime)}
			if tt.refresh > 0 {
				want.RefreshOn = t0.Add(tt.refresh)
			}
			if diff := cmp.Diff(want, tok); diff != "" {
				t.Errorf("Token() mismatch (-want +got):\n%s", diff)
			}
			claims, err := emu.VerifyAccessToken(tok.AccessToken)
			if err != nil {
				t.Fatalf("VerifyAccessToken() error = %v", err)
			}
			if claims.Audience != tt.aud || claims.AppID != emulator.DemoClientID || claims.TenantID != emulator.DemoTenantID {
				t.Errorf("claims = {aud %q, appid %q, tid %q}, want {%q, %q, %q}", claims.Audience, claims.AppID, claims.TenantID, tt.aud, emulator.DemoClientID, emulator.DemoTenantID)
			}
			if n := emu.Requests(emulator.DemoClientID, ""); n != 1 {
				t.Errorf("emulator saw %d requests, want 1", n)
			}
		})
	}
}

func TestEmulatorErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code   int
		status int
		oauth  string
		cfg    Config
		scope  string
	}{
		{code: 7000215, status: 401, oauth: "invalid_client", cfg: Config{Credential: SecretCredential("the-secret-id-not-the-value")}},
		{code: 7000222, status: 401, oauth: "invalid_client", cfg: Config{ClientID: expiredAppID, Credential: SecretCredential("expired-secret-value")}},
		{code: 7000218, status: 401, oauth: "invalid_client", cfg: Config{Credential: formCredential{}}},
		{code: 700016, status: 400, oauth: "unauthorized_client", cfg: Config{ClientID: unknownAppID}},
		{code: 7000112, status: 400, oauth: "unauthorized_client", cfg: Config{ClientID: disabledAppID, Credential: SecretCredential("disabled-secret-value")}},
		{code: 90002, status: 400, oauth: "invalid_request", cfg: Config{TenantID: unknownTenant}},
		{code: 500011, status: 400, oauth: "invalid_resource", scope: "https://unknown.example.com/.default"},
		{code: 500011, status: 400, oauth: "invalid_resource", scope: "https://api.loganalytics.io/v1/.default"},
		{code: 901002, status: 400, oauth: "invalid_request", cfg: Config{Credential: formCredential{
			"client_secret": {emulator.DemoClientSecret}, "resource": {"https://api.loganalytics.io"}}}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d %s", tt.code, tt.scope), func(t *testing.T) {
			t.Parallel()
			_, srv := startEmulator(t, emulator.Options{})
			c := emulatorClient(t, srv, tt.cfg)
			scope := tt.scope
			if scope == "" {
				scope = AzurePublic.LogAnalytics.Scope()
			}
			_, err := c.Token(context.Background(), scope)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Token() error = %v, want *Error", err)
			}
			if e.StatusCode != tt.status || e.Code != tt.oauth || !cmp.Equal(e.AADCodes, []int{tt.code}) || e.Transient {
				t.Errorf("Token() error = {Status %d, Code %q, AADCodes %v, Transient %v}, want {%d, %q, [%d], false}",
					e.StatusCode, e.Code, e.AADCodes, e.Transient, tt.status, tt.oauth, tt.code)
			}
			if e.Hint != aadHints[tt.code] || e.Hint == "" {
				t.Errorf("Hint = %q, want the hint of AADSTS%d", e.Hint, tt.code)
			}
			if !strings.HasPrefix(e.Description, fmt.Sprintf("AADSTS%d: ", tt.code)) || strings.ContainsAny(e.Description, "\r\n") {
				t.Errorf("Description = %q, want the one-line AADSTS%d sentence", e.Description, tt.code)
			}
			if !IsGUID(e.CorrelationID) || !IsGUID(e.TraceID) {
				t.Errorf("CorrelationID, TraceID = %q, %q, want GUIDs", e.CorrelationID, e.TraceID)
			}
		})
	}
}

// TestEmulatorAgreesWithLocalRefusals checks that what the client refuses
// without a network call is what the emulator answers for the same request.
func TestEmulatorAgreesWithLocalRefusals(t *testing.T) {
	t.Parallel()
	emu, srv := startEmulator(t, emulator.Options{})
	post := func(tenant, scope string) (status int, code string, codes []int) {
		t.Helper()
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {emulator.DemoClientID},
			"client_secret": {emulator.DemoClientSecret}, "scope": {scope}}
		resp, err := srv.Client().PostForm(srv.URL+"/"+url.PathEscape(tenant)+"/oauth2/v2.0/token", form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b struct {
			Error      string `json:"error"`
			ErrorCodes []int  `json:"error_codes"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b.Error, b.ErrorCodes
	}

	c := emulatorClient(t, srv, Config{})
	for _, scope := range []string{
		"",
		"Data.Read",
		"https://api.loganalytics.io",
		"https://api.loganalytics.io/user_impersonation",
		"openid profile",
		"https://api.loganalytics.io/.default https://management.azure.com/.default",
		"garbage/.default",
	} {
		before := emu.TotalRequests()
		_, err := c.Token(context.Background(), scope)
		var local *Error
		if !errors.As(err, &local) {
			t.Fatalf("Token(%q) error = %v, want a local *Error", scope, err)
		}
		if emu.TotalRequests() != before {
			t.Errorf("Token(%q) reached the emulator, want a local refusal", scope)
		}
		status, code, codes := post(emulator.DemoTenantID, scope)
		if local.Code != code || !cmp.Equal(local.AADCodes, codes) || status != http.StatusBadRequest {
			t.Errorf("scope %q: local refusal {%q, %v}, emulator {%d %q, %v}; want the same code", scope, local.Code, local.AADCodes, status, code, codes)
		}
	}

	for _, tenant := range []string{"not_a_tenant!", "common"} {
		_, err := New(Config{TenantID: tenant, ClientID: emulator.DemoClientID, Credential: SecretCredential("x"), AuthorityHost: srv.URL})
		var local *Error
		if !errors.As(err, &local) {
			t.Fatalf("New(tenant %q) error = %v, want *Error", tenant, err)
		}
		_, _, codes := post(tenant, AzurePublic.LogAnalytics.Scope())
		if !cmp.Equal(local.AADCodes, codes) || local.Hint == "" {
			t.Errorf("tenant %q: New refuses with %v, emulator answers %v; want the same code", tenant, local.AADCodes, codes)
		}
	}
}

func TestEmulatorFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		fault  emulator.Fault
		status int
		retry  time.Duration
		hint   string
	}{
		{fault: emulator.Fault{Kind: emulator.FaultThrottle}, status: 429, retry: emulator.DefaultThrottleRetryAfter, hint: hintThrottled},
		{fault: emulator.Fault{Kind: emulator.FaultThrottle, RetryAfter: 7 * time.Second}, status: 429, retry: 7 * time.Second, hint: hintThrottled},
		{fault: emulator.Fault{Kind: emulator.FaultServerError}, status: 500, hint: hintServerError},
		{fault: emulator.Fault{Kind: emulator.FaultUnavailable, RetryAfter: 5 * time.Second}, status: 503, retry: 5 * time.Second, hint: aadHints[90033]},
		{fault: emulator.Fault{Kind: emulator.FaultMalformedBody}, status: 200, hint: hintMalformed},
		{fault: emulator.Fault{Kind: emulator.FaultDropConnection}, hint: hintNetwork},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.fault.Kind, tt.fault.RetryAfter), func(t *testing.T) {
			t.Parallel()
			emu, srv := startEmulator(t, emulator.Options{})
			c := emulatorClient(t, srv, Config{})
			emu.InjectFault(emulator.DemoClientID, tt.fault)
			_, err := c.Token(context.Background(), testScope)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Token() error = %v, want *Error", err)
			}
			if !e.Transient || e.StatusCode != tt.status || e.RetryAfter != tt.retry || e.Hint != tt.hint {
				t.Errorf("Token() error = {Transient %v, Status %d, RetryAfter %v, Hint %q}, want {true, %d, %v, %q}",
					e.Transient, e.StatusCode, e.RetryAfter, e.Hint, tt.status, tt.retry, tt.hint)
			}
			// The fault is spent: the next request succeeds.
			if _, err := c.Token(context.Background(), testScope); err != nil {
				t.Errorf("Token() after the fault error = %v, want success", err)
			}
			if n := emu.Requests(emulator.DemoClientID, testScope); n != 2 {
				t.Errorf("emulator saw %d requests, want 2", n)
			}
		})
	}

	t.Run("delay until the caller gives up", func(t *testing.T) {
		t.Parallel()
		emu, srv := startEmulator(t, emulator.Options{})
		c := emulatorClient(t, srv, Config{})
		reached := make(chan struct{}, 1)
		release := make(chan struct{})
		defer close(release)
		emu.InjectFault(emulator.DemoClientID, emulator.Fault{Kind: emulator.FaultDelay, Reached: reached, Release: release})
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			<-reached
			cancel()
		}()
		_, err := c.Token(ctx, testScope)
		var e *Error
		if !errors.As(err, &e) || !e.Transient || !errors.Is(err, context.Canceled) || e.Hint != hintCanceled {
			t.Errorf("Token() error = %v, want a transient *Error wrapping context.Canceled", err)
		}
	})
}

func TestEmulatorSecretFileRotation(t *testing.T) {
	t.Parallel()
	emu, srv := startEmulator(t, emulator.Options{})
	path := filepath.Join(t.TempDir(), "client-secret")
	writeFile(t, path, "rotating-secret-one\n")
	c := emulatorClient(t, srv, Config{ClientID: rotatingAppID, Credential: SecretFileCredential(path, func() time.Time { return t0 })})
	if _, err := c.Token(context.Background(), testScope); err != nil {
		t.Fatalf("Token() error = %v", err)
	}

	// The secret is rotated in Entra: the old one stops working...
	if err := emu.SetSecrets(rotatingAppID, emulator.Secret{Value: "rotating-secret-two"}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Token(context.Background(), testScope)
	var e *Error
	if !errors.As(err, &e) || !cmp.Equal(e.AADCodes, []int{7000215}) {
		t.Fatalf("Token() with the old secret error = %v, want AADSTS7000215", err)
	}
	// ...until the file holds the new one, without a new Client.
	writeFileAtomic(t, path, "rotating-secret-two\n")
	if _, err := c.Token(context.Background(), testScope); err != nil {
		t.Fatalf("Token() after rotating the file error = %v", err)
	}
}

func TestEmulatorNoSecretInErrorsOrLogs(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	emu, srv := startEmulator(t, emulator.Options{Logger: zap.New(core)})
	c := emulatorClient(t, srv, Config{Logger: zap.New(core)})
	tok, err := c.Token(context.Background(), testScope)
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{emulator.DemoClientSecret, tok.AccessToken, "wrong-secret-value-42"}
	var texts []string
	wrong := emulatorClient(t, srv, Config{Credential: SecretCredential("wrong-secret-value-42")})
	_, err = wrong.Token(context.Background(), testScope)
	texts = append(texts, err.Error(), fmt.Sprintf("%+v", err))
	for _, f := range []emulator.FaultKind{emulator.FaultThrottle, emulator.FaultMalformedBody, emulator.FaultDropConnection, emulator.FaultServerError} {
		emu.InjectFault(emulator.DemoClientID, emulator.Fault{Kind: f})
		_, err := c.Token(context.Background(), testScope)
		texts = append(texts, err.Error(), fmt.Sprintf("%+v", err))
	}
	for _, entry := range logs.All() {
		b, _ := json.Marshal(entry.ContextMap())
		texts = append(texts, entry.Message+" "+string(b))
	}
	for _, s := range texts {
		for _, secret := range secrets {
			if strings.Contains(s, secret) {
				t.Errorf("%q contains a secret or token", s)
			}
		}
	}
}
