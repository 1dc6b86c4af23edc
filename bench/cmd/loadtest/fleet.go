package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/entrabroker/broker/internal/cache/redis/redistest"
	"github.com/entrabroker/broker/internal/emulator"
)

// Both fleets run at once against one emulated Entra ID; each asks for its
// own three scopes, so that the emulator's requests tell them apart.
var (
	sharedScopes = []string{"https://api.loganalytics.io/.default", "https://management.azure.com/.default", "https://storage.azure.com/.default"}
	aloneScopes  = []string{"https://api.applicationinsights.io/.default", "https://vault.azure.net/.default", "https://graph.microsoft.com/.default"}
)

// runFleet is issue 16's fleet run: N broker processes sharing one Redis
// and N brokers without it, side by side under /token load against one
// emulated Entra ID with short tokens. It counts the Entra requests per
// scope and refresh window of each fleet, the cold start of each, and
// then starts one more broker during an Entra outage.
func runFleet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadtest fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokerBin := fs.String("broker", "bin/broker", "the broker binary")
	n := fs.Int("n", 20, "brokers per fleet")
	lifetime := fs.Duration("lifetime", 2*time.Minute, "token lifetime the emulator issues")
	duration := fs.Duration("duration", 10*time.Minute, "length of the load")
	rate := fs.Float64("rate", 6, "requests per second per broker and scope")
	if err := fs.Parse(args); err != nil {
		return err
	}
	bin, err := filepath.Abs(*brokerBin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("the broker binary: %w (run make build)", err)
	}
	redisBin, err := exec.LookPath("redis-server")
	if err != nil {
		return errors.New("redis-server is not installed (apt-get install redis-server)")
	}
	dir, err := os.MkdirTemp("", "loadtest-fleet-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	rds, err := redistest.Start(redisBin, dir)
	if err != nil {
		return err
	}
	defer rds.Stop()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	keyFile := filepath.Join(dir, "redis.key")
	if err := os.WriteFile(keyFile, []byte("fleet-1 "+base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return err
	}
	cl, err := startCloud(*lifetime)
	if err != nil {
		return err
	}
	defer cl.close()

	env := func(shared bool) ([]string, error) {
		api, err := freePort()
		if err != nil {
			return nil, err
		}
		ops, err := freePort()
		if err != nil {
			return nil, err
		}
		e := brokerEnv(cl, api, ops, cl.url)
		e = append(e, "BROKER_LOG_LEVEL=warn")
		if shared {
			e = append(e, "BROKER_PREFETCH_SCOPES="+strings.Join(sharedScopes, ","),
				"BROKER_REDIS_URL="+rds.URL(), "BROKER_REDIS_KEY_FILE="+keyFile)
		} else {
			e = append(e, "BROKER_PREFETCH_SCOPES="+strings.Join(aloneScopes, ","))
		}
		return e, nil
	}
	type member struct {
		proc     *process
		api, ops string
	}
	startMember := func(shared bool) (member, error) {
		e, err := env(shared)
		if err != nil {
			return member{}, err
		}
		var m member
		for _, kv := range e {
			if v, ok := strings.CutPrefix(kv, "BROKER_LISTEN="); ok {
				m.api = "http://" + v
			}
			if v, ok := strings.CutPrefix(kv, "BROKER_OPS_LISTEN="); ok {
				m.ops = "http://" + v
			}
		}
		m.proc, err = startProcess("broker", "", e, bin, "serve")
		return m, err
	}
	var members [2][]member
	defer func() {
		for _, f := range members {
			for _, m := range f {
				m.proc.stop()
			}
		}
	}()

	fmt.Fprintf(stdout, "loadtest fleet: %d brokers with one Redis and %d without, side by side; tokens of %v; %v of load at %.0f req/s per broker and scope\n",
		*n, *n, *lifetime, *duration, *rate)
	// A cold start of both fleets at once.
	coldStart := time.Now()
	for range *n {
		for f, shared := range []bool{true, false} {
			m, err := startMember(shared)
			if err != nil {
				return err
			}
			members[f] = append(members[f], m)
		}
	}
	for _, f := range members {
		for _, m := range f {
			if err := waitReady(ctx, m.ops, m.proc); err != nil {
				return err
			}
		}
	}
	coldEnd := time.Now()
	fmt.Fprintf(stdout, "all %d brokers ready %v after the first started\n", 2**n, coldEnd.Sub(coldStart).Round(time.Millisecond))

	// The load: every broker, every scope of its fleet.
	lctx, cancel := context.WithTimeout(ctx, *duration)
	loadStart := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	answers, failed := [2]int{}, [2]int{}
	for f, scopes := range [][]string{sharedScopes, aloneScopes} {
		for _, m := range members[f] {
			for _, sc := range scopes {
				wg.Go(func() {
					samples := generate(lctx, m.api+"/token?scope="+url.QueryEscape(sc), *rate, 1)
					mu.Lock()
					defer mu.Unlock()
					for _, s := range samples {
						answers[f]++
						if s.status != http.StatusOK {
							failed[f]++
						}
					}
				})
			}
		}
	}
	wg.Wait()
	cancel()
	loadEnd := time.Now()
	if ctx.Err() != nil {
		return ctx.Err()
	}

	calls := cl.entraCalls()
	window := *lifetime / 2
	windows := int(loadEnd.Sub(loadStart) / window)
	count := func(scope string, from, to time.Time) int {
		k := 0
		for _, c := range calls {
			if c.scope == scope && !c.start.Before(from) && c.start.Before(to) {
				k++
			}
		}
		return k
	}
	maxShared, sumShared, sumAlone := 0, 0, 0
	coldShared, coldAlone := 0, 0
	fmt.Fprintf(stdout, "\nEntra token requests per scope: cold start, then per refresh window of %v (%d windows)\n", window, windows)
	for f, scopes := range [][]string{sharedScopes, aloneScopes} {
		label := [2]string{"with Redis   ", "without Redis"}[f]
		for i, sc := range scopes {
			cold := count(sc, coldStart, coldEnd.Add(time.Second))
			var per []int
			for w := range windows {
				from := loadStart.Add(time.Duration(w) * window)
				k := count(sc, from, from.Add(window))
				per = append(per, k)
				if f == 0 {
					maxShared = max(maxShared, k)
					sumShared += k
				} else {
					sumAlone += k
				}
			}
			if f == 0 {
				coldShared = max(coldShared, cold)
			} else {
				coldAlone = max(coldAlone, cold)
			}
			fmt.Fprintf(stdout, "  %s scope %d: cold %2d, per window %v\n", label, i+1, cold, per)
		}
	}
	meanShared := float64(sumShared) / float64(max(1, windows*len(sharedScopes)))
	meanAlone := float64(sumAlone) / float64(max(1, windows*len(aloneScopes)))
	fmt.Fprintf(stdout, "mean per scope and window: %.2f with Redis, %.2f without\n", meanShared, meanAlone)
	fmt.Fprintf(stdout, "answers: %d with Redis (%d not 200), %d without (%d not 200)\n", answers[0], failed[0], answers[1], failed[1])

	// Entra down: one more broker of the shared fleet.
	cl.az.Entra.InjectFault(emulator.DemoClientID, emulator.Fault{Kind: emulator.FaultUnavailable, Times: 1 << 20})
	began := time.Now()
	late, err := startMember(true)
	if err != nil {
		return err
	}
	members[0] = append(members[0], late)
	lateOK := waitReady(ctx, late.ops, late.proc) == nil
	readyIn := time.Since(began)
	for _, sc := range sharedScopes {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, late.api+"/token?scope="+url.QueryEscape(sc), nil)
		req.Header.Set("Metadata", "true")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			lateOK = false
			continue
		}
		res.Body.Close()
		lateOK = lateOK && res.StatusCode == http.StatusOK
	}
	cl.az.Entra.ClearFaults(emulator.DemoClientID)
	fmt.Fprintf(stdout, "Entra down: broker %d ready with every scope from Redis %v after it started\n\n", *n+1, readyIn.Round(time.Millisecond))

	return report(stdout, []check{
		{"cold start with Redis: 1 Entra request/scope", coldShared == 1, fmt.Sprintf("%d at most (without Redis: %d)", coldShared, coldAlone)},
		{"with Redis: ≤ 2 Entra requests/scope/window", maxShared <= 2 && windows > 0, fmt.Sprintf("at most %d, mean %.2f (without Redis: mean %.2f)", maxShared, meanShared, meanAlone)},
		{"every answer 200", failed[0]+failed[1] == 0, fmt.Sprintf("%d and %d not 200", failed[0], failed[1])},
		{"Entra down: a new broker serves from Redis", lateOK, fmt.Sprintf("ready in %v", readyIn.Round(time.Millisecond))},
	})
}
