package azure

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"software.sslmate.com/src/go-pkcs12"
)

// clientAssertionType is the client_assertion_type of a JWT client
// assertion, a certificate's or a federated token's.
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLifetime is exp − nbf of a certificate assertion: 10 minutes, as
// msal-go sends it (reference §4.1). Each token request gets a fresh one.
const assertionLifetime = 10 * time.Minute

// maxCertificateFile bounds the certificate file. A PEM file with a 4096-bit
// key and a chain of a few certificates is under 20 KiB.
const maxCertificateFile = 1 << 20

// certificateFileKind describes the certificate file in errors.
var certificateFileKind = fileKind{
	what:    "client certificate file",
	setting: "AZURE_CLIENT_CERTIFICATE_PATH",
	holds:   "the certificate and its private key (PEM or PKCS#12)",
	mount:   "the secret volume mount and its key",
	limit:   maxCertificateFile,
}

// CertificateOptions configures CertificateCredential. The zero value is
// valid.
type CertificateOptions struct {
	// Password decrypts a PKCS#12 file (AZURE_CLIENT_CERTIFICATE_PASSWORD).
	// Empty means none. It is not used for PEM files, whose key must not be
	// encrypted.
	Password string
	// SendCertificateChain adds the x5c header, the certificate chain from
	// the file (leaf first), to every assertion, for apps that use subject
	// name and issuer (SN+I) authentication
	// (AZURE_CLIENT_SEND_CERTIFICATE_CHAIN).
	SendCertificateChain bool
	// Now is the clock for the assertions' nbf and exp. Nil means time.Now.
	Now func() time.Time
	// Logger receives one info line each time a certificate is loaded (its
	// thumbprint, subject and expiry; never the key or an assertion). Nil
	// means no logging.
	Logger *zap.Logger
}

// ExpiringCredential is a Credential that knows when it stops working, such
// as a certificate (its NotAfter). The service exports the time as a metric
// and warns ahead of it; find it with a type assertion on a Credential.
type ExpiringCredential interface {
	Credential
	// CredentialExpiry returns when the credential stops working, and false
	// when that is not known (nothing could be loaded yet). It is safe for
	// concurrent use and cheap enough to call on every metrics scrape.
	CredentialExpiry() (time.Time, bool)
}

