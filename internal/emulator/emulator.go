package emulator

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// DefaultTokenLifetime is the lifetime of an access token when neither
// Options nor the app set one: 3599 s, the expires_in real Entra answers for
// a non-CAE client-credentials token.
const DefaultTokenLifetime = 3599 * time.Second

// maxFormBytes caps a token request body. Real requests are a few hundred
// bytes; a client assertion with a certificate chain stays well below this.
const maxFormBytes = 64 << 10

// Options configures an Emulator. The zero Options is valid.
type Options struct {
	// Now is the clock for token times, secret expiry, error timestamps and
	// token verification. Nil means time.Now.
	Now func() time.Time
	// TokenLifetime is the lifetime of the access tokens the emulator issues
	// (expires_in). Zero means DefaultTokenLifetime. An app's own
	// TokenLifetime overrides it. Above 2 h the answer carries refresh_in,
	// half the lifetime, as Entra does for long-lived tokens.
	TokenLifetime time.Duration
	// Logger receives one debug line per request (never a secret or a
	// token). Nil means no logging.
	Logger *zap.Logger
	// NewID returns the GUIDs the emulator makes up (trace IDs, correlation
	// IDs when the client sends no client-request-id). Nil means random
	// version-4 GUIDs. Tests set it to get stable golden bodies.
	NewID func() string
	// SigningKey signs the access tokens. Nil means one 2048-bit RSA key
	// generated once per process, on first use, and shared by every Emulator
	// that has no key of its own (tokens from one such emulator still fail
	// verification at another: see VerifyAccessToken).
	SigningKey *rsa.PrivateKey
}

// Emulator is the Entra ID v2 emulator: an http.Handler plus the registration,
// fault-injection and counter API that tests drive. Create it with New; the
// zero Emulator is not usable. All methods are safe for concurrent use.
type Emulator struct {
	now      func() time.Time
	lifetime time.Duration
	log      *zap.Logger
	newID    func() string
	key      *signingKey
	mux      *http.ServeMux
	// instance is a random tag carried in every token's uti, so that a token
	// issued by another Emulator sharing the process-wide key is refused.
	instance [8]byte

	regMu     sync.RWMutex
	tenants   map[string]*Tenant   // by lower-case ID
	domains   map[string]*Tenant   // by lower-case domain
	apps      map[string]*App      // by lower-case client ID
	resources map[string]*Resource // by lower-case URI

	stateMu sync.Mutex
	faults  map[string][]*Fault // by lower-case client ID, FIFO
	counts  map[counterKey]int
	total   int
	seq     uint64            // last token sequence number issued
	revoked map[string]uint64 // lower-case client ID → tokens with seq ≤ this are revoked

	demoMu sync.Mutex // held through AddDemo
	demo   bool       // AddDemo succeeded
}

type counterKey struct{ clientID, scope string }

// New returns an Emulator with no registrations (see AddDemo, Register and
// the Add methods). It panics only if the process-wide signing key cannot be
// generated, which means the system's random source is broken.
func New(opts Options) *Emulator {
	e := &Emulator{
		now:       opts.Now,
		lifetime:  opts.TokenLifetime,
		log:       opts.Logger,
		newID:     opts.NewID,
		tenants:   make(map[string]*Tenant),
		domains:   make(map[string]*Tenant),
		apps:      make(map[string]*App),
		resources: make(map[string]*Resource),
		faults:    make(map[string][]*Fault),
		counts:    make(map[counterKey]int),
		revoked:   make(map[string]uint64),
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.lifetime <= 0 {
		e.lifetime = DefaultTokenLifetime
	}
	if e.log == nil {
		e.log = zap.NewNop()
	}
	e.log = e.log.Named("emulator.entra")
	if e.newID == nil {
		e.newID = randomGUID
	}
	var err error
	if opts.SigningKey != nil {
		e.key, err = newSigningKey(opts.SigningKey)
	} else {
		e.key, err = sharedKey()
	}
	if err != nil {
		panic(fmt.Sprintf("emulator: signing key: %v", err))
	}
	if _, err := rand.Read(e.instance[:]); err != nil {
		panic(fmt.Sprintf("emulator: random: %v", err))
	}
	e.mux = e.routes()
	return e
}

// ServeHTTP serves the Entra ID v2 endpoints.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mux.ServeHTTP(w, r)
}

// routes lists every endpoint in one place.
func (e *Emulator) routes() *http.ServeMux {
	mux := http.NewServeMux()
	// Any method: a GET answers AADSTS900561, as Entra does.
	mux.HandleFunc("/{tenant}/oauth2/v2.0/token", e.handleToken)
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", e.handleOpenIDConfiguration)
	mux.HandleFunc("GET /common/discovery/instance", e.handleInstanceDiscovery)
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", e.handleKeys)
	return mux
}

// randomGUID returns a random version-4 GUID in lower case.
func randomGUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("emulator: random: %v", err))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatGUID(b)
}

func formatGUID(b [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// baseURL is the scheme and host the client used to reach the emulator, so
// that discovery documents name the emulator itself (msal-go checks that the
// issuer's host is the authority's).
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
