package emulator

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// clientAssertionType is the only client_assertion_type Entra accepts.
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionSkew is the clock skew allowed on an assertion's nbf and exp:
// five minutes, the default of Microsoft's token validation libraries
// [INF: Entra's own tolerance is not published].
const assertionSkew = 5 * time.Minute

// assertion is a client assertion, decoded but not yet verified.
type assertion struct {
	raw    string
	header map[string]any
	claims map[string]any
}

func (a assertion) claim(name string) string {
	s, _ := a.claims[name].(string)
	return s
}

// audiences returns the aud claim as a list (it may be a string or a list).
func (a assertion) audiences() []string {
	switch v := a.claims["aud"].(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// time returns a NumericDate claim, and whether it is present and a number.
func (a assertion) time(name string) (time.Time, bool) {
	f, ok := a.claims[name].(float64)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
}

// authenticateAssertion checks a client assertion (private_key_jwt with a
// certificate, or a federated token such as a Kubernetes service-account
// token) against the app's credentials, in this order:
//   - client_assertion_type missing or not jwt-bearer: AADSTS900144;
//   - not a JWT: AADSTS50027 (malformed);
//   - a thumbprint (x5t#S256 or x5t) in the header: a certificate assertion,
//     see verifyCertificateAssertion;
//   - an issuer other than the client ID: a federated token, see
//     verifyFederatedAssertion;
//   - otherwise (a self-issued JWT without thumbprint): AADSTS50027.
//
// endpoint is the token endpoint URL the request was sent to; the
// certificate assertion's aud must name it.
func (e *Emulator) authenticateAssertion(req tokenRequest, app App, tenant Tenant, endpoint string, now time.Time) *aadError {
	fail := func(ae aadError) *aadError { return &ae }
	if req.form.Get("client_assertion_type") != clientAssertionType {
		return fail(errMissingParameter("client_assertion_type"))
	}
	a, ok := decodeJWT(req.form.Get("client_assertion"))
	if !ok {
		return fail(errMalformedAssertion())
	}
	if thumb, s256, ok := assertionThumbprint(a.header); ok {
		return verifyCertificateAssertion(a, thumb, s256, app, tenant, endpoint, now)
	}
	if iss := a.claim("iss"); iss != "" && !strings.EqualFold(iss, app.ClientID) {
		return verifyFederatedAssertion(a, app, now)
	}
	return fail(errNoThumbprint())
}

// verifyCertificateAssertion checks a certificate assertion (reference §4.1,
// TV-9) and answers as Entra does:
//   - the thumbprint names no certificate of the app: AADSTS700027, key not
//     found;
//   - alg is not PS256 or RS256, or the signature does not verify with the
//     certificate's key: AADSTS700027, signature validation failed;
//   - the certificate is outside its validity: AADSTS700027, key expired;
//   - aud is not this token endpoint: AADSTS700023;
//   - iss or sub is not the client ID: AADSTS700021;
//   - now is outside nbf … exp (with assertionSkew): AADSTS700024;
//   - no exp or no jti, or an x5c whose first certificate is not the signing
//     one: AADSTS50027, malformed.
func verifyCertificateAssertion(a assertion, thumb []byte, s256 bool, app App, tenant Tenant, endpoint string, now time.Time) *aadError {
	fail := func(ae aadError) *aadError { return &ae }
	thumbHex := strings.ToUpper(hex.EncodeToString(thumb))
	cert := findCertificate(app.Certificates, thumb, s256)
	if cert == nil {
		return fail(errCertificateNotRegistered(thumbHex, app.ClientID))
	}
	if err := verifySignature(a.raw, []string{"PS256", "RS256"}, cert.PublicKey); err != nil {
		return fail(errSignatureInvalid(thumbHex, cert, app.ClientID))
	}
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return fail(errCertificateExpired(thumbHex, cert, app.ClientID))
	}
	if !slices.ContainsFunc(a.audiences(), func(aud string) bool { return validAssertionAudience(aud, endpoint, tenant) }) {
		return fail(errAssertionAudience())
	}
	if !strings.EqualFold(a.claim("iss"), app.ClientID) || !strings.EqualFold(a.claim("sub"), app.ClientID) {
		return fail(errAssertionIssuer())
	}
	if ae := checkAssertionTime(a, now); ae != nil {
		return ae
	}
	if a.claim("jti") == "" {
		return fail(errMalformedAssertion())
	}
	if x5c, ok := a.header["x5c"]; ok {
		list, _ := x5c.([]any)
		var leaf []byte
		if len(list) > 0 {
			s, _ := list[0].(string)
			leaf, _ = base64.StdEncoding.DecodeString(s)
		}
		if !bytes.Equal(leaf, cert.Raw) {
			return fail(errMalformedAssertion())
		}
	}
	return nil
}

// verifyFederatedAssertion checks a token from another identity provider
// against the app's federated identity credentials (reference §4.2) and
// answers as Entra does:
//   - the app has no federated credential at all: AADSTS70021, naming the
//     token's issuer, subject and audience (TV-7);
//   - none has the token's issuer: AADSTS700211;
//   - the matching credentials carry keys and the signature verifies with
//     none of them: AADSTS50013;
//   - now is outside nbf … exp (with assertionSkew), or exp is missing:
//     AADSTS700024;
//   - none of those has the token's subject: AADSTS7002138 when one matches
//     ignoring case, else AADSTS700213;
//   - none of those accepts one of the token's audiences: AADSTS700212.
//
// Every comparison is case-sensitive.
func verifyFederatedAssertion(a assertion, app App, now time.Time) *aadError {
	fail := func(ae aadError) *aadError { return &ae }
	iss, sub, auds := a.claim("iss"), a.claim("sub"), a.audiences()
	if len(app.FederatedCredentials) == 0 {
		return fail(errNoFederatedMatch(iss, sub, strings.Join(auds, ", ")))
	}
	var byIssuer []FederatedCredential
	var keys []any
	for _, f := range app.FederatedCredentials {
		if f.Issuer == iss {
			byIssuer = append(byIssuer, f)
			for _, k := range f.Keys {
				keys = append(keys, k)
			}
		}
	}
	if len(byIssuer) == 0 {
		return fail(errFederatedIssuer(iss))
	}
	if len(keys) > 0 {
		verified := false
		for _, k := range keys {
			if verifySignature(a.raw, []string{"RS256", "PS256", "ES256"}, k) == nil {
				verified = true
				break
			}
		}
		if !verified {
			kid, _ := a.header["kid"].(string)
			return fail(errFederatedSignature(kid))
		}
	}
	if ae := checkAssertionTime(a, now); ae != nil {
		return ae
	}
	var bySubject []FederatedCredential
	folded := false
	for _, f := range byIssuer {
		switch {
		case f.Subject == sub:
			bySubject = append(bySubject, f)
		case strings.EqualFold(f.Subject, sub):
			folded = true
		}
	}
	if len(bySubject) == 0 {
		if folded {
			return fail(errFederatedSubjectCase(sub))
		}
		return fail(errFederatedSubject(sub))
	}
	for _, f := range bySubject {
		for _, aud := range auds {
			if slices.Contains(f.audiences(), aud) {
				return nil
			}
		}
	}
	return fail(errFederatedAudience(strings.Join(auds, ", ")))
}

// checkAssertionTime answers AADSTS700024 when now is outside the
// assertion's nbf … exp, allowing assertionSkew either side. A missing nbf
// counts as the epoch (Entra then prints "valid from 1970-01-01"); a missing
// exp is malformed.
func checkAssertionTime(a assertion, now time.Time) *aadError {
	exp, ok := a.time("exp")
	if !ok {
		ae := errMalformedAssertion()
		return &ae
	}
	nbf, ok := a.time("nbf")
	if !ok {
		nbf = time.Unix(0, 0).UTC()
	}
	if now.Add(assertionSkew).Before(nbf) || now.Add(-assertionSkew).After(exp) {
		ae := errAssertionTime(now, nbf, exp)
		return &ae
	}
	return nil
}

// verifySignature checks a compact JWS's signature with key, accepting only
// the given algorithms. Claims are not validated here.
func verifySignature(raw string, algs []string, key any) error {
	_, err := jwt.NewParser(jwt.WithValidMethods(algs), jwt.WithoutClaimsValidation()).
		Parse(raw, func(*jwt.Token) (any, error) { return key, nil })
	return err
}

// findCertificate returns the certificate whose SHA-256 (s256) or SHA-1
// thumbprint is thumb, or nil.
func findCertificate(certs []*x509.Certificate, thumb []byte, s256 bool) *x509.Certificate {
	for _, c := range certs {
		var sum []byte
		if s256 {
			h := sha256.Sum256(c.Raw)
			sum = h[:]
		} else {
			h := sha1.Sum(c.Raw)
			sum = h[:]
		}
		if bytes.Equal(sum, thumb) {
			return c
		}
	}
	return nil
}

// validAssertionAudience reports whether aud names this tenant's token
// endpoint: the v2 or v1 endpoint at the host the request came to, with the
// tenant as its ID or one of its domains (msal-go takes the endpoint from
// discovery, which names the tenant ID; a hand-built one may name the domain
// the client was configured with). Scheme, host and tenant compare without
// case.
func validAssertionAudience(aud, endpoint string, tenant Tenant) bool {
	u, err := url.Parse(aud)
	e, err2 := url.Parse(endpoint)
	if err != nil || err2 != nil || !strings.EqualFold(u.Scheme, e.Scheme) || !strings.EqualFold(u.Host, e.Host) ||
		u.RawQuery != "" || u.Fragment != "" {
		return false
	}
	seg, rest, ok := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if !ok || (rest != "oauth2/v2.0/token" && rest != "oauth2/token") {
		return false
	}
	return strings.EqualFold(seg, tenant.ID) || slices.ContainsFunc(tenant.Domains, func(d string) bool { return strings.EqualFold(seg, d) })
}

// decodeJWT decodes a compact JWS's header and claims without checking the
// signature.
func decodeJWT(raw string) (assertion, bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return assertion{}, false
	}
	a := assertion{raw: raw}
	dec := func(s string, v any) bool {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
		return err == nil && json.Unmarshal(b, v) == nil
	}
	if !dec(parts[0], &a.header) || !dec(parts[1], &a.claims) || a.header == nil || a.claims == nil {
		return assertion{}, false
	}
	return a, true
}

// assertionThumbprint returns the certificate thumbprint of an assertion
// header, x5t#S256 (SHA-256, s256 true) or else x5t (SHA-1), in base64url
// or, as msal-go sends it, standard base64.
func assertionThumbprint(header map[string]any) (thumb []byte, s256, ok bool) {
	for _, k := range []string{"x5t#S256", "x5t"} {
		s, _ := header[k].(string)
		if s == "" {
			continue
		}
		for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
			if b, err := enc.DecodeString(s); err == nil {
				return b, k == "x5t#S256", true
			}
		}
	}
	return nil, false, false
}
