package emulator

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
)

// clientAssertionType is the only client_assertion_type Entra accepts.
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// authenticateAssertion is where client assertions (private_key_jwt with a
// certificate, or a federated token such as a Kubernetes service-account
// token) are checked.
//
// No app has certificates or federated credentials registered yet (a later
// issue adds them), so no assertion can be verified. It answers what Entra
// answers for an assertion it cannot match to a credential of the app:
//   - client_assertion_type missing or not jwt-bearer: AADSTS900144;
//   - not a JWT: AADSTS50027 (malformed);
//   - a certificate assertion (x5t or x5t#S256 in the header): AADSTS700027,
//     the certificate is not registered, naming the thumbprint;
//   - a federated token (issuer other than the client ID): AADSTS70021, no
//     matching federated identity record, naming issuer, subject, audience;
//   - otherwise (a self-issued JWT without thumbprint): AADSTS50027.
//
// When certificates and federated credentials arrive, their verification
// replaces the two "not registered" answers here, with the time checks
// (AADSTS700024) on the emulator's clock.
func (e *Emulator) authenticateAssertion(req tokenRequest, app App) *aadError {
	fail := func(ae aadError) *aadError { return &ae }
	if req.form.Get("client_assertion_type") != clientAssertionType {
		return fail(errMissingParameter("client_assertion_type"))
	}
	header, claims, ok := decodeJWT(req.form.Get("client_assertion"))
	if !ok {
		return fail(errMalformedAssertion())
	}
	if thumb, ok := assertionThumbprint(header); ok {
		return fail(errCertificateNotRegistered(strings.ToUpper(hex.EncodeToString(thumb)), app.ClientID))
	}
	iss, _ := claims["iss"].(string)
	if iss != "" && !strings.EqualFold(iss, app.ClientID) {
		sub, _ := claims["sub"].(string)
		return fail(errNoFederatedMatch(iss, sub, audienceString(claims["aud"])))
	}
	return fail(errNoThumbprint())
}

// decodeJWT decodes a compact JWS's header and claims without checking the
// signature.
func decodeJWT(raw string) (header, claims map[string]any, ok bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, nil, false
	}
	dec := func(s string, v any) bool {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
		return err == nil && json.Unmarshal(b, v) == nil
	}
	if !dec(parts[0], &header) || !dec(parts[1], &claims) || header == nil || claims == nil {
		return nil, nil, false
	}
	return header, claims, true
}

// assertionThumbprint returns the certificate thumbprint of an assertion
// header: x5t#S256 (SHA-256) or x5t (SHA-1), in base64url or, as msal-go
// sends it, standard base64.
func assertionThumbprint(header map[string]any) ([]byte, bool) {
	for _, k := range []string{"x5t#S256", "x5t"} {
		s, _ := header[k].(string)
		if s == "" {
			continue
		}
		for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
			if b, err := enc.DecodeString(s); err == nil {
				return b, true
			}
		}
	}
	return nil, false
}

// audienceString renders an aud claim (string or list) as Entra prints it.
func audienceString(v any) string {
	switch a := v.(type) {
	case string:
		return a
	case []any:
		var parts []string
		for _, x := range a {
			if s, ok := x.(string); ok {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, ", ")
	}
	return ""
}
