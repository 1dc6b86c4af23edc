package loganalytics

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Test principals and their tokens. The tokens are opaque strings: the test
// verifier maps them to principals, no JWT is involved.
const (
	testAppID     = "11111111-1111-4111-8111-111111111111"
	testObjectID  = "22222222-2222-4222-8222-222222222222"
	otherAppID    = "33333333-3333-4333-8333-333333333333"
	testWorkspace = "a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1"
	otherWS       = "b1b1b1b1-cccc-dddd-eeee-f2f2f2f2f2f2"
	testResource  = "/subscriptions/c2c2c2c2-0000-4000-8000-000000000000/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
	testCID       = "d215782f-0000-4000-8000-000000000000"

	tokGood      = "good-token"
	tokOther     = "other-app-token"
	tokWrongAud  = "arm-token"
	tokExpired   = "expired-token"
	tokStale     = "stale-token" // valid signature, exp in the past by the clock
	tokMalformed = "not-a-jwt"
	tokBadSig    = "bad-signature-token"
)

// clock is a settable clock; tests move it instead of sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2024, 5, 1, 13, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testVerifier maps the test tokens to principals or errors.
func testVerifier(c *clock) Verifier {
	return func(raw string) (Principal, error) {
		base := Principal{TenantID: demoTenantID, AppID: testAppID, ObjectID: testObjectID,
			Audience: DefaultAudience, Roles: []string{"Data.Read"}, ExpiresAt: c.Now().Add(time.Hour)}
		switch raw {
		case tokGood:
			return base, nil
		case tokOther:
			base.AppID, base.ObjectID = otherAppID, "44444444-4444-4444-8444-444444444444"
			return base, nil
		case tokWrongAud:
			base.Audience = "https://management.azure.com/"
			return base, nil
		case tokStale:
			base.ExpiresAt = c.Now().Add(-time.Second)
			return base, nil
		case tokExpired:
			return Principal{}, fmt.Errorf("verify %s: %w", raw, ErrTokenExpired)
		case tokMalformed:
			return Principal{}, fmt.Errorf("verify: %w", ErrTokenMalformed)
		}
		return Principal{}, errors.New("verify " + raw + ": signature is invalid")
	}
}

// newTestService returns a Service with testWorkspace (granted to testAppID),
// otherWS (no grants) and testResource in testWorkspace.
func newTestService(t *testing.T) (*Service, *clock) {
	t.Helper()
	c := newClock()
	s := New(Options{Verify: testVerifier(c), Now: c.Now, NewCorrelationID: func() string { return testCID }})
	s.AddWorkspace(testWorkspace)
	s.AddWorkspace(otherWS)
	if err := s.AddResource(testResource, testWorkspace); err != nil {
		t.Fatal(err)
	}
	if err := s.Grant(testWorkspace, testAppID, RoleReader, time.Time{}); err != nil {
		t.Fatal(err)
	}
	return s, c
}

// req is a request to send in a test.
type req struct {
	method, path, body, token string
	header                    map[string]string
}

// do sends r to h through a recorder and returns the response with its body
// read and, when gzip-encoded, decoded.
func do(t *testing.T, h http.Handler, r req) (*http.Response, []byte) {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodGet
	}
	hr := httptest.NewRequest(r.method, r.path, strings.NewReader(r.body))
	if r.body != "" {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	for k, v := range r.header {
		if v == "" {
			hr.Header.Del(k)
			continue
		}
		hr.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, hr)
	res := rec.Result()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("gzip body: %v", err)
		}
		if body, err = io.ReadAll(zr); err != nil {
			t.Fatalf("gzip body: %v", err)
		}
	}
	return res, body
}

func wsPath(id, op string) string { return "/v1/workspaces/" + id + "/" + op }

func queryURL(id, q string) string {
	return wsPath(id, "query") + "?query=" + url.QueryEscape(q)
}