// CertificateCredential returns a Credential that authenticates with a
// certificate: for every token request it signs a fresh client assertion
// JWT exactly as msal-go does (header alg PS256, typ JWT, x5t#S256 — the
// standard-base64 SHA-256 thumbprint of the certificate — and, with
// SendCertificateChain, x5c; claims aud = the token endpoint, iss = sub = the
// client ID, a new GUID as jti, nbf = now and exp = now + 10 minutes, no
// iat), and sends it as client_assertion.
//
// The file at path is PEM — one or more CERTIFICATE blocks and one RSA
// private key (PKCS#1 "RSA PRIVATE KEY" or PKCS#8 "PRIVATE KEY"), in any
// order — or PKCS#12 (.pfx/.p12, with opts.Password). The signing
// certificate is the one whose public key matches the key; the others form
// the chain. The key must be RSA, as Entra and msal-go require.
//
// The file is read now, so a broken file fails at start, and read again
// whenever it changes (the same change detection as SecretFileCredential),
// so a renewed certificate is used on the next token request without a
// restart. Errors (unreadable file, no key, a key that is not RSA or does
// not match the certificate, a wrong PKCS#12 password) are permanent
// *Error values with a hint; they never contain key material or the
// password.
//
// The returned credential is an ExpiringCredential (the signing
// certificate's NotAfter) and is safe for concurrent use. It prints as
// "azure.CertificateCredential(<path>)".
func CertificateCredential(path string, opts CertificateOptions) (Credential, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	c := &certificateCredential{
		sendChain: opts.SendCertificateChain,
		now:       opts.Now,
		log:       opts.Logger,
	}
	c.file = &watchedFile[*certificateKey]{
		path: path,
		kind: certificateFileKind,
		now:  opts.Now,
		parse: func(b []byte) (*certificateKey, error) {
			return parseCertificateFile(path, b, opts.Password)
		},
	}
	if _, err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

type certificateCredential struct {
	file      *watchedFile[*certificateKey]
	sendChain bool
	now       func() time.Time
	log       *zap.Logger
}

var _ ExpiringCredential = (*certificateCredential)(nil)

// certificateKey is what a certificate file holds, ready to sign.
type certificateKey struct {
	key      *rsa.PrivateKey
	leaf     *x509.Certificate
	x5tS256  string   // standard base64 of SHA-256(leaf DER), as msal-go sends it
	x5c      []string // standard base64 DER, leaf first
	notAfter time.Time
}

// load returns the current key, logging when a new one was read.
func (c *certificateCredential) load() (*certificateKey, error) {
	k, fresh, err := c.file.load()
	if err != nil {
		return nil, err
	}
	if fresh {
		sum := sha256.Sum256(k.leaf.Raw)
		c.log.Info("client certificate loaded",
			zap.String("path", c.file.path),
			zap.String("thumbprint_sha256", strings.ToUpper(hex.EncodeToString(sum[:]))),
			zap.String("subject", k.leaf.Subject.String()),
			zap.Time("not_after", k.notAfter),
			zap.Int("chain", len(k.x5c)))
	}
	return k, nil
}

func (c *certificateCredential) Apply(_ context.Context, r *TokenRequest) error {
	k, err := c.load()
	if err != nil {
		return err
	}
	now := c.now()
	claims := jwt.MapClaims{
		"aud": r.TokenURL,
		"exp": now.Add(assertionLifetime).Unix(),
		"iss": r.ClientID,
		"jti": newRequestID(),
		"nbf": now.Unix(),
		"sub": r.ClientID,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodPS256, claims)
	t.Header = map[string]any{"alg": jwt.SigningMethodPS256.Alg(), "typ": "JWT", "x5t#S256": k.x5tS256}
	if c.sendChain {
		t.Header["x5c"] = k.x5c
	}
	s, err := t.SignedString(k.key)
	if err != nil {
		// Signing with a valid RSA key does not fail; say so plainly if it does.
		return &Error{Op: "credential", Code: "invalid_client", Description: "cannot sign the client assertion",
			Hint: "The certificate's private key could not sign. Check AZURE_CLIENT_CERTIFICATE_PATH.", Err: err}
	}
	r.Form.Set("client_assertion_type", clientAssertionType)
	r.Form.Set("client_assertion", s)
	return nil
}

// CredentialExpiry returns the signing certificate's NotAfter. It re-reads
// the file when it changed; when the file cannot be read it returns the last
// certificate's NotAfter.
func (c *certificateCredential) CredentialExpiry() (time.Time, bool) {
	if k, err := c.load(); err == nil {
		return k.notAfter, true
	}
	if k, ok := c.file.last(); ok {
		return k.notAfter, true
	}
	return time.Time{}, false
}

func (c *certificateCredential) String() string {
	return fmt.Sprintf("azure.CertificateCredential(%q)", c.file.path)
}

func (c *certificateCredential) GoString() string { return c.String() }

// parseCertificateFile reads a PEM or PKCS#12 certificate file's content.
func parseCertificateFile(path string, b []byte, password string) (*certificateKey, error) {
	fail := func(desc, hint string, err error) (*certificateKey, error) {
		return nil, credentialError(fmt.Sprintf("client certificate file %q: %s", path, desc), hint, err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return fail("is empty", "Put the certificate and its private key in the file (PEM, or PKCS#12 with AZURE_CLIENT_CERTIFICATE_PASSWORD).", nil)
	}
	var (
		certs []*x509.Certificate
		key   any
	)
	if bytes.Contains(b, []byte("-----BEGIN")) {
		var err error
		certs, key, err = parsePEMCertificateFile(b)
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				e.Description = fmt.Sprintf("client certificate file %q: %s", path, e.Description)
			}
			return nil, err
		}
	} else {
		k, leaf, chain, err := pkcs12.DecodeChain(b, password)
		switch {
		case errors.Is(err, pkcs12.ErrIncorrectPassword) && password == "":
			return fail("is a password-protected PKCS#12 file and no password was given",
				"Set AZURE_CLIENT_CERTIFICATE_PASSWORD to the PKCS#12 (.pfx) file's password.", nil)
		case errors.Is(err, pkcs12.ErrIncorrectPassword):
			return fail("the PKCS#12 password is wrong",
				"Check AZURE_CLIENT_CERTIFICATE_PASSWORD: it must be the password the .pfx file was exported with.", nil)
		case err != nil:
			// go-pkcs12's errors are fixed texts ("pkcs12: unknown digest
			// algorithm"…) that never carry the content or the password.
			return fail("is neither PEM nor a PKCS#12 file this broker can read",
				"Use a PEM file holding the certificate and its unencrypted RSA private key, or a PKCS#12 (.pfx) file with its password "+
					"(convert with: openssl pkcs12 -in cert.pfx -out cert.pem -nodes).", err)
		}
		certs = append([]*x509.Certificate{leaf}, chain...)
		key = k
	}
	if len(certs) == 0 {
		return fail("holds no certificate",
			"The file must hold the certificate (BEGIN CERTIFICATE) as well as its private key: the certificate's thumbprint names the key to Entra ID.", nil)
	}
	if key == nil {
		return fail("holds no private key",
			"The file must hold the certificate's private key as well (BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY); "+
				"the .cer file uploaded to the app registration is only its public part.", nil)
	}
	rsaKey, ok := key.(*rsa.PrivateKey)
	if !ok {
		return fail(fmt.Sprintf("the private key is %s, not RSA", keyKind(key)),
			"Entra ID certificate credentials need an RSA key. Create an RSA certificate, e.g. "+
				"openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 365 -subj /CN=broker, and upload its public part.", nil)
	}
	// The signing certificate is the one whose public key is the key's, as in
	// msal-go's NewCredFromCert; it goes first in x5c, the others follow in
	// file order.
	var leaf *x509.Certificate
	var x5c []string
	for _, c := range certs {
		pub, ok := c.PublicKey.(*rsa.PublicKey)
		if leaf == nil && ok && pub.E == rsaKey.E && pub.N.Cmp(rsaKey.N) == 0 {
			leaf = c
			x5c = append([]string{base64.StdEncoding.EncodeToString(c.Raw)}, x5c...)
			continue
		}
		x5c = append(x5c, base64.StdEncoding.EncodeToString(c.Raw))
	}
	if leaf == nil {
		return fail("the private key does not match the certificate",
			"The file must hold a certificate and the private key of the same pair. Check that the key was not replaced "+
				"without its certificate (or the other way round) when the certificate was renewed.", nil)
	}
	sum := sha256.Sum256(leaf.Raw)
	return &certificateKey{
		key:      rsaKey,
		leaf:     leaf,
		x5tS256:  base64.StdEncoding.EncodeToString(sum[:]),
		x5c:      x5c,
		notAfter: leaf.NotAfter,
	}, nil
}

