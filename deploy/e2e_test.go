package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/emulator/loganalytics"
	"github.com/entrabroker/broker/internal/testenv"
)

// syncBuffer is a bytes.Buffer safe for a child process's output and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freeAddr returns a loopback address with a port that was free a moment ago:
// it listens on port 0 and closes the listener.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	return addr
}

// startProcess starts cmd with its output captured and stops it (SIGINT, then
// SIGKILL after a grace period) when the test ends; the output is logged if
// the test failed.
func startProcess(t *testing.T, cmd *exec.Cmd) *syncBuffer {
	t.Helper()
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	name := filepath.Base(cmd.Path)
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		grace := time.NewTimer(10 * time.Second)
		defer grace.Stop()
		select {
		case err := <-done:
			if err != nil {
				t.Logf("%s exited after SIGINT: %v", name, err)
			}
		case <-grace.C:
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("%s did not stop within 10s of SIGINT", name)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out)
		}
	})
	return out
}

// httpGet fetches a URL with headers and returns status and body.
func httpGet(ctx context.Context, client *http.Client, rawURL string, header map[string]string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, body, err
}

// promQuery runs an instant query against Prometheus's HTTP API and returns
// the vector's samples as label sets with values.
func promQuery(ctx context.Context, client *http.Client, base, query string) ([]promSample, error) {
	code, body, err := httpGet(ctx, client, base+"/api/v1/query?query="+url.QueryEscape(query), nil)
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("query %s: %d %s: %w", query, code, body, err)
	}
	if r.Status != "success" || r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: status %s, type %s: %s", query, r.Status, r.Data.ResultType, r.Error)
	}
	var out []promSample
	for _, s := range r.Data.Result {
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %v: %w", query, s.Value[1], err)
		}
		out = append(out, promSample{Labels: s.Metric, Value: v})
	}
	return out, nil
}

// promSample is one sample of an instant vector.
type promSample struct {
	Labels map[string]string
	Value  float64
}

