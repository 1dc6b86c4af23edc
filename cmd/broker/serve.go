package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"

	"github.com/entrabroker/broker/internal/access"
	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/cache"
	"github.com/entrabroker/broker/internal/cache/redis"
	"github.com/entrabroker/broker/internal/caller"
	"github.com/entrabroker/broker/internal/config"
	"github.com/entrabroker/broker/internal/httpapi"
	"github.com/entrabroker/broker/internal/proxy"
	"github.com/entrabroker/broker/internal/version"
)

// Server timeouts. The API listener serves token requests that answer from
// memory and proxied Log Analytics queries that may run for 10 minutes.
const (
	// readHeaderTimeout stops slowloris clients: a local caller sends its
	// headers at once.
	readHeaderTimeout = 5 * time.Second
	// idleTimeout closes keep-alive connections nobody uses, so idle
	// connections do not pile up.
	idleTimeout = 2 * time.Minute
	// maxHeaderBytes bounds request headers; token requests are tiny.
	maxHeaderBytes = 64 << 10
	// opsWriteTimeout bounds a metrics scrape or health answer.
	opsWriteTimeout = 30 * time.Second
)

// listenHook, when set in the context, learns the listeners' addresses once
// they are open: tests run the real program on port 0 and use it.
type listenHookKey struct{}

type listenHook func(api, ops net.Addr)

