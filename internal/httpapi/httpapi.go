// Package httpapi owns the broker's two HTTP routers: the API listener (the
// /token endpoint, the managed-identity endpoints and the mounted proxy) and
// the ops listener (/metrics, /healthz, /readyz), with the middleware they
// share. Routes are declared in routes.go; middleware is stacked in one place
// there too.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/entrabroker/broker/internal/access"
	"github.com/entrabroker/broker/internal/cache"
)

// Cache is the token cache the handlers serve from. *cache.Cache implements it.
type Cache interface {
	// Get returns a servable token for key, fetching it (once, shared) when needed.
	Get(ctx context.Context, key cache.Key) (cache.Result, error)
	// Status reports what the cache holds for key, for /readyz.
	Status(key cache.Key) cache.Status
	// Invalidate drops accessToken for key if it is still the one held and
	// the cache's ration of forced refreshes allows it; it reports whether
	// it dropped it.
	Invalidate(key cache.Key, accessToken string) bool
	// Keys returns the keys the cache holds, for /cache/refresh.
	Keys() []cache.Key
	// Refresh fetches fresh tokens for keys now and waits for them (or
	// ctx); it answers one error per key, nil for success.
	Refresh(ctx context.Context, keys ...cache.Key) []error
}

// Identity is an app registration the broker holds credentials for.
type Identity struct {
	// Name labels the identity in logs and metrics; "default" for the one from
	// the environment.
	Name string
	// Authority, TenantID and ClientID form the first part of its cache keys.
	// The ClientID is what /token?client_id= and the managed-identity
	// selector client_id match (case-insensitively).
	Authority, TenantID, ClientID string
	// ObjectID, when set, is what the managed-identity selectors object_id
	// and principal_id match (case-insensitively); empty matches nothing.
	ObjectID string
	// ResourceID, when set, is what the managed-identity selectors mi_res_id
	// and msi_res_id match (case-insensitively); empty matches nothing.
	ResourceID string
	// AllowedScopes, when not empty, are the only normalized scopes served
	// for this identity.
	AllowedScopes []string
	// PrefetchScopes are the normalized scopes of this identity that /readyz
	// requires to hold a servable token.
	PrefetchScopes []string
}

// Key returns the cache key of scope (already normalized) for id.
func (id *Identity) Key(scope string) cache.Key {
	return cache.Key{Authority: id.Authority, Tenant: id.TenantID, ClientID: id.ClientID, Scope: scope}
}

// allows reports whether id may be served scope.
func (id *Identity) allows(scope string) bool {
	return len(id.AllowedScopes) == 0 || slices.Contains(id.AllowedScopes, scope)
}

// allowedSetting names where id's allowed scopes are configured, for hints.
func (id *Identity) allowedSetting() string {
	if id.Name == "" || id.Name == "default" {
		return "BROKER_ALLOWED_SCOPES"
	}
	return "the allowed_scopes of identity " + strconv.Quote(id.Name) + " in BROKER_CONFIG"
}

