package emulator

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// signingKey is an RSA key with the self-signed certificate the JWKS
// publishes for it (x5c), as Entra publishes its signing certificates.
type signingKey struct {
	priv *rsa.PrivateKey
	cert []byte // DER
	kid  string // base64url SHA-1 thumbprint of cert, also the x5t
}

// sharedKey is the process-wide key of emulators without their own: one
// 2048-bit generation per process instead of one per test.
var sharedKey = sync.OnceValues(func() (*signingKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate rsa key: %w", err)
	}
	return newSigningKey(priv)
})

func newSigningKey(priv *rsa.PrivateKey) (*signingKey, error) {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: "accounts.accesscontrol.windows.net"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(5, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return nil, fmt.Errorf("self-sign signing certificate: %w", err)
	}
	sum := sha1.Sum(der)
	return &signingKey{priv: priv, cert: der, kid: base64.RawURLEncoding.EncodeToString(sum[:])}, nil
}

// Claims are the claims of an access token the emulator issued, in the v1
// form that Azure resource APIs (Log Analytics among them) receive.
type Claims struct {
	// Audience is the resource, e.g. "https://api.loganalytics.io" (aud).
	Audience string
	// Issuer is "https://sts.windows.net/{tid}/" (iss).
	Issuer string
	// IssuedAt, NotBefore and ExpiresAt are iat, nbf and exp.
	IssuedAt, NotBefore, ExpiresAt time.Time
	// AppID is the client ID (appid).
	AppID string
	// AppIDACR is "1": the client authenticated with a secret (appidacr).
	AppIDACR string
	// IdentityProvider is the issuer again, for an app token (idp).
	IdentityProvider string
	// ObjectID is the service principal's object ID (oid), also Subject (sub).
	ObjectID, Subject string
	// Roles are the app roles granted on the resource (roles); nil when none.
	Roles []string
	// TenantID is the tenant (tid).
	TenantID string
	// UTI is the token's unique identifier (uti).
	UTI string
	// Version is "1.0" (ver).
	Version string
	// ClientCapabilities are the capabilities the client declared in the
	// request's claims parameter, e.g. ["cp1"] (xms_cc); nil when none.
	ClientCapabilities []string
}

// wireClaims is the JSON payload, claims in the order Entra writes them.
type wireClaims struct {
	Aud      string           `json:"aud"`
	Iss      string           `json:"iss"`
	Iat      *jwt.NumericDate `json:"iat"`
	Nbf      *jwt.NumericDate `json:"nbf"`
	Exp      *jwt.NumericDate `json:"exp"`
	AppID    string           `json:"appid"`
	AppIDACR string           `json:"appidacr"`
	IdP      string           `json:"idp"`
	OID      string           `json:"oid"`
	Roles    []string         `json:"roles,omitempty"`
	Sub      string           `json:"sub"`
	TID      string           `json:"tid"`
	UTI      string           `json:"uti"`
	Ver      string           `json:"ver"`
	XmsCC    []string         `json:"xms_cc,omitempty"`
}

func (c *wireClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.Exp, nil }
func (c *wireClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.Iat, nil }
func (c *wireClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.Nbf, nil }
func (c *wireClaims) GetIssuer() (string, error)                   { return c.Iss, nil }
func (c *wireClaims) GetSubject() (string, error)                  { return c.Sub, nil }
func (c *wireClaims) GetAudience() (jwt.ClaimStrings, error)       { return jwt.ClaimStrings{c.Aud}, nil }

func (c *wireClaims) export() Claims {
	t := func(d *jwt.NumericDate) time.Time {
		if d == nil {
			return time.Time{}
		}
		return d.Time
	}
	return Claims{
		Audience: c.Aud, Issuer: c.Iss,
		IssuedAt: t(c.Iat), NotBefore: t(c.Nbf), ExpiresAt: t(c.Exp),
		AppID: c.AppID, AppIDACR: c.AppIDACR, IdentityProvider: c.IdP,
		ObjectID: c.OID, Subject: c.Sub, Roles: slices.Clone(c.Roles),
		TenantID: c.TID, UTI: c.UTI, Version: c.Ver,
		ClientCapabilities: slices.Clone(c.XmsCC),
	}
}

