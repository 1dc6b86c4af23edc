package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/httperr"
	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func okUpstream(t *testing.T) *upstream {
	return newUpstream(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Preference-Applied", "wait=600")
		w.Header().Set("Set-Cookie", "affinity=abc")
		_, _ = io.WriteString(w, `{"tables":[]}`)
	})
}

func TestPassThrough(t *testing.T) {
	t.Parallel()
	up := okUpstream(t)
	tokens := newSeqTokens("tok-")
	p := newTestProxy(t, up.url(t), Options{Tokens: tokens})

	query := `{"query":"Heartbeat | take 1","timespan":"PT1H","workspaces":["b1b1b1b1-cccc-dddd-eeee-f2f2f2f2f2f2"]}`
	tests := []struct {
		name, method, target, body string
		wantPath, wantRawPath      string
		wantQuery                  string
	}{
		{
			name: "GET query string byte-identical", method: http.MethodGet,
			target:    "/proxy/loganalytics/v1/workspaces/ws1/query?query=Heartbeat%20%7C%20take%201&timespan=PT1H&x=a+b;c",
			wantPath:  "/v1/workspaces/ws1/query",
			wantQuery: "query=Heartbeat%20%7C%20take%201&timespan=PT1H&x=a+b;c",
		},
		{
			name: "POST body byte-identical", method: http.MethodPost,
			target: "/proxy/loganalytics/v1/workspaces/ws1/query", body: query,
			wantPath: "/v1/workspaces/ws1/query",
		},
		{
			name: "batch keeps its encoding", method: http.MethodPost,
			target: "/proxy/loganalytics/v1/%24batch", body: `{"requests":[]}`,
			wantPath: "/v1/$batch", wantRawPath: "/v1/%24batch",
		},
		{
			name: "empty segments collapsed", method: http.MethodGet,
			target:   "/proxy/loganalytics//v1///workspaces/ws1/query/",
			wantPath: "/v1/workspaces/ws1/query/",
		},
		{
			name: "resource-centric path", method: http.MethodPost,
			target:   "/proxy/loganalytics/v1/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1/query",
			body:     query,
			wantPath: "/v1/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1/query",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req, err := http.NewRequest(tt.method, p.URL+tt.target, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "evil.example"
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Prefer", "include-statistics=true,wait=600")
			req.Header.Set("Authorization", "Bearer callers-own")
			req.Header.Set("Cookie", "session=callers")
			req.Header.Set("X-Forwarded-For", "10.0.0.1")
			req.Header.Set("X-Forwarded-Host", "front.example")
			req.Header.Set("X-Forwarded-Proto", "https")
			req.Header.Set("X-Forwarded-Prefix", "/api")
			req.Header.Set("Forwarded", "for=10.0.0.1")
			req.Header.Set("Connection", "X-Hop")
			req.Header.Set("X-Hop", "1")
			req.Header.Set("Proxy-Authorization", "Basic eDp5")
			before := len(up.requests())
			res, got := p.do(t, req)
			if res.StatusCode != http.StatusOK || got != `{"tables":[]}` {
				t.Fatalf("%s %s = %d %q, want 200 {\"tables\":[]}", tt.method, tt.target, res.StatusCode, got)
			}
			if v := res.Header.Get("Preference-Applied"); v != "wait=600" {
				t.Errorf("response Preference-Applied = %q, want wait=600", v)
			}
			if v := res.Header.Values("Set-Cookie"); v != nil {
				t.Errorf("response Set-Cookie = %q, want none (the upstream's is removed)", v)
			}
			reqs := up.requests()[before:]
			if len(reqs) != 1 {
				t.Fatalf("upstream got %d requests, want 1", len(reqs))
			}
			s := reqs[0]
			if s.Method != tt.method || s.Path != tt.wantPath || s.RawPath != tt.wantRawPath || s.RawQuery != tt.wantQuery || s.Body != tt.body {
				t.Errorf("upstream saw %s %q (raw %q) ?%q body %q, want %s %q (raw %q) ?%q body %q",
					s.Method, s.Path, s.RawPath, s.RawQuery, s.Body, tt.method, tt.wantPath, tt.wantRawPath, tt.wantQuery, tt.body)
			}
			if s.Host != up.Listener.Addr().String() {
				t.Errorf("upstream Host = %q, want %q", s.Host, up.Listener.Addr().String())
			}
			if diff := cmp.Diff([]string{"Bearer tok-1"}, s.Header.Values("Authorization")); diff != "" {
				t.Errorf("upstream Authorization (-want +got):\n%s", diff)
			}
			for _, h := range []string{"Cookie", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Prefix", "Forwarded", "X-Hop", "Proxy-Authorization"} {
				if v, ok := s.Header[h]; ok {
					t.Errorf("upstream header %s = %q, want absent", h, v)
				}
			}
			if v := s.Header.Get("Prefer"); v != "include-statistics=true,wait=600" {
				t.Errorf("upstream Prefer = %q, want include-statistics=true,wait=600", v)
			}
			if v := s.Header.Get("Accept-Encoding"); v != "" {
				t.Errorf("upstream Accept-Encoding = %q, want none (the caller sent none)", v)
			}
		})
	}
	if diff := cmp.Diff([]string{laScope}, tokens.scopes[:1]); diff != "" {
		t.Errorf("Bearer scopes (-want +got):\n%s", diff)
	}
}

