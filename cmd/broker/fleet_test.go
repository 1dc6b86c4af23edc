package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/cache/redis/redistest"
	"github.com/entrabroker/broker/internal/emulator"
)

// fleetScopes are the scopes every broker of the fleet prefetches and serves.
var fleetScopes = []string{
	"https://api.loganalytics.io/.default",
	"https://management.azure.com/.default",
	"https://storage.azure.com/.default",
}

// entraRecorder notes the time and scope of every token request that
// reaches the emulated Entra ID, and whether it was answered 200.
type entraRecorder struct {
	h     http.Handler
	mu    sync.Mutex
	calls []entraRequest
}

type entraRequest struct {
	at    time.Time
	scope string
	ok    bool
}

func (r *entraRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || !strings.HasSuffix(req.URL.Path, "/oauth2/v2.0/token") {
		r.h.ServeHTTP(w, req)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(req.Body, 64<<10))
	req.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, req)
	r.mu.Lock()
	r.calls = append(r.calls, entraRequest{at: time.Now(), scope: strings.Fields(form.Get("scope"))[0], ok: rec.Code == http.StatusOK})
	r.mu.Unlock()
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// between returns the requests in [from, to).
func (r *entraRecorder) between(from, to time.Time) []entraRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []entraRequest
	for _, c := range r.calls {
		if !c.at.Before(from) && c.at.Before(to) {
			out = append(out, c)
		}
	}
	return out
}

// fleetLoad asks every broker for every scope, over and over, until stop,
// and counts the answers that are not 200.
type fleetLoad struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	ok, fail atomic.Int64
	mu       sync.Mutex
	firstErr string
}