// runServe runs the broker; in demo mode it first starts the emulator and
// points the configuration at it.
func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, mode config.Mode) error {
	name := "serve"
	if mode == config.Demo {
		name = "demo"
	}
	cfg, custom, err := loadConfig(name, args, getenv, stdout, mode, nil)
	if err != nil {
		return err
	}
	log, level, err := newLeveledLogger(cfg, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	g, ctx := errgroup.WithContext(ctx)
	var demo *demoEnv
	if mode == config.Demo {
		demo, err = startDemo(ctx, &cfg, log.Named("emulator"))
		if err != nil {
			return err
		}
		defer demo.close()
	}

	// After startDemo: the demo's configuration is the one that runs.
	for _, w := range cfg.Warnings() {
		log.Warn(w.Error(), zap.String("setting", w.Setting))
	}

	apiLn, err := listen(cfg.Listen)
	if err != nil {
		return listenError("the API listener", "BROKER_LISTEN (--listen)", cfg.Listen, err)
	}
	defer apiLn.Close()
	opsLn, err := listen(cfg.OpsListen)
	if err != nil {
		return listenError("the ops listener", "BROKER_OPS_LISTEN (--ops-listen)", cfg.OpsListen, err)
	}
	defer opsLn.Close()
	// The hints of the managed-identity endpoints name the address apps
	// reach: with port 0, the one the kernel chose.
	if a, ok := apiLn.Addr().(*net.TCPAddr); ok {
		if h, p, err := net.SplitHostPort(cfg.Listen); err == nil && p == "0" {
			cfg.Listen = net.JoinHostPort(h, strconv.Itoa(a.Port))
		}
	}

	b, err := build(cfg, custom, log)
	if err != nil {
		return err
	}
	defer func() {
		// The cache first: its fetches may still use the second level.
		_ = b.cache.Close()
		if b.shared != nil {
			_ = b.shared.Close()
		}
	}()
	defer func() { _ = b.auditor.Close() }()
	b.level = &level
	if mode != config.Demo {
		// A reload reads the configuration as start did: the same
		// environment and flags, the files as they are now.
		b.reload = func() (config.Config, []proxy.Route, error) {
			c, custom, err := loadConfig(name, args, getenv, io.Discard, mode, nil)
			c.Listen = cfg.Listen // the listeners stay as they were opened
			return c, custom, err
		}
	}

	errLog := zap.NewStdLog(log.Named("http"))
	api := &http.Server{
		Handler: b.apiHandler(),
		// The caller (uid, pid, executable) is looked up once per
		// connection, when it first asks for a token.
		ConnContext:       caller.ConnContext,
		ReadHeaderTimeout: readHeaderTimeout,
		// No ReadTimeout or WriteTimeout: a proxied query may upload a
		// large body and run for 10 minutes (Prefer: wait=600).
		IdleTimeout:    idleTimeout,
		MaxHeaderBytes: maxHeaderBytes,
		ErrorLog:       errLog,
	}
	ops := &http.Server{
		Handler:           b.opsHandler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readHeaderTimeout,
		WriteTimeout:      opsWriteTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errLog,
	}
	first := b.current().identities[0]
	log.Info("listening",
		zap.String("api", listenURL(apiLn)), zap.String("ops", listenURL(opsLn)),
		zap.String("version", version.String()), zap.String("tenant_id", first.TenantID),
		zap.String("client_id", first.ClientID), zap.String("authority", first.Authority),
		zap.Int("identities", len(b.current().identities)), zap.String("config_hash", b.current().version.Hash))
	if hook, ok := ctx.Value(listenHookKey{}).(listenHook); ok {
		hook(apiLn.Addr(), opsLn.Addr())
	}
	if demo != nil {
		demo.printWelcome(stdout, apiLn, opsLn, cfg)
	}

	g.Go(func() error { return serveHTTP(api, apiLn) })
	g.Go(func() error { return serveHTTP(ops, opsLn) })
	g.Go(func() error {
		t := time.NewTicker(expiryCheckInterval)
		defer t.Stop()
		watchExpiry(ctx, log.Named("credential"), func() []expiringIdentity { return b.current().expiring }, time.Now, t.C)
		return nil
	})
	if prefetch := b.current().prefetch; len(prefetch) > 0 {
		g.Go(func() error {
			b.cache.Prefetch(ctx, prefetch...)
			return nil
		})
	}
	if b.reload != nil {
		g.Go(func() error {
			reloadOnHangup(ctx, b, log)
			return nil
		})
	}
	g.Go(func() error {
		<-ctx.Done()
		log.Info("shutting down", zap.Duration("timeout", cfg.ShutdownTimeout))
		// A fresh context: the one that ended is the reason to stop, not a
		// bound on how long in-flight requests may take to finish.
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		return errors.Join(api.Shutdown(sctx), ops.Shutdown(sctx))
	})
	err = g.Wait()
	log.Info("stopped")
	return err
}

// serveHTTP serves until Shutdown; the shutdown itself is not an error.
func serveHTTP(s *http.Server, ln net.Listener) error {
	if err := s.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// broker is the wired program: what runServe serves and what it closes. Its
// process-wide parts (the registry of the Go, process, cache, audit and
// configuration metrics, the cache and the audit trail) live as long as the
// process; a generation is what one configuration builds (the identities'
// token clients, the callers policy, the routes, the routers), replaced
// whole by a reload.
type broker struct {
	reg   *prometheus.Registry
	cache *cache.Cache
	// shared is the Redis second level under the cache, or nil.
	shared  *redis.Source
	auditor *access.Auditor
	srcs    *liveSources
	log     *zap.Logger
	// configInfo and configLoaded say which configuration is in force.
	configInfo   *prometheus.GaugeVec
	configLoaded prometheus.Gauge

	gen atomic.Pointer[generation]
	// reloadMu serializes reloads.
	reloadMu sync.Mutex
	// reload re-reads the configuration for Reload; nil in demo mode.
	reload func() (config.Config, []proxy.Route, error)
	// level is the log's level, which Reload sets; nil leaves it.
	level *zap.AtomicLevel
}

// generation is what one configuration builds. It is never modified once
// in force: requests that began on it finish on it.
type generation struct {
	api, ops http.Handler
	// identities are the identities served; the first is the default.
	identities []httpapi.Identity
	// routes are the proxy's routes, built-in and custom.
	routes []proxy.Route
	// expiring are the identities' credentials, for the expiry warnings.
	expiring []expiringIdentity
	prefetch []cache.Key
	sources  sources
	version  httpapi.ConfigVersion
}

// current returns the generation in force.
func (b *broker) current() *generation { return b.gen.Load() }

// apiHandler and opsHandler serve each request with the generation in force
// when it arrives.
func (b *broker) apiHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { b.current().api.ServeHTTP(w, r) })
}

func (b *broker) opsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { b.current().ops.ServeHTTP(w, r) })
}

