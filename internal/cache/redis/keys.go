package redis

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/cache"
)

// KeySize is the length of one key of the key file: AES-256.
const KeySize = 32

// keyIDRE is what a key ID may look like: short, printable, no spaces. It
// is stored in the clear in every entry, so it must name no secret.
var keyIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,32}$`)

// Keys are the keys of a key file: the first encrypts and names entries,
// every one decrypts and is looked up. Keys is immutable and safe for
// concurrent use.
type Keys struct {
	keys []*key
}

// key is one key of the key file with the two keys derived from it.
type key struct {
	id   string
	aead cipher.AEAD
	// name is the HMAC key that turns a cache key into a Redis key name.
	name []byte
}

// ParseKeys parses a key file: one key per line, "<key ID> <key>", where
// the key ID is 1 to 32 of [A-Za-z0-9._-] and the key is the standard
// base64 of 32 random bytes (openssl rand -base64 32). Blank lines and
// lines starting with # are ignored. The first key encrypts every new
// entry; every key decrypts, so a new key is rolled in by adding it on top
// and the old one removed once no entry it wrote is still served. Errors
// name the line, never a key.
func ParseKeys(b []byte) (*Keys, error) {
	ks := &Keys{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want \"<key ID> <base64 key>\", got %d fields", n, len(f))
		}
		if !keyIDRE.MatchString(f[0]) {
			return nil, fmt.Errorf("line %d: key ID %q: use 1 to 32 letters, digits, '.', '_' or '-'", n, f[0])
		}
		if seen[f[0]] {
			return nil, fmt.Errorf("line %d: key ID %q is used twice", n, f[0])
		}
		seen[f[0]] = true
		raw, err := base64.StdEncoding.DecodeString(f[1])
		if err != nil || len(raw) != KeySize {
			return nil, fmt.Errorf("line %d: key %q is not the base64 of %d bytes: make one with openssl rand -base64 %d", n, f[0], KeySize, KeySize)
		}
		k, err := newKey(f[0], raw)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		ks.keys = append(ks.keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("no key: add a line \"<key ID> <base64 key>\", e.g. made with openssl rand -base64 32")
	}
	return ks, nil
}

// LoadKeys reads and parses the key file at path (see ParseKeys).
func LoadKeys(path string) (*Keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ks, err := ParseKeys(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ks, nil
}

// newKey derives the encryption key and the name key from raw with HKDF,
// so that neither is used for two jobs.
func newKey(id string, raw []byte) (*key, error) {
	enc, err := hkdf.Key(sha256.New, raw, nil, "broker redis entry v1", KeySize)
	if err != nil {
		return nil, err
	}
	name, err := hkdf.Key(sha256.New, raw, nil, "broker redis name v1", KeySize)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(enc)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &key{id: id, aead: aead, name: name}, nil
}

// IDs returns the key IDs, the encrypting one first.
func (ks *Keys) IDs() []string {
	ids := make([]string, len(ks.keys))
	for i, k := range ks.keys {
		ids[i] = k.id
	}
	return ids
}

// canonical is the cache key as bytes: the additional data of its entry
// and the message of its name. JSON keeps the four fields apart whatever
// they hold.
func canonical(k cache.Key) []byte {
	b, _ := json.Marshal([4]string{k.Authority, k.Tenant, k.ClientID, k.Scope})
	return b
}

// names returns the Redis key names of k's entry under each key, the
// encrypting key's first: "broker:token:" and the base64url of
// HMAC-SHA256(name key, cache key). A name reveals nothing of the key it
// stands for.
func (ks *Keys) names(k cache.Key) []string {
	c := canonical(k)
	out := make([]string, len(ks.keys))
	for i, key := range ks.keys {
		out[i] = entryPrefix + key.nameOf(c)
	}
	return out
}

// leaseName is the Redis key of the lease for k's refresh.
func (ks *Keys) leaseName(k cache.Key) string {
	return leasePrefix + ks.keys[0].nameOf(canonical(k))
}

func (k *key) nameOf(c []byte) string {
	m := hmac.New(sha256.New, k.name)
	m.Write(c)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

const (
	entryPrefix = "broker:token:"
	leasePrefix = "broker:lease:"
	// version is the first byte of every entry.
	version byte = 1
)

// plain is what an entry encrypts: the token and its times (Unix
// milliseconds), so that every broker computes the same margin.
type plain struct {
	AccessToken string `json:"t"`
	IssuedAt    int64  `json:"i"`
	ExpiresOn   int64  `json:"e"`
	RefreshOn   int64  `json:"r,omitempty"`
	ExtExpires  int64  `json:"x,omitempty"`
}

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// seal encrypts tok for cache key k with the first key. The entry is
// version (1 byte), the key ID's length (1 byte), the key ID, the nonce
// (12 bytes) and the AES-256-GCM ciphertext; the additional data is
// everything before the nonce followed by the cache key, so an entry
// cannot be moved to another key or relabelled.
func (ks *Keys) seal(k cache.Key, tok azure.Token) ([]byte, error) {
	kk := ks.keys[0]
	pt, err := json.Marshal(plain{
		AccessToken: tok.AccessToken,
		IssuedAt:    unixMilli(tok.IssuedAt),
		ExpiresOn:   unixMilli(tok.ExpiresOn),
		RefreshOn:   unixMilli(tok.RefreshOn),
		ExtExpires:  unixMilli(tok.ExtExpiresOn),
	})
	if err != nil {
		return nil, err
	}
	head := append([]byte{version, byte(len(kk.id))}, kk.id...)
	nonce := make([]byte, kk.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := append(head, nonce...)
	return kk.aead.Seal(out, nonce, pt, ad(head, k)), nil
}

func ad(head []byte, k cache.Key) []byte {
	return append(append([]byte(nil), head...), canonical(k)...)
}

// errMalformed and errUndecryptable say why an entry was not opened.
var (
	errMalformed     = errors.New("malformed entry")
	errUndecryptable = errors.New("entry does not decrypt")
)

// open decrypts an entry of cache key k. It returns the key ID the entry
// names (when it has one) beside any error, for the log.
func (ks *Keys) open(k cache.Key, b []byte) (azure.Token, string, error) {
	if len(b) < 2 || b[0] != version || len(b) < 2+int(b[1]) {
		return azure.Token{}, "", errMalformed
	}
	id := string(b[2 : 2+int(b[1])])
	head, rest := b[:2+int(b[1])], b[2+int(b[1]):]
	for _, kk := range ks.keys {
		if kk.id != id {
			continue
		}
		ns := kk.aead.NonceSize()
		if len(rest) < ns {
			return azure.Token{}, id, errMalformed
		}
		pt, err := kk.aead.Open(nil, rest[:ns], rest[ns:], ad(head, k))
		if err != nil {
			return azure.Token{}, id, errUndecryptable
		}
		var p plain
		if err := json.Unmarshal(pt, &p); err != nil {
			return azure.Token{}, id, errMalformed
		}
		return azure.Token{
			AccessToken:  p.AccessToken,
			IssuedAt:     fromMilli(p.IssuedAt),
			ExpiresOn:    fromMilli(p.ExpiresOn),
			RefreshOn:    fromMilli(p.RefreshOn),
			ExtExpiresOn: fromMilli(p.ExtExpires),
		}, id, nil
	}
	return azure.Token{}, id, errUndecryptable
}
