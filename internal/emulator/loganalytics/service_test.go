package loganalytics

import (
	"bytes"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// TestGolden sends one request per route and error case and compares the
// status, the headers that matter and the exact body with testdata/golden.
func TestGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setup   func(*Service, *clock)
		req     req
		status  int
		headers map[string]string // expected header values ("" = absent)
	}{
		{name: "query_get_print", req: req{path: queryURL(testWorkspace, `print x=1, y="a", 2.5, true`), token: tokGood}, status: 200,
			headers: map[string]string{"Content-Type": "application/json; charset=utf-8", "Vary": "Accept-Encoding", "Access-Control-Allow-Origin": "*", "Preference-Applied": ""}},
		{name: "query_post_take", req: req{method: "POST", path: wsPath(testWorkspace, "query"), body: `{"query":"Heartbeat | take 2"}`, token: tokGood}, status: 200},
		{name: "query_count", req: req{path: queryURL(testWorkspace, "AzureActivity | count"), token: tokGood}, status: 200},
		{name: "query_project_limit", req: req{path: queryURL(testWorkspace, "Perf | limit 3 | project Computer, Value = CounterValue, SampleCount"), token: tokGood}, status: 200},
		{name: "query_usage_all", req: req{path: queryURL(testWorkspace, "Usage"), token: tokGood}, status: 200},
		{name: "query_timespan", req: req{method: "POST", path: wsPath(testWorkspace, "query") + "?timespan=P1D", body: `{"query":"print 1","timespan":"2024-05-01T00:00:00Z/2024-05-01T12:00:00Z","workspaces":["` + testWorkspace + `"]}`, token: tokGood}, status: 200},
		{name: "query_stats_render", req: req{method: "POST", path: wsPath(testWorkspace, "query"), body: `{"query":"Heartbeat | count | render table"}`, token: tokGood,
			header: map[string]string{"Prefer": "include-statistics=true,include-render=true,wait=600"}}, status: 200,
			headers: map[string]string{"Preference-Applied": "wait=600"}},
		{name: "resource_query", req: req{method: "POST", path: "/v1" + testResource + "/query", body: `{"query":"Heartbeat | take 1 | project Computer"}`, token: tokGood}, status: 200},
		{name: "metadata", req: req{path: wsPath(testWorkspace, "metadata"), token: tokGood}, status: 200},
		{name: "partial_error", setup: func(s *Service, _ *clock) { s.InjectFault(testWorkspace, Fault{PartialError: true}) },
			req: req{path: queryURL(testWorkspace, "print 2"), token: tokGood}, status: 200},

		{name: "err_401_missing", req: req{path: queryURL(testWorkspace, "print 1")}, status: 401},
		{name: "err_401_basic", req: req{path: queryURL(testWorkspace, "print 1"), header: map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}}, status: 401},
		{name: "err_401_expired", req: req{path: queryURL(testWorkspace, "print 1"), token: tokExpired}, status: 401,
			headers: map[string]string{"Www-Authenticate": `Bearer error="invalid_token", error_description="The access token has expired"`}},
		{name: "err_401_stale", req: req{path: queryURL(testWorkspace, "print 1"), token: tokStale}, status: 401},
		{name: "err_403_malformed", req: req{path: queryURL(testWorkspace, "print 1"), token: tokMalformed}, status: 403},
		{name: "err_403_signature", req: req{path: queryURL(testWorkspace, "print 1"), token: tokBadSig}, status: 403},
		{name: "err_403_audience", req: req{path: queryURL(testWorkspace, "print 1"), token: tokWrongAud}, status: 403},
		{name: "err_403_insufficient", req: req{path: queryURL(otherWS, "print 1"), token: tokGood}, status: 403},
		{name: "err_403_resource", req: req{path: "/v1" + testResource + "/query?query=print%201", token: tokOther}, status: 403},
		{name: "err_400_semantic", req: req{path: queryURL(testWorkspace, "AppInsights | where x"), token: tokGood}, status: 400},
		{name: "err_400_semantic_take", req: req{path: queryURL(testWorkspace, "AppInsights | take 1"), token: tokGood}, status: 400},
		{name: "err_400_column", req: req{path: queryURL(testWorkspace, "Heartbeat | project Nope"), token: tokGood}, status: 400},
		{name: "err_400_syntax", req: req{path: queryURL(testWorkspace, "Heartbeat | take"), token: tokGood}, status: 400},
		{name: "err_400_invalid_json", req: req{method: "POST", path: wsPath(testWorkspace, "query"), body: `{"query":`, token: tokGood}, status: 400},
		{name: "err_400_timespan", req: req{path: queryURL(testWorkspace, "print 1") + "&timespan=yesterday", token: tokGood}, status: 400},
		{name: "err_400_missing_query", req: req{path: wsPath(testWorkspace, "query"), token: tokGood}, status: 400},
		{name: "err_400_unknown_workspace", req: req{path: queryURL("ffffffff-0000-4000-8000-000000000000", "print 1"), token: tokGood}, status: 400},
		{name: "err_404_path", req: req{path: "/v1/workspaces/" + testWorkspace + "/nope", token: tokGood}, status: 404},
		{name: "err_404_verb", req: req{method: "DELETE", path: wsPath(testWorkspace, "query"), token: tokGood}, status: 404},
		{name: "err_404_resource", req: req{path: "/v1/subscriptions/x/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/gone/query?query=print%201", token: tokGood}, status: 404},
		{name: "err_504_wait", setup: func(s *Service, _ *clock) { _ = s.SetQueryDuration(testWorkspace, 10*time.Second) },
			req: req{path: queryURL(testWorkspace, "print 1"), token: tokGood, header: map[string]string{"Prefer": "wait=1"}}, status: 504,
			headers: map[string]string{"Preference-Applied": "wait=1"}},
		{name: "err_429_fault", setup: func(s *Service, _ *clock) {
			s.InjectFault("", Fault{Status: 429, RetryAfter: 1500 * time.Millisecond})
		}, req: req{path: queryURL(testWorkspace, "print 1"), token: tokGood}, status: 429, headers: map[string]string{"Retry-After": "2"}},
		{name: "err_503_fault", setup: func(s *Service, _ *clock) { s.InjectFault(testWorkspace, Fault{Status: 503}) },
			req: req{path: queryURL(testWorkspace, "print 1"), token: tokGood}, status: 503},

		{name: "batch", req: req{method: "POST", path: "/v1/$batch", token: tokGood, body: `{"requests":[` +
			`{"id":"1","headers":{"prefer":"wait=30"},"body":{"query":"Heartbeat | take 1 | project Computer"},"method":"POST","path":"/query","workspace":"` + testWorkspace + `"},` +
			`{"id":"2","body":{"query":"print 1"},"method":"POST","path":"/fakePath","workspace":"` + testWorkspace + `"},` +
			`{"id":"3","body":{"query":"print 1"},"method":"POST","path":"/query","workspace":"` + otherWS + `"},` +
			`{"id":"4","body":{"query":"print 1"},"method":"POST","path":"/query","workspace":"not-a-workspace"},` +
			`{"id":"5","path":"/query?query=AzureActivity%20%7C%20count","workspace":"` + testWorkspace + `"},` +
			`{"id":"6","body":{"query":"Nope"},"method":"POST","path":"/query","workspace":"` + testWorkspace + `"}]}`}, status: 200},
		{name: "batch_duplicate_ids", req: req{method: "POST", path: "/v1/$batch", token: tokGood, body: `{"requests":[{"id":"1","workspace":"w","path":"/query"},{"id":"1","workspace":"w","path":"/query"}]}`}, status: 400},
		{name: "batch_missing_id", req: req{method: "POST", path: "/v1/$batch", token: tokGood, body: `{"requests":[{"workspace":"w","path":"/query"}]}`}, status: 400},
		{name: "batch_invalid_json", req: req{method: "POST", path: "/v1/$batch", token: tokGood, body: `{"requests":[}`}, status: 400},
		{name: "batch_401", req: req{method: "POST", path: "/v1/$batch", body: `{"requests":[]}`}, status: 401},
		{name: "post_no_content_type", req: req{method: "POST", path: wsPath(testWorkspace, "query"), body: `{"query":"print 1"}`, token: tokGood,
			header: map[string]string{"Content-Type": ""}}, status: 200, headers: map[string]string{"Content-Length": "0", "Content-Type": ""}},
		{name: "post_text_plain", req: req{method: "POST", path: wsPath(testWorkspace, "query"), body: `{"query":"print 1"}`, token: tokGood,
			header: map[string]string{"Content-Type": "text/plain"}}, status: 200},
		{name: "post_empty_body", req: req{method: "POST", path: wsPath(testWorkspace, "query"), token: tokGood,
			header: map[string]string{"Content-Type": "application/json"}}, status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, c := newTestService(t)
			if tt.setup != nil {
				tt.setup(s, c)
			}
			res, body := do(t, s, tt.req)
			if res.StatusCode != tt.status {
				t.Errorf("status = %d, want %d (body %s)", res.StatusCode, tt.status, body)
			}
			for k, want := range tt.headers {
				if got := res.Header.Get(k); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			golden(t, tt.name, body)
		})
	}
}

