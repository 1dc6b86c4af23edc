package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/emulator"
)

// These tests run the managed-identity dialects with the real clients
// Debian packages: the Azure CLI (azure-cli 2.45, whose msrestazure speaks
// Cloud Shell with MSI_ENDPOINT alone and App Service 2017-09-01 with
// MSI_SECRET on App Service) and the Python SDK's azure-identity
// (python3-azure: AzureMLCredential, CloudShellCredential,
// AppServiceCredential). Without them they skip, or fail when
// BROKER_REQUIRE_TOOLS=1.

const laResource = "https://api.loganalytics.io"

// requirePython returns a python3 that imports azure.identity (Debian's
// python3-azure lives in /usr/lib/python3/dist-packages, which a python3
// earlier on PATH may not read).
func requirePython(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		tried = append(tried, path)
		if exec.Command(path, "-c", "import azure.identity").Run() == nil {
			return path
		}
	}
	if os.Getenv(requireToolsEnv) == "1" {
		t.Fatalf("no python3 (tried %v) imports azure.identity and %s=1: install it (Debian: apt-get install python3-azure)", tried, requireToolsEnv)
	}
	t.Skipf("no python3 imports azure.identity (set %s=1 to make this a failure)", requireToolsEnv)
	return ""
}

// tokenRequests returns broker_token_requests_total{endpoint, result="success"}.
func tokenRequests(t *testing.T, ops, endpoint string) string {
	t.Helper()
	_, _, body := call(t, "GET", ops+"/metrics", nil, "")
	prefix := `broker_token_requests_total{endpoint="` + endpoint + `",result="success"} `
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			return v
		}
	}
	return ""
}

// checkToken verifies that tok is the emulator's token for resource and
// expires at expiresOn (unix seconds).
func checkToken(t *testing.T, az *emulator.Azure, tok, resource string, expiresOn int64) {
	t.Helper()
	c, err := az.Entra.VerifyAccessToken(tok)
	if err != nil {
		t.Fatalf("the client's token does not verify: %v", err)
	}
	if strings.TrimSuffix(c.Audience, "/") != resource {
		t.Errorf("token aud = %s, want %s", c.Audience, resource)
	}
	if expiresOn != 0 && expiresOn != c.ExpiresAt.Unix() {
		t.Errorf("the client's expiry = %d, want the token's exp %d", expiresOn, c.ExpiresAt.Unix())
	}
}

// fakeARM is Azure Resource Manager's subscription list over TLS, for
// `az login --identity`, which lists subscriptions after getting its token:
// it answers none, to a valid token for ARM only. It returns the server and
// a PEM file of its certificate for REQUESTS_CA_BUNDLE.
func fakeARM(t *testing.T, az *emulator.Azure) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		c, err := az.Entra.VerifyAccessToken(tok)
		if !ok || err != nil || c.Audience != "https://management.core.windows.net/" || r.URL.Path != "/subscriptions" {
			t.Errorf("fake ARM: %s %s with a token for %q (%v): want GET /subscriptions with an ARM token", r.Method, r.URL.Path, c.Audience, err)
			http.Error(w, `{"error":{"code":"InvalidAuthenticationToken"}}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"value":[]}`))
	}))
	t.Cleanup(srv.Close)
	f := filepath.Join(t.TempDir(), "arm.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, f
}

// TestAzureCLI runs `az login --identity --allow-no-subscriptions` and
// `az account get-access-token` against the broker in both dialects the
// CLI speaks. The login lists subscriptions at Azure Resource Manager: the
// CLI's cloud is pointed at a fake ARM (clouds.config), which answers none.
func TestAzureCLI(t *testing.T) {
	azPath := requireTool(t, "az", "azure-cli")
	t.Parallel()
	az, emu := emulated(t)
	r := start(t, serveEnv(emu.URL))
	arm, caFile := fakeARM(t, az)

	for _, tt := range []struct {
		name, endpoint string
		env            []string
	}{
		{"cloud shell", "cloudshell", []string{"MSI_ENDPOINT=" + r.api + "/msi/token"}},
		{"app service 2017", "msi2017", []string{"MSI_ENDPOINT=" + r.api + "/msi/token", "MSI_SECRET=" + identityHeader, "APPSETTING_WEBSITE_SITE_NAME=broker-test"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "clouds.config"), []byte("[AzureCloud]\nendpoint_resource_manager = "+arm.URL+"/\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			env := append([]string{
				"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "AZURE_CONFIG_DIR=" + dir,
				"REQUESTS_CA_BUNDLE=" + caFile, "AZURE_CORE_COLLECT_TELEMETRY=false", "AZURE_CORE_NO_COLOR=true",
			}, tt.env...)
			runAz := func(args ...string) []byte {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, azPath, append(args, "--output", "json")...)
				cmd.Env = env
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("az %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
				}
				return out
			}
			var accounts []struct {
				TenantID string `json:"tenantId"`
				User     struct{ Name, Type string }
			}
			if err := json.Unmarshal(runAz("login", "--identity", "--allow-no-subscriptions"), &accounts); err != nil || len(accounts) != 1 {
				t.Fatalf("az login: %v, accounts %+v", err, accounts)
			}
			if a := accounts[0]; a.TenantID != emulator.DemoTenantID || a.User.Name != "systemAssignedIdentity" {
				t.Errorf("az login account = %+v, want the demo tenant's system-assigned identity", a)
			}
			var tok struct {
				AccessToken string `json:"accessToken"`
				ExpiresOn   string `json:"expiresOn"`
				Tenant      string `json:"tenant"`
				TokenType   string `json:"tokenType"`
			}
			if err := json.Unmarshal(runAz("account", "get-access-token", "--resource", laResource), &tok); err != nil {
				t.Fatal(err)
			}
			checkToken(t, az, tok.AccessToken, laResource, 0)
			exp, err := time.ParseInLocation("2006-01-02 15:04:05.000000", tok.ExpiresOn, time.Local)
			if c, _ := az.Entra.VerifyAccessToken(tok.AccessToken); err != nil || !exp.Equal(c.ExpiresAt) {
				t.Errorf("expiresOn = %q (%v), want the token's exp %v", tok.ExpiresOn, err, c.ExpiresAt.Local())
			}
			if tok.Tenant != emulator.DemoTenantID || tok.TokenType != "Bearer" {
				t.Errorf("az account get-access-token = tenant %q, type %q", tok.Tenant, tok.TokenType)
			}
			if n := tokenRequests(t, r.ops, tt.endpoint); n == "" || n == "0" {
				t.Errorf("broker_token_requests_total{endpoint=%q,result=\"success\"} = %q, want the CLI's requests there", tt.endpoint, n)
			}
		})
	}
}

