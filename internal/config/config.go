// Package config owns the broker's configuration: the defaults, the
// environment variables of the contract, the flags that mirror them, and the
// validation that reports every problem at once in words a user can act on.
//
// The order is fixed: Default, then FromEnv, then the flags registered by
// (*Config).RegisterFlags (flags win), then Validate.
package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/entrabroker/broker/internal/azure"
)

// Config is the broker's whole configuration. Secret fields are never
// printed: String redacts them.
type Config struct {
	// Identity is the identity of the environment (AZURE_TENANT_ID,
	// AZURE_CLIENT_ID, a credential, BROKER_CLIENT_SECRET_EXPIRES_ON,
	// BROKER_ALLOWED_SCOPES and BROKER_PREFETCH_SCOPES): the one named
	// DefaultIdentity. Its Name and Source are not read.
	Identity
	// AuthorityHost overrides the cloud's Entra host (AZURE_AUTHORITY_HOST).
	AuthorityHost string
	// Cloud names the Azure cloud (AZURE_CLOUD): AzurePublic (default),
	// AzureUSGovernment or AzureChina.
	Cloud string

	// Listen is the API listener, host:port or unix:///path (BROKER_LISTEN).
	Listen string
	// OpsListen is the metrics and health listener (BROKER_OPS_LISTEN).
	OpsListen string
	// AllowRemoteListen lets Listen be a TCP address that is not loopback
	// (BROKER_ALLOW_REMOTE_LISTEN); without it such an address is a start
	// error, with it a warning at every start. The ops listener may always
	// listen anywhere: it serves no token.
	AllowRemoteListen bool
	// IdentityHeader is the secret callers of /msi/token must send
	// (BROKER_IDENTITY_HEADER), at least MinIdentityHeader characters; empty
	// disables /msi/token. Secret.
	IdentityHeader string
	// LogAnalyticsEndpoint is the upstream of /proxy/loganalytics/
	// (BROKER_LOGANALYTICS_ENDPOINT); empty means the cloud's default.
	LogAnalyticsEndpoint string
	// ConfigFile is a YAML file naming more identities (BROKER_CONFIG); see
	// LoadFile. Empty means none.
	ConfigFile string
	// Identities are the identities of ConfigFile, filled by LoadFile;
	// Served lists them after the environment's.
	Identities []Identity
	// Callers are the caller rules of ConfigFile, filled by LoadFile: nil
	// when it has no callers: key (every local caller may use everything),
	// else the only callers served (an empty list serves no one).
	Callers []CallerRule
	// AuditFile, when set, is the append-only audit file (BROKER_AUDIT_FILE).
	AuditFile string
	// RoutesFile is a YAML file of custom proxy routes (BROKER_ROUTES_FILE),
	// read by the proxy package; an entry named like a built-in route
	// replaces it. Empty means the built-in routes only.
	RoutesFile string

	// RedisURL turns on the shared second-level cache (BROKER_REDIS_URL):
	// redis://, rediss:// or unix://, with user and password. Secret: it
	// may hold a password.
	RedisURL string
	// RedisKeyFile holds the keys that encrypt the entries in Redis
	// (BROKER_REDIS_KEY_FILE); required with RedisURL.
	RedisKeyFile string
	// RedisCAFile is a PEM file of the CAs that sign the Redis server's
	// certificate, for rediss:// (BROKER_REDIS_CA_FILE); empty means the
	// system's.
	RedisCAFile string

	// LogLevel is debug, info, warn or error (BROKER_LOG_LEVEL).
	LogLevel string
	// LogFormat is json or console (BROKER_LOG_FORMAT).
	LogFormat string

	// CacheSize bounds the number of cached tokens (BROKER_CACHE_SIZE).
	CacheSize int
	// ProxyMaxBodyBytes caps proxied request bodies (BROKER_PROXY_MAX_BODY_BYTES).
	ProxyMaxBodyBytes int64
	// ProxyBodyTimeout is how long a proxied request body may go without a
	// byte arriving before it is answered 408 (BROKER_PROXY_BODY_TIMEOUT).
	ProxyBodyTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown (BROKER_SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration

	// IngestionEndpoint is the upstream of /proxy/ingestion/, a data
	// collection endpoint or a DCR's logs-ingestion endpoint
	// (BROKER_INGESTION_ENDPOINT); empty means no ingestion route.
	IngestionEndpoint string
	// IngestionMaxBodyBytes caps one upload to the ingestion route, which
	// the broker splits into calls under 1 MB (BROKER_INGESTION_MAX_BODY_BYTES).
	IngestionMaxBodyBytes int64
	// LogAnalyticsMaxConcurrent is how many queries of one identity the
	// broker sends upstream at once (BROKER_LOGANALYTICS_MAX_CONCURRENT).
	LogAnalyticsMaxConcurrent int
	// LogAnalyticsMaxQueued is how many more may wait in the broker
	// (BROKER_LOGANALYTICS_MAX_QUEUED).
	LogAnalyticsMaxQueued int
	// LogAnalyticsMaxWait is the longest a query waits for its turn
	// (BROKER_LOGANALYTICS_MAX_WAIT).
	LogAnalyticsMaxWait time.Duration
}

// Default returns the configuration before the environment and flags apply.
func Default() Config {
	return Config{
		Cloud:             "AzurePublic",
		Listen:            "127.0.0.1:8400",
		OpsListen:         "127.0.0.1:9400",
		LogLevel:          "info",
		LogFormat:         "json",
		CacheSize:         1024,
		ProxyMaxBodyBytes: 16 << 20,
		ProxyBodyTimeout:  10 * time.Second,
		ShutdownTimeout:   15 * time.Second,

		IngestionMaxBodyBytes:     64 << 20,
		LogAnalyticsMaxConcurrent: 5,
		LogAnalyticsMaxQueued:     200,
		LogAnalyticsMaxWait:       3 * time.Minute,
	}
}

// setting is one configuration knob: its variable, its flag and how to set it.
type setting struct {
	env, flag, usage string
	secret, isBool   bool
	get              func(*Config) string
	set              func(*Config, string) error
}

// parsed is a setting whose text is parsed into a T: bad says what a value
// that does not parse is not ("a boolean") and fix how to write one.
func parsed[T any](env, fl, usage string, p func(*Config) *T, parse func(string) (T, error), format func(T) string, bad, fix string) setting {
	return setting{env: env, flag: fl, usage: usage,
		get: func(c *Config) string { return format(*p(c)) },
		set: func(c *Config, v string) error {
			x, err := parse(strings.TrimSpace(v))
			if err != nil {
				return Problem{env, fmt.Sprintf("%s=%q is not %s", env, v, bad), fix}
			}
			*p(c) = x
			return nil
		}}
}

var settings = func() []setting {
	s := func(env, fl, usage string, secret bool, p func(*Config) *string) setting {
		return setting{env: env, flag: fl, usage: usage, secret: secret, get: func(c *Config) string { return *p(c) },
			set: func(c *Config, v string) error { *p(c) = strings.TrimSpace(v); return nil }}
	}
	l := func(env, fl, usage string, p func(*Config) *[]string) setting {
		return setting{env: env, flag: fl, usage: usage, get: func(c *Config) string { return strings.Join(*p(c), ",") },
			set: func(c *Config, v string) error { *p(c) = SplitList(v); return nil }}
	}
	b := func(env, fl, usage string, p func(*Config) *bool) setting {
		s := parsed(env, fl, usage, p, strconv.ParseBool, strconv.FormatBool, "a boolean", "use true or false")
		s.isBool = true
		return s
	}
	d := func(env, fl, usage, fix string, p func(*Config) *time.Duration) setting {
		return parsed(env, fl, usage, p, time.ParseDuration, time.Duration.String, "a duration", fix)
	}
	n := func(env, fl, usage, example string, p func(*Config) *int) setting {
		return parsed(env, fl, usage, p, strconv.Atoi, strconv.Itoa, "a whole number", "set a number such as "+example)
	}
	return []setting{
		s("AZURE_TENANT_ID", "tenant-id", "Directory (tenant) ID of the app registration", false, func(c *Config) *string { return &c.TenantID }),
		s("AZURE_CLIENT_ID", "client-id", "Application (client) ID of the app registration", false, func(c *Config) *string { return &c.ClientID }),
		// The secret has no flag: a flag would show it in the process list.
		{env: "AZURE_CLIENT_SECRET", usage: "the client secret's Value (not its Secret ID)", secret: true, get: func(c *Config) string { return c.ClientSecret },
			set: func(c *Config, v string) error { c.ClientSecret = strings.TrimRight(v, "\r\n"); return nil }},
		s("AZURE_CLIENT_SECRET_FILE", "client-secret-file", "file holding the client secret's value (re-read when it changes)", false, func(c *Config) *string { return &c.ClientSecretFile }),
		parsed("BROKER_CLIENT_SECRET_EXPIRES_ON", "client-secret-expires-on", "when the client secret expires, e.g. 2027-05-01 (for the expiry metric and warning)",
			func(c *Config) *time.Time { return &c.SecretExpiresOn }, ParseDate, formatDate, "a date", dateFix),
		s("AZURE_CLIENT_CERTIFICATE_PATH", "client-certificate-path", "PEM or PKCS#12 file holding the client certificate and its private key (re-read when it changes)", false, func(c *Config) *string { return &c.ClientCertificatePath }),
		// The password has no flag: a flag would show it in the process list.
		{env: "AZURE_CLIENT_CERTIFICATE_PASSWORD", usage: "password of a PKCS#12 certificate file", secret: true, get: func(c *Config) string { return c.ClientCertificatePassword },
			set: func(c *Config, v string) error { c.ClientCertificatePassword = v; return nil }},
		b("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "client-send-certificate-chain", "send the certificate chain (x5c) with each assertion, for subject name and issuer authentication",
			func(c *Config) *bool { return &c.SendCertificateChain }),
		s("AZURE_FEDERATED_TOKEN_FILE", "federated-token-file", "file holding a federated token, e.g. the projected service account token of AKS workload identity (re-read when it changes)", false, func(c *Config) *string { return &c.FederatedTokenFile }),
		s("AZURE_AUTHORITY_HOST", "authority-host", "Entra ID host, e.g. https://login.microsoftonline.com (default: the cloud's)", false, func(c *Config) *string { return &c.AuthorityHost }),
		s("AZURE_CLOUD", "cloud", "Azure cloud: AzurePublic, AzureUSGovernment or AzureChina", false, func(c *Config) *string { return &c.Cloud }),
		s("BROKER_LISTEN", "listen", "API listener: host:port or unix:///path", false, func(c *Config) *string { return &c.Listen }),
		s("BROKER_OPS_LISTEN", "ops-listen", "metrics and health listener: host:port", false, func(c *Config) *string { return &c.OpsListen }),
		b("BROKER_ALLOW_REMOTE_LISTEN", "allow-remote-listen", "let BROKER_LISTEN be an address other hosts can reach (the Host check is no access control)",
			func(c *Config) *bool { return &c.AllowRemoteListen }),
		{env: "BROKER_IDENTITY_HEADER", usage: "secret that callers of /msi/token must send as X-IDENTITY-HEADER, at least 16 characters (unset: /msi/token answers an error naming it)", secret: true, get: func(c *Config) string { return c.IdentityHeader },
			set: func(c *Config, v string) error { c.IdentityHeader = strings.TrimSpace(v); return nil }},
		s("BROKER_LOGANALYTICS_ENDPOINT", "loganalytics-endpoint", "upstream of /proxy/loganalytics/ (default: the cloud's Log Analytics endpoint)", false, func(c *Config) *string { return &c.LogAnalyticsEndpoint }),
		l("BROKER_PREFETCH_SCOPES", "prefetch-scopes", "comma-separated scopes fetched at start and kept warm; /readyz waits for them", func(c *Config) *[]string { return &c.PrefetchScopes }),
		l("BROKER_ALLOWED_SCOPES", "allowed-scopes", "comma-separated scopes; when set, any other scope is refused", func(c *Config) *[]string { return &c.AllowedScopes }),
		s("BROKER_CONFIG", "config", "YAML file naming more identities", false, func(c *Config) *string { return &c.ConfigFile }),
		s("BROKER_AUDIT_FILE", "audit-file", "append-only JSON-lines audit file: one line per token handed out or request refused (beside the log's audit lines)", false, func(c *Config) *string { return &c.AuditFile }),
		s("BROKER_ROUTES_FILE", "routes-file", "YAML file of custom proxy routes (name, upstream, scope)", false, func(c *Config) *string { return &c.RoutesFile }),
		// The URL has no flag: it may hold a password.
		{env: "BROKER_REDIS_URL", usage: "turns on the shared Redis second-level cache: redis://[user:password@]host:6379, rediss://… (TLS) or unix:///path (no flag: it may hold a password)", secret: true, get: func(c *Config) string { return c.RedisURL },
			set: func(c *Config, v string) error { c.RedisURL = strings.TrimSpace(v); return nil }},
		s("BROKER_REDIS_KEY_FILE", "redis-key-file", "file of the keys that encrypt the tokens shared in Redis (required with BROKER_REDIS_URL)", false, func(c *Config) *string { return &c.RedisKeyFile }),
		s("BROKER_REDIS_CA_FILE", "redis-ca-file", "PEM file of the CAs that sign the Redis server's certificate, for rediss:// (default: the system's)", false, func(c *Config) *string { return &c.RedisCAFile }),
		s("BROKER_LOG_LEVEL", "log-level", "debug, info, warn or error", false, func(c *Config) *string { return &c.LogLevel }),
		s("BROKER_LOG_FORMAT", "log-format", "json or console", false, func(c *Config) *string { return &c.LogFormat }),
		parsed("BROKER_CACHE_SIZE", "cache-size", "maximum number of cached tokens",
			func(c *Config) *int { return &c.CacheSize }, strconv.Atoi, strconv.Itoa, "a whole number", "set a number of tokens such as 1024"),
		parsed("BROKER_PROXY_MAX_BODY_BYTES", "proxy-max-body-bytes", "largest request body the proxy accepts, in bytes",
			func(c *Config) *int64 { return &c.ProxyMaxBodyBytes }, func(v string) (int64, error) { return strconv.ParseInt(v, 10, 64) },
			func(n int64) string { return strconv.FormatInt(n, 10) }, "a whole number", "set a size in bytes such as 16777216"),
		d("BROKER_PROXY_BODY_TIMEOUT", "proxy-body-timeout", "how long a proxied request body may stall before it is refused (408)", "write it like 10s",
			func(c *Config) *time.Duration { return &c.ProxyBodyTimeout }),
		s("BROKER_INGESTION_ENDPOINT", "ingestion-endpoint", "upstream of /proxy/ingestion/: a data collection endpoint or a DCR's logs-ingestion endpoint, e.g. https://my-dce-abcd.westeurope-1.ingest.monitor.azure.com (unset: no ingestion route)", false, func(c *Config) *string { return &c.IngestionEndpoint }),
		parsed("BROKER_INGESTION_MAX_BODY_BYTES", "ingestion-max-body-bytes", "largest upload the ingestion route accepts, in bytes (it is split into calls under 1 MB)",
			func(c *Config) *int64 { return &c.IngestionMaxBodyBytes }, func(v string) (int64, error) { return strconv.ParseInt(v, 10, 64) },
			func(n int64) string { return strconv.FormatInt(n, 10) }, "a whole number", "set a size in bytes such as 67108864"),
		n("BROKER_LOGANALYTICS_MAX_CONCURRENT", "loganalytics-max-concurrent", "Log Analytics queries of one identity the broker sends at once (Log Analytics allows 5 per user); the rest wait in the broker", "5", func(c *Config) *int { return &c.LogAnalyticsMaxConcurrent }),
		n("BROKER_LOGANALYTICS_MAX_QUEUED", "loganalytics-max-queued", "Log Analytics queries of one identity that may wait for a turn; past that, 429", "200", func(c *Config) *int { return &c.LogAnalyticsMaxQueued }),
		d("BROKER_LOGANALYTICS_MAX_WAIT", "loganalytics-max-wait", "longest a Log Analytics query waits for a turn before it is answered 429", "write it like 3m",
			func(c *Config) *time.Duration { return &c.LogAnalyticsMaxWait }),
		d("BROKER_SHUTDOWN_TIMEOUT", "shutdown-timeout", "how long a graceful shutdown waits for requests in flight", "write it like 15s or 1m",
			func(c *Config) *time.Duration { return &c.ShutdownTimeout }),
	}
}()

// EnvNames lists every environment variable the broker reads, in the order
// of the documentation.
func EnvNames() []string {
	names := make([]string, 0, len(settings))
	for _, s := range settings {
		names = append(names, s.env)
	}
	return names
}

// FromEnv applies the environment variables that are set (non-empty) to c.
// getenv is os.Getenv in production and a map lookup in tests. It returns
// every value that cannot be parsed, as Problems.
func (c *Config) FromEnv(getenv func(string) string) error {
	var ps Problems
	for _, s := range settings {
		if v := getenv(s.env); v != "" {
			if err := s.set(c, v); err != nil {
				ps = append(ps, AsProblems(err)...)
			}
		}
	}
	return ps.Err()
}

// Group is a set of settings: one heading of the help, and what a command
// registers flags for. The groups are bits, so a command's groups are one
// value such as IdentitySettings | LogSettings.
type Group uint8

const (
	// IdentitySettings are the app registration, its credential and the
	// cloud: what every command that fetches tokens needs.
	IdentitySettings Group = 1 << iota
	// UpstreamSettings are the Azure APIs the proxy and broker check call.
	UpstreamSettings
	// ServerSettings are the listeners, the served scopes and the limits.
	// A setting not named in settingGroups is one of these.
	ServerSettings
	// LogSettings are the log level and format.
	LogSettings

	// AllSettings is every group.
	AllSettings = IdentitySettings | UpstreamSettings | ServerSettings | LogSettings
)

// Groups lists the groups in the order of the help.
var Groups = []Group{IdentitySettings, UpstreamSettings, ServerSettings, LogSettings}

// String is the group's heading in the help.
func (g Group) String() string {
	switch g {
	case IdentitySettings:
		return "Identity (the app registration, its credential and the cloud)"
	case UpstreamSettings:
		return "Azure APIs"
	case ServerSettings:
		return "Serving (listeners, scopes and limits)"
	case LogSettings:
		return "Logging"
	}
	return fmt.Sprintf("Group(%d)", uint8(g))
}

// settingGroups places settings in groups other than ServerSettings, by
// variable. It is a table of its own so that a new setting needs no entry
// unless a command other than serve uses it.
var settingGroups = map[string]Group{
	"AZURE_TENANT_ID":                     IdentitySettings,
	"AZURE_CLIENT_ID":                     IdentitySettings,
	"AZURE_CLIENT_SECRET":                 IdentitySettings,
	"AZURE_CLIENT_SECRET_FILE":            IdentitySettings,
	"BROKER_CLIENT_SECRET_EXPIRES_ON":     IdentitySettings,
	"AZURE_CLIENT_CERTIFICATE_PATH":       IdentitySettings,
	"AZURE_CLIENT_CERTIFICATE_PASSWORD":   IdentitySettings,
	"AZURE_CLIENT_SEND_CERTIFICATE_CHAIN": IdentitySettings,
	"AZURE_FEDERATED_TOKEN_FILE":          IdentitySettings,
	"AZURE_AUTHORITY_HOST":                IdentitySettings,
	"AZURE_CLOUD":                         IdentitySettings,
	"BROKER_CONFIG":                       IdentitySettings,
	"BROKER_LOGANALYTICS_ENDPOINT":        UpstreamSettings,
	"BROKER_INGESTION_ENDPOINT":           UpstreamSettings,
	"BROKER_LOG_LEVEL":                    LogSettings,
	"BROKER_LOG_FORMAT":                   LogSettings,
}

func groupOf(env string) Group {
	if g, ok := settingGroups[env]; ok {
		return g
	}
	return ServerSettings
}

// Setting describes one setting for the help: `broker help config` lists
// them all, so the help is the table itself and cannot drift from it.
type Setting struct {
	// Env is the environment variable.
	Env string
	// Flag is the flag's name without dashes; empty for a secret, which has
	// no flag because a flag would show it in the process list.
	Flag string
	// Default is the value before the environment and flags apply; empty
	// when there is none.
	Default string
	// Usage says what the setting means.
	Usage string
	// Group is the setting's group.
	Group Group
}

// Settings lists every setting in the order of the documentation.
func Settings() []Setting {
	d := Default()
	out := make([]Setting, 0, len(settings))
	for _, s := range settings {
		out = append(out, Setting{Env: s.env, Flag: s.flag, Default: s.get(&d), Usage: s.usage, Group: groupOf(s.env)})
	}
	return out
}

// RegisterFlags registers a flag for every non-secret setting of groups on
// fs (no groups: every setting), with the current value as its default, so
// that parsing fs after FromEnv lets flags win. Secrets have no flags: a flag
// would show them in the process list.
func (c *Config) RegisterFlags(fs *flag.FlagSet, groups ...Group) {
	want := AllSettings
	if len(groups) > 0 {
		want = 0
		for _, g := range groups {
			want |= g
		}
	}
	for _, s := range settings {
		if s.flag == "" || groupOf(s.env)&want == 0 {
			continue
		}
		usage := s.usage + " (env " + s.env + ")"
		if v := s.get(c); v != "" {
			usage = s.usage + " (env " + s.env + ", default " + strconv.Quote(v) + ")"
		}
		set := func(v string) error { return s.set(c, v) }
		if s.isBool {
			fs.BoolFunc(s.flag, usage, set)
			continue
		}
		fs.Func(s.flag, usage, set)
	}
}

// String describes the configuration with secrets redacted.
func (c Config) String() string {
	var b strings.Builder
	for i, s := range settings {
		if i > 0 {
			b.WriteString(" ")
		}
		v := s.get(&c)
		if s.secret && v != "" {
			v = "[redacted]"
		}
		b.WriteString(s.env + "=" + strconv.Quote(v))
	}
	return b.String()
}

// SplitList splits a comma-separated list, trimming spaces and dropping
// empty items.
func SplitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Mode says which settings Validate requires.
type Mode int

const (
	// Serve requires an app registration and a credential.
	Serve Mode = iota
	// Demo supplies its own registration: the credential settings are not required.
	Demo
)

// Problem is one thing wrong with the configuration, in words a user can
// act on. serve prints its Error; broker check shows Problem and Fix apart.
type Problem struct {
	// Setting names the setting to change: an environment variable such as
	// AZURE_TENANT_ID, or BROKER_CONFIG or BROKER_ROUTES_FILE for an entry
	// of those files; empty when no one setting is at fault.
	Setting string
	// Problem says what is wrong, naming the setting (and for a file, its
	// line) as the user wrote it.
	Problem string
	// Fix says what to do; empty when the problem says it all.
	Fix string
}

// Error is "<problem>: <fix>".
func (p Problem) Error() string {
	if p.Fix == "" {
		return p.Problem
	}
	return p.Problem + ": " + p.Fix
}

// Problems are every problem found at once; as an error, one per line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Err is ps as an error: nil when there is no problem.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// AsProblems lists the problems of err: its Problems, and each other error
// it joins as a Problem with no fix.
func AsProblems(err error) Problems {
	var joined interface{ Unwrap() []error }
	var ps Problems
	var p Problem
	switch {
	case err == nil:
		return nil
	case errors.As(err, &joined):
		for _, err := range joined.Unwrap() {
			ps = append(ps, AsProblems(err)...)
		}
		return ps
	case errors.As(err, &ps):
		return ps
	case errors.As(err, &p):
		return Problems{p}
	}
	return Problems{{Problem: err.Error()}}
}

// Validate reports every problem with c at once, as Problems; nil when c is
// usable in mode. In Serve mode it opens every credential file, of the
// environment's identity and of c.Identities, to check that it can be read
// now (it never reads the content): a missing file is a start error, not a
// failure at the first request.
func (c Config) Validate(mode Mode) error {
	var ps Problems
	add := func(setting, fix, format string, a ...any) {
		ps = append(ps, Problem{Setting: setting, Problem: fmt.Sprintf(format, a...), Fix: fix})
	}

	env := c.envIdentity()
	if mode == Serve && (c.ConfigFile == "" || c.envIdentitySet()) {
		ps = append(ps, env.problems()...)
		ps = append(ps, env.fileProblems()...)
	}
	if mode == Serve && c.ConfigFile != "" && !c.envIdentitySet() && len(c.Identities) == 0 {
		add("BROKER_CONFIG", "fix the file, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and a credential",
			"no identity: BROKER_CONFIG %s gives no valid identity and AZURE_CLIENT_ID is not set", c.ConfigFile)
	}
	for _, id := range c.Identities {
		if c.ClientID != "" && strings.EqualFold(id.ClientID, c.ClientID) {
			add("BROKER_CONFIG", "each app registration is served once; drop one of them", "%s: identity %q has the client_id of AZURE_CLIENT_ID", id.Source, id.Name)
		}
		if mode == Serve {
			ps = append(ps, id.fileProblems()...)
		}
	}

	if _, err := azure.CloudByName(c.Cloud); err != nil {
		add("AZURE_CLOUD", "use AzurePublic, AzureUSGovernment or AzureChina", "AZURE_CLOUD %q is not a known cloud", c.Cloud)
	}
	if c.AuthorityHost != "" {
		if err := checkURL(c.AuthorityHost); err != nil {
			add("AZURE_AUTHORITY_HOST", "use a URL such as https://login.microsoftonline.com", "AZURE_AUTHORITY_HOST %q %v", c.AuthorityHost, err)
		}
	}
	if c.LogAnalyticsEndpoint != "" {
		if err := checkURL(c.LogAnalyticsEndpoint); err != nil {
			add("BROKER_LOGANALYTICS_ENDPOINT", "use a URL such as https://api.loganalytics.azure.com", "BROKER_LOGANALYTICS_ENDPOINT %q %v", c.LogAnalyticsEndpoint, err)
		}
	}
	if err := checkListen(c.Listen, true); err != nil {
		add("BROKER_LISTEN", "use host:port such as 127.0.0.1:8400, or unix:///run/broker/broker.sock", "BROKER_LISTEN %q %v", c.Listen, err)
	} else if !c.AllowRemoteListen && remoteListen(c.Listen) {
		add("BROKER_LISTEN", "use 127.0.0.1:8400 or a unix:// socket, or set BROKER_ALLOW_REMOTE_LISTEN=true behind a firewall or network policy that admits only trusted callers",
			"BROKER_LISTEN %q is not a loopback address, so any host that reaches it could ask for tokens (the Host check defends against DNS rebinding, not against other hosts)", c.Listen)
	}
	if err := checkListen(c.OpsListen, false); err != nil {
		add("BROKER_OPS_LISTEN", "use host:port such as 127.0.0.1:9400", "BROKER_OPS_LISTEN %q %v", c.OpsListen, err)
	}
	if c.Listen != "" && c.Listen == c.OpsListen && !strings.HasSuffix(c.Listen, ":0") {
		add("BROKER_OPS_LISTEN", "give the ops listener its own port", "BROKER_LISTEN and BROKER_OPS_LISTEN are both %q", c.Listen)
	}
	if p, ok := identityHeaderProblem(c.IdentityHeader); ok {
		ps = append(ps, p)
	}
	ps = append(ps, env.scopeProblems()...)
	ps = append(ps, c.redisProblems()...)
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("BROKER_LOG_LEVEL", "use debug, info, warn or error", "BROKER_LOG_LEVEL %q is not a level", c.LogLevel)
	}
	switch c.LogFormat {
	case "json", "console":
	default:
		add("BROKER_LOG_FORMAT", "use json or console", "BROKER_LOG_FORMAT %q is not a format", c.LogFormat)
	}
	if c.CacheSize < 1 {
		add("BROKER_CACHE_SIZE", "use at least 1 (default 1024)", "BROKER_CACHE_SIZE %d is too small", c.CacheSize)
	}
	if c.ProxyMaxBodyBytes < 1 {
		add("BROKER_PROXY_MAX_BODY_BYTES", "use a positive size in bytes (default 16777216)", "BROKER_PROXY_MAX_BODY_BYTES %d is too small", c.ProxyMaxBodyBytes)
	}
	if c.ProxyBodyTimeout <= 0 {
		add("BROKER_PROXY_BODY_TIMEOUT", "", "BROKER_PROXY_BODY_TIMEOUT %s must be positive, such as 10s", c.ProxyBodyTimeout)
	}
	if c.IngestionEndpoint != "" {
		if err := checkURL(c.IngestionEndpoint); err != nil {
			add("BROKER_INGESTION_ENDPOINT", "use the endpoint's URL, such as https://my-dce-abcd.westeurope-1.ingest.monitor.azure.com", "BROKER_INGESTION_ENDPOINT %q %v", c.IngestionEndpoint, err)
		}
	}
	if c.IngestionMaxBodyBytes < 1 {
		add("BROKER_INGESTION_MAX_BODY_BYTES", "use a positive size in bytes (default 67108864)", "BROKER_INGESTION_MAX_BODY_BYTES %d is too small", c.IngestionMaxBodyBytes)
	}
	if c.LogAnalyticsMaxConcurrent < 1 {
		add("BROKER_LOGANALYTICS_MAX_CONCURRENT", "use at least 1 (Log Analytics runs 5 queries per user at once)", "BROKER_LOGANALYTICS_MAX_CONCURRENT %d is too small", c.LogAnalyticsMaxConcurrent)
	}
	if c.LogAnalyticsMaxQueued < 0 {
		add("BROKER_LOGANALYTICS_MAX_QUEUED", "use 0 (no queue) or more (default 200)", "BROKER_LOGANALYTICS_MAX_QUEUED %d is negative", c.LogAnalyticsMaxQueued)
	}
	if c.LogAnalyticsMaxWait <= 0 {
		add("BROKER_LOGANALYTICS_MAX_WAIT", "", "BROKER_LOGANALYTICS_MAX_WAIT %s must be positive, such as 3m", c.LogAnalyticsMaxWait)
	}
	if c.ShutdownTimeout <= 0 {
		add("BROKER_SHUTDOWN_TIMEOUT", "", "BROKER_SHUTDOWN_TIMEOUT %s must be positive, such as 15s", c.ShutdownTimeout)
	}
	return ps.Err()
}

