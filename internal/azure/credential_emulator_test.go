package azure

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/entrabroker/broker/internal/emulator"
)

// These tests run the certificate and federated token credentials through
// the Client against the emulator over TLS: the emulator verifies the
// assertions as Entra does.

const (
	certAppID = "e0000000-0000-4000-a000-00000000c001"
	fedAppID  = "e0000000-0000-4000-a000-00000000f001"
	bareAppID = "e0000000-0000-4000-a000-00000000b001" // no certificate, no federated credential
)

// startCredentialEmulator is startEmulator with three more apps: one with
// the given certificates, one with a federated credential for
// testFedSubject (verified with the issuer's key), one with neither.
func startCredentialEmulator(t *testing.T, certs ...*x509.Certificate) (*emulator.Emulator, *httptest.Server) {
	t.Helper()
	emu, srv := startEmulator(t, emulator.Options{})
	for _, a := range []emulator.App{
		{TenantID: emulator.DemoTenantID, ClientID: certAppID, Certificates: certs},
		{TenantID: emulator.DemoTenantID, ClientID: fedAppID, FederatedCredentials: []emulator.FederatedCredential{
			{Name: "aks", Issuer: testFedIssuer, Subject: testFedSubject, Keys: emulator.PEMPublicKeys{&testRSAKeys()[1].PublicKey}},
		}},
		{TenantID: emulator.DemoTenantID, ClientID: bareAppID},
	} {
		if err := emu.AddApp(a); err != nil {
			t.Fatal(err)
		}
	}
	return emu, srv
}

// recordingCredential remembers every client_assertion its inner
// credential sent, so tests can look for it in logs and errors.
type recordingCredential struct {
	Credential
	mu   sync.Mutex
	sent []string
}

func (r *recordingCredential) Apply(ctx context.Context, req *TokenRequest) error {
	err := r.Credential.Apply(ctx, req)
	if a := req.Form.Get("client_assertion"); a != "" {
		r.mu.Lock()
		r.sent = append(r.sent, a)
		r.mu.Unlock()
	}
	return err
}

func (r *recordingCredential) assertions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.sent...)
}

func TestEmulatorCertificateCredential(t *testing.T) {
	t.Parallel()
	keys := testRSAKeys()
	ca := newCert(t, &keys[1].PublicKey, "Contoso test CA", t0.AddDate(5, 0, 0), nil, keys[1])
	leaf := newCert(t, &keys[0].PublicKey, "reporting", t0.AddDate(1, 0, 0), ca, keys[1])
	unregistered := newCert(t, &keys[2].PublicKey, "not uploaded", t0.AddDate(1, 0, 0), nil, keys[2])
	dir := t.TempDir()
	pemFile := writeBytes(t, dir, "tls.pem", bytes.Join([][]byte{pemCert(leaf), pemCert(ca), pemPKCS1(keys[0])}, nil))
	pfxFile := writeBytes(t, dir, "cert.pfx", mustPKCS12(t, pkcs12.Modern2023, keys[0], leaf, []*x509.Certificate{ca}, "pfx-password"))
	unknownFile := writeBytes(t, dir, "unknown.pem", append(pemCert(unregistered), pemPKCS8(t, keys[2])...))
	early := func() time.Time { return t0.Add(-time.Hour) } // a client clock an hour behind

	tests := []struct {
		name   string
		path   string
		opts   CertificateOptions
		aadsts int // 0: success
	}{
		{name: "PEM", path: pemFile},
		{name: "PKCS#12", path: pfxFile, opts: CertificateOptions{Password: "pfx-password"}},
		{name: "PEM with x5c chain", path: pemFile, opts: CertificateOptions{SendCertificateChain: true}},
		{name: "certificate not registered", path: unknownFile, aadsts: 700027},
		{name: "assertion expired (clock behind)", path: pemFile, opts: CertificateOptions{Now: early}, aadsts: 700024},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			emu, srv := startCredentialEmulator(t, leaf)
			if tt.opts.Now == nil {
				tt.opts.Now = func() time.Time { return t0 }
			}
			cred, err := CertificateCredential(tt.path, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			c := emulatorClient(t, srv, Config{ClientID: certAppID, Credential: cred})
			tok, err := c.Token(context.Background(), testScope)
			if tt.aadsts == 0 {
				if err != nil {
					t.Fatalf("Token() error = %v", err)
				}
				claims, err := emu.VerifyAccessToken(tok.AccessToken)
				if err != nil || claims.AppID != certAppID {
					t.Errorf("token claims = %+v, %v, want appid %s", claims, err, certAppID)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Token() error = %v, want *Error", err)
			}
			if e.StatusCode != 401 || e.Code != "invalid_client" || len(e.AADCodes) != 1 || e.AADCodes[0] != tt.aadsts || e.Transient || e.Hint != aadHints[tt.aadsts] {
				t.Errorf("Token() error = {%d %q %v transient %v hint %q}, want {401 invalid_client [%d] false %q}",
					e.StatusCode, e.Code, e.AADCodes, e.Transient, e.Hint, tt.aadsts, aadHints[tt.aadsts])
			}
		})
	}

	t.Run("no thumbprint", func(t *testing.T) {
		t.Parallel()
		_, srv := startCredentialEmulator(t, leaf)
		// A hand-built assertion without x5t: what a script signing its own
		// JWT sends by mistake.
		a := signTestJWT(t, keys[0], map[string]any{"typ": "JWT"}, map[string]any{
			"aud": srv.URL + "/" + emulator.DemoTenantID + "/oauth2/v2.0/token", "iss": certAppID, "sub": certAppID,
			"jti": newRequestID(), "nbf": t0.Unix(), "exp": t0.Add(10 * time.Minute).Unix(),
		})
		c := emulatorClient(t, srv, Config{ClientID: certAppID, Credential: formCredential{
			"client_assertion_type": {clientAssertionType}, "client_assertion": {a}}})
		_, err := c.Token(context.Background(), testScope)
		var e *Error
		if !errors.As(err, &e) || len(e.AADCodes) != 1 || e.AADCodes[0] != 50027 || e.Hint != aadHints[50027] {
			t.Errorf("Token() error = %v, want AADSTS50027 with its hint", err)
		}
	})
}

