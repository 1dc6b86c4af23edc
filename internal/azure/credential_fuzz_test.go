package azure

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzParseCertificateFile: any file content gives a usable key or a
// permanent *Error naming the file, never a panic.
func FuzzParseCertificateFile(f *testing.F) {
	keys := testRSAKeys()
	leaf := newCert(f, &keys[0].PublicKey, "fuzz", t0.AddDate(1, 0, 0), nil, keys[0])
	f.Add(bytes.Join([][]byte{pemCert(leaf), pemPKCS1(keys[0])}, nil), "")
	f.Add(mustPKCS12(f, nil, keys[0], leaf, nil, "pw"), "pw")
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "")
	f.Add([]byte{0x30, 0x82, 0x01}, "x")
	f.Fuzz(func(t *testing.T, b []byte, password string) {
		k, err := parseCertificateFile("/fuzz/cert.pem", b, password)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Transient || !strings.Contains(e.Description, "/fuzz/cert.pem") || e.Hint == "" {
				t.Fatalf("parseCertificateFile error = %#v, want a permanent *Error naming the file, with a hint", err)
			}
			if password != "" && len(password) > 3 && strings.Contains(e.Error()+e.Hint, password) {
				t.Fatalf("error %q contains the password", e.Error())
			}
			return
		}
		if k.key == nil || k.leaf == nil || len(k.x5c) == 0 || k.x5tS256 == "" {
			t.Fatalf("parseCertificateFile = %+v, want a complete key", k)
		}
	})
}

// FuzzParseFederatedToken: any file content gives a token or a permanent
// *Error, never a panic.
func FuzzParseFederatedToken(f *testing.F) {
	f.Add([]byte(newFederatedToken(f, testFedSubject, t0.Add(time.Hour))))
	f.Add([]byte("a.b.c"))
	f.Add([]byte(" \n"))
	f.Add([]byte("eyJhbGciOiJSUzI1NiJ9.eyJleHAiOiIxZTMwMCIsImF1ZCI6MX0.c2ln"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := parseFederatedToken("/fuzz/token", b)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Transient || e.Hint == "" {
				t.Fatalf("parseFederatedToken error = %#v, want a permanent *Error with a hint", err)
			}
			return
		}
		if tok.raw == "" || tok.raw != strings.TrimSpace(string(b)) {
			t.Fatalf("parseFederatedToken raw = %q, want the trimmed content", tok.raw)
		}
	})
}
