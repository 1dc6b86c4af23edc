package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/emulator"
	"github.com/entrabroker/broker/internal/emulator/loganalytics"
)

// syncBuffer is an io.Writer that tests can read while the program writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// running is the real program, started by start.
type running struct {
	api, ops       string // base URLs
	stdout, stderr *syncBuffer
	cancel         context.CancelFunc
	done           chan struct{} // closed when run has returned; then err holds what it returned
	err            error
}

// stop ends the program as SIGTERM would and returns what run returned.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return within 30s of the signal")
		return nil
	}
}

// start runs the real run() with env and args (none: serve), and waits for
// its listeners.
func start(t *testing.T, env map[string]string, args ...string) *running {
	t.Helper()
	if len(args) == 0 {
		args = []string{"serve"}
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan [2]net.Addr, 1)
	ctx = context.WithValue(ctx, listenHookKey{}, listenHook(func(api, ops net.Addr) { addrs <- [2]net.Addr{api, ops} }))
	r := &running{stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = run(ctx, args, func(k string) string { return env[k] }, r.stdout, r.stderr)
		close(r.done)
	}()
	select {
	case a := <-addrs:
		r.api, r.ops = baseURL(a[0]), baseURL(a[1])
	case <-r.done:
		cancel()
		t.Fatalf("run returned before listening: %v\nstderr:\n%s", r.err, r.stderr)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("run did not open its listeners within 30s")
	}
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

func baseURL(a net.Addr) string {
	if a.Network() == "unix" {
		return "unix://" + a.String()
	}
	return "http://" + a.String()
}

// emulated starts the emulated cloud with the demo registration.
func emulated(t *testing.T) (*emulator.Azure, *httptest.Server) {
	t.Helper()
	az := emulator.NewAzure(emulator.Options{})
	if err := az.AddDemo(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(az)
	t.Cleanup(srv.Close)
	return az, srv
}

const identityHeader = "e2e-identity-header-secret"

// serveEnv is the environment of `broker serve` against the emulator at url.
func serveEnv(url string) map[string]string {
	return map[string]string{
		"AZURE_TENANT_ID":              emulator.DemoTenantID,
		"AZURE_CLIENT_ID":              emulator.DemoClientID,
		"AZURE_CLIENT_SECRET":          emulator.DemoClientSecret,
		"AZURE_AUTHORITY_HOST":         url,
		"BROKER_LOGANALYTICS_ENDPOINT": url,
		"BROKER_LISTEN":                "127.0.0.1:0",
		"BROKER_OPS_LISTEN":            "127.0.0.1:0",
		"BROKER_IDENTITY_HEADER":       identityHeader,
		"BROKER_PREFETCH_SCOPES":       "https://api.loganalytics.io/.default",
		"BROKER_LOG_LEVEL":             "debug",
	}
}

// call sends one request and returns the status, headers and body.
func call(t *testing.T, method, u string, header map[string]string, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// waitFor polls cond until it holds or 20 s pass. It waits for a condition,
// never for an amount of time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEndToEnd(t *testing.T) {
	az, emu := emulated(t)
	r := start(t, serveEnv(emu.URL))
	spec := loadSpec(t)
	meta := map[string]string{"Metadata": "true"}
	var tokens []string

	waitFor(t, "/readyz to answer 200", func() bool {
		code, _, _ := call(t, "GET", r.ops+"/readyz", nil, "")
		return code == http.StatusOK
	})

	tests := []struct {
		name       string
		method     string
		path       string // on the API listener unless it starts with "ops:"
		header     map[string]string
		body       string
		wantStatus int
		wantError  string // the JSON "error" field, when an error is expected
		check      func(t *testing.T, h http.Header, body []byte)
	}{
		{"token by resource", "GET", "/token?resource=https://api.loganalytics.io", meta, "", 200, "", func(t *testing.T, h http.Header, b []byte) {
			var tok struct {
				AccessToken string `json:"access_token"`
				TokenType   string `json:"token_type"`
				ExpiresIn   int64  `json:"expires_in"`
				ExpiresOn   int64  `json:"expires_on"`
				Scope       string `json:"scope"`
			}
			mustJSON(t, b, &tok)
			tokens = append(tokens, tok.AccessToken)
			if tok.Scope != "https://api.loganalytics.io/.default" || tok.TokenType != "Bearer" || tok.ExpiresIn < 3000 {
				t.Errorf("token = scope %q, type %q, expires_in %d; want the LA scope, Bearer, ~3599", tok.Scope, tok.TokenType, tok.ExpiresIn)
			}
			if got := h.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
		}},
		{"token by scope", "GET", "/token?scope=https://management.azure.com/.default", meta, "", 200, "", collectToken(&tokens)},
		{"token without Metadata", "GET", "/token?resource=https://api.loganalytics.io", nil, "", 400, "metadata_header_required", nil},
		{"token without scope", "GET", "/token", meta, "", 400, "missing_scope", nil},
		{"token with a bad scope", "GET", "/token?scope=Data.Read", meta, "", 400, "invalid_scope", nil},
		{"token for an unknown resource", "GET", "/token?resource=https://unknown.example.com", meta, "", 502, "invalid_resource", func(t *testing.T, _ http.Header, b []byte) {
			var e struct {
				Hint     string `json:"hint"`
				Codes    []int  `json:"aad_error_codes"`
				CorrelID string `json:"correlation_id"`
			}
			mustJSON(t, b, &e)
			if len(e.Codes) != 1 || e.Codes[0] != 500011 || e.Hint == "" || e.CorrelID == "" {
				t.Errorf("502 body = %s, want AADSTS 500011 with a hint and a correlation ID", b)
			}
		}},
		{"token for an unknown client", "GET", "/token?resource=https://api.loganalytics.io&client_id=00000000-0000-0000-0000-000000000001", meta, "", 400, "identity_not_found", nil},
		{"forwarded token request", "GET", "/token?resource=https://api.loganalytics.io", map[string]string{"Metadata": "true", "X-Forwarded-For": "10.0.0.1"}, "", 403, "forwarded_request", nil},
		{"rebound host", "GET", "/token?resource=https://api.loganalytics.io", map[string]string{"Metadata": "true", "Host": "evil.example:8400"}, "", 421, "host_not_allowed", nil},
		{"msi token", "GET", "/msi/token?api-version=2019-08-01&resource=https://vault.azure.net", map[string]string{"X-IDENTITY-HEADER": identityHeader}, "", 200, "", func(t *testing.T, _ http.Header, b []byte) {
			var m map[string]any
			mustJSON(t, b, &m)
			for _, k := range []string{"expires_in", "expires_on"} {
				if s, ok := m[k].(string); !ok || !regexp.MustCompile(`^[0-9]+$`).MatchString(s) {
					t.Errorf("%s = %#v, want a string of an integer", k, m[k])
				}
			}
			if m["resource"] != "https://vault.azure.net" || m["client_id"] != emulator.DemoClientID {
				t.Errorf("resource, client_id = %v, %v; want the resource echoed and the demo client", m["resource"], m["client_id"])
			}
			tokens = append(tokens, m["access_token"].(string))
		}},
		{"msi token without header", "GET", "/msi/token?api-version=2019-08-01&resource=https://vault.azure.net", nil, "", 401, "invalid_identity_header", nil},
		{"msi token with a wrong header", "GET", "/msi/token?api-version=2019-08-01&resource=https://vault.azure.net", map[string]string{"X-IDENTITY-HEADER": "guess"}, "", 401, "invalid_identity_header", nil},
		{"msi token for another identity", "GET", "/msi/token?api-version=2019-08-01&resource=https://vault.azure.net&object_id=1", map[string]string{"X-IDENTITY-HEADER": identityHeader}, "", 400, "identity_not_found", nil},
		{"imds token", "GET", "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://storage.azure.com", meta, "", 200, "", func(t *testing.T, _ http.Header, b []byte) {
			var m map[string]any
			mustJSON(t, b, &m)
			for _, k := range []string{"expires_in", "expires_on", "ext_expires_in", "not_before"} {
				if _, ok := m[k].(string); !ok {
					t.Errorf("%s = %#v, want a string", k, m[k])
				}
			}
			tokens = append(tokens, m["access_token"].(string))
		}},
		{"imds probe", "GET", "/metadata/identity/oauth2/token", nil, "", 400, "invalid_request", func(t *testing.T, _ http.Header, b []byte) {
			if !bytes.Contains(b, []byte(`"error_description":"Required metadata header not specified"`)) {
				t.Errorf("probe body = %s, want IMDS's message", b)
			}
		}},
		{"proxy query", "GET", "/proxy/loganalytics/v1/workspaces/" + loganalytics.DemoWorkspaceID + "/query?query=Heartbeat%20%7C%20take%202", nil, "", 200, "", func(t *testing.T, _ http.Header, b []byte) {
			var res struct {
				Tables []struct{ Rows [][]any } `json:"tables"`
			}
			mustJSON(t, b, &res)
			if len(res.Tables) != 1 || len(res.Tables[0].Rows) != 2 {
				t.Errorf("query result = %s, want one table with 2 rows", b)
			}
		}},
		{"proxy post query", "POST", "/proxy/loganalytics/v1/workspaces/" + loganalytics.DemoWorkspaceID + "/query", map[string]string{"Content-Type": "application/json", "Authorization": "Bearer caller-token"}, `{"query":"Heartbeat | count"}`, 200, "", nil},
		{"proxy unknown route", "GET", "/proxy/nowhere/v1/x", nil, "", 404, "", nil},
		{"unknown path", "GET", "/nothing", nil, "", 404, "not_found", nil},
		{"wrong method", "POST", "/token", meta, "", 405, "method_not_allowed", nil},
		{"healthz", "GET", "ops:/healthz", nil, "", 200, "", nil},
		{"readyz", "GET", "ops:/readyz", nil, "", 200, "", nil},
		{"metrics", "GET", "ops:/metrics", nil, "", 200, "", func(t *testing.T, _ http.Header, b []byte) {
			for _, name := range []string{"broker_token_requests_total", "broker_token_fetches_total", "broker_token_fetch_duration_seconds",
				"broker_token_expiry_timestamp_seconds", "broker_proxy_requests_total", "broker_proxy_request_duration_seconds", "broker_build_info",
				"go_goroutines", "process_resident_memory_bytes"} {
				if !bytes.Contains(b, []byte("\n"+name)) {
					t.Errorf("/metrics lacks %s", name)
				}
			}
			if !bytes.Contains(b, []byte(`broker_token_requests_total{endpoint="token",result="success"} 2`)) {
				t.Errorf("/metrics does not count the two /token successes")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, path := r.api, tt.path
			if p, ok := strings.CutPrefix(tt.path, "ops:"); ok {
				base, path = r.ops, p
			}
			code, h, body := call(t, tt.method, base+path, tt.header, tt.body)
			if code != tt.wantStatus {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, code, body, tt.wantStatus)
			}
			if tt.wantError != "" {
				var e struct {
					Error       string `json:"error"`
					Description string `json:"error_description"`
				}
				mustJSON(t, body, &e)
				if e.Error != tt.wantError || e.Description == "" {
					t.Errorf("error body = %s, want error %q with a description", body, tt.wantError)
				}
				if got := h.Get("Content-Type"); !strings.HasPrefix(got, "application/json") {
					t.Errorf("Content-Type = %q, want JSON", got)
				}
			}
			if !strings.HasPrefix(tt.path, "/proxy/") {
				spec.check(t, tt.method, path, tt.header, code, h, body)
			}
			if tt.check != nil {
				tt.check(t, h, body)
			}
		})
	}

	t.Run("transient Entra failure", func(t *testing.T) {
		az.Entra.InjectFault(emulator.DemoClientID, emulator.Fault{Kind: emulator.FaultUnavailable, Times: 1, RetryAfter: 7 * time.Second})
		code, h, body := call(t, "GET", r.api+"/token?resource=https://graph.microsoft.com", meta, "")
		if code != 503 || h.Get("Retry-After") == "" {
			t.Fatalf("GET /token with Entra down = %d (Retry-After %q) %s, want 503 with Retry-After", code, h.Get("Retry-After"), body)
		}
		spec.check(t, "GET", "/token?resource=https://graph.microsoft.com", meta, code, h, body)
	})

	if err := r.stop(t); err != nil {
		t.Errorf("run() after the signal = %v, want nil", err)
	}

	// Nothing secret ever reached the log: not the client secret, not the
	// identity header, not a token.
	logs := r.stderr.String()
	if !strings.Contains(logs, `"msg":"request"`) || !strings.Contains(logs, `"status":502`) {
		t.Fatalf("the log lacks the access log lines; got:\n%s", logs)
	}
	secrets := append([]string{emulator.DemoClientSecret, identityHeader}, tokens...)
	if len(tokens) < 4 {
		t.Fatalf("collected %d tokens, want at least 4", len(tokens))
	}
	for _, s := range secrets {
		if s == "" {
			t.Fatal("an empty secret was collected")
		}
		if strings.Contains(logs, s) || strings.Contains(logs, s[:len(s)/2]) {
			t.Errorf("the log contains a secret or token (%.8s…)", s)
		}
	}
}

func collectToken(tokens *[]string) func(*testing.T, http.Header, []byte) {
	return func(t *testing.T, _ http.Header, b []byte) {
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		mustJSON(t, b, &tok)
		*tokens = append(*tokens, tok.AccessToken)
	}
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("body %q is not the JSON expected: %v", b, err)
	}
}

func TestUnixSocket(t *testing.T) {
	_, emu := emulated(t)
	sock := filepath.Join(t.TempDir(), "broker.sock")
	env := serveEnv(emu.URL)
	env["BROKER_LISTEN"] = "unix://" + sock
	r := start(t, env)
	if r.api != "unix://"+sock {
		t.Fatalf("API listener = %s, want unix://%s", r.api, sock)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o660 {
		t.Errorf("socket mode = %o, want 660", got)
	}
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	req, _ := http.NewRequest("GET", "http://localhost/token?resource=https://api.loganalytics.io", nil)
	req.Header.Set("Metadata", "true")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /token over the unix socket = %d, want 200", resp.StatusCode)
	}
}

func TestGracefulShutdownFinishesRequestsInFlight(t *testing.T) {
	az, emu := emulated(t)
	r := start(t, serveEnv(emu.URL))
	gate := make(chan struct{})
	az.LogAnalytics.InjectFault("", loganalytics.Fault{Gate: gate})

	type answer struct {
		code int
		body []byte
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := http.Get(r.api + "/proxy/loganalytics/v1/workspaces/" + loganalytics.DemoWorkspaceID + "/query?query=print%201")
		if err != nil {
			got <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- answer{resp.StatusCode, b, err}
	}()
	waitFor(t, "the query to reach the emulator", func() bool { return az.LogAnalytics.Requests() == 1 })

	r.cancel() // SIGTERM
	waitFor(t, "the broker to begin its shutdown", func() bool { return strings.Contains(r.stderr.String(), "shutting down") })
	select {
	case <-r.done:
		t.Fatalf("run returned (%v) while a request was in flight", r.err)
	default:
	}
	close(gate)
	a := <-got
	if a.err != nil || a.code != 200 {
		t.Fatalf("the request in flight = %d %s (%v), want 200", a.code, a.body, a.err)
	}
	<-r.done
	if r.err != nil {
		t.Errorf("run() = %v, want nil after a graceful shutdown", r.err)
	}
}

func TestReadmeQuickstartAgainstDemo(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`curl -s -H 'Metadata: true' '(http://127\.0\.0\.1:8400(/token\?[^']+))'`).FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no quickstart curl line for /token")
	}
	r := start(t, map[string]string{"BROKER_LISTEN": "127.0.0.1:0", "BROKER_OPS_LISTEN": "127.0.0.1:0"}, "demo")
	code, _, body := call(t, "GET", r.api+string(m[2]), map[string]string{"Metadata": "true"}, "")
	if code != 200 || !bytes.Contains(body, []byte(`"access_token":"ey`)) {
		t.Fatalf("README's curl against broker demo = %d %s, want 200 with a token", code, body)
	}
	if !strings.Contains(r.stdout.String(), "curl -s -H 'Metadata: true' '"+r.api+"/token?resource=https://api.loganalytics.io'") {
		t.Errorf("broker demo did not print the curl line to try; stdout:\n%s", r.stdout)
	}
	// The README's proxy lines work too, against the demo workspace.
	m = regexp.MustCompile(`curl -s '(http://127\.0\.0\.1:8400(/proxy/[^']+))'`).FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no quickstart curl line for the proxy")
	}
	if code, _, body := call(t, "GET", r.api+string(m[2]), nil, ""); code != 200 {
		t.Errorf("README's proxy curl against broker demo = %d %s, want 200", code, body)
	}
	m = regexp.MustCompile(`(?s)curl -s -X POST -H '([^:]+): ([^']+)' \\\s+-d '([^']+)' \\\s+'http://127\.0\.0\.1:8400(/proxy/[^']+)'`).FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no POST curl line for the proxy")
	}
	code, _, body = call(t, "POST", r.api+string(m[4]), map[string]string{string(m[1]): string(m[2])}, string(m[3]))
	if code != 200 || !bytes.Contains(body, []byte(`"OSType"`)) {
		t.Errorf("README's POST proxy curl against broker demo = %d %s, want 200 with the projected columns", code, body)
	}
}

