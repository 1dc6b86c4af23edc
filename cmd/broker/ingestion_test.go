package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/entrabroker/broker/internal/emulator/loganalytics"
	"github.com/entrabroker/broker/internal/emulator/logsingestion"
)

// TestQueryBurstQueuesInTheBroker sends 40 concurrent queries of one
// identity through the real broker to the emulated Log Analytics, which
// answers 429 past 5 running queries per user: the broker holds at most 5
// upstream and the callers get no 429.
func TestQueryBurstQueuesInTheBroker(t *testing.T) {
	t.Parallel()
	az, r := startReady(t, nil)
	gate := make(chan struct{})
	az.LogAnalytics.HoldQueries(gate)
	const callers = 40
	codes := make(chan int, callers)
	var wg sync.WaitGroup
	u := r.api + "/proxy/loganalytics/v1/workspaces/" + loganalytics.DemoWorkspaceID + "/query?query=" + url.QueryEscape("Heartbeat | take 1")
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, _ := call(t, "GET", u, nil, "")
			codes <- code
		}()
	}
	waitFor(t, "5 queries running and 35 waiting in the broker", func() bool {
		return az.LogAnalytics.Running() == 5 && metricValue(t, r, "broker_proxy_queue_waiting_requests") == callers-5
	})
	close(gate)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Errorf("a caller got %d, want 200", c)
		}
	}
	if top := az.LogAnalytics.MaxRunning(""); top != 5 {
		t.Errorf("Log Analytics ran %d queries at once, want 5", top)
	}
}

// TestUploadThenQuery is the demo's loop through the real broker: logs sent
// to the ingestion route become rows of the workspace's custom table, and
// the Logs Ingestion client's scope (double slash) shares the broker's cache
// entry with the single-slash form.
func TestUploadThenQuery(t *testing.T) {
	t.Parallel()
	_, emu := emulated(t)
	env := serveEnv(emu.URL)
	env["BROKER_INGESTION_ENDPOINT"] = emu.URL
	r := start(t, env)

	for _, scope := range []string{"https://monitor.azure.com//.default", "https://monitor.azure.com/.default"} {
		code, _, body := call(t, "GET", r.api+"/token?scope="+url.QueryEscape(scope), map[string]string{"Metadata": "true"}, "")
		if code != http.StatusOK {
			t.Fatalf("token for %s: %d %s", scope, code, body)
		}
	}
	up := r.api + "/proxy/ingestion/dataCollectionRules/" + logsingestion.DemoDCR + "/streams/" + logsingestion.DemoStream + "?api-version=2023-01-01"
	spec := loadSpec(t)
	const uploadTemplate = "/proxy/ingestion/dataCollectionRules/{dcr}/streams/{stream}"
	ct := map[string]string{"Content-Type": "application/json"}
	code, h, body := call(t, "POST", up, ct, `[{"Computer":"e2e","Message":"one"},{"Computer":"e2e","Message":"two"}]`)
	if code != http.StatusNoContent {
		t.Fatalf("upload: %d %s, want 204", code, body)
	}
	spec.check(t, "POST", uploadTemplate+"?api-version=2023-01-01", ct, code, h, body)
	for _, bad := range []struct{ path, body string }{
		{strings.Replace(up, logsingestion.DemoDCR, "my-dcr", 1), `[{"a":1}]`},
		{up, `{"not":"an array"}`},
		{up, `[{"big":"` + strings.Repeat("x", 1<<20) + `"}]`},
	} {
		code, h, body := call(t, "POST", bad.path, ct, bad.body)
		if code < 400 {
			t.Errorf("upload %.40s…: %d, want an error", bad.body, code)
		}
		spec.check(t, "POST", uploadTemplate+"?api-version=2023-01-01", ct, code, h, body)
	}
	q := r.api + "/proxy/loganalytics/v1/workspaces/" + loganalytics.DemoWorkspaceID + "/query?query=" + url.QueryEscape(logsingestion.DemoTable+" | project Message")
	code, _, body = call(t, "GET", q, nil, "")
	var res struct {
		Tables []struct {
			Rows [][]string `json:"rows"`
		} `json:"tables"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &res) != nil || len(res.Tables) != 1 || len(res.Tables[0].Rows) != 2 {
		t.Fatalf("query the uploaded rows: %d %s, want the two messages", code, body)
	}
	_, _, metrics := call(t, "GET", r.ops+"/metrics", nil, "")
	var fetches []string
	for _, line := range strings.Split(string(metrics), "\n") {
		if strings.HasPrefix(line, "broker_token_fetches_total{") && strings.Contains(line, "monitor.azure.com") && !strings.HasSuffix(line, " 0") {
			fetches = append(fetches, line)
		}
	}
	if len(fetches) != 1 || !strings.HasSuffix(fetches[0], " 1") || !strings.Contains(fetches[0], `scope="https://monitor.azure.com/.default"`) {
		t.Errorf("Entra fetches for the monitor scope = %q, want one fetch, under the single-slash scope", fetches)
	}
}

// TestDemoPrintsUploadThenQuery runs `broker demo` and the two commands it
// prints for Logs Ingestion: the upload through the broker, then the query
// that shows the uploaded row.
func TestDemoPrintsUploadThenQuery(t *testing.T) {
	r := start(t, map[string]string{"BROKER_LISTEN": "127.0.0.1:0", "BROKER_OPS_LISTEN": "127.0.0.1:0"}, "demo")
	// The welcome is printed just after the listeners open.
	waitFor(t, "the demo's welcome", func() bool { return strings.Contains(r.stdout.String(), "Press Ctrl-C") })
	out := r.stdout.String()
	up := regexp.MustCompile(`curl -s -X POST -H 'Content-Type: application/json' '` + regexp.QuoteMeta(r.api) + `(/proxy/ingestion/[^']+)' -d '([^']+)'`).FindStringSubmatch(out)
	q := regexp.MustCompile(`curl -s '` + regexp.QuoteMeta(r.api) + `(/proxy/loganalytics/[^']+` + logsingestion.DemoTable + `[^']*)'`).FindStringSubmatch(out)
	if up == nil || q == nil {
		t.Fatalf("broker demo printed no upload or no query command:\n%s", out)
	}
	if strings.Index(out, up[0]) > strings.Index(out, q[0]) {
		t.Errorf("the demo prints the query before the upload")
	}
	if code, _, body := call(t, "POST", r.api+up[1], map[string]string{"Content-Type": "application/json"}, up[2]); code != http.StatusNoContent {
		t.Fatalf("the demo's upload: %d %s, want 204", code, body)
	}
	code, _, body := call(t, "GET", r.api+q[1], nil, "")
	if code != http.StatusOK || !strings.Contains(string(body), "hello from the broker") {
		t.Errorf("the demo's query: %d %s, want the uploaded row", code, body)
	}
}
