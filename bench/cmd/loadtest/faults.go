package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/entrabroker/broker/internal/emulator"
)

// runFaults is item 4 of issue 9: /token load through a scripted Entra
// outage. The outage begins with the broker's first background refresh:
// Entra answers 503 for 30 s; then the next token request gets 429 with
// Retry-After: 60, the one after that has its connection dropped, and the
// one after that is answered slowly (but answered). The run prints the
// timeline of Entra requests beside the backoff schedule and what the
// callers saw in each phase.
func runFaults(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadtest faults", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokerBin := fs.String("broker", "bin/broker", "the broker binary")
	lifetime := fs.Duration("lifetime", 4*time.Minute, "token lifetime the emulator issues")
	unavailable := fs.Duration("unavailable", 30*time.Second, "how long Entra answers 503")
	retryAfter := fs.Duration("retry-after", 60*time.Second, "Retry-After of the 429")
	slow := fs.Duration("slow", 8*time.Second, "how long the slow answer takes")
	after := fs.Duration("after", 20*time.Second, "load kept up after the recovery")
	rate := fs.Float64("rate", 200, "requests per second")
	workers := fs.Int("workers", 4, "concurrent clients")
	timeout := fs.Duration("timeout", 9*time.Minute, "bound on the whole run")
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
	ctx, cancelAll := context.WithTimeout(ctx, *timeout)
	defer cancelAll()

	b, err := startServedBroker(ctx, bin, *lifetime)
	if err != nil {
		return err
	}
	defer b.stop()
	cl := b.cl
	prefetch := cl.entraCalls()[0]
	margin := *lifetime / 4

	fmt.Fprintf(stdout, "loadtest faults: tokens of %v (served until %v before expiry, refreshed at about half-life), %.0f req/s on GET /token\n",
		*lifetime, margin, *rate)
	fmt.Fprintf(stdout, "outage script: from the first refresh, %v of 503; then 429 Retry-After %v; then a dropped connection; then an answer after %v\n",
		*unavailable, *retryAfter, *slow)

	// The 503s wait for the first refresh; the rest is queued when they end.
	reached := make(chan struct{}, 1)
	cl.az.Entra.InjectFault(emulator.DemoClientID, emulator.Fault{Kind: emulator.FaultUnavailable, Times: 1 << 30, Reached: reached})

	lctx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	loadStart := time.Now()
	done := make(chan []sample, 1)
	go func() { done <- generate(lctx, b.api+tokenQuery, *rate, *workers) }()

	var outage time.Time
	select {
	case <-reached:
		outage = time.Now()
	case <-ctx.Done():
		return fmt.Errorf("no refresh reached Entra: %w", ctx.Err())
	}
	fmt.Fprintf(stdout, "t=%5.1fs  first refresh reached Entra: the outage begins\n", outage.Sub(loadStart).Seconds())
	select {
	case <-time.After(*unavailable):
	case <-ctx.Done():
		return ctx.Err()
	}
	cl.az.Entra.ClearFaults(emulator.DemoClientID)
	cl.az.Entra.InjectFault(emulator.DemoClientID, emulator.Fault{Kind: emulator.FaultThrottle, RetryAfter: *retryAfter})
	cl.az.Entra.InjectFault(emulator.DemoClientID, emulator.Fault{Kind: emulator.FaultDropConnection})
	cl.az.Entra.InjectFault(emulator.DemoClientID, emulator.Fault{Kind: emulator.FaultDelay, Delay: *slow})
	fmt.Fprintf(stdout, "t=%5.1fs  503s end; queued: 429, dropped connection, slow answer\n", time.Since(loadStart).Seconds())

	var recovered time.Time
	for recovered.IsZero() {
		for _, c := range cl.entraCalls() {
			if c.start.After(outage) && c.status == 200 {
				recovered = c.end
			}
		}
		select {
		case <-ctx.Done():
			stopLoad()
			<-done
			return fmt.Errorf("the broker did not recover within the run's bound (%v)", *timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
	fmt.Fprintf(stdout, "t=%5.1fs  Entra answered a token again: recovered %.1fs after the outage began\n",
		recovered.Sub(loadStart).Seconds(), recovered.Sub(outage).Seconds())
	select {
	case <-time.After(*after):
	case <-ctx.Done():
	}
	stopLoad()
	samples := <-done

	return analyseFaults(stdout, faultRun{
		loadStart: loadStart, outage: outage, recovered: recovered,
		prefetch: prefetch, calls: cl.entraCalls(), samples: samples,
		margin: margin, unavailable: *unavailable, retryAfter: *retryAfter, slow: *slow,
	})
}

// faultRun is what runFaults recorded.
type faultRun struct {
	loadStart, outage, recovered time.Time
	prefetch                     entraCall
	calls                        []entraCall
	samples                      []sample
	margin                       time.Duration
	unavailable, retryAfter      time.Duration
	slow                         time.Duration
}

// backoffBounds is the broker's retry schedule after the n-th consecutive
// transient failure: 1 s doubling to 5 minutes, ±10 % jitter, never before
// Retry-After (internal/cache policy).
func backoffBounds(n int, retryAfter time.Duration) (lo, hi time.Duration) {
	d := 5 * time.Minute
	if n <= 20 {
		if b := time.Second << (n - 1); b < d {
			d = b
		}
	}
	lo, hi = d*9/10, d*11/10
	return max(lo, retryAfter), max(hi, retryAfter)
}

func analyseFaults(w io.Writer, r faultRun) error {
	rel := func(t time.Time) float64 { return t.Sub(r.loadStart).Seconds() }

	// The timeline of Entra requests, beside the schedule.
	fmt.Fprintln(w, "\nEntra token requests (t = seconds since the load began):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\tt\tanswer\ttook\tafter previous\tschedule\t")
	fmt.Fprintf(tw, "  0\t%.1fs\t%s\t%.0fms\t\t(prefetch at start)\t\n", rel(r.prefetch.start), answerName(r.prefetch, r.slow), ms(r.prefetch.end.Sub(r.prefetch.start)))
	scheduleOK, honoured := true, true
	failures := 0
	var prev entraCall
	var lastRA time.Duration
	for i, c := range r.calls[1:] {
		gap := ""
		sched := "(refresh at about half-life)"
		if failures > 0 {
			d := c.start.Sub(prev.end)
			lo, hi := backoffBounds(failures, lastRA)
			ok := d >= lo-250*time.Millisecond && d <= hi+time.Second
			if !ok {
				scheduleOK = false
			}
			if lastRA > 0 && d < lastRA-250*time.Millisecond {
				honoured = false
			}
			verdict := "ok"
			if !ok {
				verdict = "OFF SCHEDULE"
			}
			gap = fmt.Sprintf("%.1fs", d.Seconds())
			sched = fmt.Sprintf("%.1f–%.1fs after failure %d: %s", lo.Seconds(), hi.Seconds(), failures, verdict)
		}
		fmt.Fprintf(tw, "  %d\t%.1fs\t%s\t%.0fms\t%s\t%s\t\n", i+1, rel(c.start), answerName(c, r.slow), ms(c.end.Sub(c.start)), gap, sched)
		lastRA = 0
		if c.status == 429 {
			lastRA = r.retryAfter
		}
		if c.status == 200 {
			failures = 0
		} else {
			failures++
		}
		prev = c
	}
	_ = tw.Flush()

	// What the callers saw, phase by phase.
	var dropAt, slowAt time.Time
	for _, c := range r.calls {
		if c.start.After(r.outage) && c.status == 0 && dropAt.IsZero() {
			dropAt = c.start
		}
		if c.start.After(r.outage) && c.status == 200 && slowAt.IsZero() {
			slowAt = c.start
		}
	}
	throttleAt := r.outage.Add(r.unavailable)
	phases := []struct {
		name     string
		from, to time.Time
	}{
		{"before the outage", r.loadStart, r.outage},
		{"503s", r.outage, throttleAt},
		{"429 Retry-After", throttleAt, dropAt},
		{"dropped connection", dropAt, slowAt},
		{"slow answer", slowAt, r.recovered},
		{"after recovery", r.recovered, time.Now().Add(time.Hour)},
	}
	fmt.Fprintln(w, "\n/token answers by phase:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tfrom\tanswers\t200\tof which stale\t503\tother\tp99\tmax\t")
	for _, p := range phases {
		if p.from.IsZero() || p.to.IsZero() {
			continue
		}
		var n, ok, stale, unavail, other int
		var lat []time.Duration
		for _, s := range r.samples {
			if s.sent.Before(p.from) || !s.sent.Before(p.to) {
				continue
			}
			n++
			lat = append(lat, s.latency)
			switch {
			case s.status == 200 && s.stale:
				ok++
				stale++
			case s.status == 200:
				ok++
			case s.status == 503:
				unavail++
			default:
				other++
			}
		}
		fmt.Fprintf(tw, "%s\t%.1fs\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n", p.name, rel(p.from), n, ok, stale, unavail, other,
			fmtDur(percentile(lat, 99)), fmtDur(percentile(lat, 100)))
	}
	_ = tw.Flush()

	// Every answer while a valid token existed must be a 200; none may carry
	// an expired token; answers after the recovery are fresh.
	var (
		servableUntil         time.Time
		badWhileValid         int
		expired, notStale     int
		afterBad              int
		firstBad              string
		lastValidDuringOutage time.Time
	)
	for _, s := range r.samples {
		if s.status == 200 {
			if s.exp == 0 || !time.Unix(s.exp, 0).After(s.received()) {
				expired++
			}
			if u := time.Unix(s.expireOn, 0).Add(-r.margin); u.After(servableUntil) {
				servableUntil = u
			}
			// Answered during the outage, so from the token held before it
			// (callers that waited on the fetch that ended the outage got
			// the new token).
			if s.sent.After(r.outage.Add(time.Second)) && s.received().Before(r.recovered) {
				lastValidDuringOutage = s.sent
				if !s.stale {
					notStale++
				}
			}
		} else if servableUntil.After(s.sent.Add(time.Second)) {
			badWhileValid++
			if firstBad == "" {
				firstBad = fmt.Sprintf("status %d at t=%.1fs, token servable until t=%.1fs", s.status, rel(s.sent), rel(servableUntil))
			}
		}
		if s.sent.After(r.recovered.Add(time.Second)) && (s.status != 200 || s.stale) {
			afterBad++
		}
	}
	fmt.Fprintln(w)
	if !lastValidDuringOutage.IsZero() {
		fmt.Fprintf(w, "the last token fetched before the outage was served (stale) until t=%.1fs; it left service at t=%.1fs (expiry − %v)\n",
			rel(lastValidDuringOutage), rel(r.prefetch.end.Add(r.margin*3)), r.margin)
	}
	fmt.Fprintln(w)
	return report(w, []check{
		{"no non-200 while a valid token was cached", badWhileValid == 0, fmt.Sprintf("%d %s", badWhileValid, firstBad)},
		{"stale tokens marked X-Broker-Token-Stale", notStale == 0, fmt.Sprintf("%d unmarked", notStale)},
		{"no expired token served", expired == 0, fmt.Sprintf("%d", expired)},
		{"retries follow the backoff schedule", scheduleOK, ""},
		{"Retry-After honoured", honoured, r.retryAfter.String()},
		{"recovered by itself, fresh answers after", !r.recovered.IsZero() && afterBad == 0, fmt.Sprintf("%.1fs after the outage began; %d bad answers after", r.recovered.Sub(r.outage).Seconds(), afterBad)},
	})
}

// answerName says what Entra answered, in words.
func answerName(c entraCall, slow time.Duration) string {
	switch {
	case c.status == 0:
		return "dropped"
	case c.status == 200 && c.end.Sub(c.start) >= slow-time.Second:
		return "200 (slow)"
	default:
		return fmt.Sprintf("%d", c.status)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
