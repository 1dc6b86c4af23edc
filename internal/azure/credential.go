package azure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
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
// federated token (a later issue).
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
// fails every request with AADSTS7000218's hint, without calling Entra.
//
// The credential prints as "azure.SecretCredential([redacted])".
func SecretCredential(value string) Credential {
	return secretCredential{value: strings.TrimRight(value, "\r\n")}
}

type secretCredential struct{ value string }

func (c secretCredential) Apply(_ context.Context, r *TokenRequest) error {
	if c.value == "" {
		return credentialError(7000218, "client secret is empty",
			"The client secret is empty. Set AZURE_CLIENT_SECRET to the secret's Value, or use AZURE_CLIENT_SECRET_FILE.", nil)
	}
	r.Form.Set("client_secret", c.value)
	return nil
}

func (secretCredential) String() string   { return "azure.SecretCredential([redacted])" }
func (secretCredential) GoString() string { return "azure.SecretCredential([redacted])" }

// maxSecretFile bounds the secret file. A client secret is about 40 bytes.
const maxSecretFile = 64 << 10

// secretFileRecheck is how long a secret read from a file is trusted without
// reading the file again even when stat says nothing changed. It covers file
// systems whose mtime is coarse and rewrites that keep size and inode.
const secretFileRecheck = time.Minute

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
	return &secretFileCredential{path: path, now: now}
}

type secretFileCredential struct {
	path string
	now  func() time.Time

	mu     sync.Mutex
	id     fileID    // identity of the file the value came from
	readAt time.Time // when value was read
	value  string
}

// fileID identifies one version of a file cheaply.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
}

func statID(fi fs.FileInfo) fileID {
	id := fileID{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), uint64(st.Ino) //nolint:unconvert // field widths differ by platform.
	}
	return id
}

func (c *secretFileCredential) Apply(_ context.Context, r *TokenRequest) error {
	v, err := c.load()
	if err != nil {
		return err
	}
	r.Form.Set("client_secret", v)
	return nil
}

// load returns the secret, reading the file again when it changed.
func (c *secretFileCredential) load() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fi, err := os.Stat(c.path) // Stat follows symlinks: the resolved file's identity.
	if err != nil {
		return "", c.fileError(err)
	}
	if !fi.Mode().IsRegular() {
		return "", credentialError(7000218, fmt.Sprintf("client secret file %q is not a regular file", c.path),
			"AZURE_CLIENT_SECRET_FILE must name a file holding the secret's Value (in Kubernetes, a key of a mounted secret volume), not a directory.", nil)
	}
	now := c.now()
	id := statID(fi)
	if c.value != "" && id == c.id && now.Sub(c.readAt) < secretFileRecheck && !now.Before(c.readAt) {
		return c.value, nil
	}
	f, err := os.Open(c.path)
	if err != nil {
		return "", c.fileError(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", c.fileError(err)
	}
	if len(b) > maxSecretFile {
		return "", credentialError(7000218, fmt.Sprintf("client secret file %q is larger than %d bytes", c.path, maxSecretFile),
			"AZURE_CLIENT_SECRET_FILE must hold only the secret's Value; check that the path names the right file.", nil)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", credentialError(7000218, fmt.Sprintf("client secret file %q is empty", c.path),
			"The client secret file is empty. Put the secret's Value in it (in Kubernetes, check the secret's key and the volume mount).", nil)
	}
	// Stat again after reading, through the open file, so the identity kept
	// is that of the content read even if the file was swapped meanwhile.
	if fi2, err := f.Stat(); err == nil {
		id = statID(fi2)
	}
	c.value, c.id, c.readAt = v, id, now
	return v, nil
}

// fileError explains a file that cannot be read. os errors name the path and
// the reason, never the content.
func (c *secretFileCredential) fileError(err error) *Error {
	hint := "Check AZURE_CLIENT_SECRET_FILE and that the broker's user can read the file (in Kubernetes, the secret volume mount and its key)."
	switch {
	case errors.Is(err, fs.ErrNotExist):
		hint = "The client secret file does not exist. " + hint
	case errors.Is(err, fs.ErrPermission):
		hint = "The broker may not read the client secret file. " + hint
	}
	return credentialError(7000218, fmt.Sprintf("cannot read client secret file %q", c.path), hint, err)
}

func (c *secretFileCredential) String() string {
	return fmt.Sprintf("azure.SecretFileCredential(%q)", c.path)
}

func (c *secretFileCredential) GoString() string { return c.String() }

// credentialError is a local, permanent credential failure. code is the
// AADSTS code Entra would answer for a request without the credential.
func credentialError(code int, desc, hint string, err error) *Error {
	return &Error{
		Op:          "credential",
		Code:        "invalid_client",
		Description: desc,
		AADCodes:    []int{code},
		Hint:        hint,
		Err:         err,
	}
}
