package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"
)

// runExpiry is item 2 of issue 9: /token load across token refreshes. The
// emulator issues short-lived tokens, so the broker refreshes several times
// during the run; every answer is checked against its token's exp, latency
// near refreshes is compared with latency elsewhere, and the Entra requests
// are compared with the refreshes the schedule calls for.
func runExpiry(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadtest expiry", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokerBin := fs.String("broker", "bin/broker", "the broker binary")
	lifetime := fs.Duration("lifetime", 2*time.Minute, "token lifetime the emulator issues")
	duration := fs.Duration("duration", 5*time.Minute, "length of the load")
	rate := fs.Float64("rate", 1000, "requests per second")
	workers := fs.Int("workers", 8, "concurrent clients")
	window := fs.Duration("window", time.Second, "time either side of an Entra request that counts as 'around a refresh'")
	maxRatio := fs.Float64("p99-ratio", 2, "largest p99 around refreshes ÷ p99 elsewhere that passes")
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
	b, err := startServedBroker(ctx, bin, *lifetime)
	if err != nil {
		return err
	}
	defer b.stop()
	cl, opsURL := b.cl, b.ops
	prefetched := cl.entraCalls()
	if len(prefetched) != 1 {
		return fmt.Errorf("the broker made %d token requests at start, want 1 (the prefetch)", len(prefetched))
	}
	first := prefetched[0].end
	missesBefore, _ := scrapeSum(opsURL, "broker_token_cache_misses_total")
	waitsBefore, _ := scrapeSum(opsURL, "broker_token_cache_shared_waits_total")

	fmt.Fprintf(stdout, "loadtest expiry: tokens of %v, %v of load at %.0f req/s from %d clients on GET /token\n", *lifetime, *duration, *rate, *workers)
	lctx, cancel := context.WithTimeout(ctx, *duration)
	start := time.Now()
	samples := generate(lctx, b.api+tokenQuery, *rate, *workers)
	cancel()
	end := time.Now()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	missesAfter, _ := scrapeSum(opsURL, "broker_token_cache_misses_total")
	waitsAfter, _ := scrapeSum(opsURL, "broker_token_cache_shared_waits_total")

	calls := cl.entraCalls()[1:]
	margin := *lifetime / 4 // the broker's margin for tokens shorter than 20 minutes
	var (
		non200, expired, underMargin int
		minLeft                      = time.Duration(math.MaxInt64)
		in, out                      []time.Duration
	)
	for _, s := range samples {
		if s.status != 200 {
			non200++
			continue
		}
		left := time.Unix(s.exp, 0).Sub(s.received())
		minLeft = min(minLeft, left)
		if s.exp == 0 || left <= 0 {
			expired++
		}
		if left < margin-time.Second {
			underMargin++
		}
		near := false
		for _, c := range calls {
			if !s.sent.Before(c.start.Add(-*window)) && !s.sent.After(c.end.Add(*window)) {
				near = true
				break
			}
		}
		if near {
			in = append(in, s.latency)
		} else {
			out = append(out, s.latency)
		}
	}

	fmt.Fprintf(stdout, "\nEntra token requests after the prefetch (t = seconds since the load began):\n")
	prev := first
	failed := 0
	for i, c := range calls {
		fmt.Fprintf(stdout, "  %d. t=%6.1fs  %d  %4.0f ms  %5.1fs after the previous fetch\n", i+1, c.start.Sub(start).Seconds(), c.status,
			float64(c.end.Sub(c.start))/float64(time.Millisecond), c.start.Sub(prev).Seconds())
		if c.status != 200 {
			failed++
		}
		prev = c.end
	}
	// The broker refreshes at half the lifetime (±10 %) after each fetch.
	expected := int(end.Sub(first) / (*lifetime / 2))
	p99in, p99out := percentile(in, 99), percentile(out, 99)
	ratio := float64(p99in) / float64(max(p99out, time.Microsecond))
	fmt.Fprintf(stdout, "\nanswers: %d (%d not 200); tokens served: least time left %v (margin %v), %d within the margin, %d expired\n",
		len(samples), non200, minLeft.Round(time.Millisecond), margin, underMargin, expired)
	fmt.Fprintf(stdout, "latency within %v of a refresh: %d answers, p50 %s, p99 %s, max %s\n", *window, len(in),
		fmtDur(percentile(in, 50)), fmtDur(p99in), fmtDur(percentile(in, 100)))
	fmt.Fprintf(stdout, "latency elsewhere:            %d answers, p50 %s, p99 %s, max %s\n", len(out),
		fmtDur(percentile(out, 50)), fmtDur(p99out), fmtDur(percentile(out, 100)))
	fmt.Fprintf(stdout, "requests that waited on Entra (cache misses during the load): %.0f; shared waits: %.0f\n\n",
		missesAfter-missesBefore, waitsAfter-waitsBefore)

	return report(stdout, []check{
		{"no expired token served", expired == 0, fmt.Sprintf("%d expired; least left %v", expired, minLeft.Round(time.Millisecond))},
		{"every answer 200", non200 == 0, fmt.Sprintf("%d of %d not 200", non200, len(samples))},
		{"no request waited on Entra", missesAfter == missesBefore, fmt.Sprintf("%.0f misses", missesAfter-missesBefore)},
		{fmt.Sprintf("p99 near refreshes ≤ %.1f× elsewhere", *maxRatio), ratio <= *maxRatio && len(in) > 0, fmt.Sprintf("%.2f× (%s vs %s)", ratio, fmtDur(p99in), fmtDur(p99out))},
		{"Entra requests ≈ scheduled refreshes (±1)", abs(len(calls)-expected) <= 1 && failed == 0, fmt.Sprintf("%d requests, %d scheduled", len(calls), expected)},
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
