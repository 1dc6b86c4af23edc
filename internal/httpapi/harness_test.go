package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/cache"
	"github.com/entrabroker/broker/internal/emulator"
)

// Scopes and resources of the demo registration used throughout the tests.
const (
	laResource  = "https://api.loganalytics.io"
	laScope     = laResource + "/.default"
	kvResource  = "https://vault.azure.net"
	kvScope     = kvResource + "/.default"
	armResource = "https://management.azure.com"
)

// wrongSecret is a client secret the emulator does not accept. It is
// distinctive so the leak checks can find it anywhere.
const wrongSecret = "wrong-secret-7f3a9c1e-never-valid"

// leaks collects, across the whole test binary run, every secret the tests
// used, every access token the broker was issued, every log entry (at debug
// level) and every error body the API answered. TestMain checks at the end
// that no secret or token reached a log entry or an error body.
var leaks = struct {
	mu      sync.Mutex
	secrets map[string]bool
	tokens  map[string]bool
	bodies  []string
	core    zapcore.Core
	logs    *observer.ObservedLogs
}{
	secrets: map[string]bool{emulator.DemoClientSecret: true, wrongSecret: true},
	tokens:  map[string]bool{},
}

// globalLogs returns the core every harness logger also writes to.
func globalLogs() zapcore.Core {
	leaks.mu.Lock()
	defer leaks.mu.Unlock()
	if leaks.core == nil {
		leaks.core, leaks.logs = observer.New(zapcore.DebugLevel)
	}
	return leaks.core
}

func noteSecret(s string) {
	if s == "" {
		return
	}
	leaks.mu.Lock()
	leaks.secrets[s] = true
	leaks.mu.Unlock()
}

func noteToken(s string) {
	leaks.mu.Lock()
	leaks.tokens[s] = true
	leaks.mu.Unlock()
}

func noteErrorBody(b string) {
	leaks.mu.Lock()
	leaks.bodies = append(leaks.bodies, b)
	leaks.mu.Unlock()
}

// leakFinding is one secret or token found where it must not be.
type leakFinding struct {
	what, where string
}

// findLeaks searches entries and bodies for every secret and token noted so
// far.
func findLeaks(entries []observer.LoggedEntry, bodies []string) []leakFinding {
	leaks.mu.Lock()
	needles := map[string]string{}
	for s := range leaks.secrets {
		needles[s] = "secret"
	}
	for s := range leaks.tokens {
		needles[s] = "access token"
	}
	leaks.mu.Unlock()
	var found []leakFinding
	check := func(hay, where string) {
		for n, what := range needles {
			if strings.Contains(hay, n) {
				found = append(found, leakFinding{what: what, where: where})
			}
		}
		// Any JWT-looking string is a token, issued or not.
		if strings.Contains(hay, "eyJ") {
			found = append(found, leakFinding{what: "JWT-like string", where: where})
		}
	}
	for _, e := range entries {
		enc := zapcore.NewJSONEncoder(zap.NewDevelopmentEncoderConfig())
		buf, err := enc.EncodeEntry(e.Entry, e.Context)
		if err != nil {
			found = append(found, leakFinding{what: "unencodable entry", where: e.Message})
			continue
		}
		check(buf.String(), fmt.Sprintf("log entry %q (%s)", e.Message, e.LoggerName))
		buf.Free()
	}
	for _, b := range bodies {
		check(b, "error body "+b)
	}
	return found
}

// TestMain runs the tests, then fails the run if any log entry or error body
// of the whole run, failures included, holds a secret or an access token.
func TestMain(m *testing.M) {
	globalLogs()
	code := m.Run()
	leaks.mu.Lock()
	entries := leaks.logs.All()
	bodies := slices.Clone(leaks.bodies)
	nTokens := len(leaks.tokens)
	leaks.mu.Unlock()
	if found := findLeaks(entries, bodies); len(found) > 0 {
		for _, f := range found {
			fmt.Fprintf(os.Stderr, "LEAK: %s in %s\n", f.what, f.where)
		}
		code = 1
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "leak check: %d log entries, %d error bodies, %d tokens issued: clean\n", len(entries), len(bodies), nTokens)
	}
	os.Exit(code)
}

// fakeClock is a cache.Clock driven by the test: time moves only in
// Advance, which runs the callbacks that fall due, in order, on the calling
// goroutine.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c    *fakeClock
	at   time.Time
	f    func()
	done bool
}