func TestConfigurationProblems(t *testing.T) {
	err := run(context.Background(), []string{"serve"}, func(string) string { return "" }, io.Discard, io.Discard)
	var ce configError
	if !errors.As(err, &ce) {
		t.Fatalf("run(serve) with no configuration = %v, want a configError", err)
	}
	for _, want := range []string{"AZURE_TENANT_ID is not set", "AZURE_CLIENT_ID is not set", "no credential"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error = %q, want it to say %q", err, want)
		}
	}
	if err := run(context.Background(), []string{"fly"}, func(string) string { return "" }, io.Discard, io.Discard); !errors.As(err, new(usageError)) {
		t.Errorf("run(fly) = %v, want a usage error", err)
	}
}

// TestServeRefusesAMissingSecretFile: a missing credential file stops the
// start with an error that names the setting and the file, instead of a 502
// at the first request.
func TestServeRefusesAMissingSecretFile(t *testing.T) {
	_, emu := emulated(t)
	env := serveEnv(emu.URL)
	missing := filepath.Join(t.TempDir(), "client-secret")
	delete(env, "AZURE_CLIENT_SECRET")
	env["AZURE_CLIENT_SECRET_FILE"] = missing
	env["BROKER_LISTEN"] = "0.0.0.0:0"
	env["BROKER_IDENTITY_HEADER"] = "short"
	hook := context.WithValue(context.Background(), listenHookKey{}, listenHook(func(api, ops net.Addr) {
		t.Errorf("the broker opened its listeners (%s, %s) with a missing secret file", api, ops)
	}))
	err := run(hook, []string{"serve"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	var ce configError
	if !errors.As(err, &ce) {
		t.Fatalf("run(serve) with a missing secret file = %v, want a configError", err)
	}
	want := "the configuration has problems:\n" +
		`  - AZURE_CLIENT_SECRET_FILE "` + missing + `" does not exist: check the path, and in Kubernetes the volume mount that provides the file` + "\n" +
		`  - BROKER_LISTEN "0.0.0.0:0" is not a loopback address, so any host that reaches it could ask for tokens (the Host check defends against DNS rebinding, not against other hosts): use 127.0.0.1:8400 or a unix:// socket, or set BROKER_ALLOW_REMOTE_LISTEN=true behind a firewall or network policy that admits only trusted callers` + "\n" +
		`  - BROKER_IDENTITY_HEADER is 5 characters long, and it is the only secret that protects /msi/token: use at least 16 random characters, such as the output of openssl rand -hex 16`
	if err.Error() != want {
		t.Errorf("run(serve) = %q\nwant %q", err, want)
	}
}

// TestServeLogsWarnings: what the configuration allows but should not is
// logged at every start, one warning line each.
func TestServeLogsWarnings(t *testing.T) {
	_, emu := emulated(t)
	env := serveEnv(emu.URL)
	secret := filepath.Join(t.TempDir(), "client-secret")
	if err := os.WriteFile(secret, []byte(emulator.DemoClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(secret, 0o644); err != nil {
		t.Fatal(err)
	}
	delete(env, "AZURE_CLIENT_SECRET")
	env["AZURE_CLIENT_SECRET_FILE"] = secret
	r := start(t, env)
	if err := r.stop(t); err != nil {
		t.Fatalf("run() = %v", err)
	}
	var warnings []string
	for _, line := range strings.Split(r.stderr.String(), "\n") {
		var l struct{ Level, Msg string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Level == "warn" {
			warnings = append(warnings, l.Msg)
		}
	}
	want := []string{`AZURE_CLIENT_SECRET_FILE "` + secret + `" can be read by every user of this machine (mode 0644): make it readable by the broker alone (chmod 0400; in Kubernetes, where secret volumes default to 0644, set the volume's defaultMode: 0400 and, unless the broker runs as root, the pod's securityContext.fsGroup to its group)`}
	if len(warnings) != 1 || warnings[0] != want[0] {
		t.Errorf("warning lines = %q, want %q", warnings, want)
	}
}

func TestTokenCommand(t *testing.T) {
	_, emu := emulated(t)
	env := serveEnv(emu.URL)
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"token", "--resource", "https://api.loganalytics.io"}, func(k string) string { return env[k] }, &stdout, &stderr); err != nil {
		t.Fatalf("broker token = %v; stderr: %s", err, stderr.String())
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
	}
	mustJSON(t, stdout.Bytes(), &tok)
	if !strings.HasPrefix(tok.AccessToken, "ey") || tok.Scope != "https://api.loganalytics.io/.default" {
		t.Errorf("broker token printed %s, want a token for the LA scope", stdout.String())
	}

	env["AZURE_CLIENT_SECRET"] = "a-wrong-secret-value"
	stdout.Reset()
	stderr.Reset()
	err := run(context.Background(), []string{"token", "--scope", "https://api.loganalytics.io/.default"}, func(k string) string { return env[k] }, &stdout, &stderr)
	if err == nil {
		t.Fatal("broker token with a wrong secret succeeded")
	}
	if !strings.Contains(stderr.String(), "AADSTS7000215") || !strings.Contains(stderr.String(), "hint: ") {
		t.Errorf("stderr = %q, want the AADSTS code and a hint", stderr.String())
	}
	if strings.Contains(stderr.String()+stdout.String()+err.Error(), "a-wrong-secret-value") {
		t.Error("the secret reached the output")
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, func(string) string { return "" }, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "broker ") {
		t.Errorf("broker version = %q, %v", out.String(), err)
	}
}