func TestGzipPassedThrough(t *testing.T) {
	t.Parallel()
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	_, _ = io.WriteString(zw, strings.Repeat(`{"tables":[{"name":"PrimaryResult"}]}`, 50))
	_ = zw.Close()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Vary", "Accept-Encoding")
		_, _ = w.Write(zipped.Bytes())
	})
	p := newTestProxy(t, up.url(t), Options{Tokens: newSeqTokens("tok-")})
	req, _ := http.NewRequest(http.MethodGet, p.URL+"/proxy/loganalytics/v1/workspaces/ws/query?query=x", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	res, body := p.do(t, req)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", res.StatusCode)
	}
	if v := res.Header.Get("Content-Encoding"); v != "gzip" {
		t.Errorf("Content-Encoding = %q, want gzip", v)
	}
	if body != zipped.String() {
		t.Errorf("body = %d bytes, want the upstream's %d gzip bytes unchanged", len(body), zipped.Len())
	}
	if got := up.requests()[0].Header.Values("Accept-Encoding"); !cmp.Equal(got, []string{"gzip"}) {
		t.Errorf("upstream Accept-Encoding = %q, want [gzip]", got)
	}
}

func TestStreaming(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "first-chunk\n")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "second-chunk\n")
	})
	p := newTestProxy(t, up.url(t), Options{Tokens: newSeqTokens("tok-")})
	// The deadline only turns a broken stream into a failure instead of a hang.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/proxy/loganalytics/v1/stream", nil)
	res, err := p.client.Do(req)
	if err != nil {
		close(release)
		t.Fatalf("Do() error = %v", err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first-chunk\n" {
		close(release)
		t.Fatalf("first line = %q, %v; want first-chunk before the upstream finishes", line, err)
	}
	close(release)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "second-chunk\n" {
		t.Errorf("rest = %q, %v; want second-chunk", rest, err)
	}
}

// refuseTok1 answers 401 to "Bearer tok-1" and 200 (echoing the body) to
// any other token.
func refuseTok1(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Header.Get("Authorization") == "Bearer tok-1" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":{"code":"AuthenticationFailed","message":"Authentication failed."}}`)
		return
	}
	_, _ = w.Write(append([]byte("ok:"), body...))
}

func TestRetryOn401(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", maxReplayBytes+1)
	small := `{"query":"Heartbeat | take 1"}`
	tests := []struct {
		name        string
		method      string
		body        string
		chunked     bool
		handle      func(http.ResponseWriter, *http.Request, []byte)
		wantStatus  int
		wantBody    string
		wantAuths   []string
		wantRetries float64
		wantHint    bool
	}{
		{
			name: "GET retried with the fresh token", method: http.MethodGet, handle: refuseTok1,
			wantStatus: 200, wantBody: "ok:", wantAuths: []string{"Bearer tok-1", "Bearer tok-2"}, wantRetries: 1,
		},
		{
			name: "small POST replayed byte-identical", method: http.MethodPost, body: small, handle: refuseTok1,
			wantStatus: 200, wantBody: "ok:" + small, wantAuths: []string{"Bearer tok-1", "Bearer tok-2"}, wantRetries: 1,
		},
		{
			name: "small chunked POST replayed", method: http.MethodPost, body: small, chunked: true, handle: refuseTok1,
			wantStatus: 200, wantBody: "ok:" + small, wantAuths: []string{"Bearer tok-1", "Bearer tok-2"}, wantRetries: 1,
		},
		{
			name: "large POST not retried", method: http.MethodPost, body: big, handle: refuseTok1,
			wantStatus: 401, wantAuths: []string{"Bearer tok-1"}, wantHint: true,
		},
		{
			name: "large chunked POST not retried", method: http.MethodPost, body: big, chunked: true, handle: refuseTok1,
			wantStatus: 401, wantAuths: []string{"Bearer tok-1"}, wantHint: true,
		},
		{
			name: "retried exactly once", method: http.MethodGet,
			handle: func(w http.ResponseWriter, r *http.Request, _ []byte) {
				w.WriteHeader(http.StatusUnauthorized)
			},
			wantStatus: 401, wantAuths: []string{"Bearer tok-1", "Bearer tok-2"}, wantRetries: 1, wantHint: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, tt.handle)
			tokens := newSeqTokens("tok-")
			p := newTestProxy(t, up.url(t), Options{Tokens: tokens})
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
				if tt.chunked {
					body = io.MultiReader(body) // hides the length: sent chunked
				}
			}
			req, _ := http.NewRequest(tt.method, p.URL+"/proxy/loganalytics/v1/workspaces/ws/query", body)
			req.Header.Set("Content-Type", "application/json")
			res, got := p.do(t, req)
			if res.StatusCode != tt.wantStatus || (tt.wantBody != "" && got != tt.wantBody) {
				t.Errorf("status, body = %d, %.40q; want %d, %.40q", res.StatusCode, got, tt.wantStatus, tt.wantBody)
			}
			var auths []string
			for _, s := range up.requests() {
				auths = append(auths, s.Header.Get("Authorization"))
				if s.Body != tt.body {
					t.Errorf("upstream body = %d bytes, want %d", len(s.Body), len(tt.body))
				}
			}
			if diff := cmp.Diff(tt.wantAuths, auths); diff != "" {
				t.Errorf("upstream Authorization per attempt (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{laScope + " tok-1"}, tokens.dropped()[:1]); diff != "" {
				t.Errorf("Invalidate calls (-want +got):\n%s", diff)
			}
			if n := len(tokens.dropped()); n != 1 {
				t.Errorf("Invalidate called %d times, want 1", n)
			}
			if got := metricValue(t, p, "broker_proxy_token_retries_total", "route", "loganalytics"); got != tt.wantRetries {
				t.Errorf("broker_proxy_token_retries_total = %v, want %v", got, tt.wantRetries)
			}
			if hint := res.Header.Get(HintHeader); (hint != "") != tt.wantHint {
				t.Errorf("%s = %q, want present %v", HintHeader, hint, tt.wantHint)
			}
		})
	}
}

