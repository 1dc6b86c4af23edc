package azure

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"software.sslmate.com/src/go-pkcs12"
)

// testRSAKeys are generated once per test binary and shared: a 2048-bit key
// takes tens of milliseconds. No private key is committed.
var testRSAKeys = sync.OnceValue(func() [3]*rsa.PrivateKey {
	var keys [3]*rsa.PrivateKey
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		keys[i] = k
	}
	return keys
})

// newCert issues a certificate for pub, valid from t0 − 1 day to notAfter,
// signed by parent's key (self-signed when parent is nil).
func newCert(t testing.TB, pub crypto.PublicKey, cn string, notAfter time.Time, parent *x509.Certificate, parentKey crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             t0.Add(-24 * time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  parent == nil,
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pemCert(c *x509.Certificate) []byte { return pemBlock("CERTIFICATE", c.Raw) }

func pemPKCS1(k *rsa.PrivateKey) []byte {
	return pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k))
}

func pemPKCS8(t testing.TB, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PRIVATE KEY", der)
}

// writeBytes writes b to a new file in dir and returns its path.
func writeBytes(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// replaceAtomic replaces path's content with b by a rename, as a secret
// volume or a careful operator does.
func replaceAtomic(t testing.TB, path string, b []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Error(err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Error(err)
	}
}

// decodedJWT is a compact JWS split into its raw JSON parts.
type decodedJWT struct {
	header, claims string
}

func decodeTestJWT(t testing.TB, s string) decodedJWT {
	t.Helper()
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		t.Fatalf("assertion %q is not a compact JWS", s)
	}
	h, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	c, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	if err1 != nil || err2 != nil {
		t.Fatalf("assertion parts do not decode: %v %v", err1, err2)
	}
	return decodedJWT{string(h), string(c)}
}

// applyAssertion runs cred.Apply for testClientID and returns the form.
func applyAssertion(t testing.TB, cred Credential) (url.Values, error) {
	t.Helper()
	r := &TokenRequest{TokenURL: "https://login.example/" + testTenantID + "/oauth2/v2.0/token", ClientID: testClientID, Form: url.Values{}}
	err := cred.Apply(context.Background(), r)
	return r.Form, err
}

func TestCertificateCredentialAssertion(t *testing.T) {
	t.Parallel()
	keys := testRSAKeys()
	ca := newCert(t, &keys[1].PublicKey, "Contoso test CA", t0.AddDate(5, 0, 0), nil, keys[1])
	leaf := newCert(t, &keys[0].PublicKey, "reporting", t0.AddDate(1, 0, 0), ca, keys[1])
	sum := sha256.Sum256(leaf.Raw)
	thumb := base64.StdEncoding.EncodeToString(sum[:])
	leafB64, caB64 := base64.StdEncoding.EncodeToString(leaf.Raw), base64.StdEncoding.EncodeToString(ca.Raw)
	dir := t.TempDir()
	clock := &fakeClock{t: t0}

	tests := []struct {
		name       string
		file       []byte
		opts       CertificateOptions
		wantHeader string
	}{
		{
			name:       "PEM, certificate then PKCS#1 key",
			file:       bytes.Join([][]byte{pemCert(leaf), pemPKCS1(keys[0])}, nil),
			wantHeader: `{"alg":"PS256","typ":"JWT","x5t#S256":"` + thumb + `"}`,
		},
		{
			name:       "PEM, PKCS#8 key first, chain in any order, x5c",
			file:       bytes.Join([][]byte{pemPKCS8(t, keys[0]), pemCert(ca), pemCert(leaf)}, nil),
			opts:       CertificateOptions{SendCertificateChain: true},
			wantHeader: `{"alg":"PS256","typ":"JWT","x5c":["` + leafB64 + `","` + caB64 + `"],"x5t#S256":"` + thumb + `"}`,
		},
		{
			name:       "PKCS#12 (AES, SHA-256 MAC) with password and chain",
			file:       mustPKCS12(t, pkcs12.Modern2023, keys[0], leaf, []*x509.Certificate{ca}, "p@ss w0rd"),
			opts:       CertificateOptions{Password: "p@ss w0rd", SendCertificateChain: true},
			wantHeader: `{"alg":"PS256","typ":"JWT","x5c":["` + leafB64 + `","` + caB64 + `"],"x5t#S256":"` + thumb + `"}`,
		},
		{
			name:       "PKCS#12 (legacy 3DES) without password",
			file:       mustPKCS12(t, pkcs12.LegacyDES, keys[0], leaf, nil, ""),
			wantHeader: `{"alg":"PS256","typ":"JWT","x5t#S256":"` + thumb + `"}`,
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeBytes(t, dir, fmt.Sprintf("cert-%d", i), tt.file)
			tt.opts.Now = clock.Now
			cred, err := CertificateCredential(path, tt.opts)
			if err != nil {
				t.Fatalf("CertificateCredential(%s) error = %v", tt.name, err)
			}
			form, err := applyAssertion(t, cred)
			if err != nil {
				t.Fatalf("Apply error = %v", err)
			}
			if got := form.Get("client_assertion_type"); got != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
				t.Errorf("client_assertion_type = %q, want jwt-bearer", got)
			}
			a := form.Get("client_assertion")
			d := decodeTestJWT(t, a)
			// Byte for byte what msal-go sends: key order, standard base64.
			if d.header != tt.wantHeader {
				t.Errorf("header = %s, want %s", d.header, tt.wantHeader)
			}
			var claims map[string]any
			if err := json.Unmarshal([]byte(d.claims), &claims); err != nil {
				t.Fatal(err)
			}
			jti, _ := claims["jti"].(string)
			want := map[string]any{
				"aud": "https://login.example/" + testTenantID + "/oauth2/v2.0/token",
				"exp": float64(t0.Add(10 * time.Minute).Unix()),
				"iss": testClientID,
				"jti": jti,
				"nbf": float64(t0.Unix()),
				"sub": testClientID,
			}
			if diff := cmp.Diff(want, claims); diff != "" || !IsGUID(jti) {
				t.Errorf("claims (-want +got):\n%s\njti %q must be a GUID", diff, jti)
			}
			if want := `{"aud":`; !strings.HasPrefix(d.claims, want) {
				t.Errorf("claims = %s, want keys in msal-go's order", d.claims)
			}
			// RSA-PSS with SHA-256, verifiable with the certificate.
			if _, err := jwt.NewParser(jwt.WithValidMethods([]string{"PS256"}), jwt.WithoutClaimsValidation()).
				Parse(a, func(*jwt.Token) (any, error) { return leaf.PublicKey, nil }); err != nil {
				t.Errorf("assertion signature does not verify with the certificate: %v", err)
			}
			// A fresh assertion every time.
			form2, _ := applyAssertion(t, cred)
			if form2.Get("client_assertion") == a {
				t.Error("two Apply calls sent the same assertion, want a new jti each time")
			}
			exp, ok := cred.(ExpiringCredential).CredentialExpiry()
			if !ok || !exp.Equal(leaf.NotAfter) {
				t.Errorf("CredentialExpiry() = %v, %v, want the leaf's NotAfter %v", exp, ok, leaf.NotAfter)
			}
		})
	}
}

