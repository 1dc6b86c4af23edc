package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/emulator"
	"github.com/google/go-cmp/cmp"
)

// countingTokens is a Tokens that counts Bearer calls and always has tok-1.
type countingTokens struct{ bearers atomic.Int64 }

func (c *countingTokens) Bearer(context.Context, string, string) (string, error) {
	c.bearers.Add(1)
	return "tok-1", nil
}

func (c *countingTokens) Invalidate(string, string, string) bool { return true }

// corsUpstream answers like an upstream that invites every origin in.
func corsUpstream(t *testing.T) *upstream {
	return newUpstream(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Set("Access-Control-Expose-Headers", "*")
		h.Set("Set-Cookie", "affinity=abc")
		h.Set("Set-Cookie2", "old=1")
		h.Set("Cross-Origin-Resource-Policy", "cross-origin")
		h.Set("X-Content-Type-Options", "sniff-away")
		h.Set("Timing-Allow-Origin", "*")
		h.Set("Preference-Applied", "wait=600")
		_, _ = io.WriteString(w, `{"tables":[]}`)
	})
}

func TestBrowserRequestsRefused(t *testing.T) {
	t.Parallel()
	up := corsUpstream(t)
	tokens := &countingTokens{}
	p := newTestProxy(t, up.url(t), Options{Tokens: tokens})
	const target = "/proxy/loganalytics/v1/workspaces/ws/query"
	tests := []struct {
		name        string
		method      string
		contentType []string
		body        string
		chunked     bool
		want        int
		wantCode    string
	}{
		{"preflight", http.MethodOptions, nil, "", false, http.StatusNoContent, ""},
		{"form POST", http.MethodPost, []string{"application/x-www-form-urlencoded"}, "query=x", false, http.StatusUnsupportedMediaType, "unsupported_content_type"},
		{"form POST, upper case, charset", http.MethodPost, []string{"Application/X-WWW-Form-URLEncoded; charset=UTF-8"}, "query=x", false, http.StatusUnsupportedMediaType, "unsupported_content_type"},
		{"multipart POST", http.MethodPost, []string{"multipart/form-data; boundary=x"}, "--x--", false, http.StatusUnsupportedMediaType, "unsupported_content_type"},
		{"text/plain POST (sendBeacon)", http.MethodPost, []string{" text/plain ;charset=utf-8"}, `{"query":"x"}`, false, http.StatusUnsupportedMediaType, "unsupported_content_type"},
		{"text/plain PUT", http.MethodPut, []string{"text/plain"}, "x", false, http.StatusUnsupportedMediaType, "unsupported_content_type"},
		{"text/plain PATCH", http.MethodPatch, []string{"text/plain"}, "x", false, http.StatusUnsupportedMediaType, "unsupported_content_type"},
		{"text/plain DELETE", http.MethodDelete, []string{"text/plain"}, "x", false, http.StatusUnsupportedMediaType, "unsupported_content_type"},
		{"form POST without a body", http.MethodPost, []string{"application/x-www-form-urlencoded"}, "", false, http.StatusUnsupportedMediaType, "unsupported_content_type"},
		{"JSON then text/plain", http.MethodPost, []string{"application/json", "text/plain"}, "{}", false, http.StatusUnsupportedMediaType, "unsupported_content_type"},
		{"body without a type", http.MethodPost, nil, `{"query":"x"}`, false, http.StatusUnsupportedMediaType, "unsupported_content_type"},
		{"chunked body without a type", http.MethodPost, nil, `{"query":"x"}`, true, http.StatusUnsupportedMediaType, "unsupported_content_type"},
		{"TRACE", "TRACE", nil, "", false, http.StatusMethodNotAllowed, "method_not_allowed"},
		{"JSON POST", http.MethodPost, []string{"application/json"}, `{"query":"x"}`, false, http.StatusOK, ""},
		{"JSON POST, chunked", http.MethodPost, []string{"application/json; charset=utf-8"}, `{"query":"x"}`, true, http.StatusOK, ""},
		{"POST without body or type", http.MethodPost, nil, "", false, http.StatusOK, ""},
		{"DELETE without body or type", http.MethodDelete, nil, "", false, http.StatusOK, ""},
		{"GET", http.MethodGet, nil, "", false, http.StatusOK, ""},
		{"GET with text/plain", http.MethodGet, []string{"text/plain"}, "", false, http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
				if tt.chunked {
					body = io.MultiReader(body)
				}
			}
			req, err := http.NewRequest(tt.method, p.URL+target, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header["Content-Type"] = tt.contentType
			beforeUp, beforeTok := len(up.requests()), tokens.bearers.Load()
			res, got := p.do(t, req)
			if res.StatusCode != tt.want {
				t.Fatalf("%s with %q = %d %s, want %d", tt.method, tt.contentType, res.StatusCode, got, tt.want)
			}
			upstreamGot, tokensGot := len(up.requests())-beforeUp, tokens.bearers.Load()-beforeTok
			if tt.want != http.StatusOK {
				if upstreamGot != 0 || tokensGot != 0 {
					t.Errorf("a refused %s reached the upstream %d times and Tokens %d times, want 0 and 0", tt.method, upstreamGot, tokensGot)
				}
			} else if upstreamGot != 1 {
				t.Errorf("upstream got %d requests, want 1", upstreamGot)
			}
			for k := range res.Header {
				if strings.HasPrefix(k, "Access-Control-") {
					t.Errorf("answer has %s: %q, want no Access-Control-* header", k, res.Header[k])
				}
			}
			for _, k := range []string{"Set-Cookie", "Set-Cookie2", "Timing-Allow-Origin"} {
				if v := res.Header.Values(k); v != nil {
					t.Errorf("answer has %s: %q, want none", k, v)
				}
			}
			if got := res.Header.Values("X-Content-Type-Options"); !cmp.Equal(got, []string{"nosniff"}) {
				t.Errorf("X-Content-Type-Options = %q, want exactly [nosniff]", got)
			}
			if got := res.Header.Values("Cross-Origin-Resource-Policy"); !cmp.Equal(got, []string{"same-origin"}) {
				t.Errorf("Cross-Origin-Resource-Policy = %q, want exactly [same-origin]", got)
			}
			switch tt.want {
			case http.StatusNoContent, http.StatusMethodNotAllowed:
				if got := res.Header.Get("Allow"); got != allowedMethods {
					t.Errorf("Allow = %q, want %q", got, allowedMethods)
				}
			case http.StatusOK:
				if got := res.Header.Get("Preference-Applied"); got != "wait=600" {
					t.Errorf("Preference-Applied = %q, want the upstream's other headers kept", got)
				}
			}
			if tt.wantCode != "" {
				var e struct {
					Error, Hint string
				}
				if err := json.Unmarshal([]byte(got), &e); err != nil || e.Error != tt.wantCode || e.Hint == "" {
					t.Errorf("body = %s, want JSON error %q with a hint", got, tt.wantCode)
				}
			}
		})
	}
}

