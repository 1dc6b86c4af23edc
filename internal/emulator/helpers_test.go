package emulator

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.golden files")

// Registrations of the test fixture.
const (
	testTenant      = "6f1c2a9e-1111-4000-8000-000000000001"
	testDomain      = "contoso.onmicrosoft.com"
	otherTenant     = "6f1c2a9e-1111-4000-8000-0000000000ff"
	testClient      = "6f1c2a9e-2222-4000-8000-000000000002"
	testObjectID    = "6f1c2a9e-3333-4000-8000-000000000003"
	testSecret      = "correct-horse-battery-staple"
	oldSecret       = "old-secret-that-expired"
	disabledClient  = "6f1c2a9e-2222-4000-8000-000000000004"
	otherClient     = "6f1c2a9e-2222-4000-8000-000000000005" // lives in otherTenant
	longLivedClient = "6f1c2a9e-2222-4000-8000-000000000006"
	unknownClient   = "6f1c2a9e-2222-4000-8000-0000000000ee"
	laScope         = "https://api.loganalytics.io/.default"
	requestID       = "a3915172-6053-4721-be3d-f0666f993ab8"
)

// testNow is the fixture's starting time.
var testNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// sequentialIDs returns GUIDs 00000000-0000-4000-8000-000000000001, …2, ….
func sequentialIDs() func() string {
	var n atomic.Int64
	return func() string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n.Add(1)) }
}

type fixture struct {
	e     *Emulator
	clock *fakeClock
}

// newFixture returns an emulator on a fake clock with stable IDs and the
// test registrations, and opts applied on top.
func newFixture(t testing.TB, opts ...func(*Options)) *fixture {
	t.Helper()
	clock := &fakeClock{t: testNow}
	o := Options{Now: clock.Now, NewID: sequentialIDs()}
	for _, f := range opts {
		f(&o)
	}
	e := New(o)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(e.AddTenant(Tenant{ID: testTenant, Name: "Contoso", Domains: []string{testDomain}}))
	must(e.AddTenant(Tenant{ID: otherTenant}))
	must(e.AddApp(App{TenantID: testTenant, ClientID: testClient, ObjectID: testObjectID, DisplayName: "reporting",
		Secrets: []Secret{{Value: oldSecret, ExpiresOn: testNow.Add(-time.Hour)}, {Value: testSecret, ExpiresOn: testNow.Add(48 * time.Hour)}}}))
	must(e.AddApp(App{TenantID: testTenant, ClientID: disabledClient, DisplayName: "retired", Disabled: true,
		Secrets: []Secret{{Value: testSecret}}}))
	must(e.AddApp(App{TenantID: otherTenant, ClientID: otherClient, Secrets: []Secret{{Value: testSecret}}}))
	must(e.AddApp(App{TenantID: testTenant, ClientID: longLivedClient, TokenLifetime: 86399 * time.Second,
		Secrets: []Secret{{Value: testSecret}}}))
	must(e.AddResource(Resource{URIs: []string{"https://api.loganalytics.io"}, DisplayName: "Log Analytics API",
		Roles: map[string][]string{testClient: {"Data.Read"}}}))
	must(e.AddResource(Resource{URIs: []string{"https://management.azure.com", "https://management.azure.com/"}}))
	return &fixture{e: e, clock: clock}
}

// credentialForm is a valid client-credentials request body for testClient.
func credentialForm() url.Values {
	return url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {testClient},
		"client_secret": {testSecret},
		"scope":         {laScope},
	}
}

// with returns a copy of v with the changes: a nil value deletes the key.
func with(v url.Values, changes map[string][]string) url.Values {
	c := url.Values{}
	for k, vs := range v {
		c[k] = vs
	}
	for k, vs := range changes {
		if vs == nil {
			delete(c, k)
		} else {
			c[k] = vs
		}
	}
	return c
}

// tokenRequest builds a token request as a client would send it.
func newTokenRequest(method, tenant string, form url.Values) *http.Request {
	r := httptest.NewRequest(method, "https://login.example.test/"+tenant+"/oauth2/v2.0/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	return r
}

// serve runs r through the handler and returns the response and body.
func serve(t testing.TB, h http.Handler, r *http.Request) (*http.Response, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	res := rec.Result()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}

// checkGolden compares got with testdata/name, or rewrites it with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create it): %v", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs (run with -update to accept):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// goldenExchange renders the parts of an answer that goldens pin: status,
// the headers Entra's clients look at, and the exact body.
func goldenExchange(res *http.Response, body []byte) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d\n", res.StatusCode)
	for _, h := range []string{"Cache-Control", "Client-Request-Id", "Content-Type", "Expires", "Pragma", "Retry-After", "X-Ms-Clitelem"} {
		if v := res.Header.Get(h); v != "" {
			fmt.Fprintf(&b, "%s: %s\n", h, v)
		}
	}
	b.WriteString("\n")
	b.Write(body)
	b.WriteString("\n")
	return []byte(b.String())
}