// Options configures the routers. Cache and at least one Identity are required.
type Options struct {
	// Cache serves the tokens.
	Cache Cache
	// Identities are the app registrations served; the first is the default
	// (used when a request names none).
	Identities []Identity
	// IdentityHeader is the secret that callers of /msi/token must send in
	// X-IDENTITY-HEADER; empty makes /msi/token answer a clear error.
	IdentityHeader string
	// Proxy, when set, builds the handler of /proxy/{route}/... from the
	// tokens it may use, which pass the same gate as /token; nil answers
	// 404 there.
	Proxy func(ProxyTokens) (http.Handler, error)
	// ListenAddress is the API listener's address as configured
	// (BROKER_LISTEN: "host:port" or "unix:///path"); the hints of the
	// managed-identity endpoints name it in the URLs they suggest. Empty
	// means the default, 127.0.0.1:8400.
	ListenAddress string
	// ListenHost is the host the API listener was configured with; requests
	// naming it in Host pass the DNS-rebinding guard beside loopback names.
	ListenHost string
	// OpsListenHost is the host the ops listener was configured with; it
	// passes the ops listener's Host guard beside loopback names and IP
	// literals.
	OpsListenHost string
	// PrefetchScopes are more normalized scopes of the default identity that
	// /readyz requires to hold a servable token, beside each identity's own
	// Identity.PrefetchScopes.
	PrefetchScopes []string
	// Policy is the callers policy every token exit passes; nil lets every
	// caller have everything.
	Policy *access.Policy
	// Auditor receives the audit trail of every grant and refusal; nil
	// writes none.
	Auditor *access.Auditor
	// Config names the configuration in force, shown by /readyz; zero
	// shows none.
	Config ConfigVersion
	// Reload, when set, re-reads the configuration and puts it in force
	// (POST /config/reload): it returns the new version, or a *ReloadError
	// listing every problem of a configuration it refused.
	Reload func(context.Context) (ConfigVersion, error)
	// Logger receives the access log and errors; nil discards.
	Logger *zap.Logger
	// Registerer receives the HTTP metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Gatherer is what /metrics exposes; nil exposes nothing.
	Gatherer prometheus.Gatherer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// server holds what the handlers of both routers share.
type server struct {
	opts    Options
	log     *zap.Logger
	now     func() time.Time
	metrics *metrics
	// prefetch is what /readyz checks.
	prefetch []prefetched

	// scopes memoizes scope normalization for the hot path.
	scopes scopeMemo

	// idPrefix and idSeq make request IDs (newRequestID).
	idPrefix string
	idSeq    atomic.Uint64
}

func newServer(opts Options) (*server, error) {
	if opts.Cache == nil {
		return nil, errors.New("httpapi: no cache")
	}
	if len(opts.Identities) == 0 {
		return nil, errors.New("httpapi: no identity")
	}
	// The identities are copied: the handlers keep pointers into them.
	opts.Identities = slices.Clone(opts.Identities)
	var p [4]byte
	_, _ = rand.Read(p[:])
	s := &server{opts: opts, log: opts.Logger, now: opts.Now, prefetch: prefetchList(opts), idPrefix: hex.EncodeToString(p[:])}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.now == nil {
		s.now = time.Now
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	return s, nil
}

// New returns the API router and the ops router.
func New(opts Options) (api, ops http.Handler, err error) {
	s, err := newServer(opts)
	if err != nil {
		return nil, nil, err
	}
	var px http.Handler
	if opts.Proxy != nil {
		if px, err = opts.Proxy(ProxyTokens{s}); err != nil {
			return nil, nil, err
		}
	}
	return s.apiRoutes(px), s.opsRoutes(), nil
}

// identity returns the identity a request selects by client ID, or the
// default one when clientID is empty; nil when none matches.
func (s *server) identity(clientID string) *Identity {
	if clientID == "" {
		return &s.opts.Identities[0]
	}
	return s.find(func(id *Identity) string { return id.ClientID }, clientID)
}

// find returns the first identity whose field (as field returns it) equals
// value case-insensitively; nil when none does. An empty field never
// matches.
func (s *server) find(field func(*Identity) string, value string) *Identity {
	for i := range s.opts.Identities {
		if f := field(&s.opts.Identities[i]); f != "" && strings.EqualFold(f, value) {
			return &s.opts.Identities[i]
		}
	}
	return nil
}

// imdsAddress is the address of Azure's Instance Metadata Service, and
// imdsPathPrefix the prefix of its routes.
const (
	imdsAddress    = "169.254.169.254"
	imdsPathPrefix = "/metadata/"
)

// isIMDSHost reports whether the Host header names the IMDS address, with or
// without port 80.
func isIMDSHost(hostport string) bool {
	return hostport == imdsAddress || hostport == imdsAddress+":80"
}

// hostAllowed is the API listener's DNS-rebinding guard: the Host header
// must name a loopback address, localhost, or the configured listen host.
func (s *server) hostAllowed(hostport string) bool {
	return hostOK(hostport, s.opts.ListenHost, false)
}

// opsHostAllowed is the ops listener's DNS-rebinding guard: beside the API
// listener's names it takes any IP literal, since Prometheus and the
// kubelet reach the ops listener by pod IP. A rebinding page needs a DNS
// name to aim at 127.0.0.1; a page whose origin is an IP literal was served
// from that address itself.
func (s *server) opsHostAllowed(hostport string) bool {
	return hostOK(hostport, s.opts.OpsListenHost, true)
}

// hostOK reports whether the Host header hostport names localhost, a
// loopback address, listenHost (unless it is a wildcard), or, when anyIP,
// any IP address but a wildcard.
func hostOK(hostport, listenHost string, anyIP bool) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "" {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	// netip, unlike net.ParseIP, does not allocate: this runs per request.
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		if a.IsLoopback() || anyIP && !a.IsUnspecified() {
			return true
		}
	}
	lh := listenHost
	return lh != "" && lh != "0.0.0.0" && lh != "::" && strings.EqualFold(host, lh)
}

// fromLoopback reports whether the request came from this host: over a
// loopback TCP address or a unix socket (whose RemoteAddr is empty or "@").
func fromLoopback(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr == "" || r.RemoteAddr == "@"
	}
	return ap.Addr().Unmap().IsLoopback()
}