func startFleetLoad(brokers []*running) *fleetLoad {
	l := &fleetLoad{stop: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, b := range brokers {
		for _, sc := range fleetScopes {
			l.wg.Go(func() {
				for {
					select {
					case <-l.stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					req, _ := http.NewRequest(http.MethodGet, b.api+"/token?scope="+url.QueryEscape(sc), nil)
					req.Header.Set("Metadata", "true")
					resp, err := client.Do(req)
					if err == nil && resp.StatusCode == http.StatusOK {
						resp.Body.Close()
						l.ok.Add(1)
						continue
					}
					l.fail.Add(1)
					l.mu.Lock()
					if l.firstErr == "" {
						if err != nil {
							l.firstErr = err.Error()
						} else {
							b, _ := io.ReadAll(resp.Body)
							l.firstErr = fmt.Sprintf("%d %s", resp.StatusCode, b)
						}
					}
					l.mu.Unlock()
					if resp != nil {
						resp.Body.Close()
					}
				}
			})
		}
	}
	return l
}

func (l *fleetLoad) end(t *testing.T, what string) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	if n := l.fail.Load(); n > 0 {
		t.Errorf("%s: %d of %d requests failed; first: %s", what, n, n+l.ok.Load(), l.firstErr)
	}
	if l.ok.Load() == 0 {
		t.Errorf("%s: no request succeeded", what)
	}
}

// ready waits until every broker's /readyz answers 200.
func ready(t *testing.T, brokers ...*running) {
	t.Helper()
	for _, b := range brokers {
		waitFor(t, b.ops+"/readyz to answer 200", func() bool {
			resp, err := http.Get(b.ops + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}
}

// TestFleet runs a fleet of brokers (each the real run()) against one
// emulated Entra ID issuing 12-second tokens, with and without one shared
// Redis, under load, and counts the Entra requests per scope and refresh
// window. With Redis: one request per scope at a cold start of the whole
// fleet, at most two per window (the earliest jittered refresh asks, the
// others find its token), no failed request while Redis is killed, paused
// and flushed, and a broker started during an Entra outage serves from
// Redis at once. Without Redis each broker asks for itself.
//
// It takes about 45 s of real time: token refreshes cannot be faked across
// processes. The figures are logged (go test -v -run TestFleet) for the
// README.
func TestFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP: the fleet run takes 45 s of real time")
	}
	srv := redistest.New(t)
	const (
		n        = 5
		lifetime = 12 * time.Second
		window   = lifetime / 2 // the refresh period
		windows  = 3
	)
	az := emulator.NewAzure(emulator.Options{TokenLifetime: lifetime})
	if err := az.AddDemo(); err != nil {
		t.Fatal(err)
	}
	rec := &entraRecorder{h: az}
	emu := httptest.NewServer(rec)
	t.Cleanup(emu.Close)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	keyFile := filepath.Join(t.TempDir(), "redis.key")
	if err := os.WriteFile(keyFile, []byte("fleet-1 "+base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(shared bool) map[string]string {
		e := serveEnv(emu.URL)
		e["BROKER_PREFETCH_SCOPES"] = strings.Join(fleetScopes, ",")
		e["BROKER_LOG_LEVEL"] = "warn"
		if shared {
			e["BROKER_REDIS_URL"] = srv.URL()
			e["BROKER_REDIS_KEY_FILE"] = keyFile
		}
		return e
	}
	// fleet starts n brokers at once and measures the cold start and the
	// refresh windows under load; it returns the brokers, still running.
	fleet := func(shared bool) (brokers []*running, cold map[string]int, perWindow map[string][]int) {
		start0 := time.Now()
		for range n {
			brokers = append(brokers, start(t, env(shared)))
		}
		ready(t, brokers...)
		cold = map[string]int{}
		perWindow = map[string][]int{}
		for _, c := range rec.between(start0, time.Now()) {
			cold[c.scope]++
		}
		load := startFleetLoad(brokers)
		from := time.Now()
		time.Sleep(windows * window) // real refreshes: the measurement itself
		load.end(t, fmt.Sprintf("fleet (redis %v)", shared))
		for w := range windows {
			calls := rec.between(from.Add(time.Duration(w)*window), from.Add(time.Duration(w+1)*window))
			for _, sc := range fleetScopes {
				k := 0
				for _, c := range calls {
					if c.scope == sc {
						k++
					}
				}
				perWindow[sc] = append(perWindow[sc], k)
			}
		}
		return brokers, cold, perWindow
	}

	// With Redis.
	brokers, cold, with := fleet(true)
	for _, sc := range fleetScopes {
		if got := cold[sc]; got != 1 {
			t.Errorf("cold start of %d brokers with Redis: %v Entra requests for %s, want 1", n, got, sc)
		}
		for w, k := range with[sc] {
			if k > 2 {
				t.Errorf("with Redis: %d Entra requests for %s in refresh window %d, want at most 2", k, sc, w)
			}
		}
	}

	// Redis killed, restarted empty, paused and flushed under load: no
	// request fails.
	load := startFleetLoad(brokers)
	srv.Kill()
	time.Sleep(window / 2)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Client.Do(context.Background(), "CLIENT", "PAUSE", "1500", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(window / 2)
	if err := srv.Client.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(window / 2)
	load.end(t, "Redis killed, paused and flushed")

	// Entra down, right after the fleet refreshed: a new broker serves the
	// fleet's tokens from Redis at once.
	// Entra down once Redis holds a token of every scope with life to
	// spare. Watching Redis itself, not the Entra requests: a fetch made
	// while the breaker was still open after the outage above is not
	// stored. An entry's TTL is its token's remaining life; the spare is
	// the margin of a 12 s token (a quarter) and time for a broker to
	// start.
	spare := lifetime/4 + 4*time.Second
	waitFor(t, "a fresh token of every scope in Redis", func() bool {
		ctx := context.Background()
		names, err := srv.Client.Keys(ctx, "broker:token:*").Result()
		if err != nil {
			return false
		}
		fresh := 0
		for _, n := range names {
			if ttl, err := srv.Client.PTTL(ctx, n).Result(); err == nil && ttl >= spare {
				fresh++
			}
		}
		return fresh >= len(fleetScopes)
	})
	az.Entra.InjectFault(emulator.DemoClientID, emulator.Fault{Kind: emulator.FaultUnavailable, Times: 1 << 20})
	began := time.Now()
	late := start(t, env(true))
	ready(t, late)
	for _, sc := range fleetScopes {
		code, _, body := call(t, "GET", late.api+"/token?scope="+url.QueryEscape(sc), map[string]string{"Metadata": "true"}, "")
		if code != http.StatusOK {
			t.Errorf("new broker during an Entra outage: GET /token %s = %d %s, want 200 from Redis", sc, code, body)
		}
	}
	t.Logf("Entra down: a new broker was ready with every scope from Redis %v after it started", time.Since(began).Round(time.Millisecond))
	az.Entra.ClearFaults(emulator.DemoClientID)
	for _, b := range append(brokers, late) {
		if err := b.stop(t); err != nil {
			t.Errorf("broker stopped with %v", err)
		}
	}

	// Without Redis, in the same run.
	brokers, coldAlone, alone := fleet(false)
	for _, b := range brokers {
		if err := b.stop(t); err != nil {
			t.Errorf("broker stopped with %v", err)
		}
	}
	for _, sc := range fleetScopes {
		sum := func(ks []int) (s int) {
			for _, k := range ks {
				s += k
			}
			return s
		}
		t.Logf("%s: %d brokers, cold start %v vs %v Entra requests, per %v refresh window %v with Redis, %v without",
			sc, n, cold[sc], coldAlone[sc], window, with[sc], alone[sc])
		if sum(alone[sc]) < 2*sum(with[sc]) {
			t.Errorf("%s: %v Entra requests per window without Redis vs %v with: Redis should save most of them", sc, alone[sc], with[sc])
		}
	}
}