// build wires the token source, the cache, the proxy and the routers from
// cfg and the routes of its routes file, custom.
func build(cfg config.Config, custom []proxy.Route, log *zap.Logger) (*broker, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(),
	)
	b := &broker{reg: reg, log: log, srcs: &liveSources{}}
	b.configInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "broker_config_info",
		Help: "Always 1; the label hash names the configuration in force (a hash of the settings and the files they name).",
	}, []string{"hash"})
	b.configLoaded = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "broker_config_loaded_timestamp_seconds",
		Help: "When the configuration in force was loaded (unix seconds): at start, then at each accepted reload.",
	})
	reg.MustRegister(b.configInfo, b.configLoaded)

	shared, err := secondLevel(cfg, b.srcs, reg, log)
	if err != nil {
		return nil, err
	}
	b.shared = shared
	var src cache.Source = b.srcs
	if shared != nil {
		src = shared
	}
	c, err := cache.New(src, cache.Options{
		Size:       cfg.CacheSize,
		Registerer: reg,
		Logger:     log,
	})
	if err != nil {
		if shared != nil {
			_ = shared.Close()
		}
		return nil, err
	}
	b.cache = c
	// The cache runs timers: close it unless build hands it over.
	built := false
	defer func() {
		if !built {
			_ = c.Close()
			if shared != nil {
				_ = shared.Close()
			}
		}
	}()
	auditor, err := access.NewAuditor(access.AuditOptions{Logger: log.Named("audit"), File: cfg.AuditFile, Registerer: reg})
	if err != nil {
		return nil, err
	}
	b.auditor = auditor
	defer func() {
		if !built {
			_ = auditor.Close()
		}
	}()
	gen, err := b.generation(cfg, custom)
	if err != nil {
		return nil, err
	}
	b.install(gen)
	built = true
	return b, nil
}

// generation builds what cfg and custom make: token clients, the callers
// policy, the routes and the routers, with their metrics on a registry of
// their own (so that a reload registers them afresh; Prometheus sees their
// counters restart). It changes nothing in force.
func (b *broker) generation(cfg config.Config, custom []proxy.Route) (*generation, error) {
	log := b.log
	cloud, err := cfg.AzureCloud()
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	gen := &generation{sources: sources{}}
	for _, cid := range cfg.Served() {
		client, cred, err := newClient(cid, cfg, cloud, log.Named("azure").With(zap.String("identity", cid.Name)))
		if err != nil {
			return nil, err
		}
		id := httpapi.Identity{
			Name:       cid.Name,
			Authority:  client.Authority(),
			TenantID:   client.TenantID(),
			ClientID:   client.ClientID(),
			ObjectID:   cid.ObjectID,
			ResourceID: cid.ResourceID,
		}
		allowedKey, prefetchKey := scopeSettings(cid)
		for _, s := range cid.AllowedScopes {
			n, err := normalizeConfigScope(allowedKey, s)
			if err != nil {
				return nil, err
			}
			id.AllowedScopes = append(id.AllowedScopes, n)
		}
		for _, s := range cid.PrefetchScopes {
			n, err := normalizeConfigScope(prefetchKey, s)
			if err != nil {
				return nil, err
			}
			id.PrefetchScopes = append(id.PrefetchScopes, n)
			gen.prefetch = append(gen.prefetch, id.Key(n))
		}
		gen.sources[id.Key("")] = client
		gen.identities = append(gen.identities, id)
		gen.expiring = append(gen.expiring, expiringIdentity{name: cid.Name, cred: cred, secretExpiresOn: cid.SecretExpiresOn})
	}
	if err := registerCredentialExpiry(reg, gen.expiring); err != nil {
		return nil, err
	}

	gen.routes = proxy.Routes(cloud, custom)
	if err := checkRouteScopes(custom, gen.identities[0]); err != nil {
		return nil, err
	}
	policy, err := callersPolicy(cfg.Callers, gen.identities, gen.routes)
	if err != nil {
		return nil, err
	}
	gen.version = configVersion(cfg)
	listenHost := ""
	if h, _, err := net.SplitHostPort(cfg.Listen); err == nil {
		listenHost = h
	}
	opsListenHost := ""
	if h, _, err := net.SplitHostPort(cfg.OpsListen); err == nil {
		opsListenHost = h
	}
	gen.api, gen.ops, err = httpapi.New(httpapi.Options{
		Cache:          b.cache,
		Identities:     gen.identities,
		IdentityHeader: cfg.IdentityHeader,
		Proxy: func(tokens httpapi.ProxyTokens) (http.Handler, error) {
			return proxy.New(proxy.Options{
				Routes:          gen.routes,
				Tokens:          tokens,
				MaxBodyBytes:    cfg.ProxyMaxBodyBytes,
				BodyReadTimeout: cfg.ProxyBodyTimeout,
				QueryQueue:      queryQueue(cfg),
				Ingestion:       proxy.IngestionOptions{MaxBodyBytes: cfg.IngestionMaxBodyBytes},
				Logger:          log,
				Registerer:      reg,
			})
		},
		ListenAddress: cfg.Listen,
		ListenHost:    listenHost,
		OpsListenHost: opsListenHost,
		Policy:        policy,
		Auditor:       b.auditor,
		Config:        gen.version,
		Reload:        b.Reload,
		Logger:        log.Named("http"),
		Registerer:    reg,
		Gatherer:      prometheus.Gatherers{b.reg, reg},
	})
	if err != nil {
		return nil, err
	}
	return gen, nil
}