func gzipped(s string) string {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = io.WriteString(zw, s)
	_ = zw.Close()
	return b.String()
}

func TestForbiddenHint(t *testing.T) {
	t.Parallel()
	insufficient := `{"error":{"message":"The provided credentials have insufficient access to perform the requested operation","code":"InsufficientAccessError","correlationId":"1e1ad3fe-88ab-43a4-af9b-15e75b67d8a9"}}`
	invalidToken := `{"error":{"message":"The provided authentication is not valid for this resource","code":"InvalidTokenError","innererror":{"code":"SignatureVerificationFailed","message":"Could not validate the request"}}}`
	tests := []struct {
		name     string
		body     string
		encoding string
		wantHint bool
	}{
		{name: "InsufficientAccessError", body: insufficient, wantHint: true},
		{name: "InsufficientAccessError gzip", body: gzipped(insufficient), encoding: "gzip", wantHint: true},
		{name: "InvalidTokenError", body: invalidToken},
		{name: "not JSON", body: "Forbidden"},
		{name: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				if tt.encoding != "" {
					w.Header().Set("Content-Encoding", tt.encoding)
				}
				w.WriteHeader(http.StatusForbidden)
				_, _ = io.WriteString(w, tt.body)
			})
			p := newTestProxy(t, up.url(t), Options{Tokens: newSeqTokens("tok-")})
			req, _ := http.NewRequest(http.MethodGet, p.URL+"/proxy/loganalytics/v1/workspaces/ws/query?query=x", nil)
			req.Header.Set("Accept-Encoding", "gzip")
			res, body := p.do(t, req)
			if res.StatusCode != http.StatusForbidden || body != tt.body {
				t.Errorf("status, body = %d, %q; want 403 and the upstream body unchanged", res.StatusCode, body)
			}
			if v := res.Header.Get("Content-Encoding"); v != tt.encoding {
				t.Errorf("Content-Encoding = %q, want %q", v, tt.encoding)
			}
			hint := res.Header.Get(HintHeader)
			if !tt.wantHint {
				if hint != "" {
					t.Errorf("%s = %q, want none", HintHeader, hint)
				}
				return
			}
			for _, want := range []string{"Reader", "Log Analytics Reader", "60 minutes"} {
				if !strings.Contains(hint, want) {
					t.Errorf("%s = %q, want it to mention %q", HintHeader, hint, want)
				}
			}
		})
	}
}

func TestNoToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		err            error
		wantStatus     int
		wantRetryAfter string
		wantCode       string
	}{
		{
			name:       "tokens error answered as is",
			err:        fmt.Errorf("cache: %w", &httperr.Error{Status: 503, Code: "token_unavailable", Description: "Entra ID is unreachable.", RetryAfter: 30 * time.Second}),
			wantStatus: 503, wantRetryAfter: "30", wantCode: "token_unavailable",
		},
		{
			name:       "a 401 becomes a 503",
			err:        &httperr.Error{Status: 401, Code: "invalid_client", Description: "The client secret is wrong."},
			wantStatus: 503, wantRetryAfter: "10", wantCode: "invalid_client",
		},
		{
			name:       "a plain error becomes a 503",
			err:        errors.New("something inside"),
			wantStatus: 503, wantRetryAfter: "10", wantCode: "token_unavailable",
		},
		{
			name:       "an empty token is refused",
			err:        nil,
			wantStatus: 503, wantRetryAfter: "10", wantCode: "token_unavailable",
		},
		{
			name:       "a 403 (scope not allowed) stays",
			err:        &httperr.Error{Status: 403, Code: "scope_not_allowed", Description: "This scope is not allowed."},
			wantStatus: 403, wantCode: "scope_not_allowed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := okUpstream(t)
			p := newTestProxy(t, up.url(t), Options{Tokens: &fakeTokens{
				bearer: func(context.Context, string) (string, error) { return "", tt.err },
			}})
			res, body := p.get(t, "/proxy/loganalytics/v1/workspaces/ws/query?query=x")
			if res.StatusCode != tt.wantStatus || res.Header.Get("Retry-After") != tt.wantRetryAfter {
				t.Errorf("status, Retry-After = %d, %q; want %d, %q", res.StatusCode, res.Header.Get("Retry-After"), tt.wantStatus, tt.wantRetryAfter)
			}
			var b httperr.Body
			if err := json.Unmarshal([]byte(body), &b); err != nil || b.Error != tt.wantCode {
				t.Errorf("body = %s (%v), want JSON with error %q", body, err, tt.wantCode)
			}
			if strings.Contains(body, "something inside") {
				t.Errorf("body = %s, want no internal error text", body)
			}
			if n := len(up.requests()); n != 0 {
				t.Errorf("upstream got %d requests, want 0", n)
			}
		})
	}

	t.Run("no token for the retry", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, refuseTok1)
		calls := 0
		p := newTestProxy(t, up.url(t), Options{Tokens: &fakeTokens{
			bearer: func(context.Context, string) (string, error) {
				calls++ // the handler's goroutine only, one request at a time
				if calls == 1 {
					return "tok-1", nil
				}
				return "", &httperr.Error{Status: 503, Code: "token_unavailable", Description: "No token.", RetryAfter: 5 * time.Second}
			},
		}})
		res, body := p.get(t, "/proxy/loganalytics/v1/workspaces/ws/query")
		if res.StatusCode != 503 || res.Header.Get("Retry-After") != "5" || !strings.Contains(body, `"token_unavailable"`) {
			t.Errorf("answer = %d Retry-After %q %s; want 503, 5, token_unavailable", res.StatusCode, res.Header.Get("Retry-After"), body)
		}
	})
}

// rawRequest sends target verbatim in the request line, as curl
// --path-as-is would, and returns the status and body.
func rawRequest(t *testing.T, addr, target string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target, addr); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestTraversalRefused(t *testing.T) {
	t.Parallel()
	la := okUpstream(t)
	arm := okUpstream(t)
	p := newTestProxy(t, nil, Options{
		Tokens: newSeqTokens("tok-"),
		Routes: []Route{
			{Name: "loganalytics", Upstream: la.url(t), Scope: laScope},
			{Name: "arm", Upstream: arm.url(t), Scope: "https://management.azure.com/.default"},
		},
	})
	addr := p.Listener.Addr().String()
	tests := []struct {
		target     string
		wantStatus int
	}{
		{"/proxy/loganalytics/../arm/subscriptions", 400},
		{"/proxy/loganalytics/v1/../../arm/x", 400},
		{"/proxy/loganalytics/v1/..", 400},
		{"/proxy/loganalytics/./v1/query", 400},
		{"/proxy/loganalytics/%2e%2e/arm/x", 400},
		{"/proxy/loganalytics/%2E%2E/arm/x", 400},
		{"/proxy/loganalytics/.%2e/arm/x", 400},
		{"/proxy/loganalytics/%2e./arm/x", 400},
		{"/proxy/loganalytics/%2e/v1", 400},
		{"/proxy/loganalytics/v1%2F..%2F..%2Farm", 400},
		{"/proxy/loganalytics/v1/%2f%2e%2e", 400},
		{"/proxy/loganalytics/v1/%2fetc", 400},
		{"/proxy/loganalytics/%252e%252e/arm", 400},
		{"/proxy/loganalytics/%25252e/arm", 400},
		{"/proxy/loganalytics/v1%252F..", 400},
		{`/proxy/loganalytics/v1\..\arm`, 400},
		{`/proxy/loganalytics/..\arm`, 400},
		{"/proxy/loganalytics/v1/%5c..%5carm", 400},
		{"/proxy/loganalytics/v1/%5C", 400},
		{"/proxy/loganalytics/v1/%00", 400},
		{"/proxy/loganalytics/v1/%0d%0aX-Injected:%201", 400},
		// net/http itself refuses malformed escapes, before any handler.
		{"/proxy/loganalytics/v1/%zz", 400},
		{"/proxy/loganalytics/v1/%2", 400},
		{"/proxy/%2e%2e/loganalytics/v1", 404},
		{"/proxy/../proxy/arm/x", 404},
		{"/proxy/..%2farm/x", 404},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			status, body := rawRequest(t, addr, tt.target)
			if status != tt.wantStatus {
				t.Errorf("GET %s = %d %s, want %d", tt.target, status, body, tt.wantStatus)
			}
			if body == "400 Bad Request" {
				return // refused by net/http
			}
			var b httperr.Body
			if err := json.Unmarshal([]byte(body), &b); err != nil || b.Error == "" {
				t.Errorf("GET %s body = %s, want JSON error (%v)", tt.target, body, err)
			}
		})
	}
	if n := len(la.requests()) + len(arm.requests()); n != 0 {
		t.Errorf("upstreams got %d requests, want 0", n)
	}
	// Cleaned but harmless paths are served, inside their route.
	for target, want := range map[string]string{
		"/proxy/loganalytics//v1//query": "/v1/query",
		"/proxy/loganalytics/v1/a.b/...": "/v1/a.b/...",
		"/proxy/loganalytics/v1/%2e.x":   "/v1/..x",
	} {
		if status, body := rawRequest(t, addr, target); status != 200 {
			t.Errorf("GET %s = %d %s, want 200", target, status, body)
		}
		reqs := la.requests()
		if got := reqs[len(reqs)-1].Path; got != want {
			t.Errorf("GET %s reached upstream path %q, want %q", target, got, want)
		}
	}
}

