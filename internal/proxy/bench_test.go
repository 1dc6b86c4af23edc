package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// benchBody is a fixed ~2 KB Log Analytics answer.
var benchBody = []byte(`{"tables":[{"name":"PrimaryResult","columns":[{"name":"TimeGenerated","type":"datetime"},{"name":"Computer","type":"string"},{"name":"Category","type":"string"}],"rows":[` +
	strings.TrimSuffix(strings.Repeat(`["2024-05-01T12:00:00Z","vm-0001.contoso.internal","Direct Agent"],`, 29), ",") + `]}]}`)

// benchUpstream serves benchBody on loopback.
func benchUpstream(b *testing.B) *url.URL {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/json; charset=utf-8"}
		h["Content-Length"] = []string{strconv.Itoa(len(benchBody))}
		_, _ = w.Write(benchBody)
	}))
	b.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u
}

// runProxyBench serves h on loopback and sends it GET target from parallel
// clients, through real HTTP.
func runProxyBench(b *testing.B, h http.Handler, target string) {
	b.Helper()
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	u := srv.URL + target
	b.SetBytes(int64(len(benchBody)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := client.Get(u)
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || n != int64(len(benchBody)) {
				b.Errorf("GET = %d with %d bytes, want 200 with %d", res.StatusCode, n, len(benchBody))
				return
			}
		}
	})
}

const benchTarget = "/v1/workspaces/a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1/query?query=Heartbeat%20%7C%20take%2029"

// BenchmarkProxy measures the broker's proxy: route lookup, path checks,
// token, metrics and logging included.
func BenchmarkProxy(b *testing.B) {
	up := benchUpstream(b)
	h, err := New(Options{
		Routes: []Route{{Name: "loganalytics", Upstream: up, Scope: laScope}},
		Tokens: &fakeTokens{bearer: func(context.Context, string) (string, error) {
			return "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.payload.signature", nil
		}},
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	runProxyBench(b, h, "/proxy/loganalytics"+benchTarget)
}

// BenchmarkMinimalReverseProxy is the yardstick: a plain ReverseProxy whose
// Rewrite sets the URL and a fixed Authorization header.
func BenchmarkMinimalReverseProxy(b *testing.B) {
	up := benchUpstream(b)
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(up)
		pr.Out.Header.Set("Authorization", "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.payload.signature")
	}}
	runProxyBench(b, rp, benchTarget)
}