// TestSecureHeadersOnceBehindMiddleware checks that a listener middleware
// setting the same headers first still yields exactly one of each.
func TestSecureHeadersOnceBehindMiddleware(t *testing.T) {
	t.Parallel()
	up := corsUpstream(t)
	h, err := New(Options{Routes: []Route{{Name: "loganalytics", Upstream: up.url(t), Scope: laScope}}, Tokens: &countingTokens{}})
	if err != nil {
		t.Fatal(err)
	}
	mw := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cross-Origin-Resource-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
	for _, target := range []string{"/proxy/loganalytics/v1/x", "/proxy/nope/v1/x"} {
		rec := httptest.NewRecorder()
		mw.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		for k, want := range map[string][]string{"X-Content-Type-Options": {"nosniff"}, "Cross-Origin-Resource-Policy": {"same-origin"}} {
			if got := rec.Header().Values(k); !cmp.Equal(got, want) {
				t.Errorf("GET %s: %s = %q, want exactly %q", target, k, got, want)
			}
		}
	}
}

// rawPost opens a connection to addr, sends a POST to path with the given
// Content-Length (or chunked when length is -1) and the first body bytes,
// and returns the connection, leaving the rest of the body unsent.
func rawPost(t *testing.T, addr, path string, length int, first []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	head := "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
	if length < 0 {
		head += "Transfer-Encoding: chunked\r\n\r\n" + strconv.FormatInt(int64(len(first)), 16) + "\r\n"
	} else {
		head += "Content-Length: " + strconv.Itoa(length) + "\r\n\r\n"
	}
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(first); err != nil {
		t.Fatal(err)
	}
	return c
}

// readAnswer reads one answer from c, then reports whether the server closed
// the connection after it.
func readAnswer(t *testing.T, c net.Conn) (*http.Response, string, bool) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	_, err = br.ReadByte()
	return res, string(b), err == io.EOF
}

func TestBodyReadTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	tests := []struct {
		name   string
		length int
		sent   int
	}{
		{"buffered body stalls", 100 << 10, 60 << 10},
		{"chunked body stalls", -1, 60 << 10},
		{"streamed body stalls", 3 << 20, 2 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := okUpstream(t)
			tokens := &countingTokens{}
			p := newTestProxy(t, up.url(t), Options{Tokens: tokens, BodyReadTimeout: timeout})
			begin := time.Now()
			c := rawPost(t, strings.TrimPrefix(p.URL, "http://"), "/proxy/loganalytics/v1/workspaces/ws/query", tt.length, make([]byte, tt.sent))
			res, body, closed := readAnswer(t, c)
			if res.StatusCode != http.StatusRequestTimeout || !strings.Contains(body, `"body_timeout"`) {
				t.Errorf("stalled body: answer = %d %s, want 408 body_timeout", res.StatusCode, body)
			}
			if !closed {
				t.Error("the connection stayed open after the 408, want it closed")
			}
			if d := time.Since(begin); d < timeout {
				t.Errorf("answered after %v, before the read timeout %v", d, timeout)
			}
			if tt.length <= maxReplayBytes && (len(up.requests()) != 0 || tokens.bearers.Load() != 0) {
				t.Errorf("a stalled buffered body reached the upstream %d times and Tokens %d times, want 0", len(up.requests()), tokens.bearers.Load())
			}
			waitBudget(t, p, 0)
		})
	}
}