func TestUnknownRoute(t *testing.T) {
	t.Parallel()
	p := newTestProxy(t, nil, Options{Tokens: newSeqTokens("tok-"), Routes: Routes(azure.AzurePublic, nil)})
	tests := []struct{ path, wantDesc string }{
		{"/proxy/nope/v1/query", `No proxy route is named "nope"; the routes are: appinsights, arm, loganalytics.`},
		{"/proxy/", "The path names no proxy route; the routes are: appinsights, arm, loganalytics."},
		{"/proxy", "The path names no proxy route; the routes are: appinsights, arm, loganalytics."},
		{"/proxy/Log%20Analytics/v1", "The path names no proxy route; the routes are: appinsights, arm, loganalytics."},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			res, body := p.get(t, tt.path)
			var b httperr.Body
			if err := json.Unmarshal([]byte(body), &b); err != nil {
				t.Fatalf("body = %s: %v", body, err)
			}
			want := httperr.Body{Error: "unknown_route", Description: tt.wantDesc, Hint: "Call /proxy/<route>/<upstream path>, e.g. /proxy/loganalytics/v1/workspaces/<workspace id>/query."}
			if res.StatusCode != 404 {
				t.Errorf("status = %d, want 404", res.StatusCode)
			}
			if diff := cmp.Diff(want, b); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
	if got := metricValue(t, p, "broker_proxy_requests_total", "route", "unknown", "code", "404"); got != float64(len(tests)) {
		t.Errorf("requests_total{route=unknown,code=404} = %v, want %d", got, len(tests))
	}
}

func TestBodyCap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		max        int64
		size       int
		chunked    bool
		wantStatus int
		wantUp     bool // whether the upstream may see the request
	}{
		{name: "at the cap", max: 64, size: 64, wantStatus: 200, wantUp: true},
		{name: "chunked at the cap", max: 64, size: 64, chunked: true, wantStatus: 200, wantUp: true},
		{name: "Content-Length over the cap", max: 64, size: 65, wantStatus: 413},
		{name: "chunked over the cap", max: 64, size: 65, chunked: true, wantStatus: 413},
		{name: "streamed chunked over the cap", max: 2 << 20, size: 3 << 20, chunked: true, wantStatus: 413, wantUp: true},
		{name: "default cap", size: 16<<20 + 1, wantStatus: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
				_, _ = fmt.Fprintf(w, "%d", len(body))
			})
			p := newTestProxy(t, up.url(t), Options{Tokens: newSeqTokens("tok-"), MaxBodyBytes: tt.max})
			var body io.Reader = bytes.NewReader(bytes.Repeat([]byte("a"), tt.size))
			if tt.chunked {
				body = io.MultiReader(body)
			}
			req, _ := http.NewRequest(http.MethodPost, p.URL+"/proxy/loganalytics/v1/workspaces/ws/query", body)
			req.Header.Set("Content-Type", "application/json")
			res, got := p.do(t, req)
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d %s, want %d", res.StatusCode, got, tt.wantStatus)
			}
			if tt.wantStatus == 413 {
				var b httperr.Body
				if err := json.Unmarshal([]byte(got), &b); err != nil || b.Error != "request_too_large" || !strings.Contains(b.Description, "limit of ") {
					t.Errorf("body = %s, want request_too_large naming the limit", got)
				}
			}
			if n := len(up.requests()); !tt.wantUp && n != 0 {
				t.Errorf("upstream got %d requests, want 0", n)
			}
		})
	}
}