// TestPrometheusScrapesBrokerDemo runs `broker demo`, calls /token a few
// times, lets a real Prometheus server scrape the ops listener and checks
// what Prometheus stores: the request counter, the token expiry and the
// contract metrics. It also proves that no token reaches the metrics, the
// stored series or the broker's output.
func TestPrometheusScrapesBrokerDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: builds the broker and runs Prometheus")
	}
	prometheus := requireTool(t, "prometheus")
	goTool := testenv.LookPath(t, "go", "https://go.dev/dl")
	dir := t.TempDir()

	// Build the broker the way a user would.
	bin := filepath.Join(dir, "broker")
	build := exec.Command(goTool, "build", "-o", bin, "./cmd/broker")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/broker: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Every call is to loopback; 10s is far above any answer's latency.
	client := &http.Client{Timeout: 10 * time.Second}

	api, ops := freeAddr(t), freeAddr(t)
	brokerCmd := exec.Command(bin, "demo")
	brokerCmd.Env = append(cleanEnv(), "BROKER_LISTEN="+api, "BROKER_OPS_LISTEN="+ops)
	start := time.Now()
	brokerOut := startProcess(t, brokerCmd)

	eventually(t, 30*time.Second, 50*time.Millisecond, func() (bool, string) {
		code, body, err := httpGet(ctx, client, "http://"+ops+"/readyz", nil)
		return code == http.StatusOK, fmt.Sprintf("GET /readyz = %d %s %v", code, body, err)
	})

	// A few /token calls, each a success.
	const calls = 3
	var tokens []string
	var expiresOn int64
	for i := range calls {
		code, body, err := httpGet(ctx, client, "http://"+api+"/token?resource="+url.QueryEscape("https://api.loganalytics.io"), map[string]string{"Metadata": "true"})
		if err != nil || code != http.StatusOK {
			t.Fatalf("GET /token #%d = %d %s %v, want 200", i+1, code, body, err)
		}
		var tok struct {
			AccessToken string `json:"access_token"`
			ExpiresOn   int64  `json:"expires_on"`
		}
		if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
			t.Fatalf("GET /token #%d body %s: %v, want a token", i+1, body, err)
		}
		tokens = append(tokens, tok.AccessToken)
		expiresOn = tok.ExpiresOn
	}
	called := time.Now()
	// One request through the proxy, so the proxy metrics have series.
	code, body, err := httpGet(ctx, client, "http://"+api+"/proxy/loganalytics/v1/workspaces/"+loganalytics.DemoWorkspaceID+"/query?query="+url.QueryEscape("Heartbeat | take 3"), nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("proxied query = %d %s %v, want 200", code, body, err)
	}

	// The scrape itself has every contract metric, and no token.
	code, scrape, err := httpGet(ctx, client, "http://"+ops+"/metrics", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics = %d %v", code, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "metrics.txt"), scrape, 0o600); err != nil {
		t.Fatal(err)
	}
	checkScrape(t, bytes.NewReader(scrape), loadContract(t))

	// Prometheus scrapes the ops listener every second.
	promAddr := freeAddr(t)
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: broker\n    static_configs:\n      - targets: [%q]\n", ops)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	promCmd := exec.Command(prometheus,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr,
	)
	promCmd.Dir = dir
	startProcess(t, promCmd)
	base := "http://" + promAddr

	requests := `broker_token_requests_total{job="broker", endpoint="token", result="success"}`
	eventually(t, 60*time.Second, 250*time.Millisecond, func() (bool, string) {
		got, err := promQuery(ctx, client, base, requests)
		if err != nil {
			return false, err.Error()
		}
		return len(got) == 1 && got[0].Value == calls, fmt.Sprintf("%s = %+v, want one sample of %d", requests, got, calls)
	})

	expiry := `broker_token_expiry_timestamp_seconds{job="broker", scope="https://api.loganalytics.io/.default"}`
	got, err := promQuery(ctx, client, base, expiry)
	if err != nil || len(got) != 1 {
		t.Fatalf("%s = %+v, %v; want one sample", expiry, got, err)
	}
	// Entra (and the emulator) issue tokens for 3599 s; the broker fetched
	// this one between its start and the first /token answer.
	lo, hi := float64(start.Unix())+3599-60, float64(called.Unix())+3599+60
	if v := got[0].Value; v < lo || v > hi {
		t.Errorf("%s = %.0f (now%+.0fs), want within [%.0f, %.0f] (~now+3599s)", expiry, v, v-float64(time.Now().Unix()), lo, hi)
	}
	if v := got[0].Value; math.Abs(v-float64(expiresOn)) > 1 {
		t.Errorf("%s = %.0f, want the served token's expires_on %d", expiry, v, expiresOn)
	}

	for _, q := range []string{
		`up{job="broker"} == 1`,
		`broker_proxy_requests_total{job="broker", route="loganalytics", code="200"} == 1`,
		`broker_build_info{job="broker"} == 1`,
	} {
		got, err := promQuery(ctx, client, base, q)
		if err != nil || len(got) != 1 {
			t.Errorf("%s = %+v, %v; want one sample", q, got, err)
		}
	}

	// No token in what Prometheus stored, the scrape or the broker's output.
	code, series, err := httpGet(ctx, client, base+"/api/v1/series?match[]="+url.QueryEscape(`{job="broker"}`), nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /api/v1/series = %d %v", code, err)
	}
	for _, tok := range tokens {
		for where, text := range map[string]string{"/metrics": string(scrape), "Prometheus series": string(series), "broker output": brokerOut.String()} {
			if strings.Contains(text, tok) || strings.Contains(text, tok[:min(len(tok), 40)]) {
				t.Errorf("a served access token appears in the %s", where)
			}
		}
	}
}

// cleanEnv is the test's environment without the broker's and Azure's
// variables, so that a developer's settings cannot change `broker demo`.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "BROKER_") || strings.HasPrefix(kv, "AZURE_") || strings.HasPrefix(kv, "IDENTITY_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}
