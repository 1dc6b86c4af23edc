package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/config"
	"github.com/entrabroker/broker/internal/emulator"
	"github.com/entrabroker/broker/internal/emulator/loganalytics"
)

// testKey is one RSA key for every certificate the tests make: generating a
// key costs tens of milliseconds.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// writeCertificate self-signs a certificate for testKey valid until
// notAfter, writes it and the key as PEM to a file in dir and returns the
// file's path and the certificate.
func writeCertificate(t *testing.T, dir, name string, notAfter time.Time) (string, *x509.Certificate) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &testKey().PublicKey, testKey())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(testKey())
	if err != nil {
		t.Fatal(err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	b = append(b, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})...)
	path := filepath.Join(dir, name+".pem")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, cert
}

// buildFrom loads the configuration from env as `broker serve` does and
// builds the broker from it.
func buildFrom(t *testing.T, env map[string]string) *broker {
	t.Helper()
	cfg, custom, err := loadConfig("serve", nil, func(k string) string { return env[k] }, os.Stderr, config.Serve, nil)
	if err != nil {
		t.Fatalf("loadConfig = %v", err)
	}
	b, err := build(cfg, custom, zap.NewNop())
	if err != nil {
		t.Fatalf("build = %v", err)
	}
	t.Cleanup(func() { _ = b.cache.Close() })
	return b
}

func TestCloudEndpoints(t *testing.T) {
	t.Parallel()
	type route struct{ Name, Upstream, Scope string }
	tests := []struct {
		cloud     string
		authority string
		routes    []route
	}{
		{"", "https://login.microsoftonline.com", []route{
			{"loganalytics", "https://api.loganalytics.azure.com", "https://api.loganalytics.io/.default"},
			{"appinsights", "https://api.applicationinsights.io", "https://api.applicationinsights.io/.default"},
			{"arm", "https://management.azure.com", "https://management.core.windows.net//.default"},
		}},
		{"AzurePublic", "https://login.microsoftonline.com", []route{
			{"loganalytics", "https://api.loganalytics.azure.com", "https://api.loganalytics.io/.default"},
			{"appinsights", "https://api.applicationinsights.io", "https://api.applicationinsights.io/.default"},
			{"arm", "https://management.azure.com", "https://management.core.windows.net//.default"},
		}},
		{"AzureUSGovernment", "https://login.microsoftonline.us", []route{
			{"loganalytics", "https://api.loganalytics.us", "https://api.loganalytics.us/.default"},
			{"appinsights", "https://api.applicationinsights.us", "https://api.applicationinsights.us/.default"},
			{"arm", "https://management.usgovcloudapi.net", "https://management.core.usgovcloudapi.net//.default"},
		}},
		{"AzureChina", "https://login.partner.microsoftonline.cn", []route{
			{"loganalytics", "https://api.loganalytics.azure.cn", "https://api.loganalytics.azure.cn/.default"},
			{"appinsights", "https://api.applicationinsights.azure.cn", "https://api.applicationinsights.azure.cn/.default"},
			{"arm", "https://management.chinacloudapi.cn", "https://management.core.chinacloudapi.cn//.default"},
		}},
		{"azurechinacloud", "https://login.partner.microsoftonline.cn", []route{
			{"loganalytics", "https://api.loganalytics.azure.cn", "https://api.loganalytics.azure.cn/.default"},
			{"appinsights", "https://api.applicationinsights.azure.cn", "https://api.applicationinsights.azure.cn/.default"},
			{"arm", "https://management.chinacloudapi.cn", "https://management.core.chinacloudapi.cn//.default"},
		}},
	}
	for _, tt := range tests {
		t.Run("cloud="+tt.cloud, func(t *testing.T) {
			t.Parallel()
			b := buildFrom(t, map[string]string{
				"AZURE_TENANT_ID": emulator.DemoTenantID, "AZURE_CLIENT_ID": emulator.DemoClientID,
				"AZURE_CLIENT_SECRET": "s", "AZURE_CLOUD": tt.cloud,
			})
			if got := b.current().identities[0].Authority; got != tt.authority {
				t.Errorf("AZURE_CLOUD=%s: authority = %s, want %s", tt.cloud, got, tt.authority)
			}
			var got []route
			for _, r := range b.current().routes {
				got = append(got, route{r.Name, r.Upstream.String(), r.Scope})
			}
			if diff := cmp.Diff(tt.routes, got); diff != "" {
				t.Errorf("AZURE_CLOUD=%s: proxy routes (-want +got):\n%s", tt.cloud, diff)
			}
		})
	}
}

