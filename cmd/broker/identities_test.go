package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/entrabroker/broker/internal/emulator"
)

// The apps of the several-identities tests, registered in the emulator
// beside the demo app.
const (
	reportsClientID  = "11111111-aaaa-4222-bbbb-3333cccc4444"
	reportsObjectID  = "22222222-aaaa-4222-bbbb-3333cccc4444"
	reportsSecret    = "reports-secret-value-kept-in-a-file"
	billingClientID  = "33333333-aaaa-4222-bbbb-3333cccc4444"
	workloadClientID = "55555555-aaaa-4222-bbbb-3333cccc4444"
	workloadIssuer   = "https://oidc.example.com/cluster-1/"
	workloadSubject  = "system:serviceaccount:default:example-app"
)

// federatedToken signs a service account token as a Kubernetes OIDC issuer
// would, valid from now for lifetime.
func federatedToken(t *testing.T, now time.Time, lifetime time.Duration) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": workloadIssuer,
		"sub": workloadSubject,
		"aud": []string{emulator.DefaultFederatedAudience},
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(lifetime).Unix(),
	})
	tok.Header["kid"] = "cluster-1"
	s, err := tok.SignedString(testKey())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// identitiesSetup registers the three apps of the several-identities tests
// (a client secret, a certificate and a federated credential), writes their
// credential files and a BROKER_CONFIG naming them, and returns the
// configuration file's path and the certificate's NotAfter.
func identitiesSetup(t *testing.T, az *emulator.Azure) (string, time.Time) {
	t.Helper()
	dir := t.TempDir()
	notAfter := time.Now().Add(200 * 24 * time.Hour).Truncate(time.Second)
	certPath, cert := writeCertificate(t, dir, "billing", notAfter)
	for _, app := range []emulator.App{
		{TenantID: emulator.DemoTenantID, ClientID: reportsClientID, ObjectID: reportsObjectID, DisplayName: "reports", Secrets: []emulator.Secret{{Value: reportsSecret}}},
		{TenantID: emulator.DemoTenantID, ClientID: billingClientID, DisplayName: "billing", Certificates: emulator.PEMCertificates{cert}},
		{TenantID: emulator.DemoTenantID, ClientID: workloadClientID, DisplayName: "workload", FederatedCredentials: []emulator.FederatedCredential{{
			Name: "aks", Issuer: workloadIssuer, Subject: workloadSubject, Keys: emulator.PEMPublicKeys{&testKey().PublicKey},
		}}},
	} {
		if err := az.Entra.AddApp(app); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("reports-secret", reportsSecret+"\n")
	tokenPath := write("azure-identity-token", federatedToken(t, time.Now(), time.Hour))
	cfg := write("broker.yaml", fmt.Sprintf(`# the identities of the several-identities tests
identities:
  - name: reports
    tenant_id: %s
    client_id: %s
    object_id: %s
    client_secret_file: reports-secret
    secret_expires_on: 2027-05-01
    allowed_scopes: [https://api.loganalytics.io/.default]
    prefetch_scopes: [https://api.loganalytics.io/.default]
  - name: billing
    tenant_id: %s
    client_id: %s
    client_certificate_path: %s
    prefetch_scopes: [https://management.azure.com]
  - name: workload
    tenant_id: %s
    client_id: %s
    federated_token_file: %s
`, emulator.DemoTenantID, reportsClientID, reportsObjectID,
		emulator.DemoTenantID, billingClientID, certPath,
		emulator.DemoTenantID, workloadClientID, tokenPath))
	return cfg, notAfter
}

func TestSeveralIdentities(t *testing.T) {
	az, emu := emulated(t)
	cfgPath, notAfter := identitiesSetup(t, az)
	env := serveEnv(emu.URL)
	env["BROKER_CONFIG"] = cfgPath
	r := start(t, env)
	waitFor(t, "/readyz to answer 200", func() bool {
		code, _, _ := call(t, "GET", r.ops+"/readyz", nil, "")
		return code == http.StatusOK
	})
	meta := map[string]string{"Metadata": "true"}
	msi := map[string]string{"X-IDENTITY-HEADER": identityHeader}
	var tokens []string

	tests := []struct {
		name, path string
		header     map[string]string
		wantStatus int
		wantApp    string
	}{
		{"default identity", "/token?resource=https://api.loganalytics.io", meta, 200, emulator.DemoClientID},
		{"secret file identity", "/token?resource=https://api.loganalytics.io&client_id=" + reportsClientID, meta, 200, reportsClientID},
		{"certificate identity", "/token?resource=https://management.azure.com&client_id=" + billingClientID, meta, 200, billingClientID},
		{"workload identity", "/token?resource=https://vault.azure.net&client_id=" + strings.ToUpper(workloadClientID), meta, 200, workloadClientID},
		{"msi by object_id", "/msi/token?api-version=2019-08-01&resource=https://api.loganalytics.io&object_id=" + reportsObjectID, msi, 200, reportsClientID},
		{"imds by client_id", "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://storage.azure.com&client_id=" + billingClientID, meta, 200, billingClientID},
		{"scope not allowed for reports", "/token?resource=https://vault.azure.net&client_id=" + reportsClientID, meta, 403, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := call(t, "GET", r.api+tt.path, tt.header, "")
			if code != tt.wantStatus {
				t.Fatalf("GET %s = %d %s, want %d", tt.path, code, body, tt.wantStatus)
			}
			if tt.wantApp == "" {
				return
			}
			var tok struct {
				AccessToken string `json:"access_token"`
			}
			mustJSON(t, body, &tok)
			tokens = append(tokens, tok.AccessToken)
			c, err := az.Entra.VerifyAccessToken(tok.AccessToken)
			if err != nil {
				t.Fatalf("VerifyAccessToken = %v", err)
			}
			if c.AppID != tt.wantApp {
				t.Errorf("GET %s: token appid = %s, want %s", tt.path, c.AppID, tt.wantApp)
			}
		})
	}

	t.Run("readyz names every identity", func(t *testing.T) {
		code, _, body := call(t, "GET", r.ops+"/readyz", nil, "")
		var rz struct {
			Scopes []struct{ Identity, Scope string } `json:"scopes"`
		}
		mustJSON(t, body, &rz)
		var got []string
		for _, s := range rz.Scopes {
			got = append(got, s.Identity+" "+s.Scope)
		}
		want := "default https://api.loganalytics.io/.default|reports https://api.loganalytics.io/.default|billing https://management.azure.com/.default"
		if code != 200 || strings.Join(got, "|") != want {
			t.Errorf("/readyz = %d %v, want 200 with %s", code, got, want)
		}
	})

	t.Run("credential expiry metric", func(t *testing.T) {
		_, _, body := call(t, "GET", r.ops+"/metrics", nil, "")
		for _, want := range []string{
			fmt.Sprintf(`broker_credential_expiry_timestamp_seconds{identity="billing"} %s`, promFloat(notAfter.Unix())),
			fmt.Sprintf(`broker_credential_expiry_timestamp_seconds{identity="reports"} %s`, promFloat(time.Date(2027, 5, 1, 0, 0, 0, 0, time.UTC).Unix())),
		} {
			if !bytes.Contains(body, []byte(want+"\n")) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		for _, name := range []string{"default", "workload"} {
			if bytes.Contains(body, []byte(`broker_credential_expiry_timestamp_seconds{identity="`+name+`"}`)) {
				t.Errorf("/metrics has a credential expiry for %s, whose expiry the broker cannot know", name)
			}
		}
	})

	if err := r.stop(t); err != nil {
		t.Errorf("run() after the signal = %v, want nil", err)
	}
	logs := r.stderr.String()
	if len(tokens) < 6 {
		t.Fatalf("collected %d tokens, want 6", len(tokens))
	}
	token, _ := os.ReadFile(filepath.Join(filepath.Dir(cfgPath), "azure-identity-token"))
	for _, s := range append(tokens, reportsSecret, string(token)) {
		if strings.Contains(logs, s) {
			t.Errorf("the log contains a secret, a federated token or an access token (%.8s…)", s)
		}
	}
}

// promFloat formats a unix time as the Prometheus text format writes a
// gauge's value.
func promFloat(v int64) string { return strconv.FormatFloat(float64(v), 'g', -1, 64) }

func TestTokenCommandIdentity(t *testing.T) {
	az, emu := emulated(t)
	cfgPath, _ := identitiesSetup(t, az)
	env := serveEnv(emu.URL)
	env["BROKER_CONFIG"] = cfgPath
	tests := []struct {
		identity, wantApp string
		wantErr           bool
	}{
		{"", emulator.DemoClientID, false},
		{"billing", billingClientID, false},
		{"WORKLOAD", workloadClientID, false},
		{reportsClientID, reportsClientID, false},
		{"nobody", "", true},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		args := []string{"token", "--resource", "https://api.loganalytics.io"}
		if tt.identity != "" {
			args = append(args, "--identity", tt.identity)
		}
		err := run(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr)
		if tt.wantErr {
			if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "default, reports, billing, workload") {
				t.Errorf("broker token --identity %s = %v, want a usage error listing the identities", tt.identity, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("broker token --identity %s = %v; stderr: %s", tt.identity, err, &stderr)
		}
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		mustJSON(t, stdout.Bytes(), &tok)
		c, err := az.Entra.VerifyAccessToken(tok.AccessToken)
		if err != nil || c.AppID != tt.wantApp {
			t.Errorf("broker token --identity %q: appid = %s (%v), want %s", tt.identity, c.AppID, err, tt.wantApp)
		}
	}
}
