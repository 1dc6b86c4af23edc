package emulator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"math/big"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
)

// testKeys are RSA keys shared by every test of the package: generating a
// 2048-bit key costs tens of milliseconds.
var testKeys = sync.OnceValue(func() [2]*rsa.PrivateKey {
	var keys [2]*rsa.PrivateKey
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		keys[i] = k
	}
	return keys
})

// newTestCert self-signs a certificate for key, valid from notBefore to
// notAfter. The dates make the 700027 bodies stable.
func newTestCert(t testing.TB, key *rsa.PrivateKey, cn string, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// signJWT signs claims with key under header (alg is set from method).
func signJWT(t testing.TB, method jwt.SigningMethod, key any, header, claims map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, jwt.MapClaims(claims))
	tok.Header = map[string]any{"alg": method.Alg()}
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sha256Std(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func thumbHex256(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// msalClaims are a certificate assertion's claims as msal-go sends them
// (reference §4.1), at the fixture's clock.
func msalClaims(aud string) map[string]any {
	return map[string]any{
		"aud": aud,
		"exp": testNow.Add(10 * time.Minute).Unix(),
		"iss": testClient,
		"jti": "0a3cbdee-2e99-464d-9265-0412a6613e91",
		"nbf": testNow.Unix(),
		"sub": testClient,
	}
}

// edit returns a copy of m with changes; a nil value deletes the key.
func edit(m map[string]any, changes map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	for k, v := range changes {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

const (
	k8sIssuer    = "https://oidc.prod-aks.azure.com/6f1c2a9e-1111-4000-8000-000000000001/"
	k8sSubject   = "system:serviceaccount:default:workload-identity-sa"
	ghIssuer     = "https://token.actions.githubusercontent.com"
	ghSubject    = "repo:Contoso/reporting:environment:Production"
	testEndpoint = "https://login.example.test/" + testTenant + "/oauth2/v2.0/token"
)

// assertionFixture is the fixture with credentials on testClient: a valid
// certificate, an expired one, a Kubernetes federated credential with the
// issuer's key, and a GitHub one without keys.
type assertionFixture struct {
	*fixture
	cert, expired *x509.Certificate
	key, otherKey *rsa.PrivateKey
}

func newAssertionFixture(t *testing.T) *assertionFixture {
	t.Helper()
	keys := testKeys()
	f := &assertionFixture{fixture: newFixture(t), key: keys[0], otherKey: keys[1]}
	f.cert = newTestCert(t, f.key, "reporting", testNow.AddDate(0, -1, 0), testNow.AddDate(1, 0, 0))
	f.expired = newTestCert(t, f.key, "reporting-2024", testNow.AddDate(-2, 0, 0), testNow.AddDate(0, 0, -1))
	registerCredentials(t, f.e, f.cert, f.expired, f.otherKey)
	return f
}

// registerCredentials puts the fixture's credentials on testClient.
func registerCredentials(t *testing.T, e *Emulator, cert, expired *x509.Certificate, issuerKey *rsa.PrivateKey) {
	t.Helper()
	if err := e.SetCertificates(testClient, cert, expired); err != nil {
		t.Fatal(err)
	}
	err := e.SetFederatedCredentials(testClient,
		FederatedCredential{Name: "aks", Issuer: k8sIssuer, Subject: k8sSubject, Keys: PEMPublicKeys{&issuerKey.PublicKey}},
		FederatedCredential{Name: "github", Issuer: ghIssuer, Subject: ghSubject, Audiences: []string{"api://AzureADTokenExchange", "api://contoso"}})
	if err != nil {
		t.Fatal(err)
	}
}

// k8sClaims are a projected service account token's claims.
func k8sClaims() map[string]any {
	return map[string]any{
		"aud":           []any{"api://AzureADTokenExchange"},
		"exp":           testNow.Add(time.Hour).Unix(),
		"iat":           testNow.Unix(),
		"iss":           k8sIssuer,
		"nbf":           testNow.Unix(),
		"sub":           k8sSubject,
		"kubernetes.io": map[string]any{"namespace": "default", "serviceaccount": map[string]any{"name": "workload-identity-sa"}},
	}
}

func TestAssertions(t *testing.T) {
	t.Parallel()
	f0 := newAssertionFixture(t) // its certificates and keys, shared by the cases
	cert, expired, key, otherKey := f0.cert, f0.expired, f0.key, f0.otherKey
	sha1Sum := sha1.Sum(cert.Raw)
	x5t := map[string]any{"typ": "JWT", "x5t#S256": sha256Std(cert)}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	claims := msalClaims(testEndpoint)
	tests := []struct {
		name      string // also the golden file's name for errors
		assertion string
		status    int
		code      string
		aadsts    int
	}{
		// Certificates.
		{name: "msal-go PS256, x5t#S256 in standard base64", status: 200,
			assertion: signJWT(t, jwt.SigningMethodPS256, key, x5t, claims)},
		{name: "x5t#S256 in base64url", status: 200,
			assertion: signJWT(t, jwt.SigningMethodPS256, key, map[string]any{"x5t#S256": base64.RawURLEncoding.EncodeToString(mustDecode(sha256Std(cert)))}, claims)},
		{name: "ADFS style RS256 with x5t (SHA-1)", status: 200,
			assertion: signJWT(t, jwt.SigningMethodRS256, key, map[string]any{"x5t": base64.RawURLEncoding.EncodeToString(sha1Sum[:])}, claims)},
		{name: "aud names the tenant domain", status: 200,
			assertion: signJWT(t, jwt.SigningMethodPS256, key, x5t, msalClaims("https://LOGIN.example.test/"+testDomain+"/oauth2/v2.0/token"))},
		{name: "aud is the v1 endpoint", status: 200,
			assertion: signJWT(t, jwt.SigningMethodPS256, key, x5t, msalClaims("https://login.example.test/"+testTenant+"/oauth2/token"))},
		{name: "aud as a list, with iat", status: 200,
			assertion: signJWT(t, jwt.SigningMethodPS256, key, x5t, edit(claims, map[string]any{"aud": []any{testEndpoint}, "iat": testNow.Unix()}))},
		{name: "x5c chain, leaf first", status: 200,
			assertion: signJWT(t, jwt.SigningMethodPS256, key, edit(x5t, map[string]any{"x5c": []any{base64.StdEncoding.EncodeToString(cert.Raw), base64.StdEncoding.EncodeToString(expired.Raw)}}), claims)},
		{name: "nbf within the skew", status: 200,
			assertion: signJWT(t, jwt.SigningMethodPS256, key, x5t, edit(claims, map[string]any{"nbf": testNow.Add(4 * time.Minute).Unix()}))},
		{name: "700027-bad-signature", status: 401, code: "invalid_client", aadsts: 700027,
			assertion: signJWT(t, jwt.SigningMethodPS256, otherKey, x5t, claims)},
		{name: "700027-hs256", status: 401, code: "invalid_client", aadsts: 700027,
			assertion: signJWT(t, jwt.SigningMethodHS256, []byte("shared"), x5t, claims)},
		{name: "700027-expired-certificate", status: 401, code: "invalid_client", aadsts: 700027,
			assertion: signJWT(t, jwt.SigningMethodPS256, key, map[string]any{"typ": "JWT", "x5t#S256": sha256Std(expired)}, claims)},
		{name: "700023-audience", status: 401, code: "invalid_client", aadsts: 700023,
			assertion: signJWT(t, jwt.SigningMethodPS256, key, x5t, msalClaims("https://login.microsoftonline.com/"+testTenant+"/oauth2/v2.0/token"))},
		{name: "700023-other-tenant", status: 401, code: "invalid_client", aadsts: 700023,
			assertion: signJWT(t, jwt.SigningMethodPS256, key, x5t, msalClaims("https://login.example.test/"+otherTenant+"/oauth2/v2.0/token"))},
		{name: "700021-issuer", status: 401, code: "invalid_client", aadsts: 700021,
			assertion: signJWT(t, jwt.SigningMethodPS256, key, x5t, edit(claims, map[string]any{"sub": otherClient}))},
		{name: "700024-expired-assertion", status: 401, code: "invalid_client", aadsts: 700024,
			assertion: signJWT(t, jwt.SigningMethodPS256, key, x5t, edit(claims, map[string]any{"nbf": testNow.Add(-time.Hour).Unix(), "exp": testNow.Add(-50 * time.Minute).Unix()}))},
		{name: "700024-no-nbf", status: 401, code: "invalid_client", aadsts: 700024,
			assertion: signJWT(t, jwt.SigningMethodPS256, key, x5t, edit(claims, map[string]any{"nbf": nil, "exp": testNow.Add(-6 * time.Minute).Unix()}))},
		{name: "700024-not-yet-valid", status: 401, code: "invalid_client", aadsts: 700024,
			assertion: signJWT(t, jwt.SigningMethodPS256, key, x5t, edit(claims, map[string]any{"nbf": testNow.Add(6 * time.Minute).Unix(), "exp": testNow.Add(16 * time.Minute).Unix()}))},
		{name: "50027-no-jti", status: 401, code: "invalid_client", aadsts: 50027,
			assertion: signJWT(t, jwt.SigningMethodPS256, key, x5t, edit(claims, map[string]any{"jti": nil}))},
		{name: "50027-no-exp", status: 401, code: "invalid_client", aadsts: 50027,
			assertion: signJWT(t, jwt.SigningMethodPS256, key, x5t, edit(claims, map[string]any{"exp": nil}))},
		{name: "50027-x5c-other-leaf", status: 401, code: "invalid_client", aadsts: 50027,
			assertion: signJWT(t, jwt.SigningMethodPS256, key, edit(x5t, map[string]any{"x5c": []any{base64.StdEncoding.EncodeToString(expired.Raw)}}), claims)},
		{name: "50027-self-signed-no-thumbprint", status: 401, code: "invalid_client", aadsts: 50027,
			assertion: signJWT(t, jwt.SigningMethodPS256, key, map[string]any{"typ": "JWT"}, claims)},

		// Federated tokens.
		{name: "Kubernetes token signed by the issuer's key", status: 200,
			assertion: signJWT(t, jwt.SigningMethodRS256, otherKey, map[string]any{"kid": "k8s-key-1"}, k8sClaims())},
		{name: "GitHub token, claims only, second audience", status: 200,
			assertion: fakeJWT(`{"alg":"RS256","kid":"gh"}`, `{"aud":"api://contoso","exp":`+unix(testNow.Add(5*time.Minute))+`,"iss":"`+ghIssuer+`","sub":"`+ghSubject+`"}`)},
		{name: "700211-federated-issuer", status: 401, code: "invalid_client", aadsts: 700211,
			assertion: signJWT(t, jwt.SigningMethodRS256, otherKey, map[string]any{"kid": "k8s-key-1"}, edit(k8sClaims(), map[string]any{"iss": "https://kubernetes.default.svc.cluster.local"}))},
		{name: "700213-federated-subject", status: 401, code: "invalid_client", aadsts: 700213,
			assertion: signJWT(t, jwt.SigningMethodRS256, otherKey, map[string]any{"kid": "k8s-key-1"}, edit(k8sClaims(), map[string]any{"sub": "system:serviceaccount:default:other-sa"}))},
		{name: "7002138-federated-subject-case", status: 401, code: "invalid_client", aadsts: 7002138,
			assertion: fakeJWT(`{"alg":"RS256"}`, `{"aud":"api://AzureADTokenExchange","exp":`+unix(testNow.Add(5*time.Minute))+`,"iss":"`+ghIssuer+`","sub":"`+strings.ToLower(ghSubject)+`"}`)},
		{name: "700212-federated-audience", status: 401, code: "invalid_client", aadsts: 700212,
			assertion: signJWT(t, jwt.SigningMethodRS256, otherKey, map[string]any{"kid": "k8s-key-1"}, edit(k8sClaims(), map[string]any{"aud": []any{"api://AKSIdentityBinding"}}))},
		{name: "50013-federated-signature", status: 401, code: "invalid_client", aadsts: 50013,
			assertion: signJWT(t, jwt.SigningMethodES256, ecKey, map[string]any{"kid": "k8s-key-1"}, k8sClaims())},
		{name: "700024-federated-expired", status: 401, code: "invalid_client", aadsts: 700024,
			assertion: signJWT(t, jwt.SigningMethodRS256, otherKey, map[string]any{"kid": "k8s-key-1"}, edit(k8sClaims(), map[string]any{"nbf": nil, "exp": testNow.Add(-10 * time.Minute).Unix()}))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			registerCredentials(t, f.e, cert, expired, otherKey)
			r := newTokenRequest(http.MethodPost, testTenant, assertionForm(tt.assertion))
			r.Header.Set("client-request-id", requestID)
			res, body := serve(t, f.e, r)
			if tt.status == 200 {
				if res.StatusCode != 200 {
					t.Fatalf("POST token with %s: status %d, want 200\n%s", tt.name, res.StatusCode, body)
				}
				return
			}
			checkEntraError(t, res, body, tt.status, tt.code, tt.aadsts, true)
			// Thumbprints depend on the keys generated for this run.
			got := strings.NewReplacer(thumbHex256(cert), "<THUMBPRINT>", thumbHex256(expired), "<EXPIRED-THUMBPRINT>").
				Replace(string(goldenExchange(res, body)))
			checkGolden(t, "errors/"+tt.name+".golden", []byte(got))
		})
	}
}

func mustDecode(s string) []byte {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func unix(t time.Time) string { return big.NewInt(t.Unix()).String() }

// TestAssertionClock drives the emulator's clock through a certificate
// assertion's life: valid for its ten minutes plus the skew, then 700024.
func TestAssertionClock(t *testing.T) {
	t.Parallel()
	f := newAssertionFixture(t)
	a := signJWT(t, jwt.SigningMethodPS256, f.key, map[string]any{"typ": "JWT", "x5t#S256": sha256Std(f.cert)}, msalClaims(testEndpoint))
	for _, tt := range []struct {
		advance time.Duration
		want    int
	}{
		{0, 200},
		{10*time.Minute + assertionSkew, 200},
		{time.Second, 401},
	} {
		f.clock.Advance(tt.advance)
		res, body := serve(t, f.e, newTokenRequest(http.MethodPost, testTenant, assertionForm(a)))
		if res.StatusCode != tt.want {
			t.Fatalf("at %s: status %d, want %d\n%s", f.clock.Now(), res.StatusCode, tt.want, body)
		}
		if tt.want == 401 && !strings.Contains(string(body), "AADSTS700024: Client assertion is not within its valid time range. Current time: 2026-01-02T03:19:06.0000000Z") {
			t.Errorf("body = %s, want 700024 naming the current time", body)
		}
	}
}

func TestSetCredentials(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: testNow, NotAfter: testNow.Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ecKey.PublicKey, ecKey)
	ecCert, _ := x509.ParseCertificate(der)
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"ec certificate", f.e.SetCertificates(testClient, ecCert), "set certificates: certificates[0]: its key is ECDSA; certificate credentials need RSA"},
		{"nil certificate", f.e.SetCertificates(testClient, nil), "set certificates: certificates[0]: is nil"},
		{"unknown app", f.e.SetCertificates(unknownClient), "set certificates: app " + unknownClient + ": not registered"},
		{"bad federated", f.e.SetFederatedCredentials(testClient, FederatedCredential{Issuer: "k8s", Keys: PEMPublicKeys{"x"}}),
			`set federated credentials: [0].issuer: "k8s" is not an absolute URL; [0].subject: is empty; [0].keys[0]: a string is not an RSA or ECDSA public key`},
		{"unknown app, federated", f.e.SetFederatedCredentials(unknownClient), "set federated credentials: app " + unknownClient + ": not registered"},
	}
	for _, tt := range tests {
		if tt.err == nil || tt.err.Error() != tt.want {
			t.Errorf("%s: error = %v, want %q", tt.name, tt.err, tt.want)
		}
	}
	if err := f.e.SetFederatedCredentials(unknownClient); !errors.Is(err, ErrNotRegistered) {
		t.Errorf("SetFederatedCredentials(unknown) = %v, want ErrNotRegistered", err)
	}
}

func TestLoadConfigCredentials(t *testing.T) {
	t.Parallel()
	c, err := LoadConfig(filepath.Join("testdata", "config", "credentials.yaml"))
	if err != nil {
		t.Fatalf("LoadConfig(credentials.yaml) = %v", err)
	}
	a := c.Apps[0]
	if len(a.Certificates) != 1 || a.Certificates[0].Subject.CommonName != "broker emulator test certificate" {
		t.Errorf("certificates = %v, want the one test certificate", a.Certificates)
	}
	type fic struct {
		Name, Issuer, Subject string
		Audiences             []string
		Keys                  int
	}
	var got []fic
	for _, f := range a.FederatedCredentials {
		got = append(got, fic{f.Name, f.Issuer, f.Subject, f.audiences(), len(f.Keys)})
	}
	want := []fic{
		{"aks", "https://oidc.prod-aks.azure.com/6f1c2a9e-1111-4000-8000-000000000001/", "system:serviceaccount:default:reporting", []string{"api://AzureADTokenExchange"}, 1},
		{"github", "https://token.actions.githubusercontent.com", "repo:contoso/reporting:environment:production", []string{"api://AzureADTokenExchange", "api://contoso"}, 0},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("federated credentials (-want +got):\n%s", diff)
	}
	e := New(Options{})
	if err := e.Register(c); err != nil {
		t.Errorf("Register = %v", err)
	}
}

// FuzzAssertion: any client_assertion, against an app with certificates and
// federated credentials, gets a token or an Entra error, never a panic.
func FuzzAssertion(f *testing.F) {
	keys := testKeys()
	cert := newTestCert(f, keys[0], "fuzz", testNow.AddDate(0, -1, 0), testNow.AddDate(1, 0, 0))
	fx := newFixture(f)
	if err := fx.e.SetCertificates(testClient, cert); err != nil {
		f.Fatal(err)
	}
	if err := fx.e.SetFederatedCredentials(testClient, FederatedCredential{Issuer: k8sIssuer, Subject: k8sSubject, Keys: PEMPublicKeys{&keys[1].PublicKey}}); err != nil {
		f.Fatal(err)
	}
	f.Add(signJWT(f, jwt.SigningMethodPS256, keys[0], map[string]any{"typ": "JWT", "x5t#S256": sha256Std(cert)}, msalClaims(testEndpoint)))
	f.Add(signJWT(f, jwt.SigningMethodRS256, keys[1], map[string]any{"kid": "k"}, k8sClaims()))
	f.Add(fakeJWT(`{"alg":"none","x5t":"AAAA"}`, `{"exp":1e400,"aud":[1,"x"]}`))
	f.Add("..")
	f.Fuzz(func(t *testing.T, a string) {
		res, body := serve(t, fx.e, newTokenRequest(http.MethodPost, testTenant, assertionForm(a)))
		switch res.StatusCode {
		case http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized:
		default:
			t.Fatalf("assertion %q: status %d\n%s", a, res.StatusCode, body)
		}
	})
}
