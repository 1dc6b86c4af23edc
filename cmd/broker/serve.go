package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
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
	cfg, err := loadConfig(name, args, getenv, stdout, mode, nil)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg, stderr)
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
		log.Warn(w)
	}

	b, err := build(cfg, log)
	if err != nil {
		return err
	}
	defer func() { _ = b.cache.Close() }()
	defer func() { _ = b.auditor.Close() }()

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

	errLog := zap.NewStdLog(log.Named("http"))
	api := &http.Server{
		Handler: b.api,
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
		Handler:           b.ops,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readHeaderTimeout,
		WriteTimeout:      opsWriteTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errLog,
	}
	log.Info("listening",
		zap.String("api", listenURL(apiLn)), zap.String("ops", listenURL(opsLn)),
		zap.String("version", version.String()), zap.String("tenant_id", b.identities[0].TenantID),
		zap.String("client_id", b.identities[0].ClientID), zap.String("authority", b.identities[0].Authority),
		zap.Int("identities", len(b.identities)))
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
		watchExpiry(ctx, log.Named("credential"), b.expiring, time.Now, t.C)
		return nil
	})
	if len(b.prefetch) > 0 {
		g.Go(func() error {
			b.cache.Prefetch(ctx, b.prefetch...)
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

// broker is the wired program: what runServe serves and what it closes.
type broker struct {
	cache    *cache.Cache
	auditor  *access.Auditor
	api, ops http.Handler
	// identities are the identities served; the first is the default.
	identities []httpapi.Identity
	// routes are the proxy's routes, built-in and custom.
	routes []proxy.Route
	// expiring are the identities' credentials, for the expiry warnings.
	expiring []expiringIdentity
	prefetch []cache.Key
}

// build wires the token source, the cache, the proxy and the routers from cfg.
func build(cfg config.Config, log *zap.Logger) (*broker, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(),
	)

	cloud, err := azure.CloudByName(cfg.Cloud)
	if err != nil {
		return nil, err
	}
	srcs := sources{}
	var ids []httpapi.Identity
	var prefetch []cache.Key
	var expiring []expiringIdentity
	for _, spec := range identitySpecs(cfg) {
		client, cred, err := spec.client(cfg, cloud, log.Named("azure").With(zap.String("identity", spec.name)))
		if err != nil {
			return nil, err
		}
		id := httpapi.Identity{
			Name:       spec.name,
			Authority:  client.Authority(),
			TenantID:   client.TenantID(),
			ClientID:   client.ClientID(),
			ObjectID:   spec.objectID,
			ResourceID: spec.resourceID,
		}
		for _, s := range spec.allowed {
			n, err := normalizeConfigScope(spec.allowedKey, s)
			if err != nil {
				return nil, err
			}
			id.AllowedScopes = append(id.AllowedScopes, n)
		}
		for _, s := range spec.prefetch {
			n, err := normalizeConfigScope(spec.prefetchKey, s)
			if err != nil {
				return nil, err
			}
			id.PrefetchScopes = append(id.PrefetchScopes, n)
			prefetch = append(prefetch, id.Key(n))
		}
		srcs[id.Key("")] = client
		ids = append(ids, id)
		expiring = append(expiring, expiringIdentity{name: spec.name, cred: cred, secretExpiresOn: spec.secretExpiresOn})
	}
	if err := registerCredentialExpiry(reg, expiring); err != nil {
		return nil, err
	}

	routes := cloudRoutes(cloud)
	if cfg.LogAnalyticsEndpoint != "" {
		u, err := url.Parse(cfg.LogAnalyticsEndpoint)
		if err != nil {
			return nil, fmt.Errorf("BROKER_LOGANALYTICS_ENDPOINT: %w", err)
		}
		for i := range routes {
			if routes[i].Name == "loganalytics" {
				routes[i].Upstream = u
			}
		}
	}
	if cfg.IngestionEndpoint != "" {
		u, err := url.Parse(cfg.IngestionEndpoint)
		if err != nil {
			return nil, fmt.Errorf("BROKER_INGESTION_ENDPOINT: %w", err)
		}
		routes = append(routes, proxy.Route{Name: proxy.RouteIngestion, Upstream: u, Scope: cloud.LogsIngestion.Scope(), Kind: proxy.KindIngestion})
	}
	var custom []proxy.Route
	if cfg.RoutesFile != "" {
		if custom, err = proxy.LoadRoutes(cfg.RoutesFile); err != nil {
			return nil, fmt.Errorf("BROKER_ROUTES_FILE: %w", err)
		}
		routes = append(routes, custom...)
	}
	c, err := cache.New(srcs, cache.Options{
		Size:       cfg.CacheSize,
		Registerer: reg,
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	// The cache runs timers: close it unless build hands it over.
	built := false
	defer func() {
		if !built {
			_ = c.Close()
		}
	}()

	if err := checkRouteScopes(custom, ids[0]); err != nil {
		return nil, err
	}
	policy, err := callersPolicy(cfg.Callers, ids, routes)
	if err != nil {
		return nil, err
	}
	auditor, err := access.NewAuditor(access.AuditOptions{Logger: log.Named("audit"), File: cfg.AuditFile, Registerer: reg})
	if err != nil {
		return nil, err
	}
	defer func() {
		if !built {
			_ = auditor.Close()
		}
	}()
	listenHost := ""
	if h, _, err := net.SplitHostPort(cfg.Listen); err == nil {
		listenHost = h
	}
	opsListenHost := ""
	if h, _, err := net.SplitHostPort(cfg.OpsListen); err == nil {
		opsListenHost = h
	}
	api, ops, err := httpapi.New(httpapi.Options{
		Cache:          c,
		Identities:     ids,
		IdentityHeader: cfg.IdentityHeader,
		Proxy: func(tokens httpapi.ProxyTokens) (http.Handler, error) {
			return proxy.New(proxy.Options{
				Routes:          routes,
				Tokens:          tokens,
				MaxBodyBytes:    cfg.ProxyMaxBodyBytes,
				BodyReadTimeout: cfg.ProxyBodyTimeout,
				QueryQueue:      queryQueue(cfg),
				Ingestion:       proxy.IngestionOptions{MaxBodyBytes: cfg.IngestionMaxBodyBytes},
				Logger:          log,
				Registerer:      reg,
			})
		},
		ListenHost:    listenHost,
		OpsListenHost: opsListenHost,
		Policy:        policy,
		Auditor:       auditor,
		Logger:        log.Named("http"),
		Registerer:    reg,
		Gatherer:      reg,
	})
	if err != nil {
		return nil, err
	}
	built = true
	return &broker{cache: c, auditor: auditor, api: api, ops: ops, identities: ids, routes: routes, expiring: expiring, prefetch: prefetch}, nil
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

// cloudRoutes are the built-in proxy routes with the cloud's endpoints and
// audiences.
func cloudRoutes(c azure.Cloud) []proxy.Route {
	mk := func(name string, s azure.Service) proxy.Route {
		u, _ := url.Parse(s.Endpoint)
		return proxy.Route{Name: name, Upstream: u, Scope: s.Scope()}
	}
	return []proxy.Route{
		mk("loganalytics", c.LogAnalytics),
		mk("appinsights", c.AppInsights),
		mk("arm", c.ARM),
	}
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

// Token fetches key's token from the identity's source.
func (s sources) Token(ctx context.Context, key cache.Key) (azure.Token, error) {
	src, ok := s[cache.Key{Authority: key.Authority, Tenant: key.Tenant, ClientID: key.ClientID}]
	if !ok {
		return azure.Token{}, &azure.Error{Op: "token", Description: "no identity for client " + key.ClientID, Hint: "This is a bug in the broker's wiring."}
	}
	return src.Token(ctx, key.Scope)
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
	level, err := zapcore.ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, err
	}
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
	return zap.New(core, zap.ErrorOutput(zapcore.AddSync(w))), nil
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