func newFakeClock(start time.Time) *fakeClock { return &fakeClock{now: start.Round(0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) cache.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	return true
}

// Advance moves the clock forward by d, running each timer due by then at
// its own instant.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	target := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var next *fakeTimer
		for _, t := range c.timers {
			if !t.done && !t.at.After(target) && (next == nil || t.at.Before(next.at)) {
				next = t
			}
		}
		if next == nil {
			c.now = target
			c.mu.Unlock()
			return
		}
		next.done = true
		if next.at.After(c.now) {
			c.now = next.at
		}
		c.mu.Unlock()
		next.f()
	}
}

// harnessOptions configure newHarness. The zero value is a broker for the
// demo app with no identity header, no allowed-scope list and no prefetch.
type harnessOptions struct {
	// ListenAddress is Options.ListenAddress.
	ListenAddress string
	// IdentityHeader is BROKER_IDENTITY_HEADER.
	IdentityHeader string
	// AllowedScopes is BROKER_ALLOWED_SCOPES, normalized.
	AllowedScopes []string
	// PrefetchScopes is BROKER_PREFETCH_SCOPES, normalized. Unless
	// SkipPrefetch is set, the harness prefetches them before returning.
	PrefetchScopes []string
	SkipPrefetch   bool
	// ClientSecret is the secret the broker's client sends; empty means the
	// demo app's.
	ClientSecret string
	// Clock drives the emulator, the Entra client, the cache and the
	// handlers; nil means the real clock.
	Clock *fakeClock
	// Logger receives every component's logs besides the harness's own
	// observer; nil means none.
	Logger *zap.Logger
	// Registry receives the metrics; nil means a new registry.
	Registry *prometheus.Registry
	// Plain serves the API router without the harness's recording wrapper,
	// and LogCore, when set, replaces the harness's debug-level observers
	// (for benchmarks, which log as production does).
	Plain   bool
	LogCore zapcore.Core
	// Setup runs on the emulator before the broker starts.
	Setup func(*emulator.Azure) error
	// Wrap, when set, wraps the API router (inside the recording wrapper).
	Wrap func(http.Handler) http.Handler
}

// harness is the real stack in-process: the emulated cloud, the Entra
// client, the token cache, and the API and ops routers, each on an httptest
// server.
type harness struct {
	t        testing.TB
	cloud    *emulator.Azure
	entra    *httptest.Server
	client   *azure.Client
	cache    *cache.Cache
	identity Identity
	api, ops *httptest.Server
	reg      *prometheus.Registry
	logs     *observer.ObservedLogs
	clock    *fakeClock
	http     *http.Client

	// hits counts API requests by path.
	hitsMu sync.Mutex
	hits   map[string]int
	// fetches counts upstream token fetches the cache made.
	fetches atomic.Int64
}

// recordingSource is the cache.Source of the harness: like cmd/broker's
// sources adapter, it hands each key's scope to the identity's client. It
// notes every token issued, for the leak checks.
type recordingSource struct {
	client  *azure.Client
	fetches *atomic.Int64
}

func (s recordingSource) Token(ctx context.Context, key cache.Key) (azure.Token, error) {
	s.fetches.Add(1)
	var caps []string
	if key.Capabilities != "" {
		caps = strings.Split(key.Capabilities, ",")
	}
	tok, err := s.client.TokenWith(ctx, key.Scope, azure.TokenOptions{Capabilities: caps})
	if err == nil {
		noteToken(tok.AccessToken)
	}
	return tok, err
}