// golden compares body with testdata/golden/name.json, or rewrites it with
// -update. An empty body is stored as an empty file.
func golden(t *testing.T, name string, body []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name+".json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, body, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create): %v", err)
	}
	if !bytes.Equal(body, want) {
		t.Errorf("body differs from %s (-want +got):\n%s", path, cmp.Diff(string(want), string(body)))
	}
}

// TestCommonHeaders checks the recorded headers on a success and an error.
func TestCommonHeaders(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t)
	for _, r := range []req{
		{path: queryURL(testWorkspace, "print 1"), token: tokGood},
		{path: queryURL(testWorkspace, "print 1")},
	} {
		res, _ := do(t, s, r)
		want := map[string]string{
			"Access-Control-Allow-Origin":   "*",
			"Access-Control-Expose-Headers": "Retry-After,Age,WWW-Authenticate,x-resource-identities,x-ms-status-location",
			"Strict-Transport-Security":     "max-age=15724800; includeSubDomains",
			"Vary":                          "Accept-Encoding",
			"X-Content-Type-Options":        "nosniff",
			"Content-Type":                  "application/json; charset=utf-8",
		}
		for k, v := range want {
			if got := res.Header.Get(k); got != v {
				t.Errorf("%s %s: header %s = %q, want %q", r.method, r.path, k, got, v)
			}
		}
	}
}

