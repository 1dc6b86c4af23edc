package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"

	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/proxy"
)

// staticTokens always has the same token; the broker passes its cache.
type staticTokens string

func (s staticTokens) Bearer(context.Context, string, string) (string, error) { return string(s), nil }
func (staticTokens) Invalidate(string, string, string) bool                   { return false }

func ExampleNew() {
	// A stand-in for https://api.loganalytics.azure.com.
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s?%s with %q", r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"))
	}))
	defer upstream.Close()
	u, _ := url.Parse(upstream.URL)

	routes := proxy.Routes(azure.AzurePublic, nil)
	routes[0].Upstream = u // loganalytics
	h, err := proxy.New(proxy.Options{Routes: routes, Tokens: staticTokens("eyJ0eXAi")})
	if err != nil {
		fmt.Println(err)
		return
	}
	broker := httptest.NewServer(h)
	defer broker.Close()

	res, err := http.Get(broker.URL + "/proxy/loganalytics/v1/workspaces/ws1/query?query=Heartbeat")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	fmt.Println(res.StatusCode, string(body))
	// Output: 200 GET /v1/workspaces/ws1/query?query=Heartbeat with "Bearer eyJ0eXAi"
}

func ExampleLoadRoutes() {
	routes, err := proxy.LoadRoutes("testdata/routes/valid.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range routes {
		fmt.Println(r.Name, r.Upstream, r.Scope)
	}
	_, err = proxy.LoadRoutes("testdata/routes/unknown-key.yaml")
	fmt.Println(err)
	// Output:
	// kusto https://help.kusto.windows.net https://help.kusto.windows.net/.default
	// local-la http://127.0.0.1:8401/base/ https://api.loganalytics.io/.default
	// ingestion-eu https://my-dce-abcd.westeurope-1.ingest.monitor.azure.com https://monitor.azure.com/.default
	// load routes: testdata/routes/unknown-key.yaml:5: unknown key "colour" (known keys: routes; name, upstream, scope, kind)
}
