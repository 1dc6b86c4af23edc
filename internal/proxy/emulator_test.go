package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
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

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/monitor/query/azlogs"
	"github.com/entrabroker/broker/internal/emulator"
	"github.com/entrabroker/broker/internal/emulator/loganalytics"
)

// entraTokens is a Tokens that gets real tokens from the Entra emulator's
// token endpoint (client credentials, the demo app) and keeps one per scope
// until it is invalidated.
type entraTokens struct {
	tokenURL string
	mu       sync.Mutex
	cur      map[string]string
	fetches  int
}

func (e *entraTokens) Bearer(ctx context.Context, _, scope string) (string, error) {
	e.mu.Lock() // held across the fetch: one fetch at a time
	defer e.mu.Unlock()
	if tok := e.cur[scope]; tok != "" {
		return tok, nil
	}
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {emulator.DemoClientID},
		"client_secret": {emulator.DemoClientSecret},
		"scope":         {scope},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || res.StatusCode != 200 {
		return "", fmt.Errorf("token: status %d: %v", res.StatusCode, err)
	}
	e.fetches++
	e.cur[scope] = body.AccessToken
	return body.AccessToken, nil
}

func (e *entraTokens) Invalidate(_, scope, token string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cur[scope] == token {
		delete(e.cur, scope)
	}
	return true
}

func (e *entraTokens) fetched() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.fetches
}

// settableClock is a clock tests move instead of sleeping.
type settableClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *settableClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *settableClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// emulated is the emulated cloud with the broker's proxy in front of its
// Log Analytics API.
type emulated struct {
	azure  *emulator.Azure
	clock  *settableClock
	tokens *entraTokens
	proxy  *testProxy
}

func newEmulated(t *testing.T) *emulated {
	t.Helper()
	clock := &settableClock{t: time.Now().Truncate(time.Second)}
	az := emulator.NewAzure(emulator.Options{Now: clock.Now})
	if err := az.AddDemo(); err != nil {
		t.Fatal(err)
	}
	cloudSrv := httptest.NewServer(az)
	t.Cleanup(cloudSrv.Close)
	tokens := &entraTokens{tokenURL: cloudSrv.URL + "/" + emulator.DemoTenantID + "/oauth2/v2.0/token", cur: map[string]string{}}
	up, _ := url.Parse(cloudSrv.URL)
	p := newTestProxy(t, nil, Options{
		Tokens: tokens,
		Routes: []Route{{Name: "loganalytics", Upstream: up, Scope: laScope}},
	})
	return &emulated{azure: az, clock: clock, tokens: tokens, proxy: p}
}

// query posts a KQL query for workspace through the proxy.
func (e *emulated) query(t *testing.T, workspace, kql string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	body := `{"query":` + jsonString(kql) + `}`
	req, _ := http.NewRequest(http.MethodPost, e.proxy.URL+"/proxy/loganalytics/v1/workspaces/"+workspace+"/query", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header[k] = v
	}
	return e.proxy.do(t, req)
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestEmulatorQueries(t *testing.T) {
	t.Parallel()
	e := newEmulated(t)
	ws := loganalytics.DemoWorkspaceID

	t.Run("GET with the caller's Authorization replaced", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, e.proxy.URL+"/proxy/loganalytics/v1/workspaces/"+ws+"/query?query="+url.QueryEscape("Heartbeat | take 1"), nil)
		req.Header.Set("Authorization", "Bearer not-a-real-token")
		res, body := e.proxy.do(t, req)
		if res.StatusCode != 200 || !strings.Contains(body, `"PrimaryResult"`) {
			t.Errorf("GET query = %d %s, want 200 with PrimaryResult", res.StatusCode, body)
		}
	})
	t.Run("POST", func(t *testing.T) {
		res, body := e.query(t, ws, "Heartbeat | take 2 | project Computer", nil)
		if res.StatusCode != 200 || strings.Count(body, "vm-") != 2 {
			t.Errorf("POST query = %d %s, want 200 with two computers", res.StatusCode, body)
		}
	})
	t.Run("gzip", func(t *testing.T) {
		res, body := e.query(t, ws, "Heartbeat | count", http.Header{"Accept-Encoding": {"gzip"}})
		if res.StatusCode != 200 || res.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("gzip query = %d, Content-Encoding %q; want 200 gzip", res.StatusCode, res.Header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(zr)
		if err != nil || !bytes.Contains(plain, []byte(`"tables"`)) {
			t.Errorf("gunzipped body = %s (%v), want tables", plain, err)
		}
	})
	t.Run("batch", func(t *testing.T) {
		batch := `{"requests":[{"body":{"query":"Heartbeat | take 1"},"headers":{"prefer":"wait=30"},"id":"1","method":"POST","path":"/query","workspace":"` + ws + `"}]}`
		req, _ := http.NewRequest(http.MethodPost, e.proxy.URL+"/proxy/loganalytics/v1/$batch", strings.NewReader(batch))
		req.Header.Set("Content-Type", "application/json")
		res, body := e.proxy.do(t, req)
		if res.StatusCode != 200 || !strings.Contains(body, `"responses"`) || !strings.Contains(body, `"status":200`) {
			t.Errorf("batch = %d %s, want 200 with one 200 response", res.StatusCode, body)
		}
	})
	t.Run("bad query passes the upstream 400 through", func(t *testing.T) {
		res, body := e.query(t, ws, "this is | not kql (", nil)
		if res.StatusCode != 400 || !strings.Contains(body, "BadArgumentError") {
			t.Errorf("bad query = %d %s, want 400 BadArgumentError", res.StatusCode, body)
		}
	})
}

