package main

// Flood tests: the real program (run()) against the emulator, asked for tens
// of thousands of distinct scopes, with Entra answering and with Entra
// hanging, and sending requests to an upstream that refuses every token. What must hold: Entra sees the cache's budget of new scopes, not
// the callers' rate; the prefetched token stays cached and is served
// without an Entra request; abandoned requests do not keep goroutines or
// sockets; the log does not drown.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/cache"
	"github.com/entrabroker/broker/internal/emulator"
)

// laScope is the scope serveEnv prefetches.
const laScope = "https://api.loganalytics.io/.default"

// floodClient is a bounded pool of connections for a flood.
func floodClient(conns int) (*http.Client, func()) {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	return &http.Client{Transport: tr, Timeout: time.Minute}, tr.CloseIdleConnections
}

// flood sends n GET /token requests for https://r{i}.example.com from
// workers goroutines and returns the answers by status code. ctxFor gives
// each request its context.
func flood(t *testing.T, r *running, client *http.Client, n, workers int, ctxFor func() (context.Context, context.CancelFunc)) map[int]int {
	t.Helper()
	next := make(chan int)
	codes := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				ctx, cancel := ctxFor()
				req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/token?resource=https://r%d.example.com", r.api, i), nil)
				req.Header.Set("Metadata", "true")
				code := -1 // the request was abandoned
				if res, err := client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					code = res.StatusCode
				}
				cancel()
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return codes
}

// openFiles counts the process's open file descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(fds)
}

func TestFloodOfDistinctScopes(t *testing.T) {
	const (
		requests = 20000
		workers  = 64
	)
	az, r := startReady(t, nil)
	client, closeIdle := floodClient(workers)
	defer closeIdle()
	if code, _, _ := clientCall(t, client, "GET", r.api+tokenPath, map[string]string{"Metadata": "true"}); code != http.StatusOK {
		t.Fatalf("GET %s = %d, want 200", tokenPath, code)
	}
	closeIdle()
	settleGoroutines(t, runtime.NumGoroutine(), "before the flood")
	baseline := runtime.NumGoroutine()
	laBefore := az.Entra.Requests(emulator.DemoClientID, laScope)
	entraBefore := az.Entra.TotalRequests()
	warnBefore := strings.Count(r.stderr.String(), `"level":"warn"`)
	heapBefore := liveHeap()

	began := time.Now()
	codes := flood(t, r, client, requests, workers, func() (context.Context, context.CancelFunc) {
		return context.WithCancel(context.Background())
	})
	elapsed := time.Since(began)
	t.Logf("%d requests in %v: %v", requests, elapsed, codes)

	entra := az.Entra.TotalRequests() - entraBefore
	budget := cache.DefaultNewKeyBurst + int(elapsed/cache.DefaultNewKeyEvery) + 1
	if entra > budget {
		t.Errorf("Entra requests during the flood = %d, want at most %d (the new-scope budget over %v)", entra, budget, elapsed.Round(time.Second))
	}
	// Every scope that reached Entra is unknown to it (502); every other
	// request is refused by the budget (429).
	if codes[http.StatusBadGateway] != entra || codes[http.StatusTooManyRequests] != requests-entra {
		t.Errorf("answers by status = %v, want %d × 502 (one per Entra request) and the rest 429", codes, entra)
	}
	if got := metricValue(t, r, "broker_token_new_scope_refusals_total"); int(got) != codes[http.StatusTooManyRequests] {
		t.Errorf("broker_token_new_scope_refusals_total = %v, want %d", got, codes[http.StatusTooManyRequests])
	}

	// A refusal is the contract's 429 with Retry-After and a hint.
	meta := map[string]string{"Metadata": "true"}
	target := "/token?resource=https://one-more.example.com"
	code, h, body := clientCall(t, client, "GET", r.api+target, meta)
	if code == http.StatusTooManyRequests {
		loadSpec(t).check(t, "GET", target, meta, code, h, body)
		if h.Get("Retry-After") == "" || !strings.Contains(string(body), `"too_many_new_scopes"`) {
			t.Errorf("429 answer = %v %s, want too_many_new_scopes with Retry-After", h, body)
		}
	}

	// The prefetched token survived the flood and is served from memory.
	if code, _, body := clientCall(t, client, "GET", r.api+tokenPath, meta); code != http.StatusOK {
		t.Errorf("GET %s after the flood = %d %s, want 200", tokenPath, code, body)
	}
	if got := az.Entra.Requests(emulator.DemoClientID, laScope); got != laBefore {
		t.Errorf("Entra requests for the prefetched scope during the flood = %d, want 0", got-laBefore)
	}
	if n := metricValue(t, r, "broker_token_cache_entries"); n > float64(cache.DefaultSize) {
		t.Errorf("cache entries = %v, want at most %d", n, cache.DefaultSize)
	}
	// One warning per failing scope from the cache and one per 502 answer,
	// none per refusal.
	if warns := strings.Count(r.stderr.String(), `"level":"warn"`) - warnBefore; warns > 2*entra+2 {
		t.Errorf("warning lines during the flood = %d, want at most %d (two per Entra request)", warns, 2*entra+2)
	}

	closeIdle()
	settleGoroutines(t, baseline+goroutineSlack, "after the flood")
	// The live heap grows by the test's own copy of the debug log (one
	// access line per request) and little else.
	logBytes := uint64(len(r.stderr.String()))
	heapAfter := liveHeap()
	if grown := heapAfter - min(heapBefore, heapAfter); grown > 2*logBytes+16<<20 {
		t.Errorf("live heap grew by %d MiB during the flood, want at most twice the log (%d MiB) + 16 MiB", grown>>20, logBytes>>20)
	} else {
		t.Logf("live heap grew by %d KiB; the log holds %d KiB", grown>>10, logBytes>>10)
	}
	noPanics(t, r)
}