// mustPKCS12 encodes a PKCS#12 file; a nil enc means Modern2023.
func mustPKCS12(t testing.TB, enc *pkcs12.Encoder, key *rsa.PrivateKey, leaf *x509.Certificate, chain []*x509.Certificate, password string) []byte {
	t.Helper()
	if enc == nil {
		enc = pkcs12.Modern2023
	}
	b, err := enc.Encode(key, leaf, chain, password)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCertificateCredentialErrors(t *testing.T) {
	t.Parallel()
	keys := testRSAKeys()
	leaf := newCert(t, &keys[0].PublicKey, "reporting", t0.AddDate(1, 0, 0), nil, keys[0])
	other := newCert(t, &keys[1].PublicKey, "other", t0.AddDate(1, 0, 0), nil, keys[1])
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecCert := newCert(t, &ecKey.PublicKey, "ec", t0.AddDate(1, 0, 0), nil, ecKey)
	const password = "correct-pfx-password"
	keyPEM := pemPKCS1(keys[0])
	dir := t.TempDir()
	tests := []struct {
		name     string
		file     []byte // nil: no file
		password string
		want     string // in the description
	}{
		{name: "missing file", want: "does not exist"},
		{name: "empty", file: []byte("\n"), want: "is empty"},
		{name: "no key", file: pemCert(leaf), want: "holds no private key"},
		{name: "no certificate", file: keyPEM, want: "holds no certificate"},
		{name: "EC key", file: bytes.Join([][]byte{pemCert(ecCert), pemPKCS8(t, ecKey)}, nil), want: "the private key is ECDSA, not RSA"},
		{name: "key of another certificate", file: bytes.Join([][]byte{pemCert(other), keyPEM}, nil), want: "the private key does not match the certificate"},
		{name: "two keys", file: bytes.Join([][]byte{pemCert(leaf), keyPEM, pemPKCS1(keys[1])}, nil), want: "more than one private key"},
		{name: "encrypted PKCS#8", file: bytes.Join([][]byte{pemCert(leaf), pemBlock("ENCRYPTED PRIVATE KEY", []byte("opaque"))}, nil), want: "the private key is encrypted"},
		{name: "truncated key", file: bytes.Join([][]byte{pemCert(leaf), pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(keys[0])[:100])}, nil), want: "the RSA PRIVATE KEY block cannot be parsed"},
		{name: "wrong PKCS#12 password", file: mustPKCS12(t, pkcs12.Modern2023, keys[0], leaf, nil, password), password: "wrong-password", want: "the PKCS#12 password is wrong"},
		{name: "PKCS#12 without password", file: mustPKCS12(t, pkcs12.Modern2023, keys[0], leaf, nil, password), want: "no password was given"},
		{name: "neither PEM nor PKCS#12", file: []byte("this is not a certificate"), want: "is neither PEM nor a PKCS#12 file"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, fmt.Sprintf("cert-%d", i))
			if tt.file != nil {
				writeBytes(t, dir, filepath.Base(path), tt.file)
			}
			cred, err := CertificateCredential(path, CertificateOptions{Password: tt.password})
			if cred != nil {
				t.Errorf("CertificateCredential(%s) = %v, want nil on error", tt.name, cred)
			}
			checkCredentialError(t, err, "")
			e := err.(*Error)
			if !strings.Contains(e.Description, tt.want) || !strings.Contains(e.Description, path) {
				t.Errorf("CertificateCredential(%s) description = %q, want it to name the file and say %q", tt.name, e.Description, tt.want)
			}
			// Neither the key nor a password ever shows.
			all := e.Error() + " " + e.Hint + fmt.Sprintf(" %+v %#v", e, e)
			keyBody := base64.StdEncoding.EncodeToString(x509.MarshalPKCS1PrivateKey(keys[0]))[:40]
			for _, secret := range []string{password, "wrong-password", keyBody} {
				if strings.Contains(all, secret) {
					t.Errorf("error %q (hint %q) contains a secret", e.Error(), e.Hint)
				}
			}
		})
	}
}