// parsePEMCertificateFile returns the certificates and the one private key
// of a PEM file. Other blocks are ignored.
func parsePEMCertificateFile(b []byte) (certs []*x509.Certificate, key any, err error) {
	fail := func(desc, hint string, err error) ([]*x509.Certificate, any, error) {
		return nil, nil, credentialError(desc, hint, err)
	}
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		switch block.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return fail("a CERTIFICATE block is not a valid X.509 certificate",
					"Check that the certificate was copied whole (PEM, BEGIN/END CERTIFICATE lines included).", err)
			}
			certs = append(certs, c)
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			if key != nil {
				return fail("holds more than one private key",
					"Keep only the certificate's own private key in the file.", nil)
			}
			if _, encrypted := block.Headers["Proc-Type"]; encrypted {
				return fail("the private key is encrypted",
					"Encrypted PEM keys are not supported. Decrypt it (openssl rsa -in key.pem -out key-plain.pem) "+
						"and protect the file instead, or use a PKCS#12 (.pfx) file with AZURE_CLIENT_CERTIFICATE_PASSWORD.", nil)
			}
			// Parse errors of crypto/x509 name the structure that failed,
			// never the key's bytes.
			switch block.Type {
			case "PRIVATE KEY":
				key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
			case "RSA PRIVATE KEY":
				key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
			default:
				key, err = x509.ParseECPrivateKey(block.Bytes)
			}
			if err != nil {
				return fail(fmt.Sprintf("the %s block cannot be parsed", block.Type),
					"Check that the private key was copied whole and is not encrypted (PEM, BEGIN/END lines included).", err)
			}
		case "ENCRYPTED PRIVATE KEY":
			return fail("the private key is encrypted",
				"Encrypted PEM keys are not supported. Decrypt it (openssl pkcs8 -in key.pem -out key-plain.pem) "+
					"and protect the file instead, or use a PKCS#12 (.pfx) file with AZURE_CLIENT_CERTIFICATE_PASSWORD.", nil)
		}
	}
	return certs, key, nil
}

// keyKind names a private key's algorithm for an error.
func keyKind(key any) string {
	switch key.(type) {
	case *ecdsa.PrivateKey:
		return "ECDSA"
	case ed25519.PrivateKey:
		return "Ed25519"
	case *ecdh.PrivateKey:
		return "ECDH"
	}
	return fmt.Sprintf("%T", key)
}