// TestRoute covers the router's corner cases.
func TestRoute(t *testing.T) {
	t.Parallel()
	tests := []struct {
		method, path string
		want         match
	}{
		{"GET", "/v1/workspaces/w/query", match{kind: routeQuery, workspaceID: "w"}},
		{"POST", "/V1/Workspaces/w/Query/", match{kind: routeQuery, workspaceID: "w"}},
		{"GET", "/v1/workspaces/w/metadata", match{kind: routeMetadata, workspaceID: "w"}},
		{"POST", "/v1/$batch", match{kind: routeBatch}},
		{"GET", "/v1/$batch", match{kind: routeUnknown}},
		{"POST", "/v1/subscriptions/s/resourceGroups/rg/query", match{kind: routeResource, resourceID: "/subscriptions/s/resourceGroups/rg"}},
		{"GET", "/v1/subscriptions/s/resourcegroups/rg/providers/p/t/n/query", match{kind: routeResource, resourceID: "/subscriptions/s/resourcegroups/rg/providers/p/t/n"}},
		{"GET", "/v1/subscriptions//query", match{kind: routeUnknown}},
		{"PUT", "/v1/workspaces/w/query", match{kind: routeUnknown}},
		{"GET", "/v1/workspaces//query", match{kind: routeUnknown}},
		{"GET", "/beta/workspaces/w/query", match{kind: routeUnknown}},
		{"GET", "/v1/workspaces/w/query/x", match{kind: routeUnknown}},
		{"GET", "/", match{kind: routeUnknown}},
	}
	for _, tt := range tests {
		if got := route(tt.method, tt.path); got != tt.want {
			t.Errorf("route(%s, %s) = %+v, want %+v", tt.method, tt.path, got, tt.want)
		}
	}
}

// TestAudience checks the configured audience, with and without a trailing
// slash.
func TestAudience(t *testing.T) {
	t.Parallel()
	tests := []struct {
		configured, token string
		want              int
	}{
		{"", "https://api.loganalytics.io", 200},
		{"", "https://api.loganalytics.io/", 200},
		{"", "https://api.loganalytics.azure.com", 403},
		{"https://api.loganalytics.us/", "https://api.loganalytics.us", 200},
		{"https://api.loganalytics.us", "https://api.loganalytics.io", 403},
	}
	for _, tt := range tests {
		s := New(Options{Audience: tt.configured, Verify: func(string) (Principal, error) {
			return Principal{AppID: testAppID, Audience: tt.token}, nil
		}})
		s.AddWorkspace(testWorkspace)
		if err := s.Grant(testWorkspace, testAppID, RoleLogAnalyticsReader, time.Time{}); err != nil {
			t.Fatal(err)
		}
		res, body := do(t, s, req{path: queryURL(testWorkspace, "print 1"), token: "t"})
		if res.StatusCode != tt.want {
			t.Errorf("audience %q with configured %q: status = %d, want %d (%s)", tt.token, tt.configured, res.StatusCode, tt.want, body)
		}
	}
}

// TestNilVerifier refuses every token.
func TestNilVerifier(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	s.AddWorkspace(testWorkspace)
	res, _ := do(t, s, req{path: queryURL(testWorkspace, "print 1"), token: "anything"})
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("status = %d, want 403", res.StatusCode)
	}
}
