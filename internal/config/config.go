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
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/entrabroker/broker/internal/azure"
)

// Config is the broker's whole configuration. Secret fields are never
// printed: String redacts them.
type Config struct {
	// TenantID is the Directory (tenant) ID of the app registration (AZURE_TENANT_ID).
	TenantID string
	// ClientID is the Application (client) ID (AZURE_CLIENT_ID).
	ClientID string
	// ClientSecret is the client secret's Value (AZURE_CLIENT_SECRET). Secret.
	ClientSecret string
	// ClientSecretFile is a file holding the secret (AZURE_CLIENT_SECRET_FILE),
	// re-read when it changes.
	ClientSecretFile string
	// ClientSecretExpiresOn is when the client secret expires
	// (BROKER_CLIENT_SECRET_EXPIRES_ON, a date such as 2027-05-01), for the
	// credential-expiry metric and warning; zero means unknown.
	ClientSecretExpiresOn time.Time
	// ClientCertificatePath is a PEM or PKCS#12 file holding the client
	// certificate and its private key (AZURE_CLIENT_CERTIFICATE_PATH),
	// re-read when it changes.
	ClientCertificatePath string
	// ClientCertificatePassword decrypts a PKCS#12 certificate file
	// (AZURE_CLIENT_CERTIFICATE_PASSWORD). Secret.
	ClientCertificatePassword string
	// SendCertificateChain adds the certificate chain (x5c) to every client
	// assertion, for subject name and issuer authentication
	// (AZURE_CLIENT_SEND_CERTIFICATE_CHAIN).
	SendCertificateChain bool
	// FederatedTokenFile is a file holding a federated token, such as a
	// Kubernetes projected service account token (AZURE_FEDERATED_TOKEN_FILE),
	// sent as the client assertion and re-read when it changes.
	FederatedTokenFile string
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
	// PrefetchScopes are fetched at start and kept warm (BROKER_PREFETCH_SCOPES).
	PrefetchScopes []string
	// AllowedScopes, when not empty, are the only scopes served (BROKER_ALLOWED_SCOPES).
	AllowedScopes []string
	// ConfigFile is a YAML file naming more identities (BROKER_CONFIG); see
	// LoadFile. Empty means none.
	ConfigFile string
	// Identities are the identities of ConfigFile, filled by LoadFile.
	Identities []Identity
	// Callers are the caller rules of ConfigFile, filled by LoadFile: nil
	// when it has no callers: key (every local caller may use everything),
	// else the only callers served (an empty list serves no one).
	Callers []CallerRule
	// AuditFile, when set, is the append-only audit file (BROKER_AUDIT_FILE).
	AuditFile string
	// RoutesFile is a YAML file of custom proxy routes (BROKER_ROUTES_FILE),
	// read by the proxy package. Empty means the built-in routes only.
	RoutesFile string

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

func str(p func(*Config) *string) (func(*Config) string, func(*Config, string) error) {
	return func(c *Config) string { return *p(c) },
		func(c *Config, v string) error { *p(c) = strings.TrimSpace(v); return nil }
}

func list(p func(*Config) *[]string) (func(*Config) string, func(*Config, string) error) {
	return func(c *Config) string { return strings.Join(*p(c), ",") },
		func(c *Config, v string) error { *p(c) = SplitList(v); return nil }
}

var settings = func() []setting {
	s := func(env, fl, usage string, secret bool, p func(*Config) *string) setting {
		g, st := str(p)
		return setting{env: env, flag: fl, usage: usage, secret: secret, get: g, set: st}
	}
	l := func(env, fl, usage string, p func(*Config) *[]string) setting {
		g, st := list(p)
		return setting{env: env, flag: fl, usage: usage, get: g, set: st}
	}
	n := func(env, fl, usage, example string, p func(*Config) *int) setting {
		return setting{env: env, flag: fl, usage: usage,
			get: func(c *Config) string { return strconv.Itoa(*p(c)) },
			set: func(c *Config, v string) error {
				n, err := strconv.Atoi(strings.TrimSpace(v))
				if err != nil {
					return fmt.Errorf("%s=%q is not a whole number: set a number such as %s", env, v, example)
				}
				*p(c) = n
				return nil
			}}
	}
	return []setting{
		s("AZURE_TENANT_ID", "tenant-id", "Directory (tenant) ID of the app registration", false, func(c *Config) *string { return &c.TenantID }),
		s("AZURE_CLIENT_ID", "client-id", "Application (client) ID of the app registration", false, func(c *Config) *string { return &c.ClientID }),
		// The secret has no flag: a flag would show it in the process list.
		{env: "AZURE_CLIENT_SECRET", usage: "the client secret's Value (not its Secret ID)", secret: true, get: func(c *Config) string { return c.ClientSecret },
			set: func(c *Config, v string) error { c.ClientSecret = strings.TrimRight(v, "\r\n"); return nil }},
		s("AZURE_CLIENT_SECRET_FILE", "client-secret-file", "file holding the client secret's value (re-read when it changes)", false, func(c *Config) *string { return &c.ClientSecretFile }),
		{env: "BROKER_CLIENT_SECRET_EXPIRES_ON", flag: "client-secret-expires-on", usage: "when the client secret expires, e.g. 2027-05-01 (for the expiry metric and warning)",
			get: func(c *Config) string { return formatDate(c.ClientSecretExpiresOn) },
			set: func(c *Config, v string) error {
				t, err := ParseDate(v)
				if err != nil {
					return fmt.Errorf("BROKER_CLIENT_SECRET_EXPIRES_ON=%q %w", v, err)
				}
				c.ClientSecretExpiresOn = t
				return nil
			}},
		s("AZURE_CLIENT_CERTIFICATE_PATH", "client-certificate-path", "PEM or PKCS#12 file holding the client certificate and its private key (re-read when it changes)", false, func(c *Config) *string { return &c.ClientCertificatePath }),
		// The password has no flag: a flag would show it in the process list.
		{env: "AZURE_CLIENT_CERTIFICATE_PASSWORD", usage: "password of a PKCS#12 certificate file", secret: true, get: func(c *Config) string { return c.ClientCertificatePassword },
			set: func(c *Config, v string) error { c.ClientCertificatePassword = v; return nil }},
		{env: "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", flag: "client-send-certificate-chain", isBool: true, usage: "send the certificate chain (x5c) with each assertion, for subject name and issuer authentication",
			get: func(c *Config) string { return strconv.FormatBool(c.SendCertificateChain) },
			set: func(c *Config, v string) error {
				b, err := strconv.ParseBool(strings.TrimSpace(v))
				if err != nil {
					return fmt.Errorf("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN=%q is not a boolean: use true or false", v)
				}
				c.SendCertificateChain = b
				return nil
			}},
		s("AZURE_FEDERATED_TOKEN_FILE", "federated-token-file", "file holding a federated token, e.g. the projected service account token of AKS workload identity (re-read when it changes)", false, func(c *Config) *string { return &c.FederatedTokenFile }),
		s("AZURE_AUTHORITY_HOST", "authority-host", "Entra ID host, e.g. https://login.microsoftonline.com (default: the cloud's)", false, func(c *Config) *string { return &c.AuthorityHost }),
		s("AZURE_CLOUD", "cloud", "Azure cloud: AzurePublic, AzureUSGovernment or AzureChina", false, func(c *Config) *string { return &c.Cloud }),
		s("BROKER_LISTEN", "listen", "API listener: host:port or unix:///path", false, func(c *Config) *string { return &c.Listen }),
		s("BROKER_OPS_LISTEN", "ops-listen", "metrics and health listener: host:port", false, func(c *Config) *string { return &c.OpsListen }),
		{env: "BROKER_ALLOW_REMOTE_LISTEN", flag: "allow-remote-listen", isBool: true, usage: "let BROKER_LISTEN be an address other hosts can reach (the Host check is no access control)",
			get: func(c *Config) string { return strconv.FormatBool(c.AllowRemoteListen) },
			set: func(c *Config, v string) error {
				b, err := strconv.ParseBool(strings.TrimSpace(v))
				if err != nil {
					return fmt.Errorf("BROKER_ALLOW_REMOTE_LISTEN=%q is not a boolean: use true or false", v)
				}
				c.AllowRemoteListen = b
				return nil
			}},
		{env: "BROKER_IDENTITY_HEADER", usage: "secret that callers of /msi/token must send as X-IDENTITY-HEADER, at least 16 characters (unset: /msi/token answers an error naming it)", secret: true, get: func(c *Config) string { return c.IdentityHeader },
			set: func(c *Config, v string) error { c.IdentityHeader = strings.TrimSpace(v); return nil }},
		s("BROKER_LOGANALYTICS_ENDPOINT", "loganalytics-endpoint", "upstream of /proxy/loganalytics/ (default: the cloud's Log Analytics endpoint)", false, func(c *Config) *string { return &c.LogAnalyticsEndpoint }),
		l("BROKER_PREFETCH_SCOPES", "prefetch-scopes", "comma-separated scopes fetched at start and kept warm; /readyz waits for them", func(c *Config) *[]string { return &c.PrefetchScopes }),
		l("BROKER_ALLOWED_SCOPES", "allowed-scopes", "comma-separated scopes; when set, any other scope is refused", func(c *Config) *[]string { return &c.AllowedScopes }),
		s("BROKER_CONFIG", "config", "YAML file naming more identities", false, func(c *Config) *string { return &c.ConfigFile }),
		s("BROKER_AUDIT_FILE", "audit-file", "append-only JSON-lines audit file: one line per token handed out or request refused (beside the log's audit lines)", false, func(c *Config) *string { return &c.AuditFile }),
		s("BROKER_ROUTES_FILE", "routes-file", "YAML file of custom proxy routes (name, upstream, scope)", false, func(c *Config) *string { return &c.RoutesFile }),
		s("BROKER_LOG_LEVEL", "log-level", "debug, info, warn or error", false, func(c *Config) *string { return &c.LogLevel }),
		s("BROKER_LOG_FORMAT", "log-format", "json or console", false, func(c *Config) *string { return &c.LogFormat }),
		{env: "BROKER_CACHE_SIZE", flag: "cache-size", usage: "maximum number of cached tokens",
			get: func(c *Config) string { return strconv.Itoa(c.CacheSize) },
			set: func(c *Config, v string) error {
				n, err := strconv.Atoi(strings.TrimSpace(v))
				if err != nil {
					return fmt.Errorf("BROKER_CACHE_SIZE=%q is not a whole number: set a number of tokens such as 1024", v)
				}
				c.CacheSize = n
				return nil
			}},
		{env: "BROKER_PROXY_MAX_BODY_BYTES", flag: "proxy-max-body-bytes", usage: "largest request body the proxy accepts, in bytes",
			get: func(c *Config) string { return strconv.FormatInt(c.ProxyMaxBodyBytes, 10) },
			set: func(c *Config, v string) error {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil {
					return fmt.Errorf("BROKER_PROXY_MAX_BODY_BYTES=%q is not a whole number: set a size in bytes such as 16777216", v)
				}
				c.ProxyMaxBodyBytes = n
				return nil
			}},
		{env: "BROKER_PROXY_BODY_TIMEOUT", flag: "proxy-body-timeout", usage: "how long a proxied request body may stall before it is refused (408)",
			get: func(c *Config) string { return c.ProxyBodyTimeout.String() },
			set: func(c *Config, v string) error {
				d, err := time.ParseDuration(strings.TrimSpace(v))
				if err != nil {
					return fmt.Errorf("BROKER_PROXY_BODY_TIMEOUT=%q is not a duration: write it like 10s", v)
				}
				c.ProxyBodyTimeout = d
				return nil
			}},
		s("BROKER_INGESTION_ENDPOINT", "ingestion-endpoint", "upstream of /proxy/ingestion/: a data collection endpoint or a DCR's logs-ingestion endpoint, e.g. https://my-dce-abcd.westeurope-1.ingest.monitor.azure.com (unset: no ingestion route)", false, func(c *Config) *string { return &c.IngestionEndpoint }),
		{env: "BROKER_INGESTION_MAX_BODY_BYTES", flag: "ingestion-max-body-bytes", usage: "largest upload the ingestion route accepts, in bytes (it is split into calls under 1 MB)",
			get: func(c *Config) string { return strconv.FormatInt(c.IngestionMaxBodyBytes, 10) },
			set: func(c *Config, v string) error {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil {
					return fmt.Errorf("BROKER_INGESTION_MAX_BODY_BYTES=%q is not a whole number: set a size in bytes such as 67108864", v)
				}
				c.IngestionMaxBodyBytes = n
				return nil
			}},
		n("BROKER_LOGANALYTICS_MAX_CONCURRENT", "loganalytics-max-concurrent", "Log Analytics queries of one identity the broker sends at once (Log Analytics allows 5 per user); the rest wait in the broker", "5", func(c *Config) *int { return &c.LogAnalyticsMaxConcurrent }),
		n("BROKER_LOGANALYTICS_MAX_QUEUED", "loganalytics-max-queued", "Log Analytics queries of one identity that may wait for a turn; past that, 429", "200", func(c *Config) *int { return &c.LogAnalyticsMaxQueued }),
		{env: "BROKER_LOGANALYTICS_MAX_WAIT", flag: "loganalytics-max-wait", usage: "longest a Log Analytics query waits for a turn before it is answered 429",
			get: func(c *Config) string { return c.LogAnalyticsMaxWait.String() },
			set: func(c *Config, v string) error {
				d, err := time.ParseDuration(strings.TrimSpace(v))
				if err != nil {
					return fmt.Errorf("BROKER_LOGANALYTICS_MAX_WAIT=%q is not a duration: write it like 3m", v)
				}
				c.LogAnalyticsMaxWait = d
				return nil
			}},
		{env: "BROKER_SHUTDOWN_TIMEOUT", flag: "shutdown-timeout", usage: "how long a graceful shutdown waits for requests in flight",
			get: func(c *Config) string { return c.ShutdownTimeout.String() },
			set: func(c *Config, v string) error {
				d, err := time.ParseDuration(strings.TrimSpace(v))
				if err != nil {
					return fmt.Errorf("BROKER_SHUTDOWN_TIMEOUT=%q is not a duration: write it like 15s or 1m", v)
				}
				c.ShutdownTimeout = d
				return nil
			}},
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
// every value that cannot be parsed, joined.
func (c *Config) FromEnv(getenv func(string) string) error {
	var errs []error
	for _, s := range settings {
		if v := getenv(s.env); v != "" {
			if err := s.set(c, v); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
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

var (
	guidRE   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	domainRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$`)
)

// Mode says which settings Validate requires.
type Mode int

const (
	// Serve requires an app registration and a credential.
	Serve Mode = iota
	// Demo supplies its own registration: the credential settings are not required.
	Demo
)

// Validate reports every problem with c at once, each with what to do, joined
// into one error; nil when c is usable in mode. In Serve mode it opens every
// credential file, of the environment's identity and of c.Identities, to
// check that it can be read now (it never reads the content): a missing
// file is a start error, not a failure at the first request.
func (c Config) Validate(mode Mode) error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if mode == Serve && (c.ConfigFile == "" || c.envIdentitySet()) {
		errs = append(errs, c.envIdentityProblems()...)
	}
	if mode == Serve && c.ConfigFile != "" && !c.envIdentitySet() && len(c.Identities) == 0 {
		add("no identity: BROKER_CONFIG %s gives no valid identity and AZURE_CLIENT_ID is not set: fix the file, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and a credential", c.ConfigFile)
	}
	errs = append(errs, c.identitiesProblems(mode == Serve)...)

	if _, err := azure.CloudByName(c.Cloud); err != nil {
		add("AZURE_CLOUD %q is not a known cloud: use AzurePublic, AzureUSGovernment or AzureChina", c.Cloud)
	}
	if c.AuthorityHost != "" {
		if err := checkURL(c.AuthorityHost); err != nil {
			add("AZURE_AUTHORITY_HOST %q %v: use a URL such as https://login.microsoftonline.com", c.AuthorityHost, err)
		}
	}
	if c.LogAnalyticsEndpoint != "" {
		if err := checkURL(c.LogAnalyticsEndpoint); err != nil {
			add("BROKER_LOGANALYTICS_ENDPOINT %q %v: use a URL such as https://api.loganalytics.azure.com", c.LogAnalyticsEndpoint, err)
		}
	}
	if err := checkListen(c.Listen, true); err != nil {
		add("BROKER_LISTEN %q %v: use host:port such as 127.0.0.1:8400, or unix:///run/broker/broker.sock", c.Listen, err)
	} else if !c.AllowRemoteListen && remoteListen(c.Listen) {
		add("BROKER_LISTEN %q is not a loopback address, so any host that reaches it could ask for tokens (the Host check defends against DNS rebinding, not against other hosts): use 127.0.0.1:8400 or a unix:// socket, or set BROKER_ALLOW_REMOTE_LISTEN=true behind a firewall or network policy that admits only trusted callers", c.Listen)
	}
	if err := checkListen(c.OpsListen, false); err != nil {
		add("BROKER_OPS_LISTEN %q %v: use host:port such as 127.0.0.1:9400", c.OpsListen, err)
	}
	if c.Listen != "" && c.Listen == c.OpsListen && !strings.HasSuffix(c.Listen, ":0") {
		add("BROKER_LISTEN and BROKER_OPS_LISTEN are both %q: give the ops listener its own port", c.Listen)
	}
	if p := identityHeaderProblem(c.IdentityHeader); p != "" {
		errs = append(errs, errors.New(p))
	}
	checkScopes := func(env string, items []string) {
		for _, s := range items {
			if !scopeLike(s) {
				add("%s item %q is not a scope or resource URI: write items like https://api.loganalytics.io/.default", env, s)
			}
		}
	}
	checkScopes("BROKER_PREFETCH_SCOPES", c.PrefetchScopes)
	checkScopes("BROKER_ALLOWED_SCOPES", c.AllowedScopes)
	if len(c.AllowedScopes) > 0 {
		for _, s := range c.PrefetchScopes {
			if !slices.Contains(c.AllowedScopes, s) && !slices.Contains(c.AllowedScopes, strings.TrimSuffix(s, "/.default")) {
				add("BROKER_PREFETCH_SCOPES item %q is not in BROKER_ALLOWED_SCOPES: add it there, or drop it from the prefetch list", s)
			}
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("BROKER_LOG_LEVEL %q is not a level: use debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "json", "console":
	default:
		add("BROKER_LOG_FORMAT %q is not a format: use json or console", c.LogFormat)
	}
	if c.CacheSize < 1 {
		add("BROKER_CACHE_SIZE %d is too small: use at least 1 (default 1024)", c.CacheSize)
	}
	if c.ProxyMaxBodyBytes < 1 {
		add("BROKER_PROXY_MAX_BODY_BYTES %d is too small: use a positive size in bytes (default 16777216)", c.ProxyMaxBodyBytes)
	}
	if c.ProxyBodyTimeout <= 0 {
		add("BROKER_PROXY_BODY_TIMEOUT %s must be positive, such as 10s", c.ProxyBodyTimeout)
	}
	if c.IngestionEndpoint != "" {
		if err := checkURL(c.IngestionEndpoint); err != nil {
			add("BROKER_INGESTION_ENDPOINT %q %v: use the endpoint's URL, such as https://my-dce-abcd.westeurope-1.ingest.monitor.azure.com", c.IngestionEndpoint, err)
		}
	}
	if c.IngestionMaxBodyBytes < 1 {
		add("BROKER_INGESTION_MAX_BODY_BYTES %d is too small: use a positive size in bytes (default 67108864)", c.IngestionMaxBodyBytes)
	}
	if c.LogAnalyticsMaxConcurrent < 1 {
		add("BROKER_LOGANALYTICS_MAX_CONCURRENT %d is too small: use at least 1 (Log Analytics runs 5 queries per user at once)", c.LogAnalyticsMaxConcurrent)
	}
	if c.LogAnalyticsMaxQueued < 0 {
		add("BROKER_LOGANALYTICS_MAX_QUEUED %d is negative: use 0 (no queue) or more (default 200)", c.LogAnalyticsMaxQueued)
	}
	if c.LogAnalyticsMaxWait <= 0 {
		add("BROKER_LOGANALYTICS_MAX_WAIT %s must be positive, such as 3m", c.LogAnalyticsMaxWait)
	}
	if c.ShutdownTimeout <= 0 {
		add("BROKER_SHUTDOWN_TIMEOUT %s must be positive, such as 15s", c.ShutdownTimeout)
	}
	return errors.Join(errs...)
}

// envIdentitySet reports whether any setting of the identity from the
// environment is set, so that it is in use.
func (c Config) envIdentitySet() bool {
	return c.TenantID != "" || c.ClientID != "" || len(c.envCredentials()) > 0
}

// envCredentials names the credential variables that are set.
func (c Config) envCredentials() []string {
	var set []string
	for _, v := range []struct {
		name string
		on   bool
	}{
		{"AZURE_CLIENT_SECRET", c.ClientSecret != ""},
		{"AZURE_CLIENT_SECRET_FILE", c.ClientSecretFile != ""},
		{"AZURE_CLIENT_CERTIFICATE_PATH", c.ClientCertificatePath != ""},
		{"AZURE_FEDERATED_TOKEN_FILE", c.FederatedTokenFile != ""},
	} {
		if v.on {
			set = append(set, v.name)
		}
	}
	return set
}

// envIdentityProblems checks the identity from the environment: the app
// registration and exactly one credential.
func (c Config) envIdentityProblems() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch {
	case c.TenantID == "":
		add("AZURE_TENANT_ID is not set: use the Directory (tenant) ID from the app registration's Overview page")
	case c.TenantID == "common" || c.TenantID == "organizations" || c.TenantID == "consumers":
		add("AZURE_TENANT_ID is %q: the client-credentials grant needs your own tenant; use the Directory (tenant) ID from the app's Overview page", c.TenantID)
	case !guidRE.MatchString(c.TenantID) && !domainRE.MatchString(c.TenantID):
		add("AZURE_TENANT_ID %q is neither a GUID nor a domain name: use the Directory (tenant) ID from the app registration's Overview page", c.TenantID)
	case placeholderGUID(c.TenantID):
		add("AZURE_TENANT_ID %q is a placeholder: %s", c.TenantID, replaceTenant)
	}
	switch {
	case c.ClientID == "":
		add("AZURE_CLIENT_ID is not set: use the Application (client) ID from the app registration's Overview page")
	case !guidRE.MatchString(c.ClientID):
		add("AZURE_CLIENT_ID %q is not a GUID: use the Application (client) ID from the app registration's Overview page (not its display name)", c.ClientID)
	case placeholderGUID(c.ClientID):
		add("AZURE_CLIENT_ID %q is a placeholder: %s", c.ClientID, replaceClient)
	}
	creds := c.envCredentials()
	switch {
	case len(creds) == 0:
		add("no credential: set one of AZURE_CLIENT_SECRET (the client secret's Value, shown once when the secret is created under Certificates & secrets), AZURE_CLIENT_SECRET_FILE (a file holding it), AZURE_CLIENT_CERTIFICATE_PATH (a certificate and its key) or AZURE_FEDERATED_TOKEN_FILE (workload identity)")
	case len(creds) == 2 && creds[0] == "AZURE_CLIENT_SECRET" && creds[1] == "AZURE_CLIENT_SECRET_FILE":
		add("both AZURE_CLIENT_SECRET and AZURE_CLIENT_SECRET_FILE are set: keep one (the file is better: it can be rotated without a restart)")
	case len(creds) > 1:
		add("%s, but the broker uses exactly one credential: keep one (a certificate or workload identity is better than a secret)", areSet(creds))
	case c.ClientSecret != "" && guidRE.MatchString(c.ClientSecret):
		add("AZURE_CLIENT_SECRET looks like a GUID, which is the secret's ID, not its Value: copy the Value column (shown once at creation), or create a new secret")
	}
	if c.ClientCertificatePath == "" {
		if c.ClientCertificatePassword != "" {
			add("AZURE_CLIENT_CERTIFICATE_PASSWORD is set but AZURE_CLIENT_CERTIFICATE_PATH is not: set the path of the PKCS#12 file, or drop the password")
		}
		if c.SendCertificateChain {
			add("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN is set but AZURE_CLIENT_CERTIFICATE_PATH is not: the chain is sent only with a certificate credential")
		}
	}
	if !c.ClientSecretExpiresOn.IsZero() && c.ClientSecret == "" && c.ClientSecretFile == "" {
		add("BROKER_CLIENT_SECRET_EXPIRES_ON is set but no client secret is: it describes AZURE_CLIENT_SECRET or AZURE_CLIENT_SECRET_FILE (a certificate's expiry is read from the certificate)")
	}
	for _, f := range c.envFiles() {
		if err := checkReadable(f); err != nil {
			errs = append(errs, fmt.Errorf("%s %q %w", f.setting, f.path, err))
		}
	}
	return errs
}

// areSet says that several settings are set: "both A and B are set", "A, B
// and C are all set".
func areSet(names []string) string {
	if len(names) == 2 {
		return "both " + names[0] + " and " + names[1] + " are set"
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1] + " are all set"
}

// ParseDate parses an expiry date: 2006-01-02 (midnight UTC) or RFC 3339.
func ParseDate(v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New("is not a date: write it like 2027-05-01 or 2027-05-01T12:00:00Z")
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