// TestPythonAzureIdentity runs azure-identity's ManagedIdentityCredential
// in each environment it reads: MSI_ENDPOINT and MSI_SECRET (Azure ML, the
// 2017-09-01 dialect), MSI_ENDPOINT alone (Cloud Shell), and
// IDENTITY_ENDPOINT and IDENTITY_HEADER (App Service 2019-08-01), each with
// the default identity and with client_id.
func TestPythonAzureIdentity(t *testing.T) {
	python := requirePython(t)
	t.Parallel()
	az, emu := emulated(t)
	r := start(t, serveEnv(emu.URL))
	const script = `
import json, sys
from azure.identity import ManagedIdentityCredential
kw = {"client_id": sys.argv[2]} if sys.argv[2] else {}
cred = ManagedIdentityCredential(**kw)
tok = cred.get_token(sys.argv[1] + "/.default")
print(json.dumps({"token": tok.token, "expires_on": tok.expires_on, "source": type(cred._credential).__name__}))
`
	for _, tt := range []struct {
		name, source, endpoint string
		env                    []string
	}{
		{"azure ml", "AzureMLCredential", "msi2017", []string{"MSI_ENDPOINT=" + r.api + "/msi/token", "MSI_SECRET=" + identityHeader}},
		{"cloud shell", "CloudShellCredential", "cloudshell", []string{"MSI_ENDPOINT=" + r.api + "/msi/token"}},
		{"app service", "AppServiceCredential", "msi", []string{"IDENTITY_ENDPOINT=" + r.api + "/msi/token", "IDENTITY_HEADER=" + identityHeader}},
	} {
		for _, clientID := range []string{"", emulator.DemoClientID} {
			t.Run(tt.name+"/client_id="+clientID, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, python, "-c", script, laResource, clientID)
				cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, tt.env...)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("python: %v\nstderr:\n%s", err, stderr.String())
				}
				var got struct {
					Token     string `json:"token"`
					ExpiresOn int64  `json:"expires_on"`
					Source    string `json:"source"`
				}
				if err := json.Unmarshal(out, &got); err != nil {
					t.Fatalf("python printed %q: %v", out, err)
				}
				if got.Source != tt.source {
					t.Errorf("credential = %s, want %s", got.Source, tt.source)
				}
				checkToken(t, az, got.Token, laResource, got.ExpiresOn)
				if n := tokenRequests(t, r.ops, tt.endpoint); n == "" || n == "0" {
					t.Errorf("broker_token_requests_total{endpoint=%q,result=\"success\"} = %q, want the SDK's requests there", tt.endpoint, n)
				}
			})
		}
	}
}

