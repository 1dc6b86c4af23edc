package httpapi

import (
	"context"
	"net/http"
	"strings"

	"github.com/entrabroker/broker/internal/access"
	"github.com/entrabroker/broker/internal/httperr"
)

// exit is one token about to leave the process: through which route, of
// which identity, for which (normalized) scope.
type exit struct {
	// route is the endpoint ("token", "msi", "imds") or "proxy/<name>".
	route string
	id    *Identity
	scope string
}

// grant is the trust boundary's one gate: every way a token leaves the
// process — the token routes and the proxy's routes — gets its token here.
// Requests from web pages were already refused by refuseBrowsers, which
// every route of both listeners passes. grant then applies, before the
// cache is touched (so a refused request costs no Entra call), the callers
// policy (who the kernel says is asking, and at what rate) and the
// identity's allowed scopes; it writes the audit trail of every grant and
// refusal. Errors are *httperr.Error, with the result to count.
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
	res, err := s.opts.Cache.Get(ctx, e.id.Key(e.scope))
	if err != nil {
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