// install puts gen in force: its token clients first, so that no request
// of gen finds its identity's source missing, then its routers.
func (b *broker) install(gen *generation) {
	b.srcs.store(gen.sources)
	b.gen.Store(gen)
	b.configInfo.Reset()
	b.configInfo.WithLabelValues(gen.version.Hash).Set(1)
	b.configLoaded.Set(float64(gen.version.LoadedAt.Unix()))
}

// Reload re-reads the configuration (the environment and flags as at start,
// and the files they name: BROKER_CONFIG's identities and callers, the
// routes file) and puts it in force. A configuration with any problem is
// refused whole: the one in force keeps serving and every problem is
// logged, as at start. Tokens stay cached: a token's cache key is its
// identity's authority, tenant, client ID and scope, so the identities that
// remain keep theirs; new prefetch scopes are fetched. Requests in flight
// finish on the configuration they began on. Safe for concurrent use.
func (b *broker) Reload(ctx context.Context) (httpapi.ConfigVersion, error) {
	b.reloadMu.Lock()
	defer b.reloadMu.Unlock()
	if b.reload == nil {
		return httpapi.ConfigVersion{}, httpapi.ErrReloadUnavailable
	}
	refuse := func(err error) (httpapi.ConfigVersion, error) {
		var problems []string
		for _, p := range config.AsProblems(err) {
			problems = append(problems, p.Error())
		}
		if len(problems) == 0 {
			problems = strings.Split(err.Error(), "\n")
		}
		for _, p := range problems {
			b.log.Error("configuration reload refused", zap.String("problem", p))
		}
		b.log.Warn("the configuration in force keeps serving", zap.String("config_hash", b.current().version.Hash))
		return httpapi.ConfigVersion{}, &httpapi.ReloadError{Problems: problems}
	}
	cfg, custom, err := b.reload()
	if err != nil {
		return refuse(err)
	}
	gen, err := b.generation(cfg, custom)
	if err != nil {
		return refuse(err)
	}
	old := b.current()
	b.install(gen)
	if b.level != nil {
		if l, err := zapcore.ParseLevel(cfg.LogLevel); err == nil {
			b.level.SetLevel(l)
		}
	}
	if fresh := newKeys(gen.prefetch, old.prefetch); len(fresh) > 0 {
		go b.cache.Prefetch(ctx, fresh...)
	}
	b.log.Info("configuration reloaded", zap.String("config_hash", gen.version.Hash),
		zap.String("previous_hash", old.version.Hash), zap.Int("identities", len(gen.identities)), zap.Int("routes", len(gen.routes)))
	return gen.version, nil
}

// newKeys returns the keys of now that were not in before.
func newKeys(now, before []cache.Key) []cache.Key {
	var out []cache.Key
	for _, k := range now {
		if !slices.Contains(before, k) {
			out = append(out, k)
		}
	}
	return out
}

// configVersion names cfg: a hash of its settings (secrets redacted) and of
// the files it names, and the time it was loaded.
func configVersion(cfg config.Config) httpapi.ConfigVersion {
	h := sha256.New()
	_, _ = io.WriteString(h, cfg.String())
	for _, f := range []string{cfg.ConfigFile, cfg.RoutesFile} {
		if f == "" {
			continue
		}
		if data, err := os.ReadFile(f); err == nil {
			h.Write(data)
		}
	}
	return httpapi.ConfigVersion{Hash: hex.EncodeToString(h.Sum(nil))[:12], LoadedAt: time.Now().UTC().Truncate(time.Second)}
}

// The proxy keeps its query queue per identity; the gate names the identity.
var _ proxy.IdentityNamer = httpapi.ProxyTokens{}