func TestEmulatorRevokedTokenRetried(t *testing.T) {
	t.Parallel()
	e := newEmulated(t)
	ws := loganalytics.DemoWorkspaceID
	if res, body := e.query(t, ws, "Heartbeat | take 1", nil); res.StatusCode != 200 {
		t.Fatalf("first query = %d %s, want 200", res.StatusCode, body)
	}
	e.azure.Entra.RevokeTokens(emulator.DemoClientID)
	res, body := e.query(t, ws, "Heartbeat | take 1", nil)
	if res.StatusCode != 200 {
		t.Errorf("query after revocation = %d %s, want 200 after one retry", res.StatusCode, body)
	}
	if got := e.tokens.fetched(); got != 2 {
		t.Errorf("token fetches = %d, want 2 (the first, and one after the 401)", got)
	}
	if got := metricValue(t, e.proxy, "broker_proxy_token_retries_total", "route", "loganalytics"); got != 1 {
		t.Errorf("broker_proxy_token_retries_total = %v, want 1", got)
	}
}

func TestEmulatorRoleAssignment(t *testing.T) {
	t.Parallel()
	e := newEmulated(t)
	const ws = "9e9e9e9e-0000-4000-8000-000000000001"
	la := e.azure.LogAnalytics
	la.AddWorkspace(ws)

	res, body := e.query(t, ws, "Heartbeat | take 1", nil)
	if res.StatusCode != 403 || !strings.Contains(body, "InsufficientAccessError") {
		t.Fatalf("query without a role = %d %s, want 403 InsufficientAccessError", res.StatusCode, body)
	}
	if hint := res.Header.Get(HintHeader); !strings.Contains(hint, "60 minutes") {
		t.Errorf("%s = %q, want the role and propagation hint", HintHeader, hint)
	}

	// A role assignment that takes 30 minutes to propagate.
	if err := la.Grant(ws, emulator.DemoClientID, loganalytics.RoleReader, e.clock.Now().Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if res, _ := e.query(t, ws, "Heartbeat | take 1", nil); res.StatusCode != 403 || res.Header.Get(HintHeader) == "" {
		t.Errorf("query while the role propagates = %d (hint %q), want 403 with hint", res.StatusCode, res.Header.Get(HintHeader))
	}
	e.clock.Advance(30 * time.Minute)
	if res, body := e.query(t, ws, "Heartbeat | take 1", nil); res.StatusCode != 200 || res.Header.Get(HintHeader) != "" {
		t.Errorf("query once the role is effective = %d %s (hint %q), want 200 without hint", res.StatusCode, body, res.Header.Get(HintHeader))
	}
}

// TestAzlogsThroughProxy runs the real azlogs client (nil credential, the
// proxy as its endpoint, reference §8 item 7) against the emulator through
// the proxy.
func TestAzlogsThroughProxy(t *testing.T) {
	t.Parallel()
	e := newEmulated(t)
	client, err := azlogs.NewClient(nil, &azlogs.ClientOptions{ClientOptions: azcore.ClientOptions{
		Cloud: cloud.Configuration{
			ActiveDirectoryAuthorityHost: "https://unused/",
			Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				azlogs.ServiceName: {Audience: "https://api.loganalytics.io", Endpoint: e.proxy.URL + "/proxy/loganalytics"},
			},
		},
		Retry: policy.RetryOptions{MaxRetries: -1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	res, err := client.QueryWorkspace(ctx, loganalytics.DemoWorkspaceID, azlogs.QueryBody{
		Query:    to.Ptr("Heartbeat | take 2 | project Computer"),
		Timespan: to.Ptr(azlogs.TimeInterval("PT1H")),
	}, &azlogs.QueryWorkspaceOptions{Options: &azlogs.QueryOptions{Statistics: to.Ptr(true), Wait: to.Ptr(600)}})
	if err != nil {
		t.Fatalf("QueryWorkspace() error = %v", err)
	}
	if res.Error != nil || len(res.Tables) != 1 || len(res.Tables[0].Rows) != 2 {
		t.Errorf("QueryWorkspace() = %d tables (error %v), want one table with two rows", len(res.Tables), res.Error)
	}

	rres, err := client.QueryResource(ctx, loganalytics.DemoVMResourceID, azlogs.QueryBody{Query: to.Ptr("Heartbeat | take 1")}, nil)
	if err != nil {
		t.Fatalf("QueryResource() error = %v", err)
	}
	if len(rres.Tables) != 1 {
		t.Errorf("QueryResource() = %d tables, want 1", len(rres.Tables))
	}

	bres, err := client.QueryBatch(ctx, azlogs.BatchRequest{Requests: []azlogs.BatchQueryRequest{{
		Body:        &azlogs.QueryBody{Query: to.Ptr("Heartbeat | take 1")},
		ID:          to.Ptr("1"),
		WorkspaceID: to.Ptr(loganalytics.DemoWorkspaceID),
	}}}, nil)
	if err != nil {
		t.Fatalf("QueryBatch() error = %v", err)
	}
	if len(bres.Responses) != 1 || bres.Responses[0].Status == nil || *bres.Responses[0].Status != 200 {
		t.Errorf("QueryBatch() = %+v, want one 200 response", bres.Responses)
	}

	// An unknown table is the upstream's 400, answered to azlogs as such.
	_, err = client.QueryWorkspace(ctx, loganalytics.DemoWorkspaceID, azlogs.QueryBody{Query: to.Ptr("NoSuchTable | take 1")}, nil)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 400 || re.ErrorCode != "BadArgumentError" {
		t.Errorf("QueryWorkspace(unknown table) error = %v, want 400 BadArgumentError", err)
	}
}
