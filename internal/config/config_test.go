package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	client = "4f6b1c2e-93a7-4d58-b1e0-7c2d9a3f5e81"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func valid() []string {
	return []string{"AZURE_TENANT_ID", tenant, "AZURE_CLIENT_ID", client, "AZURE_CLIENT_SECRET", "a-secret-value"}
}

func TestFromEnvAndFlags(t *testing.T) {
	t.Parallel()
	c := Default()
	if err := c.FromEnv(env(append(valid(),
		"BROKER_LISTEN", "127.0.0.1:1",
		"BROKER_PREFETCH_SCOPES", " https://a.example/.default , ,https://b.example/.default",
		"BROKER_CACHE_SIZE", "7",
		"BROKER_SHUTDOWN_TIMEOUT", "3s",
	)...)); err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"--listen", "127.0.0.1:2"}); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:2" {
		t.Errorf("Listen = %q, want the flag's 127.0.0.1:2 (flags win)", c.Listen)
	}
	if diff := cmp.Diff([]string{"https://a.example/.default", "https://b.example/.default"}, c.PrefetchScopes); diff != "" {
		t.Errorf("PrefetchScopes (-want +got):\n%s", diff)
	}
	if c.CacheSize != 7 || c.ShutdownTimeout != 3*time.Second || c.OpsListen != "127.0.0.1:9400" {
		t.Errorf("CacheSize, ShutdownTimeout, OpsListen = %d, %s, %q; want 7, 3s, the default", c.CacheSize, c.ShutdownTimeout, c.OpsListen)
	}
	if err := c.Validate(Serve); err != nil {
		t.Errorf("Validate = %v, want nil", err)
	}
	if err := fs.Parse([]string{"--client-send-certificate-chain"}); err != nil || !c.SendCertificateChain {
		t.Errorf("--client-send-certificate-chain alone = %v, %v; want a boolean flag that sets it", c.SendCertificateChain, err)
	}
	if err := fs.Parse([]string{"--allow-remote-listen"}); err != nil || !c.AllowRemoteListen {
		t.Errorf("--allow-remote-listen alone = %v, %v; want a boolean flag that sets it", c.AllowRemoteListen, err)
	}
	if fs.Lookup("client-secret") != nil || fs.Lookup("identity-header") != nil || fs.Lookup("client-certificate-password") != nil {
		t.Error("a secret has a flag; it would show in the process list")
	}
}