func TestBuildIdentities(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certPath, _ := writeCertificate(t, dir, "billing", time.Now().Add(90*24*time.Hour))
	secretPath := filepath.Join(dir, "reports-secret")
	if err := os.WriteFile(secretPath, []byte("reports-secret-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	routesPath := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(routesPath, []byte("routes:\n  - name: kusto\n    upstream: https://help.kusto.windows.net\n    scope: https://help.kusto.windows.net/.default\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "broker.yaml")
	if err := os.WriteFile(cfgPath, []byte(`identities:
  - name: reports
    tenant_id: `+emulator.DemoTenantID+`
    client_id: 11111111-aaaa-4222-bbbb-3333cccc4444
    object_id: 22222222-aaaa-4222-bbbb-3333cccc4444
    client_secret_file: reports-secret
    secret_expires_on: 2027-05-01
    allowed_scopes: [https://api.loganalytics.io]
    prefetch_scopes: [https://api.loganalytics.io]
  - name: billing
    tenant_id: `+emulator.DemoTenantID+`
    client_id: 33333333-aaaa-4222-bbbb-3333cccc4444
    client_certificate_path: `+certPath+`
`), 0o600); err != nil {
		t.Fatal(err)
	}
	b := buildFrom(t, map[string]string{
		"AZURE_TENANT_ID": emulator.DemoTenantID, "AZURE_CLIENT_ID": emulator.DemoClientID, "AZURE_CLIENT_SECRET": "s",
		"BROKER_PREFETCH_SCOPES": "https://vault.azure.net", "BROKER_CONFIG": cfgPath, "BROKER_ROUTES_FILE": routesPath,
	})
	type id struct{ Name, ClientID, ObjectID string }
	var got []id
	for _, i := range b.current().identities {
		got = append(got, id{i.Name, i.ClientID, i.ObjectID})
	}
	want := []id{
		{"default", emulator.DemoClientID, ""},
		{"reports", "11111111-aaaa-4222-bbbb-3333cccc4444", "22222222-aaaa-4222-bbbb-3333cccc4444"},
		{"billing", "33333333-aaaa-4222-bbbb-3333cccc4444", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("identities (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"https://api.loganalytics.io/.default"}, b.current().identities[1].AllowedScopes); diff != "" {
		t.Errorf("reports' allowed scopes, normalized (-want +got):\n%s", diff)
	}
	if len(b.current().prefetch) != 2 || b.current().prefetch[0].ClientID != emulator.DemoClientID || b.current().prefetch[1].Scope != "https://api.loganalytics.io/.default" {
		t.Errorf("prefetch keys = %+v, want the default's vault scope and reports' Log Analytics scope", b.current().prefetch)
	}
	if last := b.current().routes[len(b.current().routes)-1]; last.Name != "kusto" {
		t.Errorf("last route = %s, want the custom kusto route", last.Name)
	}
}

func TestConfigurationFileProblemsAtOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "broker.yaml")
	if err := os.WriteFile(cfgPath, []byte("identities:\n  - name: reports\n    tenant: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	routesPath := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(routesPath, []byte("routes:\n  - name: Kusto!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"BROKER_CONFIG": cfgPath, "BROKER_ROUTES_FILE": routesPath, "BROKER_LOG_LEVEL": "loud"}
	err := run(context.Background(), []string{"serve"}, func(k string) string { return env[k] }, os.Stderr, os.Stderr)
	if err == nil {
		t.Fatal("run(serve) with a broken configuration file = nil, want the problems")
	}
	for _, want := range []string{
		cfgPath + `:3: unknown key "tenant" of an identity: did you mean tenant_id?`,
		cfgPath + `:2: identity "reports": client_id is missing`,
		"BROKER_ROUTES_FILE: load routes: " + routesPath + ":2:",
		`BROKER_LOG_LEVEL "loud" is not a level`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("run(serve) error lacks %q; got:\n%v", want, err)
		}
	}
}

// fakeExpiring is a Credential whose expiry the test sets.
type fakeExpiring struct {
	azure.Credential
	mu sync.Mutex
	at time.Time
}

func (f *fakeExpiring) CredentialExpiry() (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.at, !f.at.IsZero()
}

// expiryLine is the gist of a log line of checkExpiry.
type expiryLine struct {
	Level    zapcore.Level
	Identity string
	DaysLeft int64
}

func expiryLines(logs *observer.ObservedLogs) []expiryLine {
	var out []expiryLine
	for _, e := range logs.TakeAll() {
		f := e.ContextMap()
		out = append(out, expiryLine{e.Level, f["identity"].(string), f["days_left"].(int64)})
	}
	return out
}

func TestCheckExpiry(t *testing.T) {
	t.Parallel()
	start := time.Date(2027, 4, 1, 12, 0, 0, 0, time.UTC)
	cert := &fakeExpiring{Credential: azure.SecretCredential("x"), at: start.Add(20 * 24 * time.Hour)}
	ids := []expiringIdentity{
		{name: "billing", cred: cert},
		{name: "reports", cred: azure.SecretCredential("x"), secretExpiresOn: time.Date(2027, 4, 10, 0, 0, 0, 0, time.UTC)},
		{name: "default", cred: azure.SecretCredential("x")}, // expiry unknown: never warned about
	}
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(core)
	steps := []struct {
		name  string
		at    time.Time
		renew bool
		want  []expiryLine
	}{
		{"at start", start, false, []expiryLine{{zapcore.WarnLevel, "reports", 8}}},
		{"a week later", start.Add(7 * 24 * time.Hour), false, []expiryLine{{zapcore.WarnLevel, "billing", 13}, {zapcore.WarnLevel, "reports", 1}}},
		{"after the secret's expiry", start.Add(9 * 24 * time.Hour), false, []expiryLine{{zapcore.WarnLevel, "billing", 11}, {zapcore.ErrorLevel, "reports", 0}}},
		{"the certificate renewed", start.Add(9 * 24 * time.Hour), true, []expiryLine{{zapcore.ErrorLevel, "reports", 0}}},
	}
	for _, s := range steps {
		if s.renew {
			cert.mu.Lock()
			cert.at = start.Add(400 * 24 * time.Hour)
			cert.mu.Unlock()
		}
		checkExpiry(log, ids, s.at)
		if diff := cmp.Diff(s.want, expiryLines(logs)); diff != "" {
			t.Errorf("%s: log lines (-want +got):\n%s", s.name, diff)
		}
	}
}

func TestWatchExpiryChecksAtStartAndEachTick(t *testing.T) {
	t.Parallel()
	start := time.Date(2027, 4, 1, 12, 0, 0, 0, time.UTC)
	ids := []expiringIdentity{{name: "reports", cred: azure.SecretCredential("x"), secretExpiresOn: start.Add(30 * 24 * time.Hour)}}
	core, logs := observer.New(zapcore.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	ticks := make(chan time.Time) // unbuffered: a send returns once the watcher has it
	done := make(chan struct{})
	go func() {
		watchExpiry(ctx, zap.New(core), func() []expiringIdentity { return ids }, func() time.Time { return start }, ticks)
		close(done)
	}()
	ticks <- start.Add(24 * time.Hour)      // 29 days left: quiet
	ticks <- start.Add(17 * 24 * time.Hour) // 13 days left: a warning
	ticks <- start.Add(18 * 24 * time.Hour) // 12 days left: another, a day later
	cancel()
	<-done
	want := []expiryLine{{zapcore.WarnLevel, "reports", 13}, {zapcore.WarnLevel, "reports", 12}}
	if diff := cmp.Diff(want, expiryLines(logs)); diff != "" {
		t.Errorf("log lines (-want +got):\n%s", diff)
	}
}

// TestWorkloadIdentityEnvironment builds the broker from exactly what the AKS
// workload identity webhook sets, trailing slash of the authority included.
func TestWorkloadIdentityEnvironment(t *testing.T) {
	t.Parallel()
	// The token file must exist at start; its content is read per request.
	tokenFile := filepath.Join(t.TempDir(), "azure-identity-token")
	if err := os.WriteFile(tokenFile, []byte("a projected token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := buildFrom(t, map[string]string{
		"AZURE_CLIENT_ID":            emulator.DemoClientID,
		"AZURE_TENANT_ID":            emulator.DemoTenantID,
		"AZURE_FEDERATED_TOKEN_FILE": tokenFile,
		"AZURE_AUTHORITY_HOST":       "https://login.microsoftonline.com/",
	})
	if got := b.current().identities[0].Authority; got != "https://login.microsoftonline.com" {
		t.Errorf("authority = %q, want https://login.microsoftonline.com", got)
	}
}

// TestRouteScopeNotAllowed checks that a custom route whose scope the
// default identity may not be served is refused at start, naming the route,
// the scope and the setting, while the built-in routes stay (answering 403).
func TestRouteScopeNotAllowed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	routesPath := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(routesPath, []byte("routes:\n  - name: kusto\n    upstream: https://help.kusto.windows.net\n    scope: https://help.kusto.windows.net/.default\n  - name: la2\n    upstream: https://api.loganalytics.azure.com\n    scope: https://api.loganalytics.io/.default\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"AZURE_TENANT_ID": emulator.DemoTenantID, "AZURE_CLIENT_ID": emulator.DemoClientID, "AZURE_CLIENT_SECRET": "s",
		"BROKER_ROUTES_FILE": routesPath, "BROKER_ALLOWED_SCOPES": "https://api.loganalytics.io",
	}
	cfg, custom, err := loadConfig("serve", nil, func(k string) string { return env[k] }, os.Stderr, config.Serve, nil)
	if err != nil {
		t.Fatalf("loadConfig = %v", err)
	}
	_, err = build(cfg, custom, zap.NewNop())
	want := `BROKER_ROUTES_FILE: route "kusto" uses scope https://help.kusto.windows.net/.default, which BROKER_ALLOWED_SCOPES does not allow (https://api.loganalytics.io/.default): add the scope to BROKER_ALLOWED_SCOPES, or remove the route`
	if err == nil || err.Error() != want {
		t.Errorf("build = %v\nwant %s", err, want)
	}
	env["BROKER_ALLOWED_SCOPES"] = "https://api.loganalytics.io,https://help.kusto.windows.net"
	if b := buildFrom(t, env); len(b.current().routes) != 5 {
		t.Errorf("routes = %d, want the 3 built-in and 2 custom ones", len(b.current().routes))
	}
}

// TestRoutesFileRepointsABuiltInRoute aims the built-in appinsights route at
// the emulator from the routes file: the entry replaces the built-in one
// instead of being refused as defined twice, and the proxy sends to it.
func TestRoutesFileRepointsABuiltInRoute(t *testing.T) {
	_, emu := emulated(t)
	routesPath := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(routesPath, []byte("routes:\n  - name: appinsights\n    upstream: "+emu.URL+"\n    scope: https://api.loganalytics.io/.default\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := serveEnv(emu.URL)
	env["BROKER_ROUTES_FILE"] = routesPath
	if b := buildFrom(t, env); len(b.current().routes) != 3 || b.current().routes[1].Name != "appinsights" || b.current().routes[1].Upstream.String() != emu.URL {
		t.Errorf("routes = %v, want the 3 built-in ones with appinsights at %s", b.current().routes, emu.URL)
	}
	r := start(t, env)
	status, _, body := call(t, "GET", r.api+"/proxy/appinsights/v1/workspaces/"+loganalytics.DemoWorkspaceID+"/query?query=print%201", nil, "")
	if status != http.StatusOK {
		t.Errorf("GET /proxy/appinsights/… = %d %s, want 200 from the emulator", status, body)
	}
	if err := r.stop(t); err != nil {
		t.Errorf("stop = %v", err)
	}
}
