package httpapi

import (
	"context"
	"time"
)

// Bearer hands the proxy the tokens of one identity from the cache, with the
// same error answers as /token (503 with Retry-After when no valid token can
// be had, 502 with Entra's explanation when Entra refuses).
type Bearer struct {
	cache Cache
	id    Identity
	now   func() time.Time
}

// NewBearer returns a Bearer for id. now nil means time.Now.
func NewBearer(c Cache, id Identity, now func() time.Time) *Bearer {
	if now == nil {
		now = time.Now
	}
	return &Bearer{cache: c, id: id, now: now}
}

// Bearer returns a servable access token for scope (normalized), or an
// *httperr.Error to answer with. route, the proxy route asking, is not used
// yet. Safe for concurrent use.
func (b *Bearer) Bearer(ctx context.Context, route, scope string) (string, error) {
	res, err := b.cache.Get(ctx, b.id.Key(scope))
	if err != nil {
		e, _ := tokenError(err, res.NextAttempt, b.now())
		return "", e
	}
	return res.Token.AccessToken, nil
}

// Invalidate drops token from the cache if it is still the one held for
// scope, and reports whether a retry may get a fresh token. It always does
// until the cache rations forced refreshes and says so.
func (b *Bearer) Invalidate(route, scope, token string) bool {
	b.cache.Invalidate(b.id.Key(scope), token)
	return true
}