// redisProblems checks the second-level cache settings. It never repeats
// the URL, which may hold a password.
func (c Config) redisProblems() Problems {
	var ps Problems
	add := func(setting, fix, format string, a ...any) {
		ps = append(ps, Problem{Setting: setting, Problem: fmt.Sprintf(format, a...), Fix: fix})
	}
	const urlFix = "use redis://[user:password@]host:6379, rediss://… for TLS, or unix:///path/to/redis.sock"
	if c.RedisURL == "" {
		if c.RedisKeyFile != "" || c.RedisCAFile != "" {
			add("BROKER_REDIS_URL", "set the Redis URL, or drop them", "BROKER_REDIS_KEY_FILE or BROKER_REDIS_CA_FILE is set but BROKER_REDIS_URL is not")
		}
		return ps
	}
	u, err := url.Parse(c.RedisURL)
	switch {
	case err != nil:
		add("BROKER_REDIS_URL", urlFix, "BROKER_REDIS_URL does not parse")
	case u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix":
		add("BROKER_REDIS_URL", urlFix, "BROKER_REDIS_URL has the scheme %q", u.Scheme)
	case c.RedisCAFile != "" && u.Scheme != "rediss":
		add("BROKER_REDIS_CA_FILE", "", "BROKER_REDIS_CA_FILE is set but BROKER_REDIS_URL is not rediss://: the CA file is for TLS")
	}
	if c.RedisKeyFile == "" {
		add("BROKER_REDIS_KEY_FILE", "", "BROKER_REDIS_URL is set but BROKER_REDIS_KEY_FILE is not: Redis holds tokens only encrypted; make a key file with  echo \"k1 $(openssl rand -base64 32)\" > redis.key  and give every broker of the fleet the same file")
	}
	for _, f := range []struct{ setting, path string }{{"BROKER_REDIS_KEY_FILE", c.RedisKeyFile}, {"BROKER_REDIS_CA_FILE", c.RedisCAFile}} {
		if f.path == "" {
			continue
		}
		if what, fix := checkReadable(f.path); what != "" {
			add(f.setting, fix, "%s %q %s", f.setting, f.path, what)
		}
	}
	return ps
}

