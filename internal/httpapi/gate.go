package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/entrabroker/broker/internal/access"
	"github.com/entrabroker/broker/internal/cache"
	"github.com/entrabroker/broker/internal/httperr"
)

// exit is one token about to leave the process: through which route, of
// which identity, for which (normalized) scope.
type exit struct {
	// route is the endpoint ("token", "msi", "msi2017", "cloudshell",
	// "imds") or "proxy/<name>".
	route string
	id    *Identity
	scope string
	// capabilities are the client capabilities the caller declared ("cp1"
	// or ""): part of the cache key, and told to Entra.
	capabilities string
	// refreshSHA256 is the lower-case hex SHA-256 of a token the caller
	// holds and wants replaced (token_sha256_to_refresh), or "".
	refreshSHA256 string
}

// grant is the trust boundary's one gate: every way a token leaves the
// process — the token routes and the proxy's routes — gets its token here.
// Requests from web pages were already refused by refuseBrowsers, which
// every route of both listeners passes. grant then applies, before the
// cache is touched (so a refused request costs no Entra call), the callers
// policy (who the kernel says is asking, and at what rate) and the
// identity's allowed scopes; it writes the audit trail of every grant and
// refusal. The token comes from the cache under the key of the identity,
// scope and client capabilities; a token the caller flagged by its hash is
// replaced first (see replace). Errors are *httperr.Error, with the result
// to count.
func (s *server) grant(ctx context.Context, e exit) (served, result, error) {
	ae := access.Exit{Route: e.route, Identity: e.id.Name, Scope: e.scope}
	rule, refusal := s.opts.Policy.CheckContext(ctx, ae)
	ruleName := ""
	if rule != nil {
		ruleName = rule.Name
	}
	if refusal == nil && !e.id.allows(e.scope) {
		refusal = &httperr.Error{
			Status:      http.StatusForbidden,
			Code:        "scope_not_allowed",
			Description: "The broker is configured not to serve tokens for " + e.scope + ".",
			Hint:        "Ask for one of the allowed scopes (" + strings.Join(e.id.AllowedScopes, ", ") + "), or add this one to " + e.id.allowedSetting() + ".",
		}
	}
	if refusal != nil {
		limited := refusal.Status == http.StatusTooManyRequests
		s.opts.Auditor.Deny(ctx, ruleName, ae, refusal.Code, limited)
		if limited {
			return served{}, resultRateLimited, refusal
		}
		return served{}, resultForbidden, refusal
	}
	key := e.id.Key(e.scope)
	key.Capabilities = e.capabilities
	res, err := s.opts.Cache.Get(ctx, key)
	if err == nil && e.refreshSHA256 != "" && tokenHashIs(res.Token.AccessToken, e.refreshSHA256) {
		res, err = s.replace(ctx, key, res.Token.AccessToken, e.refreshSHA256)
	}
	if err != nil {
		var he *httperr.Error
		if errors.As(err, &he) {
			return served{}, resultUnavailable, he // replace's refusal
		}
		he, rs := tokenError(err, res.NextAttempt, s.now())
		return served{}, rs, he
	}
	s.opts.Auditor.Grant(ctx, ruleName, ae, res.Token.AccessToken, res.Token.ExpiresOn)
	rs := resultSuccess
	if res.Stale {
		rs = resultStale
	}
	return served{Result: res, identity: e.id}, rs, nil
}

// replace answers a token for key other than flagged, which the caller
// asked to replace by its hash (token_sha256_to_refresh: a resource refused
// it, e.g. revoked by continuous access evaluation). The flagged token is
// dropped through the cache's rationed Invalidate, so the next Get fetches
// a fresh one, shared by every concurrent caller (single-flight). When the
// ration refuses — the token is younger than the forced-refresh interval,
// or the key was refreshed by force less than that ago — and the token
// held is still the flagged one, the answer is 503 with Retry-After rather
// than the flagged token: a client that reported a token as bad is never
// handed it again, and a flood of such reports costs at most one Entra
// request per key and interval. A Get failure is answered as any other.
func (s *server) replace(ctx context.Context, key cache.Key, flagged, hash string) (cache.Result, error) {
	dropped := s.opts.Cache.Invalidate(key, flagged)
	res, err := s.opts.Cache.Get(ctx, key)
	if err != nil || !tokenHashIs(res.Token.AccessToken, hash) {
		return res, err
	}
	desc := "The token the request asks to replace was fetched too recently to be replaced now."
	if dropped {
		desc = "Entra ID answered the same token the request asks to replace."
	}
	return cache.Result{}, &httperr.Error{
		Status:      http.StatusServiceUnavailable,
		Code:        "token_refresh_rationed",
		Description: desc,
		Hint:        "The broker fetches a fresh token for a key at most once per " + cache.DefaultForcedRefreshInterval.String() + ", and never serves a token the caller asked to replace; retry after the Retry-After delay.",
		RetryAfter:  cache.DefaultForcedRefreshInterval,
	}
}

// refuseBrowsers answers every request a web page made with 403 (see
// access.Browser), and marks every answer so that a browser neither sniffs
// it into something executable nor lets another origin embed it.
func (s *server) refuseBrowsers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["X-Content-Type-Options"] = nosniff
		h["Cross-Origin-Resource-Policy"] = sameOrigin
		if e := access.Browser(r.Header); e != nil {
			s.opts.Auditor.Deny(r.Context(), "", access.Exit{Route: auditPath(r.URL.Path)}, e.Code, false)
			s.writeError(w, r, e)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// auditPath is how a refused request's path is named in the audit trail:
// the path, without the query, at most 128 bytes.
func auditPath(p string) string {
	if len(p) > 128 {
		return p[:128]
	}
	return p
}

var (
	nosniff    = []string{"nosniff"}
	sameOrigin = []string{"same-origin"}
)

// ProxyTokens hands the proxy its tokens through the same gate as /token:
// the proxy's routes use the default identity, and a route whose scope that
// identity may not be served is refused with 403 and no Entra call. It
// implements proxy.Tokens; safe for concurrent use.
type ProxyTokens struct{ s *server }

// Bearer returns a servable access token for scope (normalized) on route, or
// an *httperr.Error to answer with.
func (t ProxyTokens) Bearer(ctx context.Context, route, scope string) (string, error) {
	res, _, err := t.s.grant(ctx, exit{route: "proxy/" + route, id: &t.s.opts.Identities[0], scope: scope})
	if err != nil {
		return "", err
	}
	return res.Token.AccessToken, nil
}

// Invalidate drops token from the cache if it is still the one held for
// scope and the cache allows a forced refresh now; it reports whether it
// did.
func (t ProxyTokens) Invalidate(_, scope, token string) bool {
	return t.s.opts.Cache.Invalidate(t.s.opts.Identities[0].Key(scope), token)
}

// Identity names the identity whose tokens the proxy's routes carry (the
// default one), for the proxy's per-identity query queue; it implements
// proxy.IdentityNamer.
func (t ProxyTokens) Identity(context.Context, string) string {
	return t.s.opts.Identities[0].Name
}
