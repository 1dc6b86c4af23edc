package emulator

import (
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadConfigValid(t *testing.T) {
	t.Parallel()
	got, err := LoadConfig(filepath.Join("testdata", "config", "valid.yaml"))
	if err != nil {
		t.Fatalf("LoadConfig(valid.yaml) = %v", err)
	}
	const tenant, client = "6f1c2a9e-1111-4000-8000-000000000001", "6f1c2a9e-2222-4000-8000-000000000002"
	want := Config{
		TokenLifetime: 2 * time.Hour,
		Demo:          true,
		Tenants:       []Tenant{{ID: tenant, Name: "Contoso", Domains: []string{"contoso.onmicrosoft.com", "contoso.example"}}},
		Apps: []App{
			{TenantID: tenant, ClientID: client, ObjectID: "6f1c2a9e-3333-4000-8000-000000000003", DisplayName: "reporting",
				TokenLifetime: 24 * time.Hour,
				Secrets: []Secret{
					{Value: "first-secret", ExpiresOn: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
					{Value: "second-secret"},
				}},
			{TenantID: tenant, ClientID: "6f1c2a9e-2222-4000-8000-000000000004", Disabled: true, Secrets: []Secret{{Value: "retired-secret"}}},
		},
		Resources: []Resource{{
			URIs:        []string{"https://api.contoso.example", "api://6f1c2a9e-4444-4000-8000-000000000005"},
			DisplayName: "Contoso API",
			Roles: map[string][]string{
				client:       {"Reports.Read"},
				DemoClientID: {"Reports.Read", "Reports.Write"},
			},
		}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("LoadConfig(valid.yaml) (-want +got):\n%s", diff)
	}

	// Registered, it serves tokens: by domain, with the app's lifetime and roles.
	clock := &fakeClock{t: testNow}
	e := New(Options{Now: clock.Now, TokenLifetime: got.TokenLifetime})
	if err := e.Register(got); err != nil {
		t.Fatalf("Register = %v", err)
	}
	form := with(credentialForm(), map[string][]string{"client_id": {client}, "client_secret": {"first-secret"}, "scope": {"api://6f1c2a9e-4444-4000-8000-000000000005/.default"}})
	_, a := getToken(t, e, "contoso.example", form)
	c, err := e.VerifyAccessToken(a.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if a.ExpiresIn != 86400 || c.Audience != "api://6f1c2a9e-4444-4000-8000-000000000005" || !cmp.Equal(c.Roles, []string{"Reports.Read"}) {
		t.Errorf("expires_in, aud, roles = %d, %q, %v, want 86400, the api:// URI, [Reports.Read]", a.ExpiresIn, c.Audience, c.Roles)
	}
	// The demo app holds roles on the file's resource too.
	demoForm := secretForm(DemoClientID, DemoClientSecret, "https://api.contoso.example/.default")
	_, a = getToken(t, e, DemoTenantID, demoForm)
	if c, _ := e.VerifyAccessToken(a.AccessToken); !cmp.Equal(c.Roles, []string{"Reports.Read", "Reports.Write"}) || a.ExpiresIn != 7200 {
		t.Errorf("demo app: roles, expires_in = %v, %d, want [Reports.Read Reports.Write], 7200", c.Roles, a.ExpiresIn)
	}
	// The disabled app is refused.
	res, _ := serve(t, e, newTokenRequest(http.MethodPost, tenant, secretForm("6f1c2a9e-2222-4000-8000-000000000004", "retired-secret", "https://api.contoso.example/.default")))
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("disabled app: status %d, want 400", res.StatusCode)
	}
}

// secretForm is a client-credentials form.
func secretForm(clientID, secret, scope string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}, "scope": {scope}}
}

func TestLoadConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want []string // lines of the error, without the "testdata/config/" prefix
	}{
		{"unknown-key.yaml", []string{
			"unknown-key.yaml:3: field domain not found in type emulator.Tenant",
			"unknown-key.yaml:9: field expires not found in type emulator.Secret",
			"unknown-key.yaml:10: field lifetime not found in type emulator.Config",
		}},
		{"syntax.yaml", []string{"syntax.yaml: yaml: line 1: did not find expected ',' or ']'"}},
		{"bad-duration.yaml", []string{"bad-duration.yaml:1: cannot unmarshal !!int `3600` into time.Duration"}},
		{"bad-expiry.yaml", []string{`bad-expiry.yaml: parsing time "next year" as "2006-01-02T15:04:05Z07:00": cannot parse "next year" as "2006"`}},
		{"negative-lifetime.yaml", []string{"negative-lifetime.yaml:1: token_lifetime: -1h0m0s is negative"}},
		{"bad-tenant.yaml", []string{
			`bad-tenant.yaml:2: tenants[0].id: "contoso" is not a GUID`,
			`bad-tenant.yaml:5: tenants[0].domains[1]: "not a domain" is not a DNS name`,
		}},
		{"duplicate-tenant.yaml", []string{
			"duplicate-tenant.yaml:4: tenants[1].id: 6F1C2A9E-1111-4000-8000-000000000001 is registered twice (first by tenants[0].id)",
			"duplicate-tenant.yaml:5: tenants[1].domains[0]: Contoso.onmicrosoft.com is registered twice (first by tenants[0].domains[0])",
		}},
		{"demo-clash.yaml", []string{
			"demo-clash.yaml:3: tenants[0].id: decade00-0000-4000-a000-000000000001 is registered twice (first by demo: true)",
			"demo-clash.yaml:5: resources[0].uris[0]: https://api.loganalytics.io is registered twice (first by demo: true)",
		}},
		{"app-unknown-tenant.yaml", []string{
			"app-unknown-tenant.yaml:2: apps[0].tenant: 6f1c2a9e-1111-4000-8000-000000000099 is not a tenant of this file",
		}},
		{"bad-app.yaml", []string{
			`bad-app.yaml:5: apps[0].client_id: "reporting-app" is not a GUID`,
			`bad-app.yaml:6: apps[0].object_id: "12" is not a GUID`,
			"bad-app.yaml:7: apps[0].token_lifetime: -5m0s is negative",
			"bad-app.yaml:9: apps[0].secrets[0].value: is empty",
		}},
		{"duplicate-app.yaml", []string{
			"duplicate-app.yaml:7: apps[1].client_id: 6f1c2a9e-2222-4000-8000-000000000002 is registered twice (first by apps[0].client_id)",
		}},
		{"bad-resource.yaml", []string{
			"bad-resource.yaml:2: resources[0].uris: is empty",
			`bad-resource.yaml:4: resources[1].uris[0]: "loganalytics" is not an absolute URI or a GUID`,
			"bad-resource.yaml:6: resources[1].uris[2]: HTTPS://API.LOGANALYTICS.IO is registered twice (first by resources[1].uris[1])",
			"bad-resource.yaml:8: resources[1].roles.me: the key is not a client ID (GUID)",
			"bad-resource.yaml:9: resources[1].roles.6f1c2a9e-2222-4000-8000-000000000002: no app of this file has this client ID",
		}},
		{"bad-pem.yaml", []string{
			"bad-pem.yaml:7: certificates[0]: no PEM CERTIFICATE block",
			"bad-pem.yaml:8: certificates[1]: a PUBLIC KEY block is not allowed here (want CERTIFICATE)",
			"bad-pem.yaml:15: keys: a PUBLIC KEY block is not a PKIX public key",
		}},
		{"bad-credentials.yaml", []string{
			"bad-credentials.yaml:7: apps[0].certificates[0]: its key is ECDSA; certificate credentials need RSA",
			`bad-credentials.yaml:19: apps[0].federated_credentials[0].issuer: "kubernetes.default.svc" is not an absolute URL`,
			"bad-credentials.yaml:19: apps[0].federated_credentials[0].subject: is empty",
			"bad-credentials.yaml:20: apps[0].federated_credentials[0].audiences[0]: is empty",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join("testdata", "config")
			_, err := LoadConfig(filepath.Join(dir, tt.file))
			if err == nil {
				t.Fatalf("LoadConfig(%s) = nil error, want %q", tt.file, tt.want)
			}
			got := strings.Split(strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), ""), "\n")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("LoadConfig(%s) error lines (-want +got):\n%s", tt.file, diff)
			}
		})
	}
}

func TestLoadConfigEdgeCases(t *testing.T) {
	t.Parallel()
	c, err := LoadConfig(filepath.Join("testdata", "config", "empty.yaml"))
	if err != nil || !cmp.Equal(c, Config{}) {
		t.Errorf("LoadConfig(empty.yaml) = %+v, %v, want the zero Config", c, err)
	}
	_, err = LoadConfig(filepath.Join("testdata", "config", "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "load emulator config: ") {
		t.Errorf("LoadConfig(missing.yaml) = %v, want a wrapped not-exist error", err)
	}
}
