package azure

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
)

// maxFederatedTokenFile bounds the federated token file. A Kubernetes
// service-account token is about 1 KiB.
const maxFederatedTokenFile = 64 << 10

// federatedTokenReadAhead is how long before the file's token expires it is
// read again even when the file looks unchanged: Kubernetes writes the new
// token well before (at 80 % of its lifetime), and a token this close to its
// end could expire on its way to Entra ID.
const federatedTokenReadAhead = time.Minute

// federatedTokenFileKind describes the federated token file in errors.
var federatedTokenFileKind = fileKind{
	what:    "federated token file",
	setting: "AZURE_FEDERATED_TOKEN_FILE",
	holds:   "a JWT from the federated identity provider (a projected service account token)",
	mount:   "the projected service account token volume the workload identity webhook adds",
	limit:   maxFederatedTokenFile,
}

// FederatedTokenOptions configures FederatedTokenFileCredential. The zero
// value is valid.
type FederatedTokenOptions struct {
	// Now is the clock that decides when the file's token is about to
	// expire. Nil means time.Now.
	Now func() time.Time
	// Logger receives one info line each time a new token is read from the
	// file: its iss, sub, aud and exp, which explain AADSTS70021, 7002xx and
	// 700024 answers. Never the token itself. Nil means no logging.
	Logger *zap.Logger
}

// FederatedTokenFileCredential returns a Credential for workload identity
// federation: the content of the file at path, surrounding whitespace
// trimmed, is sent as client_assertion (client_assertion_type
// urn:ietf:params:oauth:client-assertion-type:jwt-bearer). In AKS the
// workload identity webhook sets AZURE_FEDERATED_TOKEN_FILE to a projected
// service account token that the kubelet rotates.
//
// The file is read on first use and again when it changes (the same change
// detection as SecretFileCredential), and also when the token in it expires
// within a minute: its exp claim is decoded, without verification, for that
// purpose only.
//
// A token in the file that has already expired fails the request with a
// *Error that is Transient: the kubelet rewrites the file before the old
// token expires, so an expired one means the rotation is late, and the next
// attempt (after the cache's short backoff, while a token still valid stays
// in service) reads the file again. A missing, unreadable or empty file, or
// content that is not a JWT, is a permanent *Error with a hint. No error and
// no log line contains the token; errors and logs name its iss, sub, aud and
// exp.
//
// Safe for concurrent use. The credential prints as
// "azure.FederatedTokenFileCredential(<path>)".
func FederatedTokenFileCredential(path string, opts FederatedTokenOptions) Credential {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &federatedTokenCredential{
		file: &watchedFile[federatedToken]{
			path:  path,
			kind:  federatedTokenFileKind,
			now:   opts.Now,
			parse: func(b []byte) (federatedToken, error) { return parseFederatedToken(path, b) },
			stale: func(t federatedToken, now time.Time) bool {
				return !t.exp.IsZero() && !now.Before(t.exp.Add(-federatedTokenReadAhead))
			},
		},
		now: opts.Now,
		log: opts.Logger,
	}
}

type federatedTokenCredential struct {
	file *watchedFile[federatedToken]
	now  func() time.Time
	log  *zap.Logger
}

// federatedToken is the file's token and the claims that explain it.
type federatedToken struct {
	raw           string
	iss, sub, aud string
	exp           time.Time // zero when the token has no exp
}

func (c *federatedTokenCredential) Apply(_ context.Context, r *TokenRequest) error {
	t, fresh, err := c.file.load()
	if err != nil {
		return err
	}
	if fresh {
		c.log.Info("federated token read",
			zap.String("path", c.file.path),
			zap.String("iss", t.iss),
			zap.String("sub", t.sub),
			zap.String("aud", t.aud),
			zap.Time("exp", t.exp))
	}
	if now := c.now(); !t.exp.IsZero() && !now.Before(t.exp) {
		return &Error{
			Op:          "credential",
			Code:        "invalid_client",
			Description: fmt.Sprintf("the token in federated token file %q expired at %s (%s)", c.file.path, t.exp.UTC().Format(time.RFC3339), t.describe()),
			AADCodes:    []int{700024},
			Transient:   true,
			Hint: "The federated token file holds an expired token. In Kubernetes the kubelet rewrites the projected token before it expires; " +
				"the broker reads the file again on the next attempt. If this lasts, check the pod's service account token volume " +
				"(expirationSeconds) and the kubelet, and that nothing copies the token to a file that is never refreshed.",
		}
	}
	r.Form.Set("client_assertion_type", clientAssertionType)
	r.Form.Set("client_assertion", t.raw)
	return nil
}

func (c *federatedTokenCredential) String() string {
	return fmt.Sprintf("azure.FederatedTokenFileCredential(%q)", c.file.path)
}

func (c *federatedTokenCredential) GoString() string { return c.String() }

// describe names the token's claims for an error, never the token.
func (t federatedToken) describe() string {
	return fmt.Sprintf("iss %q, sub %q, aud %q", t.iss, t.sub, t.aud)
}

// parseFederatedToken reads the federated token file's content: a compact
// JWT whose claims are decoded without verification, to explain failures and
// to know when it expires.
func parseFederatedToken(path string, b []byte) (federatedToken, error) {
	raw := strings.TrimSpace(string(b))
	if raw == "" {
		return federatedToken{}, credentialError(fmt.Sprintf("federated token file %q is empty", path),
			"The federated token file is empty. In Kubernetes, check that the pod uses a service account with the "+
				"azure.workload.identity/use label and that the projected token volume is mounted.", nil)
	}
	t := federatedToken{raw: raw}
	parts := strings.Split(raw, ".")
	var claims struct {
		Iss string          `json:"iss"`
		Sub string          `json:"sub"`
		Aud json.RawMessage `json:"aud"`
		Exp json.Number     `json:"exp"`
	}
	ok := len(parts) == 3
	if ok {
		p, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
		ok = err == nil && json.Unmarshal(p, &claims) == nil
	}
	if !ok {
		return federatedToken{}, credentialError(fmt.Sprintf("federated token file %q does not hold a JWT", path),
			"AZURE_FEDERATED_TOKEN_FILE must name the file holding the identity provider's token (a JWT, three base64url parts "+
				"separated by dots), e.g. /var/run/secrets/azure/tokens/azure-identity-token.", nil)
	}
	t.iss, t.sub = cleanLine(claims.Iss, 256), cleanLine(claims.Sub, 256)
	var auds []string
	if json.Unmarshal(claims.Aud, &auds) != nil {
		var one string
		if json.Unmarshal(claims.Aud, &one) == nil {
			auds = []string{one}
		}
	}
	t.aud = cleanLine(strings.Join(auds, " "), 256)
	if f, err := claims.Exp.Float64(); err == nil && f > 0 {
		t.exp = time.Unix(int64(f), 0)
	}
	return t, nil
}