func TestEmulatorFederatedTokenCredential(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		clientID string
		subject  string
		exp      time.Time
		aadsts   int
		local    bool // refused before any request
	}{
		{name: "success", clientID: fedAppID, subject: testFedSubject, exp: t0.Add(time.Hour)},
		{name: "app without federated credential", clientID: bareAppID, subject: testFedSubject, exp: t0.Add(time.Hour), aadsts: 70021},
		{name: "subject mismatch", clientID: fedAppID, subject: "system:serviceaccount:default:other", exp: t0.Add(time.Hour), aadsts: 700213},
		{name: "subject differs in case", clientID: fedAppID, subject: strings.ToUpper(testFedSubject), exp: t0.Add(time.Hour), aadsts: 7002138},
		{name: "token in the file expired", clientID: fedAppID, subject: testFedSubject, exp: t0.Add(-time.Second), aadsts: 700024, local: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			emu, srv := startCredentialEmulator(t)
			path := writeBytes(t, t.TempDir(), "azure-identity-token", []byte(newFederatedToken(t, tt.subject, tt.exp)))
			cred := FederatedTokenFileCredential(path, FederatedTokenOptions{Now: func() time.Time { return t0 }})
			c := emulatorClient(t, srv, Config{ClientID: tt.clientID, Credential: cred})
			tok, err := c.Token(context.Background(), testScope)
			if tt.aadsts == 0 {
				if err != nil {
					t.Fatalf("Token() error = %v", err)
				}
				if claims, err := emu.VerifyAccessToken(tok.AccessToken); err != nil || claims.AppID != tt.clientID {
					t.Errorf("token claims = %+v, %v, want appid %s", claims, err, tt.clientID)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || len(e.AADCodes) != 1 || e.AADCodes[0] != tt.aadsts {
				t.Fatalf("Token() error = %v, want AADSTS%d", err, tt.aadsts)
			}
			if tt.local {
				if !e.Transient || e.Op != "credential" || emu.TotalRequests() != 0 {
					t.Errorf("Token() error = %+v after %d requests, want a transient local refusal", e, emu.TotalRequests())
				}
				return
			}
			if e.Hint != aadHints[tt.aadsts] || e.Transient || !strings.Contains(e.Description, tt.subject) {
				t.Errorf("Token() error = %+v, want the hint for %d, permanent, naming the subject", e, tt.aadsts)
			}
		})
	}
}