// envIdentitySet reports whether any setting of the identity from the
// environment is set, so that it is in use.
func (c Config) envIdentitySet() bool {
	return c.TenantID != "" || c.ClientID != "" || c.ClientSecret != "" || c.ClientSecretFile != "" ||
		c.ClientCertificatePath != "" || c.FederatedTokenFile != ""
}

// areSet says that several settings are set: "both A and B are set", "A, B
// and C are all set".
func areSet(names []string) string {
	if len(names) == 2 {
		return "both " + names[0] + " and " + names[1] + " are set"
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1] + " are all set"
}

// dateFix says how to write a date.
const dateFix = "write it like 2027-05-01 or 2027-05-01T12:00:00Z"

// ParseDate parses an expiry date: 2006-01-02 (midnight UTC) or RFC 3339.
func ParseDate(v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New("is not a date: " + dateFix)
}

func formatDate(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return errors.New("is not an absolute http(s) URL")
	}
	if u.Scheme == "http" && !azure.IsLoopbackHost(u.Hostname()) {
		return errors.New("uses plain http to a host that is not loopback; tokens must travel over https")
	}
	return nil
}

func checkListen(addr string, unixOK bool) error {
	if strings.HasPrefix(addr, "unix://") {
		if !unixOK {
			return errors.New("cannot be a unix socket")
		}
		if strings.TrimPrefix(addr, "unix://") == "" {
			return errors.New("names no socket path")
		}
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("is not host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return errors.New("has no valid port")
	}
	return nil
}

// AzureCloud returns the cloud AZURE_CLOUD names, with the Log Analytics
// endpoint of BROKER_LOGANALYTICS_ENDPOINT when it is set: the table the
// built-in proxy routes and broker check are made from.
func (c Config) AzureCloud() (azure.Cloud, error) {
	cloud, err := azure.CloudByName(c.Cloud)
	if err != nil {
		return azure.Cloud{}, err
	}
	if c.LogAnalyticsEndpoint != "" {
		cloud.LogAnalytics.Endpoint = strings.TrimSuffix(c.LogAnalyticsEndpoint, "/")
	}
	if c.IngestionEndpoint != "" {
		cloud.LogsIngestion.Endpoint = strings.TrimSuffix(c.IngestionEndpoint, "/")
	}
	return cloud, nil
}
