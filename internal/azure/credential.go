package azure

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// TokenRequest is a token request being built, as a Credential sees it.
type TokenRequest struct {
	// TokenURL is the token endpoint, e.g.
	// "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"; a client
	// assertion uses it as its audience.
	TokenURL string
	// ClientID is the app registration's client ID.
	ClientID string
	// Form is the request body. A Credential adds its parameters to it.
	Form url.Values
}

// Credential is how the app registration proves who it is. Apply adds the
// credential's form parameters to a token request: client_secret for a
// secret; client_assertion_type and client_assertion for a certificate or a
// federated token.
//
// Apply is called once per token request and may be called concurrently. A
// failure is an *Error whose text never contains the credential itself.
type Credential interface {
	Apply(ctx context.Context, r *TokenRequest) error
}

// sensitiveParams are the form parameters that hold credentials; their values
// are scrubbed from anything the client returns or logs.
var sensitiveParams = []string{"client_secret", "client_assertion"}

// SecretCredential returns a Credential that sends value as client_secret.
// Trailing newlines and carriage returns are trimmed (a secret pasted from a
// file or `kubectl create secret --from-file` often has one). An empty value
// fails every request with a hint, without calling Entra.
//
// The credential prints as "azure.SecretCredential([redacted])".
func SecretCredential(value string) Credential {
	return secretCredential{value: strings.TrimRight(value, "\r\n")}
}

type secretCredential struct{ value string }

func (c secretCredential) Apply(_ context.Context, r *TokenRequest) error {
	if c.value == "" {
		return credentialError("client secret is empty",
			"The client secret is empty. Set AZURE_CLIENT_SECRET to the secret's Value, or use AZURE_CLIENT_SECRET_FILE.", nil)
	}
	r.Form.Set("client_secret", c.value)
	return nil
}

func (secretCredential) String() string   { return "azure.SecretCredential([redacted])" }
func (secretCredential) GoString() string { return "azure.SecretCredential([redacted])" }

// maxSecretFile bounds the secret file. A client secret is about 40 bytes.
const maxSecretFile = 64 << 10

// secretFileKind describes the client secret file in errors.
var secretFileKind = fileKind{
	what:    "client secret file",
	setting: "AZURE_CLIENT_SECRET_FILE",
	holds:   "the secret's Value",
	mount:   "the secret volume mount and its key",
	limit:   maxSecretFile,
}

// SecretFileCredential returns a Credential that sends the content of the
// file at path as client_secret, trailing newlines and carriage returns
// trimmed.
//
// The file is read on first use and again whenever it changes, so a rotated
// secret is used on the next token request without a restart. Before each
// request it is stat'ed, following symlinks (a Kubernetes secret volume
// swaps its "..data" symlink on update), and read again when the resolved
// file's device, inode, size or modification time changed, or when the last
// read is older than a minute by now. now may be nil (time.Now).
//
// A missing, unreadable or empty file fails the request with a permanent
// *Error naming the path and saying what to do; the error never contains the
// secret. Safe for concurrent use. The credential prints as
// "azure.SecretFileCredential(<path>)".
func SecretFileCredential(path string, now func() time.Time) Credential {
	if now == nil {
		now = time.Now
	}
	return &secretFileCredential{file: &watchedFile[string]{
		path:  path,
		kind:  secretFileKind,
		now:   now,
		parse: parseSecretFile(path),
	}}
}

type secretFileCredential struct {
	file *watchedFile[string]
}

// parseSecretFile returns the parser of the secret file at path.
func parseSecretFile(path string) func([]byte) (string, error) {
	return func(b []byte) (string, error) {
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return "", credentialError(fmt.Sprintf("client secret file %q is empty", path),
				"The client secret file is empty. Put the secret's Value in it (in Kubernetes, check the secret's key and the volume mount).", nil)
		}
		return v, nil
	}
}

func (c *secretFileCredential) Apply(_ context.Context, r *TokenRequest) error {
	v, _, err := c.file.load()
	if err != nil {
		return err
	}
	r.Form.Set("client_secret", v)
	return nil
}

func (c *secretFileCredential) String() string {
	return fmt.Sprintf("azure.SecretFileCredential(%q)", c.file.path)
}

func (c *secretFileCredential) GoString() string { return c.String() }

// credentialError is a local, permanent credential failure. It carries no
// AADSTS code: no request reached Entra, and a code would send the reader to
// Entra's documentation instead of the file or setting that is wrong.
func credentialError(desc, hint string, err error) *Error {
	return &Error{
		Op:          "credential",
		Code:        "invalid_client",
		Description: desc,
		Hint:        hint,
		Err:         err,
	}
}

// WithExpiry returns cred as an ExpiringCredential that expires at
// notAfter, for a credential whose expiry is known only from configuration
// (a client secret's end date, as the portal shows it). Apply is cred's;
// the result prints as cred does. A zero notAfter means unknown:
// CredentialExpiry then reports false.
func WithExpiry(cred Credential, notAfter time.Time) ExpiringCredential {
	return expiringCredential{Credential: cred, notAfter: notAfter}
}

type expiringCredential struct {
	Credential
	notAfter time.Time
}

func (c expiringCredential) CredentialExpiry() (time.Time, bool) {
	return c.notAfter, !c.notAfter.IsZero()
}

func (c expiringCredential) String() string   { return fmt.Sprint(c.Credential) }
func (c expiringCredential) GoString() string { return fmt.Sprintf("%#v", c.Credential) }
