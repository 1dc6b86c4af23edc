package loganalytics_test

import (
	"fmt"
	"io"
	"net/http/httptest"
	"net/url"
	"time"

	"github.com/entrabroker/broker/internal/emulator/loganalytics"
)

// Example runs a query against the demo workspace. A real deployment
// supplies a Verifier that checks the JWT against the Entra emulator's JWKS.
func Example() {
	const appID = "11111111-1111-4111-8111-111111111111"
	svc := loganalytics.New(loganalytics.Options{
		Verify: func(raw string) (loganalytics.Principal, error) {
			return loganalytics.Principal{AppID: appID, Audience: loganalytics.DefaultAudience}, nil
		},
	})
	if err := svc.AddDemo(appID); err != nil {
		fmt.Println(err)
		return
	}

	r := httptest.NewRequest("GET", "/v1/workspaces/"+loganalytics.DemoWorkspaceID+"/query?query="+
		url.QueryEscape("Heartbeat | take 2 | project Computer"), nil)
	r.Header.Set("Authorization", "Bearer token")
	w := httptest.NewRecorder()
	svc.ServeHTTP(w, r)
	body, _ := io.ReadAll(w.Body)
	fmt.Println(w.Code, string(body))
	// Output:
	// 200 {"tables":[{"name":"PrimaryResult","columns":[{"name":"Computer","type":"string"}],"rows":[["vm-web-01"],["vm-web-02"]]}]}
}

// ExampleService_Grant simulates RBAC propagation: the assignment takes
// effect ten minutes after it is made, and until then the principal gets 403
// InsufficientAccessError.
func ExampleService_Grant() {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	svc := loganalytics.New(loganalytics.Options{
		Now: func() time.Time { return now },
		Verify: func(string) (loganalytics.Principal, error) {
			return loganalytics.Principal{AppID: "app", Audience: loganalytics.DefaultAudience}, nil
		},
	})
	svc.AddWorkspace("ws")
	if err := svc.Grant("ws", "app", loganalytics.RoleReader, now.Add(10*time.Minute)); err != nil {
		fmt.Println(err)
		return
	}
	query := func() int {
		r := httptest.NewRequest("GET", "/v1/workspaces/ws/query?query=print%201", nil)
		r.Header.Set("Authorization", "Bearer token")
		w := httptest.NewRecorder()
		svc.ServeHTTP(w, r)
		return w.Code
	}
	fmt.Println(query())
	now = now.Add(10 * time.Minute)
	fmt.Println(query())
	// Output:
	// 403
	// 200
}
