package azure

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeClock is a settable clock for tests.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

// applySecret runs cred.Apply and returns the client_secret it set.
func applySecret(t *testing.T, cred Credential) (string, error) {
	t.Helper()
	r := &TokenRequest{TokenURL: "https://login.example/t/oauth2/v2.0/token", ClientID: testClientID, Form: url.Values{}}
	err := cred.Apply(context.Background(), r)
	return r.Form.Get("client_secret"), err
}

func TestSecretCredential(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"s3cr3t~Value", "s3cr3t~Value\n", "s3cr3t~Value\r\n", "s3cr3t~Value\n\n"} {
		got, err := applySecret(t, SecretCredential(in))
		if err != nil || got != "s3cr3t~Value" {
			t.Errorf("SecretCredential(%q) sends %q, %v, want %q", in, got, err, "s3cr3t~Value")
		}
	}
	// Leading and inner spaces are part of a secret; only line ends go.
	if got, _ := applySecret(t, SecretCredential(" a b ")); got != " a b " {
		t.Errorf("SecretCredential(%q) sends %q, want it unchanged", " a b ", got)
	}
	_, err := applySecret(t, SecretCredential("\n"))
	checkCredentialError(t, err, "")

	cred := SecretCredential("s3cr3t~Value")
	for _, s := range []string{fmt.Sprint(cred), fmt.Sprintf("%+v", cred), fmt.Sprintf("%#v", cred)} {
		if strings.Contains(s, "s3cr3t") {
			t.Errorf("formatting SecretCredential = %q, contains the secret", s)
		}
	}
}

// checkCredentialError checks a local credential failure: permanent, with a
// hint, and with no AADSTS code (Entra never saw the request).
func checkCredentialError(t *testing.T, err error, secret string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Apply error = %v, want *Error", err)
	}
	if e.Transient || e.Hint == "" || len(e.AADCodes) != 0 || e.Op != "credential" {
		t.Errorf("Apply error = %+v, want permanent credential *Error with a hint and no AADSTS code", e)
	}
	if secret != "" && (strings.Contains(e.Error(), secret) || strings.Contains(e.Hint, secret)) {
		t.Errorf("Apply error = %q (hint %q), contains the secret", e.Error(), e.Hint)
	}
}

func TestSecretFileCredentialRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "client-secret")
	clock := &fakeClock{t: t0}
	cred := SecretFileCredential(path, clock.Now)

	_, err := applySecret(t, cred)
	checkCredentialError(t, err, "")
	if !strings.Contains(err.Error(), path) {
		t.Errorf("Apply error = %q, want it to name %s", err, path)
	}
	// A missing file is said so plainly, not as an Entra code.
	if got, want := err.(*Error).Description, fmt.Sprintf("client secret file %q does not exist", path); got != want {
		t.Errorf("Apply error description = %q, want %q", got, want)
	}

	writeFile(t, path, "first-secret-value\n")
	if got, err := applySecret(t, cred); err != nil || got != "first-secret-value" {
		t.Fatalf("Apply = %q, %v, want %q", got, err, "first-secret-value")
	}

	// An atomic replace (new inode) is seen on the next request.
	writeFileAtomic(t, path, "second-secret-value\r\n")
	if got, err := applySecret(t, cred); err != nil || got != "second-secret-value" {
		t.Fatalf("Apply after rotation = %q, %v, want %q", got, err, "second-secret-value")
	}

	// An in-place rewrite of the same size with the mtime kept (a coarse
	// file system) is invisible to stat, and is picked up once the recheck
	// interval passed on the injected clock.
	fi, _ := os.Stat(path)
	writeFile(t, path, "third--secret-value\r\n")
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if got, _ := applySecret(t, cred); got != "second-secret-value" {
		t.Fatalf("Apply before recheck = %q, want the cached %q", got, "second-secret-value")
	}
	clock.Advance(fileRecheck)
	if got, err := applySecret(t, cred); err != nil || got != "third--secret-value" {
		t.Fatalf("Apply after recheck = %q, %v, want %q", got, err, "third--secret-value")
	}

	// An empty file is a clear, permanent error.
	writeFileAtomic(t, path, "\n")
	_, err = applySecret(t, cred)
	checkCredentialError(t, err, "third--secret-value")
	if !strings.Contains(err.Error(), "empty") {
		t.Errorf("Apply error = %q, want it to say the file is empty", err)
	}

	// A directory is refused.
	_, err = applySecret(t, SecretFileCredential(dir, nil))
	checkCredentialError(t, err, "")

	if s := fmt.Sprintf("%v %#v", cred, cred); strings.Contains(s, "secret-value") {
		t.Errorf("formatting SecretFileCredential = %q, contains the secret", s)
	}
}

