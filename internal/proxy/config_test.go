package proxy

import (
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/entrabroker/broker/internal/azure"
)

func TestLoadRoutes(t *testing.T) {
	t.Parallel()
	got, err := LoadRoutes(filepath.Join("testdata", "routes", "valid.yaml"))
	if err != nil {
		t.Fatalf("LoadRoutes(valid.yaml) error = %v", err)
	}
	want := []Route{
		{Name: "kusto", Upstream: &url.URL{Scheme: "https", Host: "help.kusto.windows.net"}, Scope: "https://help.kusto.windows.net/.default"},
		{Name: "local-la", Upstream: &url.URL{Scheme: "http", Host: "127.0.0.1:8401", Path: "/base/"}, Scope: "https://api.loganalytics.io/.default"},
		{Name: "ingestion-eu", Upstream: &url.URL{Scheme: "https", Host: "my-dce-abcd.westeurope-1.ingest.monitor.azure.com"}, Scope: "https://monitor.azure.com/.default", Kind: KindIngestion},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadRoutes(valid.yaml) (-want +got):\n%s", diff)
	}
	// The routes are accepted by New beside the built-in ones.
	if _, err := New(Options{Routes: append(Routes(azure.AzurePublic, nil), got...), Tokens: newSeqTokens("t")}); err != nil {
		t.Errorf("New(default + valid.yaml routes) error = %v", err)
	}
}

func TestLoadRoutesErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want string
	}{
		{"unknown-key.yaml", `load routes: testdata/routes/unknown-key.yaml:5: unknown key "colour" (known keys: routes; name, upstream, scope, kind)`},
		{"unknown-top-key.yaml", `load routes: testdata/routes/unknown-top-key.yaml:1: unknown key "route" (known keys: routes; name, upstream, scope, kind)`},
		{"bad-name.yaml", `load routes: testdata/routes/bad-name.yaml:2: route 1: name may hold only lower-case letters, digits and "-"`},
		{"missing-name.yaml", `load routes: testdata/routes/missing-name.yaml:2: route 1: name is required`},
		{"http-upstream.yaml", `load routes: testdata/routes/http-upstream.yaml:3: route "kusto": upstream must use https (http is allowed only for a loopback host)`},
		{"relative-upstream.yaml", `load routes: testdata/routes/relative-upstream.yaml:3: route "kusto": upstream must be an absolute URL such as https://host`},
		{"upstream-query.yaml", `load routes: testdata/routes/upstream-query.yaml:3: route "kusto": upstream must not hold a query or fragment`},
		{"upstream-userinfo.yaml", `load routes: testdata/routes/upstream-userinfo.yaml:3: route "kusto": upstream must not hold user info`},
		{"bad-scope.yaml", `load routes: testdata/routes/bad-scope.yaml:4: route "kusto": scope must be "<resource>/.default", e.g. https://api.loganalytics.io/.default`},
		{"bad-kind.yaml", `load routes: testdata/routes/bad-kind.yaml:5: route "kusto": kind must be "ingestion" (a Logs Ingestion endpoint) or left out`},
		{"list-value.yaml", `load routes: testdata/routes/list-value.yaml:3: route "kusto": upstream must be a string`},
		{"duplicate.yaml", `load routes: testdata/routes/duplicate.yaml:5: route "kusto": name is already used on line 2`},
		{"empty.yaml", `load routes: testdata/routes/empty.yaml: no routes defined`},
		{"no-routes.yaml", `load routes: testdata/routes/no-routes.yaml: no routes defined`},
		{"syntax.yaml", `load routes: testdata/routes/syntax.yaml:3: mapping values are not allowed in this context`},
		{"many-problems.yaml", "load routes: testdata/routes/many-problems.yaml:2: route 1: name may hold only lower-case letters, digits and \"-\"\n" +
			"load routes: testdata/routes/many-problems.yaml:3: route 1: upstream must use https (http is allowed only for a loopback host)\n" +
			"load routes: testdata/routes/many-problems.yaml:2: route 1: scope is required"},
		{"missing.yaml", `load routes: open testdata/routes/missing.yaml: no such file or directory`},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			routes, err := LoadRoutes("testdata/routes/" + tt.file)
			if err == nil {
				t.Fatalf("LoadRoutes(%s) = %v, want error %q", tt.file, routes, tt.want)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("LoadRoutes(%s) error (-want +got):\n%s", tt.file, diff)
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	show := func(routes []Route) []string {
		var got []string
		for _, r := range routes {
			if err := validateRoute(r); err != nil {
				t.Errorf("Routes() %s: %v", r.Name, err)
			}
			got = append(got, strings.Join([]string{r.Name, r.Upstream.String(), r.Scope}, " "))
		}
		return got
	}
	want := []string{
		"loganalytics https://api.loganalytics.azure.com https://api.loganalytics.io/.default",
		"appinsights https://api.applicationinsights.io https://api.applicationinsights.io/.default",
		"arm https://management.azure.com https://management.core.windows.net//.default",
	}
	if diff := cmp.Diff(want, show(Routes(azure.AzurePublic, nil))); diff != "" {
		t.Errorf("Routes(AzurePublic, nil) (-want +got):\n%s", diff)
	}

	// A custom route named like a built-in one replaces it in place; the
	// others follow the built-in ones.
	emu, err := url.Parse("http://127.0.0.1:8401/appinsights")
	if err != nil {
		t.Fatal(err)
	}
	kusto, _ := url.Parse("https://help.kusto.windows.net")
	custom := []Route{
		{Name: "kusto", Upstream: kusto, Scope: "https://help.kusto.windows.net/.default"},
		{Name: RouteAppInsights, Upstream: emu, Scope: "https://api.applicationinsights.io/.default"},
	}
	want = []string{
		"loganalytics https://api.loganalytics.us https://api.loganalytics.us/.default",
		"appinsights http://127.0.0.1:8401/appinsights https://api.applicationinsights.io/.default",
		"arm https://management.usgovcloudapi.net https://management.core.usgovcloudapi.net//.default",
		"kusto https://help.kusto.windows.net https://help.kusto.windows.net/.default",
	}
	routes := Routes(azure.AzureUSGovernment, custom)
	if diff := cmp.Diff(want, show(routes)); diff != "" {
		t.Errorf("Routes(AzureUSGovernment, custom) (-want +got):\n%s", diff)
	}
	if _, err := New(Options{Routes: routes, Tokens: newSeqTokens("t")}); err != nil {
		t.Errorf("New(overridden routes) = %v, want no error: a replaced built-in is not defined twice", err)
	}
}
