package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// benchGet sends GET target with Metadata: true to srv over c, b.N times,
// reading every body in full; the connection is kept alive.
func benchGet(b *testing.B, c *http.Client, url string) {
	b.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Metadata", "true")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s = %d", url, resp.StatusCode)
		}
	}
}

// BenchmarkTokenHit is a GET /token cache hit over loopback HTTP: the real
// routers and middleware on an httptest server, a keep-alive client, and a
// logger at info level as in production.
func BenchmarkTokenHit(b *testing.B) {
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.InfoLevel)
	h := newHarness(b, harnessOptions{Plain: true, LogCore: core, PrefetchScopes: []string{laScope}})
	benchGet(b, h.http, h.api.URL+"/token?resource="+laResource)
	if n := h.cloud.Entra.Requests("c0ffee00-0000-4000-a000-000000000002", laScope); n != 1 {
		b.Errorf("emulator saw %d token requests, want 1 (every request a hit)", n)
	}
}

// BenchmarkConstantHandler is the floor for BenchmarkTokenHit: a handler
// that answers a constant token body of the same size, on the same kind of
// server and client.
func BenchmarkConstantHandler(b *testing.B) {
	h := newHarness(b, harnessOptions{Plain: true, LogCore: zapcore.NewNopCore(), PrefetchScopes: []string{laScope}})
	r := h.do(request{target: "/token?resource=" + laResource, header: metadata})
	body := r.body
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = jsonContentType
		w.Header()["Cache-Control"] = noStore
		_, _ = w.Write(body)
	}))
	b.Cleanup(srv.Close)
	c := srv.Client()
	b.Cleanup(c.CloseIdleConnections)
	benchGet(b, c, srv.URL+"/token?resource="+laResource)
}
