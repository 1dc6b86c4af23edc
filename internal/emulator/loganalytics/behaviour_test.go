package loganalytics

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestGzip(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t)
	tests := []struct {
		name, accept string
		gzip         bool
	}{
		{"none", "", false},
		{"gzip", "gzip", true},
		{"list", "deflate, gzip;q=0.5, br", true},
		{"refused", "gzip;q=0", false},
		{"identity", "identity", false},
		{"upper", "GZIP", true},
	}
	_, plain := do(t, s, req{path: queryURL(testWorkspace, "Heartbeat | take 3"), token: tokGood})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hr := httptest.NewRequest("GET", queryURL(testWorkspace, "Heartbeat | take 3"), nil)
			hr.Header.Set("Authorization", "Bearer "+tokGood)
			if tt.accept != "" {
				hr.Header.Set("Accept-Encoding", tt.accept)
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, hr)
			if got := rec.Header().Get("Vary"); got != "Accept-Encoding" {
				t.Errorf("Vary = %q, want Accept-Encoding", got)
			}
			body := rec.Body.Bytes()
			if got := rec.Header().Get("Content-Encoding") == "gzip"; got != tt.gzip {
				t.Fatalf("Accept-Encoding %q: gzip = %v, want %v", tt.accept, got, tt.gzip)
			}
			if tt.gzip {
				if rec.Header().Get("Content-Length") != "" {
					t.Errorf("gzip answer has Content-Length %q", rec.Header().Get("Content-Length"))
				}
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				if body, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(body, plain) {
				t.Errorf("decoded body = %s, want %s", body, plain)
			}
		})
	}
	// Errors are compressed too.
	res, body := do(t, s, req{path: queryURL(testWorkspace, "print 1"), header: map[string]string{"Accept-Encoding": "gzip"}})
	if res.StatusCode != 401 || res.Header.Get("Content-Encoding") != "gzip" || !bytes.Contains(body, []byte("AuthenticationFailed")) {
		t.Errorf("401 with gzip: status %d, encoding %q, body %s", res.StatusCode, res.Header.Get("Content-Encoding"), body)
	}
}

func TestParsePrefer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		values []string
		want   preferences
	}{
		{nil, preferences{wait: 180}},
		{[]string{"wait=30"}, preferences{wait: 30, waitSet: true}},
		{[]string{"include-statistics=true,include-render=true,wait=600"}, preferences{wait: 600, waitSet: true, statistics: true, render: true}},
		{[]string{"wait=1000"}, preferences{wait: 600, waitSet: true}},
		{[]string{"wait=abc", "include-render=false"}, preferences{wait: 180}},
		{[]string{" Include-Statistics = TRUE ", "wait=-1"}, preferences{wait: 180, statistics: true}},
		{[]string{"respond-async, include-dataSources=true"}, preferences{wait: 180}},
	}
	for _, tt := range tests {
		if got := parsePrefer(tt.values); got != tt.want {
			t.Errorf("parsePrefer(%q) = %+v, want %+v", tt.values, got, tt.want)
		}
	}
}

// TestPreferWait checks the simulated duration against wait, the echo, and
// that nothing sleeps: a 9-minute query answers at once.
func TestPreferWait(t *testing.T) {
	t.Parallel()
	tests := []struct {
		duration time.Duration
		prefer   string
		status   int
		applied  string
	}{
		{0, "", 200, ""},
		{9 * time.Minute, "wait=600", 200, "wait=600"},
		{9 * time.Minute, "", 504, "wait=180"},
		{2 * time.Second, "wait=1", 504, "wait=1"},
		{time.Second, "wait=1", 200, "wait=1"},
		{11 * time.Minute, "wait=3600", 504, "wait=600"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v_%s", tt.duration, tt.prefer), func(t *testing.T) {
			t.Parallel()
			s, _ := newTestService(t)
			if err := s.SetQueryDuration(testWorkspace, tt.duration); err != nil {
				t.Fatal(err)
			}
			res, body := do(t, s, req{path: queryURL(testWorkspace, "print 1"), token: tokGood, header: map[string]string{"Prefer": tt.prefer}})
			if res.StatusCode != tt.status {
				t.Errorf("status = %d, want %d (%s)", res.StatusCode, tt.status, body)
			}
			if got := res.Header.Get("Preference-Applied"); got != tt.applied {
				t.Errorf("Preference-Applied = %q, want %q", got, tt.applied)
			}
		})
	}
	// A fault's duration wins over the workspace's, once.
	s, _ := newTestService(t)
	s.InjectFault(testWorkspace, Fault{QueryDuration: time.Hour})
	for i, want := range []int{504, 200} {
		if res, _ := do(t, s, req{path: queryURL(testWorkspace, "print 1"), token: tokGood}); res.StatusCode != want {
			t.Errorf("request %d: status = %d, want %d", i, res.StatusCode, want)
		}
	}
}

