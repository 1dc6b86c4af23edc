package main

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what one wrk run reports.
type wrkResult struct {
	requests int64
	rps      float64
	p50, p99 time.Duration
	errors   int64 // non-2xx/3xx answers plus socket errors
}

// runWrk runs wrk with one thread against url for d, pinned to cpus when
// not empty, and parses its report.
func runWrk(ctx context.Context, cpus string, conns int, d time.Duration, url string, headers ...string) (wrkResult, string, error) {
	argv := []string{"wrk", "-t1", "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(int(d/time.Second)) + "s", "--latency", "--timeout", "5s"}
	for _, h := range headers {
		argv = append(argv, "-H", h)
	}
	argv = append(argv, url)
	if cpus != "" {
		argv = append([]string{"taskset", "-c", cpus}, argv...)
	}
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return wrkResult{}, string(out), fmt.Errorf("wrk: %w\n%s", err, out)
	}
	r, err := parseWrk(string(out))
	return r, string(out), err
}

var (
	wrkRequests = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)
	wrkRPS      = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkPercent  = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s|m)\s*$`)
	wrkNon2xx   = regexp.MustCompile(`(?m)Non-2xx or 3xx responses:\s+(\d+)`)
	wrkSocket   = regexp.MustCompile(`(?m)Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// parseWrk reads wrk's --latency report.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := wrkRequests.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk: no request count in:\n%s", out)
	}
	r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	if m = wrkRPS.FindStringSubmatch(out); m == nil {
		return r, fmt.Errorf("wrk: no Requests/sec in:\n%s", out)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	for _, m := range wrkPercent.FindAllStringSubmatch(out, -1) {
		d, err := time.ParseDuration(m[2] + m[3])
		if err != nil {
			return r, fmt.Errorf("wrk: latency %q: %w", m[2]+m[3], err)
		}
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if m = wrkNon2xx.FindStringSubmatch(out); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		r.errors += n
	}
	if m = wrkSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.errors += n
		}
	}
	if r.p50 == 0 || r.p99 == 0 {
		return r, fmt.Errorf("wrk: no latency distribution in:\n%s", strings.TrimSpace(out))
	}
	return r, nil
}
