package azure

import (
	"context"
	"time"
)

// Token is an access token issued by Entra ID, with the times the cache needs.
//
// Token's String and GoString methods never print the access token, so a Token
// that ends up in a log line or an error by mistake does not leak it.
type Token struct {
	// AccessToken is the bearer token. It is a secret: never log it.
	AccessToken string
	// IssuedAt is when the broker sent the request that got the token
	// (local clock), so that ExpiresOn errs early by the round trip, never
	// late.
	IssuedAt time.Time
	// ExpiresOn is IssuedAt + expires_in.
	ExpiresOn time.Time
	// RefreshOn is IssuedAt + refresh_in when Entra sent refresh_in; zero otherwise.
	RefreshOn time.Time
	// ExtExpiresOn is IssuedAt + ext_expires_in when Entra sent it (the
	// extended lifetime Entra grants for its own outages); zero otherwise.
	// It is informational: the broker never serves a token past ExpiresOn.
	ExtExpiresOn time.Time
}

// String describes the token without its value.
func (t Token) String() string {
	return "azure.Token{expires_on: " + t.ExpiresOn.UTC().Format(time.RFC3339) + ", access_token: [redacted]}"
}

// GoString describes the token without its value, for %#v.
func (t Token) GoString() string { return t.String() }

// TokenSource fetches a fresh token from Entra ID for one normalized scope
// (for example "https://api.loganalytics.io/.default"). It never caches:
// "when to fetch" belongs to internal/cache, "how to fetch" to the source.
//
// Implementations are safe for concurrent use. Every failure is returned as
// an *Error (wrapped or not), so callers can tell transient from permanent
// with errors.As.
type TokenSource interface {
	Token(ctx context.Context, scope string) (Token, error)
}