// liveHeap returns the bytes of live heap objects after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestEntraHangsAbandonedRequests: Entra holds every token request; callers
// of thousands of distinct scopes give up after a moment. Only the
// per-identity cap of fetches waits on Entra, the rest are abandoned
// without an Entra request, and goroutines and open files stay bounded
// while Entra hangs, then return to the baseline once it answers.
func TestEntraHangsAbandonedRequests(t *testing.T) {
	const (
		requests = 3000
		workers  = 200
	)
	az, r := startReady(t, nil)
	client, closeIdle := floodClient(workers)
	defer closeIdle()
	meta := map[string]string{"Metadata": "true"}
	clientCall(t, client, "GET", r.api+tokenPath, meta)
	closeIdle()
	settleGoroutines(t, runtime.NumGoroutine(), "before the hang")
	baseline, baseFiles := runtime.NumGoroutine(), openFiles(t)

	release := make(chan struct{})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	az.Entra.InjectFault(emulator.DemoClientID, emulator.Fault{Kind: emulator.FaultDelay, Times: requests, Release: release})
	entraBefore := az.Entra.TotalRequests()

	// Each caller gives up after 50 ms: long enough to be queued behind the
	// hung fetches, short enough that thousands pass through.
	codes := flood(t, r, client, requests, workers, func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 50*time.Millisecond)
	})
	t.Logf("answers by status (-1: abandoned): %v", codes)
	if codes[-1] == 0 {
		t.Fatalf("no request was abandoned: %v", codes)
	}

	if got := az.Entra.TotalRequests() - entraBefore; got > cache.DefaultMaxConcurrentFetches {
		t.Errorf("Entra requests while it hangs = %d, want at most %d (the per-identity cap)", got, cache.DefaultMaxConcurrentFetches)
	}
	waitFor(t, "the queue to empty", func() bool { return metricValue(t, r, "broker_token_fetches_queued") == 0 })
	if got := metricValue(t, r, "broker_token_fetches_in_flight"); got > cache.DefaultMaxConcurrentFetches {
		t.Errorf("broker_token_fetches_in_flight = %v, want at most %d", got, cache.DefaultMaxConcurrentFetches)
	}
	if got := metricValue(t, r, "broker_token_fetches_abandoned_total"); got == 0 {
		t.Errorf("broker_token_fetches_abandoned_total = 0, want the queued fetches of the callers that gave up")
	}
	// The prefetched token is still served while Entra hangs.
	if code, _, body := clientCall(t, client, "GET", r.api+tokenPath, meta); code != http.StatusOK {
		t.Errorf("GET %s while Entra hangs = %d %s, want 200", tokenPath, code, body)
	}

	// What the hung fetches hold, in this one process: per fetch, the
	// broker's fetch goroutine and its connection to the emulator (two
	// goroutines, one file) and the emulator's handler (one goroutine, one
	// file).
	closeIdle()
	const perFetch = 4
	settleGoroutines(t, baseline+goroutineSlack+perFetch*cache.DefaultMaxConcurrentFetches, "while Entra hangs")
	if files := openFiles(t); files > baseFiles+goroutineSlack+2*cache.DefaultMaxConcurrentFetches {
		t.Errorf("open files while Entra hangs = %d, want at most %d (baseline %d + two per capped fetch)", files, baseFiles+goroutineSlack+2*cache.DefaultMaxConcurrentFetches, baseFiles)
	}

	close(release)
	released = true
	az.Entra.ClearFaults(emulator.DemoClientID)
	waitFor(t, "the hung fetches to end", func() bool { return metricValue(t, r, "broker_token_fetches_in_flight") == 0 })
	closeIdle()
	settleGoroutines(t, baseline+goroutineSlack, "after Entra answered")
	noPanics(t, r)
}

// TestUpstream401sDoNotForceRefreshes is an upstream that answers 401 to
// every token: each answer asks the cache to drop the token, but a token
// younger than the forced-refresh interval is kept, so Entra sees nothing.
func TestUpstream401sDoNotForceRefreshes(t *testing.T) {
	var upstreamCalls atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamCalls.Add(1)
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, `{"error":{"code":"InvalidAuthenticationToken"}}`, http.StatusUnauthorized)
	}))
	t.Cleanup(upstream.Close)
	routes := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(routes, []byte("routes:\n  - name: refuses\n    upstream: "+upstream.URL+"\n    scope: "+laScope+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	az, r := startReady(t, map[string]string{"BROKER_ROUTES_FILE": routes})
	before := az.Entra.Requests(emulator.DemoClientID, laScope)

	for i := range 30 {
		if code, _, body := call(t, "GET", r.api+"/proxy/refuses/v1/anything", nil, ""); code != http.StatusUnauthorized {
			t.Fatalf("request %d through a refusing upstream = %d %s, want its 401", i+1, code, body)
		}
	}
	if got := az.Entra.Requests(emulator.DemoClientID, laScope) - before; got != 0 {
		t.Errorf("Entra requests after 30 upstream 401s for a fresh token = %d, want 0", got)
	}
	t.Logf("the upstream saw %d requests", upstreamCalls.Load())
	if got := metricValue(t, r, "broker_token_invalidations_total"); got < 30 {
		t.Errorf("broker_token_invalidations_total = %v, want at least 30 (every 401 asked)", got)
	}
	noPanics(t, r)
}