// credentialFiles writes a secret, a certificate and a federated token file
// that Validate finds readable.
func credentialFiles(t *testing.T) (secret, cert, token string) {
	t.Helper()
	dir := t.TempDir()
	secret, cert, token = filepath.Join(dir, "client-secret"), filepath.Join(dir, "c.pem"), filepath.Join(dir, "token")
	for _, p := range []string{secret, cert, token} {
		if err := os.WriteFile(p, []byte("content\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return secret, cert, token
}

func TestValidate(t *testing.T) {
	t.Parallel()
	secretFile, certFile, tokenFile := credentialFiles(t)
	dir := filepath.Dir(secretFile)
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name string
		env  []string
		mode Mode
		want []string // every line of the error, in order
	}{
		{"empty serve", nil, Serve, []string{
			"AZURE_TENANT_ID is not set: use the Directory (tenant) ID from the app registration's Overview page",
			"AZURE_CLIENT_ID is not set: use the Application (client) ID from the app registration's Overview page",
			"no credential: set one of AZURE_CLIENT_SECRET (the client secret's Value, shown once when the secret is created under Certificates & secrets), AZURE_CLIENT_SECRET_FILE (a file holding it), AZURE_CLIENT_CERTIFICATE_PATH (a certificate and its key) or AZURE_FEDERATED_TOKEN_FILE (workload identity)",
		}},
		{"certificate", []string{"AZURE_TENANT_ID", tenant, "AZURE_CLIENT_ID", client, "AZURE_CLIENT_CERTIFICATE_PATH", certFile, "AZURE_CLIENT_CERTIFICATE_PASSWORD", "pw", "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "true"}, Serve, nil},
		{"three credentials", append(valid(), "AZURE_CLIENT_CERTIFICATE_PATH", certFile, "AZURE_FEDERATED_TOKEN_FILE", tokenFile), Serve, []string{
			"AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH and AZURE_FEDERATED_TOKEN_FILE are all set, but the broker uses exactly one credential: keep one (a certificate or workload identity is better than a secret)",
		}},
		{"federated token", []string{"AZURE_TENANT_ID", tenant, "AZURE_CLIENT_ID", client, "AZURE_FEDERATED_TOKEN_FILE", tokenFile}, Serve, nil},
		{"certificate options without a certificate", append(valid(), "AZURE_CLIENT_CERTIFICATE_PASSWORD", "pw", "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "1", "BROKER_CLIENT_SECRET_EXPIRES_ON", "2027-05-01"), Serve, []string{
			"AZURE_CLIENT_CERTIFICATE_PASSWORD is set but AZURE_CLIENT_CERTIFICATE_PATH is not: set the path of the PKCS#12 file, or drop the password",
			"AZURE_CLIENT_SEND_CERTIFICATE_CHAIN is set but AZURE_CLIENT_CERTIFICATE_PATH is not: the chain is sent only with a certificate credential",
		}},
		{"secret expiry without a secret", []string{"AZURE_TENANT_ID", tenant, "AZURE_CLIENT_ID", client, "AZURE_CLIENT_CERTIFICATE_PATH", certFile, "BROKER_CLIENT_SECRET_EXPIRES_ON", "2027-05-01"}, Serve, []string{
			"BROKER_CLIENT_SECRET_EXPIRES_ON is set but no client secret is: it describes AZURE_CLIENT_SECRET or AZURE_CLIENT_SECRET_FILE (a certificate's expiry is read from the certificate)",
		}},
		{"empty demo", nil, Demo, nil},
		{"common tenant", []string{"AZURE_TENANT_ID", "common", "AZURE_CLIENT_ID", client, "AZURE_CLIENT_SECRET", "x"}, Serve, []string{
			`AZURE_TENANT_ID is "common": the client-credentials grant needs your own tenant; use the Directory (tenant) ID from the app's Overview page`,
		}},
		{"bad ids", []string{"AZURE_TENANT_ID", "not a tenant", "AZURE_CLIENT_ID", "my-app", "AZURE_CLIENT_SECRET", "x"}, Serve, []string{
			`AZURE_TENANT_ID "not a tenant" is neither a GUID nor a domain name: use the Directory (tenant) ID from the app registration's Overview page`,
			`AZURE_CLIENT_ID "my-app" is not a GUID: use the Application (client) ID from the app registration's Overview page (not its display name)`,
		}},
		{"secret id instead of value", []string{"AZURE_TENANT_ID", tenant, "AZURE_CLIENT_ID", client, "AZURE_CLIENT_SECRET", "9a1b2c3d-0000-4000-8000-000000000001"}, Serve, []string{
			"AZURE_CLIENT_SECRET looks like a GUID, which is the secret's ID, not its Value: copy the Value column (shown once at creation), or create a new secret",
		}},
		{"two credentials", append(valid(), "AZURE_CLIENT_SECRET_FILE", secretFile), Serve, []string{
			"both AZURE_CLIENT_SECRET and AZURE_CLIENT_SECRET_FILE are set: keep one (the file is better: it can be rotated without a restart)",
		}},
		{"listeners and knobs", append(valid(),
			"BROKER_LISTEN", "8400", "BROKER_OPS_LISTEN", "unix:///x", "AZURE_CLOUD", "Mars",
			"BROKER_LOG_LEVEL", "loud", "BROKER_LOG_FORMAT", "xml", "BROKER_CACHE_SIZE", "0",
			"AZURE_AUTHORITY_HOST", "http://login.example.com", "BROKER_ALLOWED_SCOPES", "Data.Read",
		), Serve, []string{
			`AZURE_CLOUD "Mars" is not a known cloud: use AzurePublic, AzureUSGovernment or AzureChina`,
			`AZURE_AUTHORITY_HOST "http://login.example.com" uses plain http to a host that is not loopback; tokens must travel over https: use a URL such as https://login.microsoftonline.com`,
			`BROKER_LISTEN "8400" is not host:port: use host:port such as 127.0.0.1:8400, or unix:///run/broker/broker.sock`,
			`BROKER_OPS_LISTEN "unix:///x" cannot be a unix socket: use host:port such as 127.0.0.1:9400`,
			`BROKER_ALLOWED_SCOPES item "Data.Read" is not a scope or resource URI: write items like https://api.loganalytics.io/.default`,
			`BROKER_LOG_LEVEL "loud" is not a level: use debug, info, warn or error`,
			`BROKER_LOG_FORMAT "xml" is not a format: use json or console`,
			`BROKER_CACHE_SIZE 0 is too small: use at least 1 (default 1024)`,
		}},
		{"same port", append(valid(), "BROKER_LISTEN", "127.0.0.1:9400"), Serve, []string{
			`BROKER_LISTEN and BROKER_OPS_LISTEN are both "127.0.0.1:9400": give the ops listener its own port`,
		}},

		// Every credential file can be read at start.
		{"secret file", []string{"AZURE_TENANT_ID", tenant, "AZURE_CLIENT_ID", client, "AZURE_CLIENT_SECRET_FILE", secretFile}, Serve, nil},
		{"missing secret file", []string{"AZURE_TENANT_ID", tenant, "AZURE_CLIENT_ID", client, "AZURE_CLIENT_SECRET_FILE", missing}, Serve, []string{
			`AZURE_CLIENT_SECRET_FILE "` + missing + `" does not exist: check the path, and in Kubernetes the volume mount that provides the file`,
		}},
		{"missing certificate", []string{"AZURE_TENANT_ID", tenant, "AZURE_CLIENT_ID", client, "AZURE_CLIENT_CERTIFICATE_PATH", missing}, Serve, []string{
			`AZURE_CLIENT_CERTIFICATE_PATH "` + missing + `" does not exist: check the path, and in Kubernetes the volume mount that provides the file`,
		}},
		{"federated token file is a directory", []string{"AZURE_TENANT_ID", tenant, "AZURE_CLIENT_ID", client, "AZURE_FEDERATED_TOKEN_FILE", dir}, Serve, []string{
			`AZURE_FEDERATED_TOKEN_FILE "` + dir + `" is a directory: name the file in it that holds the credential`,
		}},
		{"missing files of a demo", []string{"AZURE_CLIENT_SECRET_FILE", missing}, Demo, nil},

		// Placeholder IDs: all one digit, or the documentation's examples.
		{"all-zero IDs", []string{"AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000000", "AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000000", "AZURE_CLIENT_SECRET", "s"}, Serve, []string{
			`AZURE_TENANT_ID "00000000-0000-0000-0000-000000000000" is a placeholder: replace the placeholder with your app's Directory (tenant) ID from the portal (the app registration's Overview page)`,
			`AZURE_CLIENT_ID "00000000-0000-0000-0000-000000000000" is a placeholder: replace the placeholder with your app's Application (client) ID from the portal (the app registration's Overview page)`,
		}},
		{"one digit repeated and documentation IDs", []string{"AZURE_TENANT_ID", "AAAABBBB-0000-CCCC-1111-DDDD2222EEEE", "AZURE_CLIENT_ID", "ffffffff-ffff-ffff-ffff-ffffffffffff", "AZURE_CLIENT_SECRET", "s"}, Serve, []string{
			`AZURE_TENANT_ID "AAAABBBB-0000-CCCC-1111-DDDD2222EEEE" is a placeholder: replace the placeholder with your app's Directory (tenant) ID from the portal (the app registration's Overview page)`,
			`AZURE_CLIENT_ID "ffffffff-ffff-ffff-ffff-ffffffffffff" is a placeholder: replace the placeholder with your app's Application (client) ID from the portal (the app registration's Overview page)`,
		}},
		{"documentation client ID", []string{"AZURE_TENANT_ID", tenant, "AZURE_CLIENT_ID", "00001111-aaaa-2222-bbbb-3333cccc4444", "AZURE_CLIENT_SECRET", "s"}, Serve, []string{
			`AZURE_CLIENT_ID "00001111-aaaa-2222-bbbb-3333cccc4444" is a placeholder: replace the placeholder with your app's Application (client) ID from the portal (the app registration's Overview page)`,
		}},
		{"IDs that merely look regular", []string{"AZURE_TENANT_ID", "00000000-0000-4000-8000-000000000001", "AZURE_CLIENT_ID", "11111111-aaaa-4222-bbbb-3333cccc4444", "AZURE_CLIENT_SECRET", "s"}, Serve, nil},
		{"placeholder IDs in a demo", []string{"AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000000", "AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000000"}, Demo, nil},

		// The identity header is long enough to be a secret.
		{"short identity header", append(valid(), "BROKER_IDENTITY_HEADER", "fifteen-chars-x"), Serve, []string{
			"BROKER_IDENTITY_HEADER is 15 characters long, and it is the only secret that protects /msi/token: use at least 16 random characters, such as the output of openssl rand -hex 16",
		}},
		{"one-character identity header in a demo", []string{"BROKER_IDENTITY_HEADER", "x"}, Demo, []string{
			"BROKER_IDENTITY_HEADER is 1 character long, and it is the only secret that protects /msi/token: use at least 16 random characters, such as the output of openssl rand -hex 16",
		}},
		{"16-character identity header", append(valid(), "BROKER_IDENTITY_HEADER", "sixteen-chars-xx"), Serve, nil},

		// The API listener stays on loopback unless allowed.
		{"remote listeners", append(valid(), "BROKER_LISTEN", "0.0.0.0:8400", "BROKER_OPS_LISTEN", "0.0.0.0:9400"), Serve, []string{
			`BROKER_LISTEN "0.0.0.0:8400" is not a loopback address, so any host that reaches it could ask for tokens (the Host check defends against DNS rebinding, not against other hosts): use 127.0.0.1:8400 or a unix:// socket, or set BROKER_ALLOW_REMOTE_LISTEN=true behind a firewall or network policy that admits only trusted callers`,
		}},
		{"every interface", append(valid(), "BROKER_LISTEN", ":8400"), Serve, []string{
			`BROKER_LISTEN ":8400" is not a loopback address, so any host that reaches it could ask for tokens (the Host check defends against DNS rebinding, not against other hosts): use 127.0.0.1:8400 or a unix:// socket, or set BROKER_ALLOW_REMOTE_LISTEN=true behind a firewall or network policy that admits only trusted callers`,
		}},
		{"remote in a demo", []string{"BROKER_LISTEN", "[::]:8400"}, Demo, []string{
			`BROKER_LISTEN "[::]:8400" is not a loopback address, so any host that reaches it could ask for tokens (the Host check defends against DNS rebinding, not against other hosts): use 127.0.0.1:8400 or a unix:// socket, or set BROKER_ALLOW_REMOTE_LISTEN=true behind a firewall or network policy that admits only trusted callers`,
		}},
		{"remote allowed", append(valid(), "BROKER_LISTEN", "10.1.2.3:8400", "BROKER_ALLOW_REMOTE_LISTEN", "true"), Serve, nil},
		{"remote allowed by flag value", append(valid(), "BROKER_LISTEN", "broker.example.com:8400", "BROKER_ALLOW_REMOTE_LISTEN", "1"), Serve, nil},
		{"localhost", append(valid(), "BROKER_LISTEN", "localhost:8400"), Serve, nil},
		{"another loopback address", append(valid(), "BROKER_LISTEN", "127.0.0.2:8400"), Serve, nil},
		{"IPv6 loopback", append(valid(), "BROKER_LISTEN", "[::1]:8400"), Serve, nil},
		{"unix socket", append(valid(), "BROKER_LISTEN", "unix:///run/broker/broker.sock"), Serve, nil},

		// The shared second level: a URL the client takes and a key file.
		{"redis", append(valid(), "BROKER_REDIS_URL", "rediss://broker:pw@redis:6380", "BROKER_REDIS_KEY_FILE", secretFile, "BROKER_REDIS_CA_FILE", certFile), Serve, nil},
		{"redis over a unix socket", append(valid(), "BROKER_REDIS_URL", "unix:///run/redis/redis.sock", "BROKER_REDIS_KEY_FILE", secretFile), Serve, nil},
		{"redis without a key file", append(valid(), "BROKER_REDIS_URL", "redis://:hunter2@redis:6379"), Serve, []string{
			`BROKER_REDIS_URL is set but BROKER_REDIS_KEY_FILE is not: Redis holds tokens only encrypted; make a key file with  echo "k1 $(openssl rand -base64 32)" > redis.key  and give every broker of the fleet the same file`,
		}},
		{"redis: bad scheme, CA without TLS, missing key file", append(valid(), "BROKER_REDIS_URL", "http://:hunter2@redis:6379", "BROKER_REDIS_KEY_FILE", missing), Serve, []string{
			`BROKER_REDIS_URL has the scheme "http": use redis://[user:password@]host:6379, rediss://… for TLS, or unix:///path/to/redis.sock`,
			`BROKER_REDIS_KEY_FILE "` + missing + `" does not exist: check the path, and in Kubernetes the volume mount that provides the file`,
		}},
		{"redis CA without TLS", append(valid(), "BROKER_REDIS_URL", "redis://redis:6379", "BROKER_REDIS_KEY_FILE", secretFile, "BROKER_REDIS_CA_FILE", certFile), Serve, []string{
			`BROKER_REDIS_CA_FILE is set but BROKER_REDIS_URL is not rediss://: the CA file is for TLS`,
		}},
		{"redis key file without redis", append(valid(), "BROKER_REDIS_KEY_FILE", secretFile), Serve, []string{
			`BROKER_REDIS_KEY_FILE or BROKER_REDIS_CA_FILE is set but BROKER_REDIS_URL is not: set the Redis URL, or drop them`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			if err := c.FromEnv(env(tt.env...)); err != nil {
				t.Fatalf("FromEnv: %v", err)
			}
			var got []string
			if err := c.Validate(tt.mode); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFromEnvParseErrors(t *testing.T) {
	t.Parallel()
	c := Default()
	err := c.FromEnv(env("BROKER_CACHE_SIZE", "many", "BROKER_SHUTDOWN_TIMEOUT", "soon",
		"AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "yes please", "BROKER_CLIENT_SECRET_EXPIRES_ON", "next May",
		"BROKER_ALLOW_REMOTE_LISTEN", "if you must"))
	want := `BROKER_CLIENT_SECRET_EXPIRES_ON="next May" is not a date: write it like 2027-05-01 or 2027-05-01T12:00:00Z` + "\n" +
		`AZURE_CLIENT_SEND_CERTIFICATE_CHAIN="yes please" is not a boolean: use true or false` + "\n" +
		`BROKER_ALLOW_REMOTE_LISTEN="if you must" is not a boolean: use true or false` + "\n" +
		`BROKER_CACHE_SIZE="many" is not a whole number: set a number of tokens such as 1024` + "\n" +
		`BROKER_SHUTDOWN_TIMEOUT="soon" is not a duration: write it like 15s or 1m`
	if err == nil || err.Error() != want {
		t.Errorf("FromEnv error = %v, want %q", err, want)
	}
}

func TestStringRedactsSecrets(t *testing.T) {
	t.Parallel()
	c := Default()
	_ = c.FromEnv(env("AZURE_CLIENT_SECRET", "super-secret-value", "BROKER_IDENTITY_HEADER", "header-secret", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "pfx-password"))
	s := c.String()
	for _, secret := range []string{"super-secret-value", "header-secret", "pfx-password"} {
		if strings.Contains(s, secret) {
			t.Errorf("String() = %q contains a secret", s)
		}
	}
	if !strings.Contains(s, `AZURE_CLIENT_SECRET="[redacted]"`) {
		t.Errorf("String() = %q, want the secret shown as [redacted]", s)
	}
}

func TestEnvNames(t *testing.T) {
	t.Parallel()
	names := EnvNames()
	for _, want := range []string{"AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_SECRET_FILE",
		"AZURE_AUTHORITY_HOST", "BROKER_LISTEN", "BROKER_OPS_LISTEN", "BROKER_IDENTITY_HEADER",
		"BROKER_LOGANALYTICS_ENDPOINT", "BROKER_PREFETCH_SCOPES", "BROKER_ALLOWED_SCOPES", "BROKER_LOG_LEVEL", "BROKER_LOG_FORMAT",
		"AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN",
		"AZURE_FEDERATED_TOKEN_FILE", "BROKER_CONFIG", "BROKER_ROUTES_FILE", "BROKER_CLIENT_SECRET_EXPIRES_ON", "BROKER_ALLOW_REMOTE_LISTEN"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("EnvNames() lacks %s, a name of the contract", want)
		}
	}
}

func TestSettingsDescribeThemselves(t *testing.T) {
	t.Parallel()
	envs := map[string]bool{}
	for _, s := range Settings() {
		envs[s.Env] = true
		if s.Usage == "" {
			t.Errorf("%s has no usage: broker help config would not say what it means", s.Env)
		}
	}
	for env := range settingGroups {
		if !envs[env] {
			t.Errorf("settingGroups names %s, which is not a setting", env)
		}
	}
}

func TestRegisterFlagsOfGroups(t *testing.T) {
	t.Parallel()
	c := Default()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.RegisterFlags(fs, LogSettings, UpstreamSettings)
	var got []string
	fs.VisitAll(func(f *flag.Flag) { got = append(got, f.Name) })
	if diff := cmp.Diff([]string{"ingestion-endpoint", "log-format", "log-level", "loganalytics-endpoint"}, got); diff != "" {
		t.Errorf("RegisterFlags(Log, Upstream) registered (-want +got):\n%s", diff)
	}
}

// TestProblemsAreStructured: each problem keeps the setting, what is wrong
// and the fix apart, so that broker check shows them without parsing text.
func TestProblemsAreStructured(t *testing.T) {
	t.Parallel()
	c := Default()
	if err := c.FromEnv(env("AZURE_CLIENT_ID", client, "AZURE_CLIENT_SECRET", "s", "BROKER_LOG_LEVEL", "loud")); err != nil {
		t.Fatal(err)
	}
	want := Problems{
		{"AZURE_TENANT_ID", "AZURE_TENANT_ID is not set", "use the Directory (tenant) ID from the app registration's Overview page"},
		{"BROKER_LOG_LEVEL", `BROKER_LOG_LEVEL "loud" is not a level`, "use debug, info, warn or error"},
	}
	if diff := cmp.Diff(want, AsProblems(c.Validate(Serve))); diff != "" {
		t.Errorf("Validate problems (-want +got):\n%s", diff)
	}
	_, err := ParseIdentities("testdata/placeholders.yaml", mustRead(t, "testdata/placeholders.yaml"))
	got := AsProblems(err)
	if len(got) == 0 || got[0].Setting != "BROKER_CONFIG" || got[0].Fix != replaceTenant ||
		got[0].Problem != `testdata/placeholders.yaml:3: identity "copied": tenant_id "00000000-0000-0000-0000-000000000000" is a placeholder` {
		t.Errorf("ParseIdentities(placeholders) first problem = %#v, want the tenant_id placeholder of BROKER_CONFIG, its fix apart", got)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
