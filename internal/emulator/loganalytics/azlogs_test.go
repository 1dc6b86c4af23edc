package loganalytics

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/monitor/query/azlogs"
)

// newAzlogsClient starts the Service behind a handler that adds the bearer
// token (as the broker's proxy will) and returns a real azlogs client for it:
// nil credential, plain http, the emulator as the endpoint (reference §8.7).
func newAzlogsClient(t *testing.T, s *Service, token string) *azlogs.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+token)
		s.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	client, err := azlogs.NewClient(nil, &azlogs.ClientOptions{ClientOptions: azcore.ClientOptions{
		Cloud: cloud.Configuration{
			ActiveDirectoryAuthorityHost: "https://unused/",
			Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				azlogs.ServiceName: {Audience: DefaultAudience, Endpoint: srv.URL},
			},
		},
		// azcore retries 429, 5xx and 504 by default; keep the retries
		// fast, and few, for the fault cases.
		Retry: policy.RetryOptions{MaxRetries: 1, RetryDelay: time.Millisecond, MaxRetryDelay: time.Millisecond},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func TestAzlogsQueryWorkspace(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t)
	client := newAzlogsClient(t, s, tokGood)
	ctx := context.Background()

	res, err := client.QueryWorkspace(ctx, testWorkspace, azlogs.QueryBody{
		Query:    to.Ptr("Heartbeat | take 2 | project Computer, TimeGenerated, IsGatewayInstalled"),
		Timespan: to.Ptr(azlogs.TimeInterval("PT1H")),
	}, &azlogs.QueryWorkspaceOptions{Options: &azlogs.QueryOptions{
		Statistics: to.Ptr(true), Visualization: to.Ptr(true), Wait: to.Ptr(600),
	}})
	if err != nil {
		t.Fatalf("QueryWorkspace: %v", err)
	}
	if res.Error != nil {
		t.Fatalf("QueryWorkspace: partial error %v", res.Error)
	}
	if len(res.Tables) != 1 || *res.Tables[0].Name != "PrimaryResult" {
		t.Fatalf("tables = %+v, want one PrimaryResult", res.Tables)
	}
	tab := res.Tables[0]
	var cols []string
	for _, c := range tab.Columns {
		cols = append(cols, *c.Name+":"+string(*c.Type))
	}
	wantCols := []string{"Computer:string", "TimeGenerated:datetime", "IsGatewayInstalled:bool"}
	if len(cols) != len(wantCols) {
		t.Fatalf("columns = %v, want %v", cols, wantCols)
	}
	for i := range cols {
		if cols[i] != wantCols[i] {
			t.Errorf("column %d = %s, want %s", i, cols[i], wantCols[i])
		}
	}
	if len(tab.Rows) != 2 || tab.Rows[0][0] != "vm-web-01" || tab.Rows[0][1] != "2024-05-01T12:00:00Z" || tab.Rows[0][2] != false {
		t.Errorf("rows = %v", tab.Rows)
	}
	if res.Statistics == nil || res.Visualization == nil {
		t.Errorf("statistics %s, visualization %s; want both", res.Statistics, res.Visualization)
	}

	// The resource-centric route, through QueryResource.
	rres, err := client.QueryResource(ctx, testResource, azlogs.QueryBody{Query: to.Ptr("AzureActivity | count")}, nil)
	if err != nil {
		t.Fatalf("QueryResource: %v", err)
	}
	if got := rres.Tables[0].Rows[0][0]; got != float64(8) {
		t.Errorf("QueryResource count = %v, want 8", got)
	}

	// What crossed the wire is what the reference says azlogs sends.
	rec := s.Records()[0]
	if rec.Method != "POST" || rec.Header.Get("Prefer") != "include-statistics=true,include-render=true,wait=600" ||
		rec.Header.Get("Content-Type") != "application/json" {
		t.Errorf("azlogs request: %s Prefer %q Content-Type %q", rec.Method, rec.Header.Get("Prefer"), rec.Header.Get("Content-Type"))
	}
}

func TestAzlogsErrors(t *testing.T) {
	t.Parallel()
	s, c := newTestService(t)
	ctx := context.Background()
	query := azlogs.QueryBody{Query: to.Ptr("print 1")}

	tests := []struct {
		name   string
		token  string
		ws     string
		query  string
		status int
		code   string
	}{
		{"no role", tokGood, otherWS, "print 1", 403, "InsufficientAccessError"},
		{"other app", tokOther, testWorkspace, "print 1", 403, "InsufficientAccessError"},
		{"wrong audience", tokWrongAud, testWorkspace, "print 1", 403, "InvalidTokenError"},
		{"expired", tokExpired, testWorkspace, "print 1", 401, "AuthenticationFailed"},
		{"unknown table", tokGood, testWorkspace, "AppInsights | where x", 400, "BadArgumentError"},
		{"syntax", tokGood, testWorkspace, "Heartbeat | take", 400, "BadArgumentError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client := newAzlogsClient(t, s, tt.token)
			_, err := client.QueryWorkspace(ctx, tt.ws, azlogs.QueryBody{Query: to.Ptr(tt.query)}, nil)
			var re *azcore.ResponseError
			if !errors.As(err, &re) {
				t.Fatalf("QueryWorkspace error = %v, want *azcore.ResponseError", err)
			}
			if re.StatusCode != tt.status || re.ErrorCode != tt.code {
				t.Errorf("ResponseError = %d %s, want %d %s", re.StatusCode, re.ErrorCode, tt.status, tt.code)
			}
		})
	}

	// RBAC propagation as azlogs sees it: 403 until the clock passes the
	// assignment's effective time.
	ws := "c3c3c3c3-0000-4000-8000-000000000000"
	s.AddWorkspace(ws)
	if err := s.Grant(ws, testAppID, RoleReader, c.Now().Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	client := newAzlogsClient(t, s, tokGood)
	_, err := client.QueryWorkspace(ctx, ws, query, nil)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.ErrorCode != "InsufficientAccessError" {
		t.Fatalf("before propagation: error %v, want InsufficientAccessError", err)
	}
	c.Advance(30 * time.Minute)
	if _, err := client.QueryWorkspace(ctx, ws, query, nil); err != nil {
		t.Errorf("after propagation: %v", err)
	}

	// A 504 beyond Prefer wait, which azcore retries and then reports.
	if err := s.SetQueryDuration(ws, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	_, err = client.QueryWorkspace(ctx, ws, query, &azlogs.QueryWorkspaceOptions{Options: &azlogs.QueryOptions{Wait: to.Ptr(60)}})
	if !errors.As(err, &re) || re.StatusCode != 504 || re.ErrorCode != "GatewayTimeout" {
		t.Errorf("slow query: error %v, want 504 GatewayTimeout", err)
	}
}

func TestAzlogsQueryBatch(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t)
	client := newAzlogsClient(t, s, tokGood)
	res, err := client.QueryBatch(context.Background(), azlogs.BatchRequest{Requests: []azlogs.BatchQueryRequest{
		{ID: to.Ptr("1"), WorkspaceID: to.Ptr(testWorkspace), Body: &azlogs.QueryBody{Query: to.Ptr("Heartbeat | count")},
			Headers: map[string]*string{"prefer": to.Ptr("wait=30")}},
		{ID: to.Ptr("2"), WorkspaceID: to.Ptr(otherWS), Body: &azlogs.QueryBody{Query: to.Ptr("print 1")}},
		{ID: to.Ptr("3"), WorkspaceID: to.Ptr(testWorkspace), Body: &azlogs.QueryBody{Query: to.Ptr("Nope | take 1")}},
	}}, nil)
	if err != nil {
		t.Fatalf("QueryBatch: %v", err)
	}
	got := map[string]int32{}
	for _, r := range res.Responses {
		got[*r.ID] = *r.Status
		switch *r.ID {
		case "1":
			if r.Body == nil || len(r.Body.Tables) != 1 || r.Body.Tables[0].Rows[0][0] != float64(12) {
				t.Errorf("item 1 body = %+v, want Count 12", r.Body)
			}
		case "2":
			if r.Body == nil || r.Body.Error == nil || r.Body.Error.Code != "InsufficientAccessError" {
				t.Errorf("item 2 body = %+v, want InsufficientAccessError", r.Body)
			}
		case "3":
			if r.Body == nil || r.Body.Error == nil || r.Body.Error.Code != "BadArgumentError" {
				t.Errorf("item 3 body = %+v, want BadArgumentError", r.Body)
			}
		}
	}
	want := map[string]int32{"1": 200, "2": 403, "3": 400}
	for id, st := range want {
		if got[id] != st {
			t.Errorf("item %s status = %d, want %d", id, got[id], st)
		}
	}
}