// freeAddr returns a loopback address nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// timeoutError is a net.Error that timed out.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout at 10.1.2.3:443" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestUpstreamFailure(t *testing.T) {
	t.Parallel()
	down := &url.URL{Scheme: "http", Host: freeAddr(t)}
	tests := []struct {
		name      string
		transport http.RoundTripper
		wantCode  int
		wantError string
	}{
		{name: "connection refused", wantCode: 502, wantError: "upstream_unreachable"},
		{
			name:      "timeout",
			transport: roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, timeoutError{} }),
			wantCode:  504, wantError: "upstream_timeout",
		},
		{
			name: "deadline",
			transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
				return nil, fmt.Errorf("dial: %w", context.DeadlineExceeded)
			}),
			wantCode: 504, wantError: "upstream_timeout",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newTestProxy(t, down, Options{Tokens: newSeqTokens("tok-"), Transport: tt.transport})
			res, body := p.get(t, "/proxy/loganalytics/v1/workspaces/ws/query")
			var b httperr.Body
			if err := json.Unmarshal([]byte(body), &b); err != nil {
				t.Fatalf("body = %s: %v", body, err)
			}
			if res.StatusCode != tt.wantCode || b.Error != tt.wantError {
				t.Errorf("answer = %d %q, want %d %q", res.StatusCode, b.Error, tt.wantCode, tt.wantError)
			}
			if !strings.Contains(b.Description, `route "loganalytics" (`+down.Host+`)`) {
				t.Errorf("description = %q, want it to name the route and host", b.Description)
			}
			for _, leak := range []string{"refused", "dial", "timeout at", "10.1.2.3"} {
				if strings.Contains(body, leak) {
					t.Errorf("body = %s, want no Go error text (%q)", body, leak)
				}
			}
			if got := metricValue(t, p, "broker_proxy_requests_total", "route", "loganalytics", "code", fmt.Sprint(tt.wantCode)); got != 1 {
				t.Errorf("requests_total{code=%d} = %v, want 1", tt.wantCode, got)
			}
			if n := p.logs.FilterMessage("proxy request failed").Len(); n != 1 {
				t.Errorf("%d logs of the failure, want 1", n)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if r.URL.Path == "/v1/missing" {
			w.WriteHeader(http.StatusNotFound)
		}
	})
	clock := &stepClock{t: time.Unix(1_700_000_000, 0), step: 250 * time.Millisecond}
	p := newTestProxy(t, up.url(t), Options{Tokens: newSeqTokens("tok-"), Now: clock.Now})
	for _, path := range []string{"/proxy/loganalytics/v1/a", "/proxy/loganalytics/v1/b", "/proxy/loganalytics/v1/missing", "/proxy/loganalytics/%2e%2e", "/proxy/other/x"} {
		p.get(t, path)
	}
	want := `
# HELP broker_proxy_requests_total Proxied requests by route and HTTP status answered to the caller.
# TYPE broker_proxy_requests_total counter
broker_proxy_requests_total{code="200",route="loganalytics"} 2
broker_proxy_requests_total{code="400",route="loganalytics"} 1
broker_proxy_requests_total{code="404",route="loganalytics"} 1
broker_proxy_requests_total{code="404",route="unknown"} 1
`
	if err := testutil.GatherAndCompare(p.reg, strings.NewReader(want), "broker_proxy_requests_total"); err != nil {
		t.Error(err)
	}
	// Every request took exactly two clock readings, 250 ms apart.
	wantHist := `
# HELP broker_proxy_request_duration_seconds Time from receiving a proxied request to the end of its answer, by route.
# TYPE broker_proxy_request_duration_seconds histogram
broker_proxy_request_duration_seconds_bucket{route="loganalytics",le="0.005"} 0
broker_proxy_request_duration_seconds_bucket{route="loganalytics",le="0.01"} 0
broker_proxy_request_duration_seconds_bucket{route="loganalytics",le="0.025"} 0
broker_proxy_request_duration_seconds_bucket{route="loganalytics",le="0.05"} 0
broker_proxy_request_duration_seconds_bucket{route="loganalytics",le="0.1"} 0
broker_proxy_request_duration_seconds_bucket{route="loganalytics",le="0.25"} 4
broker_proxy_request_duration_seconds_bucket{route="loganalytics",le="0.5"} 4
broker_proxy_request_duration_seconds_bucket{route="loganalytics",le="1"} 4
broker_proxy_request_duration_seconds_bucket{route="loganalytics",le="2.5"} 4
broker_proxy_request_duration_seconds_bucket{route="loganalytics",le="5"} 4
broker_proxy_request_duration_seconds_bucket{route="loganalytics",le="10"} 4
broker_proxy_request_duration_seconds_bucket{route="loganalytics",le="30"} 4
broker_proxy_request_duration_seconds_bucket{route="loganalytics",le="60"} 4
broker_proxy_request_duration_seconds_bucket{route="loganalytics",le="180"} 4
broker_proxy_request_duration_seconds_bucket{route="loganalytics",le="600"} 4
broker_proxy_request_duration_seconds_bucket{route="loganalytics",le="+Inf"} 4
broker_proxy_request_duration_seconds_sum{route="loganalytics"} 1
broker_proxy_request_duration_seconds_count{route="loganalytics"} 4
broker_proxy_request_duration_seconds_bucket{route="unknown",le="0.005"} 0
broker_proxy_request_duration_seconds_bucket{route="unknown",le="0.01"} 0
broker_proxy_request_duration_seconds_bucket{route="unknown",le="0.025"} 0
broker_proxy_request_duration_seconds_bucket{route="unknown",le="0.05"} 0
broker_proxy_request_duration_seconds_bucket{route="unknown",le="0.1"} 0
broker_proxy_request_duration_seconds_bucket{route="unknown",le="0.25"} 1
broker_proxy_request_duration_seconds_bucket{route="unknown",le="0.5"} 1
broker_proxy_request_duration_seconds_bucket{route="unknown",le="1"} 1
broker_proxy_request_duration_seconds_bucket{route="unknown",le="2.5"} 1
broker_proxy_request_duration_seconds_bucket{route="unknown",le="5"} 1
broker_proxy_request_duration_seconds_bucket{route="unknown",le="10"} 1
broker_proxy_request_duration_seconds_bucket{route="unknown",le="30"} 1
broker_proxy_request_duration_seconds_bucket{route="unknown",le="60"} 1
broker_proxy_request_duration_seconds_bucket{route="unknown",le="180"} 1
broker_proxy_request_duration_seconds_bucket{route="unknown",le="600"} 1
broker_proxy_request_duration_seconds_bucket{route="unknown",le="+Inf"} 1
broker_proxy_request_duration_seconds_sum{route="unknown"} 0.25
broker_proxy_request_duration_seconds_count{route="unknown"} 1
`
	if err := testutil.GatherAndCompare(p.reg, strings.NewReader(wantHist), "broker_proxy_request_duration_seconds"); err != nil {
		t.Error(err)
	}
	// Labels are bounded: no path ever becomes one.
	mfs, _ := p.reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if strings.Contains(lp.GetValue(), "/") {
					t.Errorf("%s has label %s=%q, want no paths in labels", mf.GetName(), lp.GetName(), lp.GetValue())
				}
			}
		}
	}
}