// queryQueue is the Log Analytics query queue the configuration asks for.
func queryQueue(cfg config.Config) proxy.QueueOptions {
	q := proxy.QueueOptions{MaxConcurrent: cfg.LogAnalyticsMaxConcurrent, MaxQueued: cfg.LogAnalyticsMaxQueued, MaxWait: cfg.LogAnalyticsMaxWait}
	if q.MaxQueued == 0 {
		q.MaxQueued = -1 // no queue: over the limit is 429 at once
	}
	return q
}

// checkRouteScopes refuses, at start, a route from the routes file whose
// scope the default identity (which the proxy uses) may not be served: such
// a route could only ever answer 403. The built-in routes stay: with an
// allowlist they answer 403 scope_not_allowed without an Entra call, like
// /token does, and the allowlist alone decides.
func checkRouteScopes(custom []proxy.Route, id httpapi.Identity) error {
	if len(id.AllowedScopes) == 0 {
		return nil
	}
	var errs []error
	for _, r := range custom {
		if slices.Contains(id.AllowedScopes, r.Scope) {
			continue
		}
		errs = append(errs, fmt.Errorf("BROKER_ROUTES_FILE: route %q uses scope %s, which BROKER_ALLOWED_SCOPES does not allow (%s): add the scope to BROKER_ALLOWED_SCOPES, or remove the route",
			r.Name, r.Scope, strings.Join(id.AllowedScopes, ", ")))
	}
	return errors.Join(errs...)
}

// callersPolicy builds the callers policy of rules (nil: none), with their
// scopes normalized, refusing a rule that grants a proxy route the broker
// does not have.
func callersPolicy(rules []config.CallerRule, ids []httpapi.Identity, routes []proxy.Route) (*access.Policy, error) {
	if rules == nil {
		return nil, nil
	}
	var errs []error
	out := make([]config.CallerRule, len(rules))
	for i, r := range rules {
		r.Scopes = slices.Clone(r.Scopes)
		for j, sc := range r.Scopes {
			if sc == "*" {
				continue
			}
			n, err := normalizeConfigScope(r.Source+": caller rule "+strconv.Quote(r.Name)+": scopes", sc)
			if err != nil {
				errs = append(errs, err)
			}
			r.Scopes[j] = n
		}
		for _, name := range r.Routes {
			if name != "*" && !slices.ContainsFunc(routes, func(rt proxy.Route) bool { return rt.Name == name }) {
				errs = append(errs, fmt.Errorf("%s: caller rule %q: routes names %q, which is no proxy route of the broker", r.Source, r.Name, name))
			}
		}
		for _, name := range r.Identities {
			if name != "*" && !slices.ContainsFunc(ids, func(id httpapi.Identity) bool { return id.Name == name }) {
				errs = append(errs, fmt.Errorf("%s: caller rule %q: identities names %q, which the broker does not serve (set AZURE_CLIENT_ID for the default identity)", r.Source, r.Name, name))
			}
		}
		out[i] = r
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return access.NewPolicy(out, nil), nil
}

func normalizeConfigScope(env, s string) (string, error) {
	n, err := azure.NormalizeScope(s)
	if err != nil && !strings.HasSuffix(s, "/.default") {
		n, err = azure.ScopeForResource(s)
	}
	if err != nil {
		return "", fmt.Errorf("%s item %q: %w", env, s, err)
	}
	return n, nil
}

// sources hands each cache key to the token source of its identity.
type sources map[cache.Key]azure.TokenSource

// liveSources are the sources of the generation in force: the cache lives
// across reloads, its source follows them. Safe for concurrent use.
type liveSources struct{ p atomic.Pointer[sources] }

func (l *liveSources) store(s sources) { l.p.Store(&s) }

// Token fetches key's token from the source in force.
func (l *liveSources) Token(ctx context.Context, key cache.Key) (azure.Token, error) {
	return (*l.p.Load()).Token(ctx, key)
}

// Token fetches key's token from the identity's source.
func (s sources) Token(ctx context.Context, key cache.Key) (azure.Token, error) {
	src, ok := s[cache.Key{Authority: key.Authority, Tenant: key.Tenant, ClientID: key.ClientID}]
	if !ok {
		return azure.Token{}, &azure.Error{Op: "token", Description: "no identity for client " + key.ClientID, Hint: "This is a bug in the broker's wiring."}
	}
	if key.Capabilities == "" {
		return src.Token(ctx, key.Scope)
	}
	// Client capabilities change the token Entra issues: a source that
	// cannot declare them must not answer for a key that has them.
	cs, ok := src.(interface {
		TokenWith(context.Context, string, azure.TokenOptions) (azure.Token, error)
	})
	if !ok {
		return azure.Token{}, &azure.Error{Op: "token", Description: "the token source of client " + key.ClientID + " cannot declare client capabilities", Hint: "This is a bug in the broker's wiring."}
	}
	return cs.TokenWith(ctx, key.Scope, azure.TokenOptions{Capabilities: strings.Split(key.Capabilities, ",")})
}

// buildInfo is broker_build_info: always 1, with the version as labels.
func buildInfo() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "broker_build_info",
		Help: "Always 1; the labels say which broker build is running.",
	}, []string{"version", "goversion"})
	g.WithLabelValues(version.String(), runtime.Version()).Set(1)
	return g
}