// TestRefreshCommand runs `broker refresh` against a running broker, found
// through BROKER_OPS_LISTEN.
func TestRefreshCommand(t *testing.T) {
	t.Parallel()
	_, emu := emulated(t)
	r := start(t, serveEnv(emu.URL))
	get := func() string {
		t.Helper()
		status, _, body := call(t, "GET", r.api+"/token?resource="+laResource, map[string]string{"Metadata": "true"}, "")
		var b struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal(body, &b); status != 200 || err != nil {
			t.Fatalf("GET /token = %d %s", status, body)
		}
		return b.AccessToken
	}
	before := get()
	refresh := func(env map[string]string, args ...string) (string, string, error) {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append([]string{"refresh"}, args...), func(k string) string { return env[k] }, &stdout, &stderr)
		return stdout.String(), stderr.String(), err
	}
	opsAddr := strings.TrimPrefix(r.ops, "http://")
	out, errOut, err := refresh(map[string]string{"BROKER_OPS_LISTEN": opsAddr})
	if err != nil || !strings.Contains(out, "refreshed default "+laResource+"/.default") {
		t.Fatalf("broker refresh = %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	if get() == before {
		t.Errorf("after broker refresh the old token is served")
	}
	out, _, err = refresh(nil, "--ops-listen", opsAddr, "--scope", laResource, "--identity", "default", "--json")
	if err != nil || !strings.Contains(out, `"refreshed":1`) || strings.Contains(out, "eyJ") {
		t.Errorf("broker refresh --scope --json = %v, %s", err, out)
	}
	_, errOut, err = refresh(map[string]string{"BROKER_OPS_LISTEN": opsAddr}, "--scope", "https://storage.azure.com")
	if err == nil || !strings.Contains(errOut, "no token that matches") {
		t.Errorf("broker refresh of a scope never fetched = %v, stderr %q; want an error saying so", err, errOut)
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	if _, _, err := refresh(map[string]string{"BROKER_OPS_LISTEN": strings.TrimPrefix(closed.URL, "http://")}); err == nil || !strings.Contains(err.Error(), "BROKER_OPS_LISTEN") {
		t.Errorf("broker refresh with no broker = %v, want an error naming BROKER_OPS_LISTEN", err)
	}
}

// TestDialectHintsNameTheListenAddress: the hints of the managed-identity
// endpoints name the address the broker really listens on.
func TestDialectHintsNameTheListenAddress(t *testing.T) {
	t.Parallel()
	_, emu := emulated(t)
	r := start(t, serveEnv(emu.URL))
	status, _, body := call(t, "GET", r.api+"/msi/token?resource="+laResource, map[string]string{"X-IDENTITY-HEADER": identityHeader}, "")
	if status != 400 || !strings.Contains(string(body), r.api+"/msi/token") {
		t.Errorf("GET /msi/token without api-version = %d %s; want 400 naming %s/msi/token", status, body, r.api)
	}
}

// TestDemoPrintsBothEnvironments: `broker demo` tells both kinds of client
// what to set.
func TestDemoPrintsBothEnvironments(t *testing.T) {
	t.Parallel()
	r := start(t, map[string]string{"BROKER_LISTEN": "127.0.0.1:0", "BROKER_OPS_LISTEN": "127.0.0.1:0"}, "demo")
	want := []string{
		"IDENTITY_ENDPOINT=" + r.api + "/msi/token IDENTITY_HEADER=" + demoIdentityHeader,
		"MSI_ENDPOINT=" + r.api + "/msi/token MSI_SECRET=" + demoIdentityHeader,
	}
	waitFor(t, "the welcome text", func() bool { return strings.Contains(r.stdout.String(), "Ctrl-C") })
	for _, w := range want {
		if !strings.Contains(r.stdout.String(), w) {
			t.Errorf("broker demo does not print %q:\n%s", w, r.stdout)
		}
	}
}

// TestDialectsMatchOpenAPI checks the new answers against openapi.yaml.
func TestDialectsMatchOpenAPI(t *testing.T) {
	t.Parallel()
	spec := loadSpec(t)
	_, emu := emulated(t)
	r := start(t, serveEnv(emu.URL))
	form := map[string]string{"Metadata": "true", "Content-Type": "application/x-www-form-urlencoded"}
	for _, tt := range []struct {
		method, base, target string
		header               map[string]string
		body                 string
		want                 int
	}{
		{"GET", r.api, "/msi/token?api-version=2017-09-01&resource=" + laResource, map[string]string{"secret": identityHeader}, "", 200},
		{"GET", r.api, "/msi/token?api-version=2019-08-01&xms_cc=cp1&resource=" + laResource, map[string]string{"X-IDENTITY-HEADER": identityHeader}, "", 200},
		{"GET", r.api, "/msi/token?api-version=2019-08-01&resource=" + laResource, map[string]string{"secret": identityHeader}, "", 400},
		{"GET", r.api, "/msi/token?api-version=2019-08-01&resource=" + laResource + "&token_sha256_to_refresh=" + strings.Repeat("0", 64), map[string]string{"X-IDENTITY-HEADER": identityHeader}, "", 200},
		{"POST", r.api, "/msi/token", form, "resource=" + laResource, 200},
		{"POST", r.api, "/msi/token", map[string]string{"Metadata": "true", "Content-Type": "application/json"}, "{}", 415},
		{"POST", r.api, "/msi/token", form, "resource=" + laResource + "&pad=" + strings.Repeat("x", 8<<10), 413},
		{"POST", r.ops, "/cache/refresh", nil, "", 200},
		{"POST", r.ops, "/cache/refresh?scope=https://storage.azure.com", nil, "", 404},
	} {
		code, h, body := call(t, tt.method, tt.base+tt.target, tt.header, tt.body)
		if code != tt.want {
			t.Errorf("%s %s = %d %s, want %d", tt.method, tt.target, code, body, tt.want)
		}
		spec.check(t, tt.method, tt.target, tt.header, code, h, body)
	}
}