func TestNoTokenLeaks(t *testing.T) {
	t.Parallel()
	const secret = "eyJTOKEN.SECRET.VALUE"
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		switch r.URL.Path {
		case "/v1/401":
			w.WriteHeader(http.StatusUnauthorized)
		case "/v1/403":
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, `{"error":{"code":"InsufficientAccessError"}}`)
		case "/v1/500":
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	n := 0
	tokens := &fakeTokens{bearer: func(context.Context, string) (string, error) {
		n++
		if n > 6 {
			return "", &httperr.Error{Status: 503, Code: "token_unavailable", Description: "No token."}
		}
		return secret + fmt.Sprint(n), nil
	}}
	p := newTestProxy(t, up.url(t), Options{Tokens: tokens})
	var bodies []string
	for _, path := range []string{"/v1/401", "/v1/403", "/v1/500", "/v1/ok", "/v1/%2e%2e", "/v1/no-token"} {
		res, body := p.get(t, "/proxy/loganalytics"+path)
		bodies = append(bodies, body)
		for k, vs := range res.Header {
			for _, v := range vs {
				if strings.Contains(v, "eyJTOKEN") {
					t.Errorf("response header %s = %q holds the token", k, v)
				}
			}
		}
	}
	down := newTestProxy(t, &url.URL{Scheme: "http", Host: freeAddr(t)}, Options{Tokens: tokens})
	_, body := down.get(t, "/proxy/loganalytics/v1/x")
	bodies = append(bodies, body)

	for _, b := range bodies {
		if strings.Contains(b, "eyJTOKEN") {
			t.Errorf("answer body %s holds the token", b)
		}
	}
	for _, tp := range []*testProxy{p, down} {
		if tp.logs.Len() == 0 {
			t.Fatal("no log lines; the test proves nothing")
		}
		for _, e := range tp.logs.All() {
			line := fmt.Sprint(e.Message, e.ContextMap())
			if strings.Contains(line, "eyJTOKEN") {
				t.Errorf("log line %s holds the token", line)
			}
		}
		mfs, _ := tp.reg.Gather()
		if strings.Contains(fmt.Sprint(mfs), "eyJTOKEN") {
			t.Error("a metric holds the token")
		}
	}
}