// newLogger builds the zap logger the configuration asks for, writing to w.
func newLogger(cfg config.Config, w io.Writer) (*zap.Logger, error) {
	log, _, err := newLeveledLogger(cfg, w)
	return log, err
}

// newLeveledLogger is newLogger with the level it logs at, which a reload
// changes.
func newLeveledLogger(cfg config.Config, w io.Writer) (*zap.Logger, zap.AtomicLevel, error) {
	l, err := zapcore.ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, zap.AtomicLevel{}, err
	}
	level := zap.NewAtomicLevelAt(l)
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "time"
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if cfg.LogFormat == "console" {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(ec)
	}
	core := zapcore.NewCore(enc, zapcore.AddSync(w), level)
	return zap.New(core, zap.ErrorOutput(zapcore.AddSync(w))), level, nil
}

// listen opens a TCP listener for host:port, or a unix socket for
// unix:///path (mode 0660, so only the owner and its group can ask for
// tokens; a stale socket file from a previous run is removed first).
func listen(addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix://")
	if !ok {
		return net.Listen("tcp", addr)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// listenError explains a listener that did not open: what, where, why, and
// which setting to change.
func listenError(what, setting, addr string, err error) error {
	var fix string
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		fix = "another process (another broker?) holds " + addr + ": stop it, or set " + setting + " to a free address"
	case errors.Is(err, syscall.EACCES), errors.Is(err, fs.ErrPermission):
		fix = "permission denied: ports below 1024 need privileges, and a unix socket a directory this user may write; set " + setting + " to a port above 1024 or another path"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		fix = "no network interface of this machine has that address: set " + setting + " to one of its addresses, such as 127.0.0.1"
	default:
		fix = "set " + setting + " to an address this machine can listen on"
	}
	return fmt.Errorf("open %s on %s: %w: %s", what, addr, err, fix)
}

// listenURL is how a person reaches ln.
func listenURL(ln net.Listener) string {
	if ln.Addr().Network() == "unix" {
		return "unix://" + ln.Addr().String()
	}
	return "http://" + ln.Addr().String()
}

// reloadOnHangup reloads the configuration at every SIGHUP until ctx ends.
// A refused configuration is logged by Reload; the one in force stays.
func reloadOnHangup(ctx context.Context, b *broker, log *zap.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			log.Info("SIGHUP: reloading the configuration")
			_, _ = b.Reload(ctx)
		}
	}
}

// secondLevel returns the Redis second level over src when BROKER_REDIS_URL
// is set, else nil. It does not connect: the broker starts, and stays
// ready, whether Redis answers or not.
func secondLevel(cfg config.Config, src cache.Source, reg prometheus.Registerer, log *zap.Logger) (*redis.Source, error) {
	if cfg.RedisURL == "" {
		return nil, nil
	}
	keys, err := redis.LoadKeys(cfg.RedisKeyFile)
	if err != nil {
		return nil, fmt.Errorf("BROKER_REDIS_KEY_FILE: %w", err)
	}
	shared, err := redis.New(src, redis.Options{
		URL:        cfg.RedisURL,
		CAFile:     cfg.RedisCAFile,
		Keys:       keys,
		Registerer: reg,
		Logger:     log,
	})
	if err != nil {
		return nil, fmt.Errorf("BROKER_REDIS_URL: %w", err)
	}
	where := "unix socket"
	if u, err := url.Parse(cfg.RedisURL); err == nil && u.Host != "" {
		where = u.Scheme + "://" + u.Host
	}
	log.Info("sharing tokens through Redis", zap.String("redis", where), zap.Strings("key_ids", keys.IDs()))
	return shared, nil
}
