package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"testing"
)

func TestCleanPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, wantPath, wantRaw string
		wantErr               error
	}{
		{in: "", wantPath: "", wantRaw: ""},
		{in: "/", wantPath: "/", wantRaw: "/"},
		{in: "/v1/workspaces/ws/query", wantPath: "/v1/workspaces/ws/query", wantRaw: "/v1/workspaces/ws/query"},
		{in: "/v1/%24batch", wantPath: "/v1/$batch", wantRaw: "/v1/%24batch"},
		{in: "//v1//query//", wantPath: "/v1/query/", wantRaw: "/v1/query/"},
		{in: "v1/query", wantPath: "/v1/query", wantRaw: "/v1/query"},
		{in: "/a%20b/...", wantPath: "/a b/...", wantRaw: "/a%20b/..."},
		{in: "/a.b/.c/..d", wantPath: "/a.b/.c/..d", wantRaw: "/a.b/.c/..d"},
		{in: "/..", wantErr: errDotSegment},
		{in: "/.", wantErr: errDotSegment},
		{in: "/a/../b", wantErr: errDotSegment},
		{in: "/a/%2e%2E", wantErr: errDotSegment},
		{in: "/%2e/a", wantErr: errDotSegment},
		{in: "/a%2fb", wantErr: errEncodedSep},
		{in: "/a%5Cb", wantErr: errEncodedSep},
		{in: `/a\b`, wantErr: errBackslash},
		{in: "/%252e%252e", wantErr: errDoubleEncoding},
		{in: "/a%0a", wantErr: errControl},
		{in: "/a\x00", wantErr: errControl},
		{in: "/a%7F", wantErr: errControl},
		{in: "/a%", wantErr: errBadEscape},
		{in: "/a%2", wantErr: errBadEscape},
		{in: "/a%g0", wantErr: errBadEscape},
	}
	for _, tt := range tests {
		gotPath, gotRaw, err := cleanPath(tt.in)
		if err != tt.wantErr || gotPath != tt.wantPath || gotRaw != tt.wantRaw {
			t.Errorf("cleanPath(%q) = %q, %q, %v; want %q, %q, %v", tt.in, gotPath, gotRaw, err, tt.wantPath, tt.wantRaw, tt.wantErr)
		}
	}
}

func TestSplitRoute(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, name, rest string }{
		{"/proxy/loganalytics/v1/query", "loganalytics", "/v1/query"},
		{"/proxy/loganalytics", "loganalytics", ""},
		{"/proxy/loganalytics/", "loganalytics", "/"},
		{"/proxy//loganalytics/v1", "loganalytics", "/v1"},
		{"/proxy/", "", ""},
		{"/proxy", "", ""},
		{"/loganalytics/v1", "loganalytics", "/v1"},
		{"/proxyx/v1", "proxyx", "/v1"},
	}
	for _, tt := range tests {
		if name, rest := splitRoute(tt.in); name != tt.name || rest != tt.rest {
			t.Errorf("splitRoute(%q) = %q, %q; want %q, %q", tt.in, name, rest, tt.name, tt.rest)
		}
	}
}

func TestCleanPathAllocs(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		_, _, _ = cleanPath("/v1/workspaces/a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1/query")
		_, _ = splitRoute("/proxy/loganalytics/v1/workspaces/a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1/query")
	})
	if allocs != 0 {
		t.Errorf("cleanPath + splitRoute allocate %v times per run, want 0", allocs)
	}
}

// FuzzCleanPath checks that no accepted path can leave its route: the
// decoded result, read by any server, has no dot segment, no backslash and
// no empty segment, is already clean, and its encoding decodes to it.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/v1/workspaces/ws/query", "/v1/%24batch", "//a//b/", "/%2e%2e/x", "/a%2fb", `/a\b`, "/%252e", ".%2e", "/a/./b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		p, raw, err := cleanPath(in)
		if err != nil {
			if p != "" || raw != "" {
				t.Errorf("cleanPath(%q) = %q, %q with error %v; want empty results", in, p, raw, err)
			}
			return
		}
		if in == "" {
			return
		}
		if !strings.HasPrefix(p, "/") || !strings.HasPrefix(raw, "/") {
			t.Errorf("cleanPath(%q) = %q, %q; want both to start with /", in, p, raw)
		}
		if strings.Contains(p, `\`) || strings.Contains(p, "//") || strings.Contains(p, "%") {
			t.Errorf("cleanPath(%q) = %q; want no backslash, empty segment or double encoding", in, p)
		}
		for seg := range strings.SplitSeq(p, "/") {
			if seg == "." || seg == ".." {
				t.Errorf("cleanPath(%q) = %q; holds a dot segment", in, p)
			}
		}
		if c := path.Clean(p); c != strings.TrimSuffix(p, "/") && !(p == "/" && c == "/") {
			t.Errorf("cleanPath(%q) = %q; path.Clean gives %q", in, p, c)
		}
		if dec, err := url.PathUnescape(raw); err != nil || dec != p {
			t.Errorf("cleanPath(%q) raw %q decodes to %q (%v), want %q", in, raw, dec, err, p)
		}
		// Joined to an upstream base path, it stays under it.
		if j := path.Join("/base", p); j != "/base" && !strings.HasPrefix(j, "/base/") {
			t.Errorf("cleanPath(%q) = %q leaves /base: %q", in, p, j)
		}
	})
}

// FuzzServe sends arbitrary request targets through the handler and checks
// that only the route's host is contacted, always under the route's base
// path.
func FuzzServe(f *testing.F) {
	for _, s := range []string{"/proxy/la/v1/query?x=1", "/proxy/la/../other", "/proxy/la/%2e%2e/x", "/proxy/la/a%2fb", "/proxy//la//x", "/la/v1"} {
		f.Add(s)
	}
	base := &url.URL{Scheme: "https", Host: "upstream.example", Path: "/base"}
	var got *http.Request
	h, err := New(Options{
		Routes: []Route{{Name: "la", Upstream: base, Scope: laScope}},
		Tokens: &fakeTokens{bearer: func(context.Context, string) (string, error) { return "tok", nil }},
		Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			got = r
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
		}),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil || u.Host != "" || u.Scheme != "" {
			return
		}
		got = nil
		r := &http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}, Body: http.NoBody, Host: "broker"}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r.WithContext(context.Background()))
		_, _ = io.Copy(io.Discard, rec.Body)
		if got == nil {
			if rec.Code == 200 {
				t.Errorf("GET %q = 200 without an upstream request", target)
			}
			return
		}
		if got.URL.Host != "upstream.example" || got.URL.Scheme != "https" {
			t.Errorf("GET %q went to %s://%s", target, got.URL.Scheme, got.URL.Host)
		}
		if p := got.URL.Path; p != "/base/" && !strings.HasPrefix(p, "/base/") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") {
			t.Errorf("GET %q reached path %q, outside /base/", target, p)
		}
		if ep := got.URL.EscapedPath(); ep != "/base/" && !strings.HasPrefix(ep, "/base/") {
			t.Errorf("GET %q reached escaped path %q, outside /base/", target, ep)
		}
	})
}