// rotationLoad runs workers goroutines that fetch tokens in a loop while the
// test changes the credential. Each request is tagged with the phase in
// which it started; waitPhase(p) returns once every worker finished a
// request that started in phase p or later, so every request signed with
// what came before has been answered.
type rotationLoad struct {
	mu       sync.Mutex
	cond     *sync.Cond
	phase    int
	done     []int // per worker: the start phase of its last finished request
	failures []error
	ok       map[int]int // successes by start phase
	stop     bool
	wg       sync.WaitGroup
}

func startRotationLoad(t *testing.T, c *Client, workers int) *rotationLoad {
	t.Helper()
	l := &rotationLoad{done: make([]int, workers), ok: map[int]int{}}
	l.cond = sync.NewCond(&l.mu)
	for i := range l.done {
		l.done[i] = -1
	}
	for i := 0; i < workers; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				l.mu.Lock()
				phase, stop := l.phase, l.stop
				l.mu.Unlock()
				if stop {
					return
				}
				_, err := c.Token(context.Background(), testScope)
				l.mu.Lock()
				l.done[i] = phase
				if err != nil {
					l.failures = append(l.failures, fmt.Errorf("phase %d: %w", phase, err))
				} else {
					l.ok[phase]++
				}
				l.cond.Broadcast()
				l.mu.Unlock()
			}
		}()
	}
	t.Cleanup(l.finish)
	return l
}

// next starts a new phase and returns its number.
func (l *rotationLoad) next() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.phase++
	return l.phase
}

func (l *rotationLoad) waitPhase(p int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for slicesMin(l.done) < p && len(l.failures) == 0 {
		l.cond.Wait()
	}
}

func (l *rotationLoad) finish() {
	l.mu.Lock()
	l.stop = true
	l.mu.Unlock()
	l.wg.Wait()
}

func slicesMin(s []int) int {
	m := s[0]
	for _, v := range s[1:] {
		m = min(m, v)
	}
	return m
}

// runRotation drives the phases: 0 with the old credential; 1 after the new
// one was registered in the emulator and the file swapped; 2 after the old
// one was removed from the emulator, so a success proves the new one is in
// use. No request may fail in any phase.
func runRotation(t *testing.T, c *Client, swap, registerBoth, removeOld func()) {
	t.Helper()
	l := startRotationLoad(t, c, 4)
	l.waitPhase(0)
	registerBoth()
	swap()
	l.waitPhase(l.next())
	removeOld()
	l.waitPhase(l.next())
	l.finish()
	for _, err := range l.failures {
		t.Errorf("request failed during rotation: %v", err)
	}
	if l.ok[0] == 0 || l.ok[1] == 0 || l.ok[2] == 0 {
		t.Errorf("successes by phase = %v, want some in each of 0, 1, 2", l.ok)
	}
}