func newHarness(t testing.TB, o harnessOptions) *harness {
	t.Helper()
	noteSecret(o.IdentityHeader)
	noteSecret(o.ClientSecret)
	core, logs := observer.New(zapcore.DebugLevel)
	cores := []zapcore.Core{core, globalLogs()}
	if o.Logger != nil {
		cores = append(cores, o.Logger.Core())
	}
	if o.LogCore != nil {
		cores = []zapcore.Core{o.LogCore}
	}
	log := zap.New(zapcore.NewTee(cores...))

	var now func() time.Time
	if o.Clock != nil {
		now = o.Clock.Now
	}
	cloud := emulator.NewAzure(emulator.Options{Logger: log, Now: now})
	if err := cloud.AddDemo(); err != nil {
		t.Fatalf("AddDemo() = %v", err)
	}
	if o.Setup != nil {
		if err := o.Setup(cloud); err != nil {
			t.Fatalf("setup: %v", err)
		}
	}
	entra := httptest.NewServer(cloud)
	t.Cleanup(entra.Close)

	secret := o.ClientSecret
	if secret == "" {
		secret = emulator.DemoClientSecret
	}
	client, err := azure.New(azure.Config{
		AuthorityHost: entra.URL,
		TenantID:      emulator.DemoTenantID,
		ClientID:      emulator.DemoClientID,
		Credential:    azure.SecretCredential(secret),
		HTTPClient:    entra.Client(),
		Now:           now,
		Logger:        log.Named("azure"),
	})
	if err != nil {
		t.Fatalf("azure.New() = %v", err)
	}
	id := Identity{
		Name:          "default",
		Authority:     client.Authority(),
		TenantID:      client.TenantID(),
		ClientID:      client.ClientID(),
		AllowedScopes: o.AllowedScopes,
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	h := &harness{t: t, cloud: cloud, entra: entra, client: client, identity: id, reg: reg, logs: logs, clock: o.Clock, hits: map[string]int{}}
	copts := cache.Options{Registerer: reg, Logger: log, Rand: func() float64 { return 0.5 }}
	if o.Clock != nil {
		copts.Clock = o.Clock
	}
	c, err := cache.New(recordingSource{client: client, fetches: &h.fetches}, copts)
	if err != nil {
		t.Fatalf("cache.New() = %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	h.cache = c

	api, ops, err := New(Options{
		Cache:          c,
		Identities:     []Identity{id},
		IdentityHeader: o.IdentityHeader,
		ListenAddress:  o.ListenAddress,
		PrefetchScopes: o.PrefetchScopes,
		Logger:         log.Named("http"),
		Registerer:     reg,
		Gatherer:       reg,
		Now:            now,
	})
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	if o.Wrap != nil {
		api = o.Wrap(api)
	}
	if !o.Plain {
		api = h.record(api)
	}
	h.api = httptest.NewServer(api)
	t.Cleanup(h.api.Close)
	h.ops = httptest.NewServer(ops)
	t.Cleanup(h.ops.Close)
	h.http = h.api.Client()
	t.Cleanup(h.http.CloseIdleConnections)

	if len(o.PrefetchScopes) > 0 && !o.SkipPrefetch {
		h.prefetch(o.PrefetchScopes...)
	}
	return h
}

// prefetch prefetches scopes and waits for the fetches. Called after the
// fake clock ran a refresh, it waits for that refresh to finish.
func (h *harness) prefetch(scopes ...string) {
	keys := make([]cache.Key, len(scopes))
	for i, s := range scopes {
		keys[i] = h.identity.Key(s)
	}
	h.cache.Prefetch(context.Background(), keys...)
}

// record counts requests by path and notes every error body for the leak
// checks.
func (h *harness) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.hitsMu.Lock()
		h.hits[r.URL.Path]++
		h.hitsMu.Unlock()
		rw := &recordingWriter{ResponseWriter: w}
		next.ServeHTTP(rw, r)
		if rw.status >= 400 {
			noteErrorBody(rw.body.String())
		}
	})
}

func (h *harness) hitCount(path string) int {
	h.hitsMu.Lock()
	defer h.hitsMu.Unlock()
	return h.hits[path]
}

type recordingWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *recordingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.status >= 400 {
		w.body.Write(b)
	}
	return w.ResponseWriter.Write(b)
}

// reply is an HTTP answer, read in full.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a map, keeping numbers as json.Number so that
// integers can be told from strings and floats.
func (r reply) json(t testing.TB) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(r.body))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

// request is one request to a listener.
type request struct {
	method string            // "" means GET
	target string            // path and query
	header map[string]string // headers to set
	host   string            // Host header; "" means the server's address
	body   string            // request body; "" means none
}

// do sends req to srv and reads the answer.
func do(t testing.TB, c *http.Client, srv *httptest.Server, req request) reply {
	t.Helper()
	method := req.method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if req.body != "" {
		body = strings.NewReader(req.body)
	}
	r, err := http.NewRequest(method, srv.URL+req.target, body)
	if err != nil {
		t.Fatalf("NewRequest(%s %s) = %v", method, req.target, err)
	}
	for k, v := range req.header {
		r.Header.Set(k, v)
	}
	if req.host != "" {
		r.Host = req.host
	}
	resp, err := c.Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", method, req.target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, req.target, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func (h *harness) do(req request) reply {
	h.t.Helper()
	return do(h.t, h.http, h.api, req)
}

func (h *harness) doOps(req request) reply {
	h.t.Helper()
	return do(h.t, h.http, h.ops, req)
}

// metadata is the Metadata: true header.
var metadata = map[string]string{"Metadata": "true"}

// hdr merges header maps.
func hdr(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// now is the harness's clock.
func (h *harness) now() time.Time {
	if h.clock != nil {
		return h.clock.Now()
	}
	return time.Now()
}