// issuer is the v1 issuer of the tenant's access tokens.
func issuer(tenantID string) string { return "https://sts.windows.net/" + tenantID + "/" }

// issueToken signs an access token for app on audience aud.
// caps are the client capabilities the request declared (xms_cc).
func (e *Emulator) issueToken(app App, aud string, roles, caps []string, now time.Time, lifetime time.Duration) (string, error) {
	e.stateMu.Lock()
	e.seq++
	seq := e.seq
	e.stateMu.Unlock()
	// uti: the sequence number (for RevokeTokens) and this emulator's tag,
	// 16 bytes in base64url, the length of a real uti.
	var u [16]byte
	binary.BigEndian.PutUint64(u[:8], seq)
	copy(u[8:], e.instance[:])
	tid := strings.ToLower(app.TenantID)
	now = now.Truncate(time.Second)
	c := &wireClaims{
		Aud: aud, Iss: issuer(tid),
		Iat: jwt.NewNumericDate(now), Nbf: jwt.NewNumericDate(now), Exp: jwt.NewNumericDate(now.Add(lifetime)),
		AppID: app.ClientID, AppIDACR: "1", IdP: issuer(tid),
		OID: app.ObjectID, Roles: roles, Sub: app.ObjectID, TID: tid,
		UTI: base64.RawURLEncoding.EncodeToString(u[:]), Ver: "1.0",
		XmsCC: caps,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tok.Header["kid"] = e.key.kid
	tok.Header["x5t"] = e.key.kid
	s, err := tok.SignedString(e.key.priv)
	if err != nil {
		return "", fmt.Errorf("sign access token: %w", err)
	}
	return s, nil
}

// Errors from VerifyAccessToken, for errors.Is. Their text never holds the
// token.
var (
	// ErrTokenInvalid: malformed, wrong algorithm, unknown key, bad signature,
	// not yet valid, or issued by another emulator.
	ErrTokenInvalid = errors.New("access token is invalid")
	// ErrTokenExpired: the token's exp has passed (by the emulator's clock).
	ErrTokenExpired = errors.New("access token is expired")
	// ErrTokenRevoked: RevokeTokens was called for the token's app after the
	// token was issued.
	ErrTokenRevoked = errors.New("access token is revoked")
)

// VerifyAccessToken checks that raw is an access token this emulator issued:
// RS256 signature by its key (kid), not before nbf and before exp by the
// emulator's clock, and not revoked by RevokeTokens. It returns the claims;
// checking the audience and roles is the caller's business. Errors wrap
// ErrTokenInvalid, ErrTokenExpired or ErrTokenRevoked.
func (e *Emulator) VerifyAccessToken(raw string) (Claims, error) {
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}),
		jwt.WithTimeFunc(e.now),
		jwt.WithExpirationRequired(),
	)
	var c wireClaims
	_, err := p.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		if kid, _ := t.Header["kid"].(string); kid != e.key.kid {
			return nil, errors.New("unknown signing key")
		}
		return &e.key.priv.PublicKey, nil
	})
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return Claims{}, fmt.Errorf("verify access token: %w", ErrTokenExpired)
	case err != nil:
		return Claims{}, fmt.Errorf("verify access token: %w: %w", ErrTokenInvalid, err)
	}
	u, err := base64.RawURLEncoding.DecodeString(c.UTI)
	if err != nil || len(u) != 16 || [8]byte(u[8:]) != e.instance {
		return Claims{}, fmt.Errorf("verify access token: %w: issued by another emulator", ErrTokenInvalid)
	}
	if c.Iss != issuer(c.TID) {
		return Claims{}, fmt.Errorf("verify access token: %w: issuer does not match tid", ErrTokenInvalid)
	}
	e.stateMu.Lock()
	revoked := binary.BigEndian.Uint64(u[:8]) <= e.revoked[strings.ToLower(c.AppID)]
	e.stateMu.Unlock()
	if revoked {
		return Claims{}, fmt.Errorf("verify access token: %w", ErrTokenRevoked)
	}
	return c.export(), nil
}

// RevokeTokens makes every token issued so far to clientID fail
// VerifyAccessToken with ErrTokenRevoked; tokens issued afterwards verify.
func (e *Emulator) RevokeTokens(clientID string) {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	e.revoked[strings.ToLower(clientID)] = e.seq
}