func TestEmulatorCertificateRotationUnderLoad(t *testing.T) {
	t.Parallel()
	keys := testRSAKeys()
	old := newCert(t, &keys[0].PublicKey, "reporting-2025", t0.AddDate(0, 1, 0), nil, keys[0])
	renewed := newCert(t, &keys[2].PublicKey, "reporting-2026", t0.AddDate(1, 0, 0), nil, keys[2])
	emu, srv := startCredentialEmulator(t, old)
	path := writeBytes(t, t.TempDir(), "tls.pem", append(pemCert(old), pemPKCS1(keys[0])...))
	cred, err := CertificateCredential(path, CertificateOptions{Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	c := emulatorClient(t, srv, Config{ClientID: certAppID, Credential: cred})
	must := func(err error) {
		if err != nil {
			t.Error(err)
		}
	}
	runRotation(t, c,
		func() { replaceAtomic(t, path, append(pemPKCS8(t, keys[2]), pemCert(renewed)...)) },
		func() { must(emu.SetCertificates(certAppID, old, renewed)) },
		func() { must(emu.SetCertificates(certAppID, renewed)) })
	if exp, _ := cred.(ExpiringCredential).CredentialExpiry(); !exp.Equal(renewed.NotAfter) {
		t.Errorf("CredentialExpiry() = %v, want the renewed certificate's %v", exp, renewed.NotAfter)
	}
}

func TestEmulatorFederatedTokenRotationUnderLoad(t *testing.T) {
	t.Parallel()
	const newSubject = "system:serviceaccount:reporting:reporting"
	emu, srv := startCredentialEmulator(t)
	path := writeBytes(t, t.TempDir(), "azure-identity-token", []byte(newFederatedToken(t, testFedSubject, t0.Add(time.Hour))))
	cred := FederatedTokenFileCredential(path, FederatedTokenOptions{Now: func() time.Time { return t0 }})
	c := emulatorClient(t, srv, Config{ClientID: fedAppID, Credential: cred})
	issuerKey := emulator.PEMPublicKeys{&testRSAKeys()[1].PublicKey}
	fic := func(sub string) emulator.FederatedCredential {
		return emulator.FederatedCredential{Issuer: testFedIssuer, Subject: sub, Keys: issuerKey}
	}
	must := func(err error) {
		if err != nil {
			t.Error(err)
		}
	}
	// The workload moves to another service account: a new subject.
	runRotation(t, c,
		func() { replaceAtomic(t, path, []byte(newFederatedToken(t, newSubject, t0.Add(2*time.Hour)))) },
		func() { must(emu.SetFederatedCredentials(fedAppID, fic(testFedSubject), fic(newSubject))) },
		func() { must(emu.SetFederatedCredentials(fedAppID, fic(newSubject))) })
}

// TestEmulatorAssertionNeverLogged proves that no assertion, private key,
// PKCS#12 password or federated token reaches a log line or an error, on
// success and on failure.
func TestEmulatorAssertionNeverLogged(t *testing.T) {
	t.Parallel()
	keys := testRSAKeys()
	leaf := newCert(t, &keys[0].PublicKey, "reporting", t0.AddDate(1, 0, 0), nil, keys[0])
	_, srv := startCredentialEmulator(t, leaf)
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	const password = "pfx-password-never-logged"
	dir := t.TempDir()
	pfx := writeBytes(t, dir, "cert.pfx", mustPKCS12(t, pkcs12.Modern2023, keys[0], leaf, nil, password))
	fedToken := newFederatedToken(t, "system:serviceaccount:default:unknown", t0.Add(time.Hour))
	fedPath := writeBytes(t, dir, "token", []byte(fedToken))
	expiredPath := writeBytes(t, dir, "expired-token", []byte(newFederatedToken(t, testFedSubject, t0.Add(-time.Hour))))
	now := func() time.Time { return t0 }

	certCred, err := CertificateCredential(pfx, CertificateOptions{Password: password, Now: now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	var recs []*recordingCredential
	var errs []error
	for _, tc := range []struct {
		clientID string
		cred     Credential
	}{
		{certAppID, certCred}, // success
		{bareAppID, certCred}, // 700027
		{fedAppID, FederatedTokenFileCredential(fedPath, FederatedTokenOptions{Now: now, Logger: log})},     // 700213
		{fedAppID, FederatedTokenFileCredential(expiredPath, FederatedTokenOptions{Now: now, Logger: log})}, // local, expired
	} {
		rec := &recordingCredential{Credential: tc.cred}
		recs = append(recs, rec)
		c := emulatorClient(t, srv, Config{ClientID: tc.clientID, Credential: rec, Logger: log})
		_, err := c.Token(context.Background(), testScope)
		errs = append(errs, err)
	}
	if _, err := CertificateCredential(pfx, CertificateOptions{Password: "wrong " + password}); err != nil {
		errs = append(errs, err)
	} else {
		t.Error("a wrong PKCS#12 password was accepted")
	}

	secrets := []string{password, fedToken, string(pemPKCS1(keys[0])), string(pemPKCS8(t, keys[0]))}
	for _, r := range recs {
		for _, a := range r.assertions() {
			secrets = append(secrets, a, strings.Split(a, ".")[2])
		}
	}
	if len(secrets) < 8 {
		t.Fatalf("only %d secrets recorded, want the assertions of every request", len(secrets))
	}
	var texts []string
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	for _, entry := range logs.All() {
		buf, err := enc.EncodeEntry(entry.Entry, entry.Context)
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, buf.String())
	}
	for i, err := range errs {
		if i == 0 {
			if err != nil {
				t.Errorf("certificate request error = %v, want success", err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("error %d = %v, want *Error", i, err)
		}
		texts = append(texts, err.Error(), e.Description, e.Hint, fmt.Sprintf("%+v %#v", e, e))
	}
	if len(logs.All()) == 0 {
		t.Fatal("no log lines, want the client's and the credentials'")
	}
	for _, text := range texts {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%q contains a secret (%.20s…)", text, s)
			}
		}
	}
}

// signTestJWT signs claims with PS256 under header.
func signTestJWT(t testing.TB, key any, header, claims map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodPS256, jwt.MapClaims(claims))
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