// TestCertificateCredentialRotation renews the certificate in place: the
// next Apply signs with the new key and names the new certificate, and the
// expiry follows. A broken file in between fails, then recovers.
func TestCertificateCredentialRotation(t *testing.T) {
	t.Parallel()
	keys := testRSAKeys()
	old := newCert(t, &keys[0].PublicKey, "reporting-2025", t0.AddDate(0, 1, 0), nil, keys[0])
	renewed := newCert(t, &keys[2].PublicKey, "reporting-2026", t0.AddDate(1, 1, 0), nil, keys[2])
	path := writeBytes(t, t.TempDir(), "tls.pem", append(pemCert(old), pemPKCS1(keys[0])...))
	clock := &fakeClock{t: t0}
	cred, err := CertificateCredential(path, CertificateOptions{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	thumbOf := func() string {
		form, err := applyAssertion(t, cred)
		if err != nil {
			t.Fatalf("Apply error = %v", err)
		}
		var h struct {
			X5t string `json:"x5t#S256"`
		}
		_ = json.Unmarshal([]byte(decodeTestJWT(t, form.Get("client_assertion")).header), &h)
		return h.X5t
	}
	thumb := func(c *x509.Certificate) string {
		s := sha256.Sum256(c.Raw)
		return base64.StdEncoding.EncodeToString(s[:])
	}
	if got := thumbOf(); got != thumb(old) {
		t.Fatalf("x5t#S256 = %s, want the old certificate's", got)
	}
	replaceAtomic(t, path, append(pemPKCS8(t, keys[2]), pemCert(renewed)...))
	if got := thumbOf(); got != thumb(renewed) {
		t.Fatalf("x5t#S256 after renewal = %s, want the renewed certificate's", got)
	}
	if exp, _ := cred.(ExpiringCredential).CredentialExpiry(); !exp.Equal(renewed.NotAfter) {
		t.Errorf("CredentialExpiry() after renewal = %v, want %v", exp, renewed.NotAfter)
	}
	// Half a rotation (the certificate without its key) fails clearly, and
	// the expiry still reports the last good certificate.
	replaceAtomic(t, path, pemCert(old))
	if _, err := applyAssertion(t, cred); err == nil || !strings.Contains(err.Error(), "holds no private key") {
		t.Errorf("Apply with a key-less file error = %v, want holds no private key", err)
	}
	if exp, ok := cred.(ExpiringCredential).CredentialExpiry(); !ok || !exp.Equal(renewed.NotAfter) {
		t.Errorf("CredentialExpiry() with a broken file = %v, %v, want the last good %v", exp, ok, renewed.NotAfter)
	}
	replaceAtomic(t, path, append(pemCert(old), pemPKCS1(keys[0])...))
	if got := thumbOf(); got != thumb(old) {
		t.Errorf("x5t#S256 after repair = %s, want the old certificate's", got)
	}
	if s := fmt.Sprintf("%v %+v %#v", cred, cred, cred); strings.Contains(s, "PRIVATE") || !strings.Contains(s, "azure.CertificateCredential") {
		t.Errorf("formatting the credential = %q, want only its path", s)
	}
}