// TestStatisticsRender checks the objects appear only when asked for.
func TestStatisticsRender(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t)
	if err := s.SetQueryDuration(testWorkspace, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		prefer        string
		stats, render bool
	}{
		{"", false, false},
		{"include-statistics=true", true, false},
		{"include-render=true", false, true},
		{"include-statistics=true,include-render=true,wait=600", true, true},
	}
	for _, tt := range tests {
		_, body := do(t, s, req{path: queryURL(testWorkspace, "Perf | take 2"), token: tokGood, header: map[string]string{"Prefer": tt.prefer}})
		var got struct {
			Statistics *struct {
				Query struct {
					ExecutionTime float64 `json:"executionTime"`
				} `json:"query"`
			} `json:"statistics"`
			Render map[string]any `json:"render"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		if (got.Statistics != nil) != tt.stats || (got.Render != nil) != tt.render {
			t.Errorf("Prefer %q: statistics %v render %v, want %v %v", tt.prefer, got.Statistics != nil, got.Render != nil, tt.stats, tt.render)
		}
		if got.Statistics != nil && got.Statistics.Query.ExecutionTime != 1.5 {
			t.Errorf("executionTime = %v, want 1.5", got.Statistics.Query.ExecutionTime)
		}
		if got.Render != nil && (got.Render["yMin"] != "NaN" || got.Render["visualization"] != nil) {
			t.Errorf("render = %v, want yMin NaN and a null visualization", got.Render)
		}
	}
}

// TestRBACPropagation grants a role that takes effect in 10 minutes and
// moves the clock: 403 with a correlationId before, 200 after.
func TestRBACPropagation(t *testing.T) {
	t.Parallel()
	c := newClock()
	n := 0
	s := New(Options{Verify: testVerifier(c), Now: c.Now, NewCorrelationID: func() string { n++; return fmt.Sprintf("cid-%d", n) }})
	s.AddWorkspace(testWorkspace)
	if err := s.AddResource(testResource, testWorkspace); err != nil {
		t.Fatal(err)
	}
	if err := s.Grant(testWorkspace, testObjectID, RoleLogAnalyticsReader, c.Now().Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	query := req{path: queryURL(testWorkspace, "print 1"), token: tokGood}
	resource := req{path: "/v1" + strings.ToUpper(testResource) + "/query?query=print%201", token: tokGood}

	for _, r := range []req{query, resource} {
		res, body := do(t, s, r)
		var e errorBody
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 403 || e.Error.Code != "InsufficientAccessError" || e.Error.CorrelationID == nil || *e.Error.CorrelationID == "" {
			t.Errorf("%s before propagation: %d %s, want 403 InsufficientAccessError with a correlationId", r.path, res.StatusCode, body)
		}
	}
	c.Advance(10*time.Minute - time.Second)
	if res, _ := do(t, s, query); res.StatusCode != 403 {
		t.Errorf("1 s before propagation: status %d, want 403", res.StatusCode)
	}
	c.Advance(time.Second)
	for _, r := range []req{query, resource} {
		if res, body := do(t, s, r); res.StatusCode != 200 {
			t.Errorf("%s after propagation: status %d, want 200 (%s)", r.path, res.StatusCode, body)
		}
	}
	// The object ID matched the grant; another app does not.
	if res, _ := do(t, s, req{path: query.path, token: tokOther}); res.StatusCode != 403 {
		t.Errorf("other app: status %d, want 403", res.StatusCode)
	}
	s.Revoke(testWorkspace, testObjectID)
	if res, _ := do(t, s, query); res.StatusCode != 403 {
		t.Errorf("after revoke: status %d, want 403", res.StatusCode)
	}
	// A grant on the resource alone opens the resource route, not the workspace.
	if err := s.Grant(testResource, testAppID, RoleReader, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if res, _ := do(t, s, resource); res.StatusCode != 200 {
		t.Errorf("resource grant, resource route: status %d, want 200", res.StatusCode)
	}
	if res, _ := do(t, s, query); res.StatusCode != 403 {
		t.Errorf("resource grant, workspace route: status %d, want 403", res.StatusCode)
	}
}

// TestTokenExpiryByClock checks the exp claim against the injected clock.
func TestTokenExpiryByClock(t *testing.T) {
	t.Parallel()
	c := newClock()
	exp := c.Now().Add(time.Minute)
	s := New(Options{Now: c.Now, Verify: func(string) (Principal, error) {
		return Principal{AppID: testAppID, Audience: DefaultAudience, ExpiresAt: exp}, nil
	}})
	s.AddWorkspace(testWorkspace)
	if err := s.Grant(testWorkspace, testAppID, RoleReader, time.Time{}); err != nil {
		t.Fatal(err)
	}
	r := req{path: queryURL(testWorkspace, "print 1"), token: "t"}
	if res, _ := do(t, s, r); res.StatusCode != 200 {
		t.Fatalf("fresh token: status %d, want 200", res.StatusCode)
	}
	c.Advance(time.Minute)
	if res, _ := do(t, s, r); res.StatusCode != 401 || res.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("expired token: status %d, WWW-Authenticate %q; want 401 with a challenge", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
}

func TestRegistrationErrors(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t)
	tests := []struct {
		name string
		err  error
	}{
		{"grant unknown role", s.Grant(testWorkspace, testAppID, "Log Analytics Data Writer", time.Time{})},
		{"grant unknown scope", s.Grant("ffffffff-0000-4000-8000-000000000000", testAppID, RoleReader, time.Time{})},
		{"grant empty principal", s.Grant(testWorkspace, "", RoleReader, time.Time{})},
		{"resource without subscription", s.AddResource("/providers/x", testWorkspace)},
		{"resource in unknown workspace", s.AddResource(testResource, "nope")},
		{"duration of unknown workspace", s.SetQueryDuration("nope", time.Second)},
	}
	for _, tt := range tests {
		if tt.err == nil {
			t.Errorf("%s: error = nil, want one", tt.name)
		}
	}
	if err := s.Grant(testWorkspace, testAppID, "reader", time.Time{}); err != nil {
		t.Errorf("Grant with a lower-case role: %v", err)
	}
	if err := s.Grant(strings.TrimPrefix(testResource, "/")+"/", testAppID, "Owner", time.Time{}); err != nil {
		t.Errorf("Grant on a resource ID without the leading slash: %v", err)
	}
}

func TestAddDemo(t *testing.T) {
	t.Parallel()
	c := newClock()
	s := New(Options{Verify: testVerifier(c), Now: c.Now})
	if err := s.AddDemo(testAppID); err != nil {
		t.Fatal(err)
	}
	if err := s.AddDemo(otherAppID); err != nil { // twice is fine
		t.Fatal(err)
	}
	for _, path := range []string{
		queryURL(DemoWorkspaceID, "Heartbeat | count"),
		"/v1" + DemoVMResourceID + "/query?query=Heartbeat",
		"/v1" + DemoWorkspaceResourceID + "/query?query=print%201",
	} {
		for _, tok := range []string{tokGood, tokOther} {
			if res, body := do(t, s, req{path: path, token: tok}); res.StatusCode != 200 {
				t.Errorf("GET %s as %s: status %d, want 200 (%s)", path, tok, res.StatusCode, body)
			}
		}
	}
}

func TestValidTimespan(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{"PT1H", true}, {"P1D", true}, {"P2W", true}, {"P1DT2H30M", true}, {"PT0.5S", true}, {"pt1h", true},
		{"2024-05-01T00:00:00Z/2024-05-02T00:00:00Z", true},
		{"2024-05-01T00:00:00.123Z/PT1H", true},
		{"PT1H/2024-05-01T00:00:00Z", true},
		{"2024-05-01/2024-05-02", true},
		{"2024-05-01T00%3A00%3A00Z%2F2024-05-02T00%3A00%3A00Z", true},
		{"", false}, {"P", false}, {"PT", false}, {"P1DT", false}, {"1H", false}, {"yesterday", false},
		{"2024-05-02T00:00:00Z/2024-05-01T00:00:00Z", false},
		{"PT1H/PT2H", false}, {"a/b/c", false}, {"2024-05-01 00:00/PT1H", false}, {"P1H", false},
	}
	for _, tt := range tests {
		if got := validTimespan(tt.in); got != tt.want {
			t.Errorf("validTimespan(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestFaults drives the injected faults: status counts, scopes, order.
func TestFaults(t *testing.T) {
	t.Parallel()
	good := req{path: queryURL(testWorkspace, "print 1"), token: tokGood}
	other := req{path: queryURL(otherWS, "print 1"), token: tokGood}
	tests := []struct {
		name   string
		inject func(*Service)
		reqs   []req
		want   []int
	}{
		{"429 twice", func(s *Service) { s.InjectFault("", Fault{Status: 429, Count: 2, RetryAfter: time.Second}) },
			[]req{good, good, good}, []int{429, 429, 200}},
		{"500 then 503", func(s *Service) {
			s.InjectFault("", Fault{Status: 500})
			s.InjectFault("", Fault{Status: 503})
		}, []req{good, good, good}, []int{500, 503, 200}},
		{"workspace scoped", func(s *Service) { s.InjectFault(testWorkspace, Fault{Status: 503}) },
			[]req{other, good, good}, []int{403, 503, 200}},
		{"global before auth", func(s *Service) { s.InjectFault("", Fault{Status: 503}) },
			[]req{{path: good.path}, {path: good.path}}, []int{503, 401}},
		{"global on unknown path", func(s *Service) { s.InjectFault("", Fault{Status: 500}) },
			[]req{{path: "/nope"}, {path: "/nope"}}, []int{500, 404}},
		{"204", func(s *Service) { s.InjectFault(testWorkspace, Fault{Status: 204}) },
			[]req{good, good}, []int{204, 200}},
		{"malformed", func(s *Service) { s.InjectFault(testWorkspace, Fault{Malformed: true}) },
			[]req{good, good}, []int{200, 200}},
		{"clear", func(s *Service) { s.InjectFault("", Fault{Status: 500, Count: 5}); s.ClearFaults() },
			[]req{good}, []int{200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, _ := newTestService(t)
			tt.inject(s)
			for i, r := range tt.reqs {
				res, body := do(t, s, r)
				if res.StatusCode != tt.want[i] {
					t.Errorf("request %d %s: status = %d, want %d (%s)", i, r.path, res.StatusCode, tt.want[i], body)
				}
				if res.StatusCode == 429 && res.Header.Get("Retry-After") != "1" {
					t.Errorf("request %d: Retry-After = %q, want 1", i, res.Header.Get("Retry-After"))
				}
				if tt.name == "malformed" && i == 0 && json.Valid(body) {
					t.Errorf("malformed fault answered valid JSON %s", body)
				}
			}
		})
	}
}

// TestFaultGateAndDrop runs over a real server: a gated request is held
// until the gate opens, a delay ends with the client's context, and a drop
// closes the connection. Channels, not sleeps, tell when the handler is
// entered and left.
func TestFaultGateAndDrop(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t)
	entered, exited := make(chan struct{}, 8), make(chan struct{}, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		defer func() { exited <- struct{}{} }()
		s.ServeHTTP(w, r)
	}))
	defer srv.Close()
	// No keep-alive: the transport would retry a GET that failed on a
	// reused connection, and the drop below must be seen exactly once.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	get := func(ctx context.Context) (*http.Response, error) {
		r, err := http.NewRequestWithContext(ctx, "GET", srv.URL+queryURL(testWorkspace, "print 1"), nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer "+tokGood)
		return client.Do(r)
	}

	gate := make(chan struct{})
	s.InjectFault(testWorkspace, Fault{Gate: gate})
	done := make(chan int, 1)
	go func() {
		res, err := get(context.Background())
		if err != nil {
			done <- -1
			return
		}
		res.Body.Close()
		done <- res.StatusCode
	}()
	<-entered
	select {
	case <-exited:
		t.Fatal("gated request answered before the gate opened")
	default:
	}
	close(gate)
	<-exited
	if code := <-done; code != 200 {
		t.Errorf("gated request: status %d, want 200", code)
	}

	// A delay far longer than the test ends with the client's context.
	s.InjectFault("", Fault{Delay: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		res, err := get(ctx)
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	<-entered
	cancel()
	if err := <-errc; err == nil {
		t.Error("delayed request succeeded after its context was cancelled")
	}
	<-exited // the handler returned instead of sleeping an hour
	recs := s.Records()
	if st := recs[len(recs)-1].Status; st != 0 {
		t.Errorf("abandoned request recorded status %d, want 0", st)
	}

	s.InjectFault(testWorkspace, Fault{Drop: true})
	if res, err := get(context.Background()); err == nil {
		res.Body.Close()
		t.Errorf("dropped request answered %d, want a connection error", res.StatusCode)
	}
	<-entered
	<-exited
	res, err := get(context.Background())
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("request after the drop: %v %v, want 200", res, err)
	}
	res.Body.Close()
}

// TestDropWithoutHijack aborts the handler when the writer cannot hijack.
func TestDropWithoutHijack(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t)
	s.InjectFault("", Fault{Drop: true})
	defer func() {
		if r := recover(); r != http.ErrAbortHandler {
			t.Errorf("recover() = %v, want http.ErrAbortHandler", r)
		}
	}()
	do(t, s, req{path: queryURL(testWorkspace, "print 1"), token: tokGood})
}

// TestBatchFaults checks faults on batch items.
func TestBatchFaults(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t)
	if err := s.Grant(otherWS, testAppID, RoleReader, time.Time{}); err != nil {
		t.Fatal(err)
	}
	s.InjectFault(otherWS, Fault{Status: 429})
	s.InjectFault(testWorkspace, Fault{PartialError: true})
	body := fmt.Sprintf(`{"requests":[{"id":"a","body":{"query":"print 1"},"method":"POST","path":"/query","workspace":%q},`+
		`{"id":"b","body":{"query":"print 1"},"method":"POST","path":"/query","workspace":%q}]}`, testWorkspace, otherWS)
	res, raw := do(t, s, req{method: "POST", path: "/v1/$batch", body: body, token: tokGood})
	if res.StatusCode != 200 {
		t.Fatalf("status %d, want 200 (%s)", res.StatusCode, raw)
	}
	var got struct {
		Responses []struct {
			ID     string
			Status int
			Body   struct {
				Error struct{ Code string }
			}
		}
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	type item struct {
		ID, Code string
		Status   int
	}
	var items []item
	for _, r := range got.Responses {
		items = append(items, item{r.ID, r.Body.Error.Code, r.Status})
	}
	want := []item{{"a", "PartialError", 200}, {"b", "ThrottledError", 429}}
	if diff := cmp.Diff(want, items); diff != "" {
		t.Errorf("batch items (-want +got):\n%s", diff)
	}

	s.InjectFault(otherWS, Fault{Malformed: true})
	if _, raw := do(t, s, req{method: "POST", path: "/v1/$batch", body: body, token: tokGood}); json.Valid(raw) {
		t.Errorf("malformed item fault: body %s is valid JSON", raw)
	}
}

// TestCounters counts concurrent requests per workspace and principal; run
// with -race.
func TestCounters(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t)
	const n = 20
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(3)
		go func() { defer wg.Done(); do(t, s, req{path: queryURL(testWorkspace, "print 1"), token: tokGood}) }()
		go func() { defer wg.Done(); do(t, s, req{path: queryURL(otherWS, "print 1"), token: tokOther}) }()
		go func() { defer wg.Done(); do(t, s, req{path: queryURL(otherWS, "print 1")}) }()
	}
	// Registration and faults race with requests too.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			s.AddWorkspace(fmt.Sprintf("ws-%d", i))
			_ = s.Grant(testWorkspace, fmt.Sprintf("p-%d", i), RoleReader, time.Time{})
			s.InjectFault(fmt.Sprintf("ws-%d", i), Fault{Status: 500})
			_ = s.Records()
		}
	}()
	wg.Wait()
	batch := fmt.Sprintf(`{"requests":[{"id":"1","body":{"query":"print 1"},"method":"POST","path":"/query","workspace":%q}]}`, testWorkspace)
	do(t, s, req{method: "POST", path: "/v1/$batch", body: batch, token: tokGood})

	checks := []struct {
		name      string
		got, want int
	}{
		{"Requests", s.Requests(), 3*n + 1},
		{"WorkspaceRequests(test)", s.WorkspaceRequests(strings.ToUpper(testWorkspace)), n + 1},
		{"WorkspaceRequests(other)", s.WorkspaceRequests(otherWS), 2 * n},
		{"PrincipalRequests(app)", s.PrincipalRequests(testAppID), n + 1},
		{"PrincipalRequests(oid)", s.PrincipalRequests(testObjectID), n + 1},
		{"PrincipalRequests(other)", s.PrincipalRequests(otherAppID), n},
		{"Records", len(s.Records()), 3*n + 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	s.ResetCounters()
	if s.Requests() != 0 || s.WorkspaceRequests(testWorkspace) != 0 || s.PrincipalRequests(testAppID) != 0 || len(s.Records()) != 0 {
		t.Error("ResetCounters left counts behind")
	}
}

// TestTokenNeverLogged proves a token reaches neither a log line nor a
// record, even when the verifier's error quotes it.
func TestTokenNeverLogged(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.DebugLevel)
	c := newClock()
	s := New(Options{Verify: testVerifier(c), Now: c.Now, Logger: zap.New(core)})
	s.AddWorkspace(testWorkspace)
	if err := s.Grant(testWorkspace, testAppID, RoleReader, time.Time{}); err != nil {
		t.Fatal(err)
	}
	tokens := []string{tokGood, tokExpired, tokBadSig, tokWrongAud, tokMalformed}
	for _, tok := range tokens {
		do(t, s, req{path: queryURL(testWorkspace, "print 1"), token: tok})
	}
	if logs.Len() == 0 {
		t.Fatal("no log lines; the test proves nothing")
	}
	for _, e := range logs.All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		for _, tok := range tokens {
			if strings.Contains(line, tok) {
				t.Errorf("log line %q holds token %q", line, tok)
			}
		}
	}
	for _, r := range s.Records() {
		for _, tok := range tokens {
			if strings.Contains(fmt.Sprint(r.Header), tok) {
				t.Errorf("record header %v holds token %q", r.Header, tok)
			}
		}
		if got := r.Header.Get("Authorization"); got != "Bearer [redacted]" {
			t.Errorf("record Authorization = %q, want %q", got, "Bearer [redacted]")
		}
	}
}

// TestRecords checks what a record holds.
func TestRecords(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t)
	do(t, s, req{path: "/v1" + testResource + "/query?query=print%201", token: tokGood, header: map[string]string{"Cookie": "a=b"}})
	recs := s.Records()
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	r := recs[0]
	got := Record{Method: r.Method, Path: r.Path, RawQuery: r.RawQuery, Route: r.Route, WorkspaceID: r.WorkspaceID, AppID: r.AppID, ObjectID: r.ObjectID, Status: r.Status}
	want := Record{Method: "GET", Path: "/v1" + testResource + "/query", RawQuery: "query=print%201", Route: "resource",
		WorkspaceID: testWorkspace, AppID: testAppID, ObjectID: testObjectID, Status: 200}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	if r.Header.Get("Cookie") != "a=b" {
		t.Errorf("record Cookie = %q, want a=b", r.Header.Get("Cookie"))
	}
}

// FuzzServe sends arbitrary queries, timespans, Prefer values and batch
// bodies through the whole handler: every answer is a JSON body (or the
// documented empty 200) and nothing panics.
func FuzzServe(f *testing.F) {
	f.Add("print 1", "PT1H", "wait=30", `{"requests":[{"id":"1","workspace":"w","path":"/query"}]}`)
	f.Add("Heartbeat | take 2", "2024-05-01/2024-05-02", "include-statistics=true", `{"requests":[]}`)
	f.Add("Nope | where", "P", "wait=x", `{`)
	f.Fuzz(func(t *testing.T, query, timespan, prefer, batch string) {
		s, _ := newTestService(t)
		body, err := json.Marshal(map[string]string{"query": query, "timespan": timespan})
		if err != nil {
			t.Skip()
		}
		for _, r := range []req{
			{path: wsPath(testWorkspace, "query") + "?query=" + url.QueryEscape(query) + "&timespan=" + url.QueryEscape(timespan), token: tokGood, header: map[string]string{"Prefer": prefer}},
			{method: "POST", path: wsPath(testWorkspace, "query"), body: string(body), token: tokGood, header: map[string]string{"Prefer": prefer}},
			{method: "POST", path: "/v1/$batch", body: batch, token: tokGood},
		} {
			if strings.ContainsAny(prefer, "\r\n\x00") {
				delete(r.header, "Prefer")
			}
			res, got := do(t, s, r)
			if len(got) == 0 && res.StatusCode == http.StatusOK {
				continue
			}
			if !json.Valid(got) {
				t.Fatalf("%s %s: status %d, body %q is not JSON", r.method, r.path, res.StatusCode, got)
			}
		}
	})
}
