package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// sample is one /token answer as the load generator saw it.
type sample struct {
	sent     time.Time
	latency  time.Duration
	status   int // 0: the request failed without an answer
	stale    bool
	exp      int64 // the token's exp claim (JWT payload, not verified)
	expireOn int64 // the answer's expires_on
}

// received is when the answer arrived.
func (s sample) received() time.Time { return s.sent.Add(s.latency) }

// generate sends GET url with Metadata: true at rate requests per second
// from workers goroutines until ctx ends, and returns every answer, by send
// time.
func generate(ctx context.Context, url string, rate float64, workers int) []sample {
	tr := &http.Transport{MaxIdleConnsPerHost: workers, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 45 * time.Second}
	interval := time.Duration(float64(workers) / rate * float64(time.Second))
	per := make([][]sample, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Stagger the workers over one interval.
			t := time.NewTimer(interval * time.Duration(w) / time.Duration(workers))
			defer t.Stop()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			tick := time.NewTicker(interval)
			defer tick.Stop()
			var lastToken string
			var lastExp int64
			for {
				s := sample{sent: time.Now()}
				req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), "GET", url, nil)
				req.Header.Set("Metadata", "true")
				res, err := client.Do(req)
				if err == nil {
					body, rerr := io.ReadAll(res.Body)
					res.Body.Close()
					s.latency = time.Since(s.sent)
					if rerr == nil {
						s.status = res.StatusCode
						s.stale = res.Header.Get("X-Broker-Token-Stale") == "true"
						if s.status == http.StatusOK {
							var tok struct {
								AccessToken string `json:"access_token"`
								ExpiresOn   int64  `json:"expires_on"`
							}
							_ = json.Unmarshal(body, &tok)
							s.expireOn = tok.ExpiresOn
							if tok.AccessToken != lastToken {
								lastToken, lastExp = tok.AccessToken, jwtExp(tok.AccessToken)
							}
							s.exp = lastExp
						}
					}
				} else {
					s.latency = time.Since(s.sent)
				}
				per[w] = append(per[w], s)
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	wg.Wait()
	var all []sample
	for _, p := range per {
		all = append(all, p...)
	}
	slices.SortFunc(all, func(a, b sample) int { return a.sent.Compare(b.sent) })
	return all
}

// jwtExp returns the exp claim of a JWT, read without verification; 0 when
// the token is not a JWT with an exp.
func jwtExp(token string) int64 {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return 0
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return 0
	}
	var c struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(b, &c) != nil {
		return 0
	}
	return c.Exp
}

// percentile returns the p-th percentile (0–100) of ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}