// waitBudget polls the buffered-bytes gauge until it is want.
func waitBudget(t *testing.T, p *testProxy, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := gaugeValue(t, p, "broker_proxy_body_buffered_bytes")
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker_proxy_body_buffered_bytes = %v, want %v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func gaugeValue(t *testing.T, p *testProxy, name string) float64 {
	t.Helper()
	mfs, err := p.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

func TestBodyBudget(t *testing.T) {
	t.Parallel()
	up := okUpstream(t)
	tokens := &countingTokens{}
	const budget = 256 << 10
	p := newTestProxy(t, up.url(t), Options{Tokens: tokens, BodyBudgetBytes: budget, BodyReadTimeout: time.Minute})
	addr := strings.TrimPrefix(p.URL, "http://")
	const target = "/proxy/loganalytics/v1/workspaces/ws/query"

	// One caller sends a fifth of a 1 MiB body and stalls: it holds most of
	// the budget (its chunks of 4, 8, 16, 32, 64, 64 and 64 KiB: 252 KiB).
	hog := rawPost(t, addr, target, 1<<20, make([]byte, 200<<10))
	waitBudget(t, p, 252<<10)
	c := rawPost(t, addr, target, 100<<10, make([]byte, 100<<10))
	busy, busyBody, closed := readAnswer(t, c)
	if busy.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("POST while a stalled body holds the budget = %d %s, want 503", busy.StatusCode, busyBody)
	}
	if !closed {
		t.Error("the connection stayed open after 503 busy, want it closed")
	}
	if !strings.Contains(busyBody, `"busy"`) || busy.Header.Get("Retry-After") == "" {
		t.Errorf("over the budget: %s Retry-After %q, want error busy with Retry-After", busyBody, busy.Header.Get("Retry-After"))
	}
	if got := gaugeValue(t, p, "broker_proxy_body_buffered_bytes"); got > budget {
		t.Errorf("buffered bytes = %v, want at most the budget %d", got, budget)
	}
	// A GET needs no budget.
	if res, body := p.get(t, "/proxy/loganalytics/v1/workspaces/ws/query?query=x"); res.StatusCode != http.StatusOK {
		t.Errorf("GET while the budget is spent = %d %s, want 200", res.StatusCode, body)
	}
	// The stalled caller leaves: the budget is free again.
	hog.Close()
	waitBudget(t, p, 0)
	req, err := http.NewRequest(http.MethodPost, p.URL+target, strings.NewReader(`{"query":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if res, body := p.do(t, req); res.StatusCode != http.StatusOK {
		t.Errorf("POST after the stalled caller left = %d %s, want 200", res.StatusCode, body)
	}
	waitBudget(t, p, 0)
}

func TestBudgetReserve(t *testing.T) {
	t.Parallel()
	b := &budget{limit: 100}
	var wg sync.WaitGroup
	var won atomic.Int64
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b.reserve(10) {
				won.Add(1)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 10 || b.used.Load() != 100 {
		t.Errorf("50 reservations of 10 in a budget of 100: %d won, %d used; want 10 and 100", won.Load(), b.used.Load())
	}
	b.release(100)
	if !b.reserve(100) || b.reserve(1) {
		t.Error("after release: reserve(100) should succeed and reserve(1) fail")
	}
}

// rationedTokens gets its tokens from the Entra emulator (through
// entraTokens) and allows a forced refresh as the cache will: not when the
// token is younger than the interval, and at most one per interval.
type rationedTokens struct {
	*entraTokens
	interval time.Duration
	now      func() time.Time
	mu       sync.Mutex
	issued   map[string]time.Time // token → when Bearer first handed it out
	forced   time.Time            // the last forced refresh
	refused  int
}

func (r *rationedTokens) Bearer(ctx context.Context, route, scope string) (string, error) {
	tok, err := r.entraTokens.Bearer(ctx, route, scope)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.issued[tok]; !ok && err == nil {
		r.issued[tok] = r.now()
	}
	return tok, err
}

func (r *rationedTokens) Invalidate(route, scope, token string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Sub(r.issued[token]) < r.interval || !r.forced.IsZero() && now.Sub(r.forced) < r.interval {
		r.refused++
		return false
	}
	r.forced = now
	return r.entraTokens.Invalidate(route, scope, token)
}

func TestForcedRefreshRationed(t *testing.T) {
	t.Parallel()
	clock := &settableClock{t: time.Now().Truncate(time.Second)}
	az := emulator.NewAzure(emulator.Options{Now: clock.Now})
	if err := az.AddDemo(); err != nil {
		t.Fatal(err)
	}
	cloud := httptest.NewServer(az)
	t.Cleanup(cloud.Close)
	tokens := &rationedTokens{
		entraTokens: &entraTokens{tokenURL: cloud.URL + "/" + emulator.DemoTenantID + "/oauth2/v2.0/token", cur: map[string]string{}},
		interval:    30 * time.Second,
		now:         clock.Now,
		issued:      map[string]time.Time{},
	}
	// An upstream that refuses every token.
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":{"code":"InvalidAuthenticationTokenAudience"}}`)
	})
	p := newTestProxy(t, up.url(t), Options{Tokens: tokens})
	// The broker has held its token for a minute: the first 401 may force
	// one refresh.
	if _, err := tokens.Bearer(context.Background(), "loganalytics", laScope); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	before := az.Entra.TotalRequests()
	rationed := 0
	for i := range 30 {
		req, _ := http.NewRequest(http.MethodPost, p.URL+"/proxy/loganalytics/v1/workspaces/ws/query", strings.NewReader(`{"query":"Heartbeat"}`))
		req.Header.Set("Content-Type", "application/json")
		res, _ := p.do(t, req)
		if res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("request %d: status = %d, want the upstream's 401", i, res.StatusCode)
		}
		if res.Header.Get(HintHeader) == hintRationed {
			rationed++
		}
	}
	forced := az.Entra.TotalRequests() - before
	if forced != 1 {
		t.Errorf("30 requests to an upstream that always answers 401 made %d Entra requests, want 1 (one forced refresh, then none within 30 s)", forced)
	}
	if rationed != 30-forced {
		t.Errorf("%d of 30 answers carry the rationed hint, want %d", rationed, 30-forced)
	}
	// Upstream requests: 30, plus the one retry the forced refresh allowed.
	if n := len(up.requests()); n != 30+forced {
		t.Errorf("upstream got %d requests, want %d", n, 30+forced)
	}
	if got := metricValue(t, p, "broker_proxy_token_retries_total", "route", "loganalytics"); got != float64(forced) {
		t.Errorf("broker_proxy_token_retries_total = %v, want %d", got, forced)
	}
}

// FuzzSafelisted checks that every Content-Type Go parses as one of the
// CORS-safelisted types is refused, whatever its case, spacing or
// parameters.
func FuzzSafelisted(f *testing.F) {
	for _, s := range []string{
		"text/plain", "TEXT/PLAIN;charset=utf-8", " multipart/form-data ; boundary=x",
		"application/x-www-form-urlencoded", "application/json", "text/plain, application/json", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ct string) {
		got := safelisted(ct)
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil {
			return
		}
		switch mt {
		case "application/x-www-form-urlencoded", "multipart/form-data", "text/plain":
			if !got {
				t.Errorf("safelisted(%q) = false, but it parses as %q", ct, mt)
			}
		}
	})
}