func TestMounted(t *testing.T) {
	t.Parallel()
	up := okUpstream(t)
	h, err := New(Options{Tokens: newSeqTokens("tok-"), Routes: []Route{{Name: "loganalytics", Upstream: up.url(t), Scope: laScope}}})
	if err != nil {
		t.Fatal(err)
	}
	mount := chi.NewRouter()
	mount.Mount("/proxy", h)
	wildcard := chi.NewRouter()
	wildcard.Handle("/proxy/*", h)
	stripped := http.StripPrefix("/proxy", h)
	for name, hh := range map[string]http.Handler{"chi Mount": mount, "chi wildcard": wildcard, "StripPrefix": stripped, "bare": h} {
		t.Run(name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			hh.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/proxy/loganalytics/v1/workspaces/"+strings.ReplaceAll(name, " ", "-")+"/query", nil))
			if rec.Code != 200 {
				t.Fatalf("status = %d %s, want 200", rec.Code, rec.Body)
			}
			reqs := up.requests()
			want := "/v1/workspaces/" + strings.ReplaceAll(name, " ", "-") + "/query"
			if got := reqs[len(reqs)-1].Path; got != want {
				t.Errorf("upstream path = %q, want %q", got, want)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	good := Routes(azure.AzurePublic, nil)
	dup := append(Routes(azure.AzurePublic, nil), Routes(azure.AzurePublic, nil)[0])
	bad := Routes(azure.AzurePublic, nil)
	bad[1].Upstream = &url.URL{Scheme: "http", Host: "api.applicationinsights.io"}
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no tokens", Options{Routes: good}, "proxy: Tokens is required"},
		{"no routes", Options{Tokens: newSeqTokens("t")}, "proxy: no routes"},
		{"duplicate", Options{Tokens: newSeqTokens("t"), Routes: dup}, `proxy: route "loganalytics" is defined twice`},
		{"http upstream", Options{Tokens: newSeqTokens("t"), Routes: bad}, `proxy: route "appinsights": upstream must use https (http is allowed only for a loopback host)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil || err.Error() != tt.want {
				t.Errorf("New() error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestConcurrentRequests(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, refuseTok1)
	tokens := newSeqTokens("tok-")
	p := newTestProxy(t, up.url(t), Options{Tokens: tokens})
	const n = 32
	errs := make(chan error, n)
	for i := range n {
		go func() {
			body := fmt.Sprintf(`{"query":"Heartbeat | take %d"}`, i)
			req, _ := http.NewRequest(http.MethodPost, p.URL+"/proxy/loganalytics/v1/workspaces/ws/query", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			res, err := p.client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			got, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || string(got) != "ok:"+body {
				errs <- fmt.Errorf("POST %s = %d %s, want 200 ok:%s", body, res.StatusCode, got, body)
				return
			}
			errs <- nil
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := metricValue(t, p, "broker_proxy_requests_total", "route", "loganalytics", "code", "200"); got != n {
		t.Errorf("requests_total{code=200} = %v, want %d", got, n)
	}
}

func TestDefaultTransport(t *testing.T) {
	t.Parallel()
	tr := newTransport()
	if tr.ResponseHeaderTimeout <= 10*time.Minute {
		t.Errorf("ResponseHeaderTimeout = %v, want more than a 10-minute query (Prefer: wait=600)", tr.ResponseHeaderTimeout)
	}
	if tr.TLSHandshakeTimeout <= 0 || tr.TLSHandshakeTimeout > time.Minute {
		t.Errorf("TLSHandshakeTimeout = %v, want a bound under a minute", tr.TLSHandshakeTimeout)
	}
	if tr.DialContext == nil {
		t.Error("DialContext = nil, want a dialer with a timeout")
	}
	if !tr.DisableCompression || !tr.ForceAttemptHTTP2 || tr.MaxIdleConnsPerHost < 16 {
		t.Errorf("DisableCompression, ForceAttemptHTTP2, MaxIdleConnsPerHost = %v, %v, %d; want true, true, ≥ 16",
			tr.DisableCompression, tr.ForceAttemptHTTP2, tr.MaxIdleConnsPerHost)
	}
}
