package redis

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/cache"
)

// keyLine returns a key file line with a fresh random key.
func keyLine(t testing.TB, id string) string {
	t.Helper()
	b := make([]byte, KeySize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return id + " " + base64.StdEncoding.EncodeToString(b) + "\n"
}

func mustKeys(t testing.TB, file string) *Keys {
	t.Helper()
	ks, err := ParseKeys([]byte(file))
	if err != nil {
		t.Fatalf("ParseKeys: %v", err)
	}
	return ks
}

var testKey = cache.Key{
	Authority: "https://login.example.test",
	Tenant:    "11111111-2222-3333-4444-555555555555",
	ClientID:  "66666666-7777-8888-9999-000000000000",
	Scope:     "https://api.loganalytics.io/.default",
}

func testToken(now time.Time) azure.Token {
	return azure.Token{
		AccessToken: "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.secret-token-value",
		IssuedAt:    now,
		ExpiresOn:   now.Add(time.Hour),
		RefreshOn:   now.Add(30 * time.Minute),
	}
}

func TestParseKeysErrors(t *testing.T) {
	t.Parallel()
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))
	tests := []struct {
		name, file, want string
	}{
		{"empty", "", `no key: add a line "<key ID> <base64 key>", e.g. made with openssl rand -base64 32`},
		{"comments only", "# nothing\n\n", `no key: add a line "<key ID> <base64 key>", e.g. made with openssl rand -base64 32`},
		{"one field", "k1\n", `line 1: want "<key ID> <base64 key>", got 1 fields`},
		{"bad id", "# c\nk/1 " + short + "\n", `line 2: key ID "k/1": use 1 to 32 letters, digits, '.', '_' or '-'`},
		{"short key", "k1 " + short + "\n", `line 1: key "k1" is not the base64 of 32 bytes: make one with openssl rand -base64 32`},
		{"not base64", "k1 !!!!\n", `line 1: key "k1" is not the base64 of 32 bytes: make one with openssl rand -base64 32`},
		{"duplicate", keyLine(t, "k1") + keyLine(t, "k1"), `line 2: key ID "k1" is used twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseKeys([]byte(tt.file))
			if err == nil || err.Error() != tt.want {
				t.Errorf("ParseKeys(%q) = %v, want %s", tt.file, err, tt.want)
			}
		})
	}
}

func TestParseKeysErrorNamesNoKey(t *testing.T) {
	t.Parallel()
	line := "k1 " + base64.StdEncoding.EncodeToString(make([]byte, 31)) + "\n"
	_, err := ParseKeys([]byte(line))
	if err == nil || strings.Contains(err.Error(), strings.Fields(line)[1]) {
		t.Errorf("ParseKeys error %v must not quote the key", err)
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	ks := mustKeys(t, "# fleet key\n"+keyLine(t, "2026-12"))
	now := time.UnixMilli(1_780_000_000_123)
	tok := testToken(now)
	tok.ExtExpiresOn = now.Add(2 * time.Hour)
	b, err := ks.seal(testKey, tok)
	if err != nil {
		t.Fatal(err)
	}
	got, id, err := ks.open(testKey, b)
	if err != nil || id != "2026-12" {
		t.Fatalf("open = %v, %q, want no error and key ID 2026-12", err, id)
	}
	if diff := cmp.Diff(tok, got); diff != "" {
		t.Errorf("open(seal(tok)) differs (-want +got):\n%s", diff)
	}
	if bytes.Contains(b, []byte(tok.AccessToken)) || bytes.Contains(b, []byte("secret-token")) {
		t.Error("the sealed entry holds the token in the clear")
	}
	b2, _ := ks.seal(testKey, tok)
	if bytes.Equal(b, b2) {
		t.Error("two seals of one token are equal: the nonce is not random")
	}
}

func TestOpenRefusesTampering(t *testing.T) {
	t.Parallel()
	ks := mustKeys(t, keyLine(t, "k1"))
	b, err := ks.seal(testKey, testToken(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		if _, _, err := ks.open(testKey, c); err == nil {
			t.Fatalf("open accepted the entry with byte %d flipped", i)
		}
	}
	for _, n := range []int{0, 1, 2, 5, len(b) - 1} {
		if _, _, err := ks.open(testKey, b[:n]); err == nil {
			t.Errorf("open accepted the entry cut to %d bytes", n)
		}
	}
	// The cache key is bound: the entry does not open under another key.
	other := testKey
	other.Scope = "https://management.azure.com/.default"
	if _, _, err := ks.open(other, b); err == nil {
		t.Error("open accepted an entry replayed under another cache key")
	}
}

func TestKeyRollover(t *testing.T) {
	t.Parallel()
	oldLine, newLine := keyLine(t, "old"), keyLine(t, "new")
	oldKS := mustKeys(t, oldLine)
	both := mustKeys(t, newLine+oldLine)
	newKS := mustKeys(t, newLine)
	tok := testToken(time.UnixMilli(1_780_000_000_000))

	fromOld, _ := oldKS.seal(testKey, tok)
	if _, id, err := both.open(testKey, fromOld); err != nil || id != "old" {
		t.Errorf("new+old keys: open(entry of old) = %q, %v; want it opened", id, err)
	}
	fromBoth, _ := both.seal(testKey, tok)
	if _, id, err := newKS.open(testKey, fromBoth); err != nil || id != "new" {
		t.Errorf("new key: open(entry written with new+old) = %q, %v; want it opened with new", id, err)
	}
	if _, id, err := oldKS.open(testKey, fromBoth); err == nil || id != "new" {
		t.Errorf("old key: open(entry of new) = %q, %v; want undecryptable, key ID new", id, err)
	}
	if got, want := both.names(testKey), append(newKS.names(testKey), oldKS.names(testKey)...); !cmp.Equal(got, want) {
		t.Errorf("names with new+old = %v, want the new name then the old one %v", got, want)
	}
}

func TestNamesRevealNothing(t *testing.T) {
	t.Parallel()
	ks := mustKeys(t, keyLine(t, "k1"))
	other := testKey
	other.Scope = "https://management.azure.com/.default"
	n1, n2 := ks.names(testKey)[0], ks.names(other)[0]
	if n1 == n2 {
		t.Fatalf("two cache keys share the name %s", n1)
	}
	for _, n := range []string{n1, ks.leaseName(testKey)} {
		for _, s := range []string{testKey.Tenant, testKey.ClientID, "loganalytics", "login.example"} {
			if strings.Contains(n, s) {
				t.Errorf("name %s holds %q", n, s)
			}
		}
	}
	if other := mustKeys(t, keyLine(t, "k1")); other.names(testKey)[0] == n1 {
		t.Error("two different keys give the same entry name")
	}
}

func FuzzOpen(f *testing.F) {
	ks, err := ParseKeys([]byte(keyLine(f, "k1")))
	if err != nil {
		f.Fatal(err)
	}
	b, _ := ks.seal(testKey, testToken(time.Now()))
	f.Add(b)
	f.Add([]byte{1, 2, 'k', '1'})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = ks.open(testKey, b)
	})
}

func FuzzParseKeys(f *testing.F) {
	f.Add([]byte(keyLine(f, "k1") + "# c\n" + keyLine(f, "k2")))
	f.Add([]byte("k1 =\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ks, err := ParseKeys(b)
		if err == nil && len(ks.IDs()) == 0 {
			t.Fatal("ParseKeys returned no key and no error")
		}
	})
}