// TestSecretFileCredentialKubernetes rotates a secret the way the kubelet
// updates a secret volume: key -> ..data/key, ..data -> ..<timestamp>, and an
// update swaps the ..data symlink to a new directory.
func TestSecretFileCredentialKubernetes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mkVersion := func(name, secret string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name, "client-secret"), secret)
	}
	swapData := func(target string) {
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(target, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	mkVersion("..2025_06_01_12_00_00.1", "aaaaaaaa")
	swapData("..2025_06_01_12_00_00.1")
	if err := os.Symlink("..data/client-secret", filepath.Join(dir, "client-secret")); err != nil {
		t.Fatal(err)
	}
	cred := SecretFileCredential(filepath.Join(dir, "client-secret"), (&fakeClock{t: t0}).Now)
	if got, err := applySecret(t, cred); err != nil || got != "aaaaaaaa" {
		t.Fatalf("Apply = %q, %v, want %q", got, err, "aaaaaaaa")
	}
	// Same size, and the same mtime: only the resolved file's identity changes.
	mkVersion("..2025_06_01_12_05_00.2", "bbbbbbbb")
	fi, _ := os.Stat(filepath.Join(dir, "..2025_06_01_12_00_00.1", "client-secret"))
	os.Chtimes(filepath.Join(dir, "..2025_06_01_12_05_00.2", "client-secret"), fi.ModTime(), fi.ModTime())
	swapData("..2025_06_01_12_05_00.2")
	if got, err := applySecret(t, cred); err != nil || got != "bbbbbbbb" {
		t.Fatalf("Apply after the ..data swap = %q, %v, want %q", got, err, "bbbbbbbb")
	}
}

func TestSecretFileCredentialUnreadable(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		t.Skip("root reads any file")
	}
	path := filepath.Join(t.TempDir(), "client-secret")
	writeFile(t, path, "hidden-secret-value")
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	_, err := applySecret(t, SecretFileCredential(path, nil))
	checkCredentialError(t, err, "hidden-secret-value")
	if !errors.Is(err, os.ErrPermission) {
		t.Errorf("Apply error = %v, want it to wrap os.ErrPermission", err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeFileAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestWithExpiry(t *testing.T) {
	t.Parallel()
	end := t0.AddDate(0, 6, 0)
	cred := WithExpiry(SecretCredential("s3cr3t~Value"), end)
	if got, ok := cred.CredentialExpiry(); !ok || !got.Equal(end) {
		t.Errorf("CredentialExpiry() = %v, %v, want %v, true", got, ok, end)
	}
	if got, err := applySecret(t, cred); err != nil || got != "s3cr3t~Value" {
		t.Errorf("Apply sends %q, %v, want the wrapped secret", got, err)
	}
	if s := fmt.Sprintf("%v %+v %#v", cred, cred, cred); strings.Contains(s, "s3cr3t") {
		t.Errorf("formatting WithExpiry(secret) = %q, contains the secret", s)
	}
	if _, ok := WithExpiry(SecretCredential("x"), time.Time{}).CredentialExpiry(); ok {
		t.Error("CredentialExpiry() of a zero time = true, want false")
	}
}
