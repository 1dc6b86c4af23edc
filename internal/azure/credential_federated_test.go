package azure

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const (
	testFedIssuer  = "https://oidc.prod-aks.azure.com/72f988bf-86f1-41af-91ab-2d7cd011db47/"
	testFedSubject = "system:serviceaccount:default:reporting"
)

// newFederatedToken signs a projected-service-account-like token with the
// second shared test key, issued at t0 (or an hour before exp, if earlier).
func newFederatedToken(t testing.TB, sub string, exp time.Time) string {
	t.Helper()
	iat := t0
	if exp.Add(-time.Hour).Before(t0) {
		iat = exp.Add(-time.Hour)
	}
	return newFederatedTokenAt(t, sub, iat, exp)
}

// newFederatedTokenAt is newFederatedToken issued at iat.
func newFederatedTokenAt(t testing.TB, sub string, iat, exp time.Time) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"aud": []string{"api://AzureADTokenExchange"},
		"exp": exp.Unix(),
		"iat": iat.Unix(),
		"iss": testFedIssuer,
		"nbf": iat.Unix(),
		"sub": sub,
	})
	tok.Header["kid"] = "test-issuer-key"
	s, err := tok.SignedString(testRSAKeys()[1])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFederatedTokenFileCredential(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "azure-identity-token")
	clock := &fakeClock{t: t0}
	core, logs := observer.New(zapcore.InfoLevel)
	cred := FederatedTokenFileCredential(path, FederatedTokenOptions{Now: clock.Now, Logger: zap.New(core)})

	// No file yet: permanent, names the setting.
	_, err := applyAssertion(t, cred)
	checkCredentialError(t, err, "")
	if !strings.Contains(err.(*Error).Hint, "AZURE_FEDERATED_TOKEN_FILE") {
		t.Errorf("hint = %q, want it to name AZURE_FEDERATED_TOKEN_FILE", err.(*Error).Hint)
	}

	first := newFederatedToken(t, testFedSubject, t0.Add(time.Hour))
	writeFile(t, path, "\n  "+first+"\n")
	form, err := applyAssertion(t, cred)
	if err != nil {
		t.Fatalf("Apply error = %v", err)
	}
	if form.Get("client_assertion") != first || form.Get("client_assertion_type") != clientAssertionType {
		t.Fatalf("Apply sent %q (%q), want the file's token trimmed, jwt-bearer", form.Get("client_assertion"), form.Get("client_assertion_type"))
	}

	// Rotated by a rename (the kubelet swaps a symlink): seen at once.
	second := newFederatedToken(t, testFedSubject, t0.Add(90*time.Minute))
	writeFileAtomic(t, path, second)
	if form, _ := applyAssertion(t, cred); form.Get("client_assertion") != second {
		t.Fatalf("Apply after rotation sent the old token, want the new one")
	}

	// Rewritten in place with the same size and mtime, so stat sees nothing:
	// read again anyway once the cached token is a minute from expiring
	// (and once the one-minute recheck passed).
	third := newFederatedToken(t, testFedSubject, t0.Add(2*time.Hour))
	fi, _ := os.Stat(path)
	if len(third) != len(second) {
		t.Fatalf("test tokens differ in length: %d, %d", len(third), len(second))
	}
	writeFile(t, path, third)
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * time.Second)
	if form, _ := applyAssertion(t, cred); form.Get("client_assertion") != second {
		t.Fatalf("Apply 30 s later re-read an unchanged-looking file, want the cached token")
	}
	clock.t = t0.Add(90*time.Minute - federatedTokenReadAhead)
	if form, _ := applyAssertion(t, cred); form.Get("client_assertion") != third {
		t.Fatalf("Apply a minute before the cached token expires did not re-read the file")
	}

	// An expired token in the file: transient, explained by its claims.
	writeFileAtomic(t, path, newFederatedToken(t, testFedSubject, t0.Add(-time.Minute)))
	clock.t = t0.Add(3 * time.Hour)
	_, err = applyAssertion(t, cred)
	var e *Error
	if !errors.As(err, &e) || !e.Transient || len(e.AADCodes) != 1 || e.AADCodes[0] != 700024 {
		t.Fatalf("Apply with an expired token = %#v, want a transient *Error with 700024", err)
	}
	if !strings.Contains(e.Description, testFedSubject) || !strings.Contains(e.Description, "expired at 2025-06-01T11:59:00Z") {
		t.Errorf("description = %q, want the subject and the expiry", e.Description)
	}

	// Not a JWT, or empty: permanent.
	writeFileAtomic(t, path, "not-a-jwt")
	_, err = applyAssertion(t, cred)
	checkCredentialError(t, err, "not-a-jwt")
	writeFileAtomic(t, path, " \n")
	_, err = applyAssertion(t, cred)
	checkCredentialError(t, err, "")

	// One info line per token read, with its claims and never the token.
	var reads int
	for _, entry := range logs.All() {
		if entry.Message != "federated token read" {
			continue
		}
		reads++
		m := entry.ContextMap()
		if m["iss"] != testFedIssuer || m["sub"] != testFedSubject || m["aud"] != "api://AzureADTokenExchange" {
			t.Errorf("log fields = %v, want iss, sub and aud", m)
		}
	}
	if reads != 4 {
		t.Errorf("%d 'federated token read' lines, want 4 (one per new token)", reads)
	}
	for _, tok := range []string{first, second, third} {
		for _, entry := range logs.All() {
			for _, f := range entry.Context {
				if strings.Contains(f.String, tok) || strings.Contains(f.String, strings.Split(tok, ".")[2]) {
					t.Errorf("log line %q field %s contains the token", entry.Message, f.Key)
				}
			}
		}
	}
}
