package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/entrabroker/broker/internal/emulator/loganalytics"
)

//go:embed nginx.conf.tmpl
var nginxConf string

// Targets of `loadtest compare`, on this machine (issue 17).
const (
	targetTokenRatio    = 0.88 // broker /token ÷ constant handler
	targetProxyGoRatio  = 1.0  // broker proxy ÷ minimal Go proxy
	targetProxyNginx    = 0.5  // broker proxy ÷ nginx
	targetRSSBytes      = 32 << 20
	laQuery             = "/v1/workspaces/" + loganalytics.DemoWorkspaceID + "/query?query=Heartbeat%20%7C%20take%2029"
	tokenQuery          = "/token?resource=https://api.loganalytics.io"
	metadataHeader      = "Metadata: true"
	defaultCompareRound = 3
)

// server is one thing wrk drives.
type server struct {
	name    string
	proc    *process
	url     string
	headers []string
}

// measurement is one wrk run against one server.
type measurement struct {
	wrkResult
	cpuPerReq time.Duration
	rss       int64
}

// brokerRun is one broker binary under test: the one of -broker, or one of
// -baseline.
type brokerRun struct {
	label         string // "broker", or "baseline <file name>"
	bin           string
	proc          *process
	apiURL        string
	opsURL        string
	token, proxy  server
	fetchesBefore float64
}

// paths is a flag that may be given more than once.
type paths []string

func (p *paths) String() string     { return strings.Join(*p, ",") }
func (p *paths) Set(v string) error { *p = append(*p, v); return nil }

// connList is a comma-separated list of connection counts.
type connList []int

func (c *connList) String() string {
	s := make([]string, len(*c))
	for i, n := range *c {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func (c *connList) Set(v string) error {
	var out connList
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("%q is not a connection count", f)
		}
		out = append(out, n)
	}
	*c = out
	return nil
}

func runCompare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadtest compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokerBin := fs.String("broker", "bin/broker", "the broker binary")
	var baselines paths
	fs.Var(&baselines, "baseline", "another broker binary to run side by side with -broker, in the same rounds (`PATH`; may be repeated): prints each one's req/s and -broker ÷ it")
	rounds := fs.Int("rounds", defaultCompareRound, "interleaved rounds")
	duration := fs.Duration("duration", 10*time.Second, "length of one wrk run (whole seconds)")
	warmup := fs.Duration("warmup", 2*time.Second, "wrk warm-up per server before the rounds")
	conns := connList{64, 1}
	fs.Var(&conns, "conns", "connection counts measured in each round, the first one the targets' (comma-separated)")
	withNginx := fs.Bool("nginx", true, "measure nginx too")
	endpoints := fs.String("endpoints", "both", "what to measure: token, proxy or both")
	paired := fs.Bool("paired", false, "measure -broker against each other server in back-to-back pairs (order random per pair) and print the pairs' ratios: for ablations, where slow drift of the machine's speed would swamp a few per cent")
	pin := fs.Bool("pin", runtime.NumCPU() >= 2, "pin the servers to CPU 0, wrk and the upstream to CPU 1 (taskset)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *duration < time.Second || *rounds < 1 {
		return errors.New("-duration must be at least 1s and -rounds at least 1")
	}
	measureToken, measureProxy := *endpoints != "proxy", *endpoints != "token"
	if !measureToken && !measureProxy || *endpoints != "both" && *endpoints != "token" && *endpoints != "proxy" {
		return fmt.Errorf("-endpoints %q: want token, proxy or both", *endpoints)
	}
	*withNginx = *withNginx && measureProxy
	tools := []string{"wrk", "taskset"}
	if *withNginx {
		tools = append(tools, "nginx")
	}
	if missing := missingTools(tools...); len(missing) > 0 {
		fmt.Fprintf(stderr, "loadtest compare needs %s. Install with:\n  sudo apt-get update && sudo apt-get install -y %s\n",
			strings.Join(missing, ", "), aptPackages(missing))
		return fmt.Errorf("missing tools: %s", strings.Join(missing, ", "))
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	brokers := []*brokerRun{{label: "broker", bin: *brokerBin}}
	for _, b := range baselines {
		label := "baseline " + filepath.Base(b)
		for _, o := range brokers {
			if o.label == label {
				label += fmt.Sprintf(" #%d", len(brokers))
			}
		}
		brokers = append(brokers, &brokerRun{label: label, bin: b})
	}
	for _, b := range brokers {
		abs, err := filepath.Abs(b.bin)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("the broker binary: %w (run make build)", err)
		}
		b.bin = abs
	}
	serverCPU, loadCPU := "", ""
	if *pin {
		serverCPU, loadCPU = "0", "1"
	}
	dir, err := os.MkdirTemp("", "broker-loadtest-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	var procs []*process
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	spawn := func(name, cpus string, env []string, argv ...string) (*process, error) {
		p, err := startProcess(name, cpus, env, argv...)
		if err == nil {
			procs = append(procs, p)
		}
		return p, err
	}

	cl, err := startCloud(0)
	if err != nil {
		return err
	}
	defer cl.close()
	upstream, err := spawn("upstream", loadCPU, nil, self, "upstream")
	if err != nil {
		return err
	}
	upAddr, err := upstream.listenAddr()
	if err != nil {
		return err
	}

	for _, b := range brokers {
		apiAddr, err := freePort()
		if err != nil {
			return err
		}
		opsAddr, err := freePort()
		if err != nil {
			return err
		}
		b.proc, err = spawn(b.label, serverCPU, brokerEnv(cl, apiAddr, opsAddr, "http://"+upAddr), b.bin, "serve")
		if err != nil {
			return err
		}
		b.apiURL, b.opsURL = "http://"+apiAddr, "http://"+opsAddr
		if err := waitReady(ctx, b.opsURL, b.proc); err != nil {
			return fmt.Errorf("%s: %w", b.label, err)
		}
		b.token = server{name: "/token  " + b.label, proc: b.proc, url: b.apiURL + tokenQuery, headers: []string{metadataHeader}}
		b.proxy = server{name: "proxy   " + b.label, proc: b.proc, url: b.apiURL + "/proxy/loganalytics" + laQuery}
	}
	broker := brokers[0]
	// The constant handler answers the very bytes the broker answers, and
	// the Go proxy and nginx send the very token it sends.
	body, answerHeader, token, err := fetchToken(broker.apiURL + tokenQuery)
	if err != nil {
		return err
	}
	bodyFile, tokenFile := filepath.Join(dir, "token.json"), filepath.Join(dir, "token")
	if err := os.WriteFile(bodyFile, body, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		return err
	}
	constArgs := []string{self, "constant", "-body", bodyFile}
	for _, h := range constantHeaders(answerHeader) {
		constArgs = append(constArgs, "-header", h)
	}
	constant, err := spawn("constant", serverCPU, nil, constArgs...)
	if err != nil {
		return err
	}
	constAddr, err := constant.listenAddr()
	if err != nil {
		return err
	}
	goproxy, err := spawn("goproxy", serverCPU, nil, self, "goproxy", "-upstream", "http://"+upAddr, "-token", tokenFile)
	if err != nil {
		return err
	}
	goproxyAddr, err := goproxy.listenAddr()
	if err != nil {
		return err
	}
	constServer := server{name: "/token  constant handler", proc: constant, url: "http://" + constAddr + tokenQuery, headers: []string{metadataHeader}}
	goServer := server{name: "proxy   minimal Go ReverseProxy", proc: goproxy, url: "http://" + goproxyAddr + laQuery}
	var nginxServer server
	var servers []server
	if measureToken {
		servers = append(servers, constServer)
		for _, b := range brokers {
			servers = append(servers, b.token)
		}
	}
	if measureProxy {
		servers = append(servers, goServer)
	}
	if *withNginx {
		nginxAddr, err := freePort()
		if err != nil {
			return err
		}
		if err := writeNginxConf(dir, nginxAddr, upAddr, token); err != nil {
			return err
		}
		nginx, err := spawn("nginx", serverCPU, nil, "nginx", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
		if err != nil {
			return err
		}
		if err := waitHTTP(ctx, "http://"+nginxAddr+laQuery, nginx); err != nil {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return fmt.Errorf("nginx: %w\n%s", err, b)
		}
		nginxServer = server{name: "proxy   nginx", proc: nginx, url: "http://" + nginxAddr + laQuery}
		servers = append(servers, nginxServer)
	}
	if measureProxy {
		for _, b := range brokers {
			servers = append(servers, b.proxy)
		}
	}
	for _, s := range servers {
		if err := checkAnswer(s); err != nil {
			return err
		}
	}

	fmt.Fprintf(stdout, "loadtest compare: %d interleaved rounds × %v per run, wrk -t1 at %s connections\n",
		*rounds, *duration, conns.String())
	for _, b := range brokers {
		fmt.Fprintf(stdout, "  %-28s %s\n", b.label, b.bin)
	}
	if *pin {
		fmt.Fprintln(stdout, "pinned: servers under test on CPU 0 (GOMAXPROCS 1, nginx 1 worker); wrk and the fake upstream on CPU 1")
	}
	for _, s := range servers {
		if _, _, err := runWrk(ctx, loadCPU, conns[0], *warmup, s.url, s.headers...); err != nil {
			return fmt.Errorf("warm-up of %s: %w", s.name, err)
		}
	}
	entraBefore := len(cl.entraCalls())
	for _, b := range brokers {
		if b.fetchesBefore, err = scrapeSum(b.opsURL, "broker_token_fetches_total"); err != nil {
			return err
		}
	}

	if *paired {
		var groups [][]server
		if measureToken {
			g := []server{broker.token, constServer}
			for _, b := range brokers[1:] {
				g = append(g, b.token)
			}
			groups = append(groups, g)
		}
		if measureProxy {
			g := []server{broker.proxy, goServer}
			if *withNginx {
				g = append(g, nginxServer)
			}
			for _, b := range brokers[1:] {
				g = append(g, b.proxy)
			}
			groups = append(groups, g)
		}
		return runPairs(ctx, stdout, stderr, groups, *rounds, conns[0], *duration, loadCPU)
	}

	// Each round measures every server once per connection count, in an
	// order shuffled per round, so that no server always runs at the same
	// point of a round or right after the same neighbour.
	results := map[string]map[int][]measurement{}
	brokerRSS := map[*process]int64{}
	for round := 1; round <= *rounds; round++ {
		for _, c := range conns {
			for _, i := range rand.Perm(len(servers)) {
				s := servers[i]
				cpu0 := s.proc.cpuTime()
				r, out, err := runWrk(ctx, loadCPU, c, *duration, s.url, s.headers...)
				if err != nil {
					return fmt.Errorf("%s: %w", s.name, err)
				}
				if r.errors > 0 {
					return fmt.Errorf("%s at %d connections: %d errors:\n%s", s.name, c, r.errors, out)
				}
				m := measurement{wrkResult: r, rss: s.proc.rss()}
				if r.requests > 0 {
					m.cpuPerReq = (s.proc.cpuTime() - cpu0) / time.Duration(r.requests)
				}
				brokerRSS[s.proc] = max(brokerRSS[s.proc], m.rss)
				if results[s.name] == nil {
					results[s.name] = map[int][]measurement{}
				}
				results[s.name][c] = append(results[s.name][c], m)
				fmt.Fprintf(stderr, "round %d  %-40s c=%-2d %9.0f req/s  p99 %v\n", round, s.name, c, r.rps, r.p99)
			}
		}
	}
	entraWarm := len(cl.entraCalls()) - entraBefore
	fetchesWarm := 0.0
	for _, b := range brokers {
		after, err := scrapeSum(b.opsURL, "broker_token_fetches_total")
		if err != nil {
			return err
		}
		fetchesWarm += after - b.fetchesBefore
	}
	rssAfter := broker.proc.rss()

	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\tconns\treq/s\tp50\tp99\tCPU µs/req\tRSS MiB\t")
	med := map[string]map[int]measurement{}
	for _, c := range conns {
		for _, s := range servers {
			m := median(results[s.name][c])
			if med[s.name] == nil {
				med[s.name] = map[int]measurement{}
			}
			med[s.name][c] = m
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%.1f\t%.1f\t\n", s.name, c, m.rps, fmtDur(m.p50), fmtDur(m.p99),
				float64(m.cpuPerReq)/float64(time.Microsecond), float64(m.rss)/(1<<20))
		}
	}
	_ = tw.Flush()

	// ratio is a ÷ b of the medians at c connections; perRound is the
	// median and the spread of the ratios of the rounds, each measured
	// under the same conditions.
	ratio := func(a, b server, c int) float64 { return med[a.name][c].rps / med[b.name][c].rps }
	perRound := func(a, b server, c int) string {
		ra, rb := results[a.name][c], results[b.name][c]
		rs, cs := make([]float64, len(ra)), make([]float64, len(ra))
		for i := range ra {
			rs[i] = ra[i].rps / rb[i].rps
			cs[i] = float64(rb[i].cpuPerReq) / float64(ra[i].cpuPerReq)
		}
		slices.Sort(rs)
		slices.Sort(cs)
		return fmt.Sprintf("req/s %.3f (rounds %.3f–%.3f)   CPU/req %.3f (%.3f–%.3f)",
			mid(rs), rs[0], rs[len(rs)-1], mid(cs), cs[0], cs[len(cs)-1])
	}
	hi := conns[0]
	fmt.Fprintln(stdout)
	fmt.Fprintf(stdout, "ratios of medians at %d connections", hi)
	if len(conns) > 1 {
		fmt.Fprintf(stdout, " (at %d in brackets)", conns[1])
	}
	fmt.Fprintln(stdout, ":")
	other := func(a, b server) string {
		if len(conns) < 2 {
			return ""
		}
		return fmt.Sprintf("  (%.2f)", ratio(a, b, conns[1]))
	}
	for _, b := range brokers {
		if measureToken {
			fmt.Fprintf(stdout, "  %-44s %.2f%s\n", b.label+" /token ÷ constant handler", ratio(b.token, constServer, hi), other(b.token, constServer))
		}
		if measureProxy {
			fmt.Fprintf(stdout, "  %-44s %.2f%s\n", b.label+" proxy ÷ minimal Go proxy", ratio(b.proxy, goServer, hi), other(b.proxy, goServer))
		}
		if *withNginx {
			fmt.Fprintf(stdout, "  %-44s %.2f%s\n", b.label+" proxy ÷ nginx", ratio(b.proxy, nginxServer, hi), other(b.proxy, nginxServer))
		}
	}
	if len(brokers) > 1 {
		fmt.Fprintf(stdout, "\nbroker ÷ each baseline at %d connections: the median of the rounds' ratios and their spread, of req/s\n"+
			"and of CPU per request (baseline's ÷ broker's, so that above 1 means the broker is faster either way):\n", hi)
		for _, b := range brokers[1:] {
			if measureToken {
				fmt.Fprintf(stdout, "  /token  broker ÷ %-28s %s\n", b.label, perRound(broker.token, b.token, hi))
			}
			if measureProxy {
				fmt.Fprintf(stdout, "  proxy   broker ÷ %-28s %s\n", b.label, perRound(broker.proxy, b.proxy, hi))
			}
		}
	}
	fmt.Fprintf(stdout, "\nEntra token requests during the warm run: %d (emulator), %.0f (broker_token_fetches_total delta)\n",
		entraWarm, fetchesWarm)
	fmt.Fprintf(stdout, "broker RSS after load: %.1f MiB (highest after a run: %.1f MiB)\n", float64(rssAfter)/(1<<20), float64(brokerRSS[broker.proc])/(1<<20))

	fmt.Fprintln(stdout)
	var checks []check
	if measureToken {
		tokenRatio := ratio(broker.token, constServer, hi)
		checks = append(checks, check{fmt.Sprintf("/token ≥ %.2f× constant handler", targetTokenRatio), tokenRatio >= targetTokenRatio, fmt.Sprintf("%.2f×", tokenRatio)})
	}
	if measureProxy {
		goRatio := ratio(broker.proxy, goServer, hi)
		checks = append(checks, check{fmt.Sprintf("proxy ≥ %.1f× minimal Go proxy", targetProxyGoRatio), goRatio >= targetProxyGoRatio, fmt.Sprintf("%.2f×", goRatio)})
	}
	if *withNginx {
		nginxRatio := ratio(broker.proxy, nginxServer, hi)
		checks = append(checks, check{fmt.Sprintf("proxy ≥ %.1f× nginx", targetProxyNginx), nginxRatio >= targetProxyNginx, fmt.Sprintf("%.2f×", nginxRatio)})
	}
	checks = append(checks,
		check{"zero Entra requests warm", entraWarm == 0 && fetchesWarm == 0, fmt.Sprintf("%d", entraWarm)},
		check{"broker RSS after load ≤ 32 MiB", max(rssAfter, brokerRSS[broker.proc]) <= targetRSSBytes, fmt.Sprintf("%.1f MiB", float64(max(rssAfter, brokerRSS[broker.proc]))/(1<<20))},
	)
	return report(stdout, checks)
}

// runPairs measures, in each round, the first server of each group
// against every other server of its group in back-to-back pairs, the pairs
// in a shuffled order and each pair's order random, and prints per pair of
// servers the median, quartiles and mean of the first's req/s ÷ the
// other's, with twice the standard error of the mean (of the logarithms,
// so that a ratio and its inverse are treated alike).
func runPairs(ctx context.Context, stdout, stderr io.Writer, groups [][]server, rounds, conns int, d time.Duration, loadCPU string) error {
	type pairKey struct{ a, b string }
	ratios := map[pairKey][]float64{}
	cpus := map[pairKey][]float64{}
	var order []pairKey
	measure := func(s server) (measurement, error) {
		cpu0 := s.proc.cpuTime()
		r, out, err := runWrk(ctx, loadCPU, conns, d, s.url, s.headers...)
		if err != nil {
			return measurement{}, fmt.Errorf("%s: %w", s.name, err)
		}
		if r.errors > 0 {
			return measurement{}, fmt.Errorf("%s at %d connections: %d errors:\n%s", s.name, conns, r.errors, out)
		}
		m := measurement{wrkResult: r}
		if r.requests > 0 {
			m.cpuPerReq = (s.proc.cpuTime() - cpu0) / time.Duration(r.requests)
		}
		return m, nil
	}
	for _, g := range groups {
		for _, o := range g[1:] {
			order = append(order, pairKey{g[0].name, o.name})
		}
	}
	fmt.Fprintf(stdout, "loadtest compare -paired: %d rounds of back-to-back pairs × %v per run, wrk -t1 at %d connections\n", rounds, d, conns)
	for round := 1; round <= rounds; round++ {
		type pair struct{ a, b server }
		var pairs []pair
		for _, g := range groups {
			for _, o := range g[1:] {
				pairs = append(pairs, pair{g[0], o})
			}
		}
		rand.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
		for _, p := range pairs {
			var ma, mb measurement
			var err error
			if rand.IntN(2) == 0 {
				if ma, err = measure(p.a); err == nil {
					mb, err = measure(p.b)
				}
			} else {
				if mb, err = measure(p.b); err == nil {
					ma, err = measure(p.a)
				}
			}
			if err != nil {
				return err
			}
			k := pairKey{p.a.name, p.b.name}
			ratios[k] = append(ratios[k], ma.rps/mb.rps)
			cpus[k] = append(cpus[k], float64(mb.cpuPerReq)/float64(ma.cpuPerReq))
			fmt.Fprintf(stderr, "round %d  %-40s %9.0f req/s  %-40s %9.0f req/s  ratio %.3f\n", round, p.a.name, ma.rps, p.b.name, mb.rps, ma.rps/mb.rps)
		}
	}
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, "first ÷ second: req/s median [quartiles] mean ± 2 SE; CPU per request (second's ÷ first's) median and mean")
	for _, k := range order {
		rs, cs := slices.Clone(ratios[k]), slices.Clone(cpus[k])
		slices.Sort(rs)
		slices.Sort(cs)
		m, se := logMean(rs)
		cm, _ := logMean(cs)
		fmt.Fprintf(stdout, "  %-28s ÷ %-36s %.3f [%.3f–%.3f] %.3f ± %.3f   CPU/req %.3f, %.3f\n",
			strings.TrimSpace(k.a), strings.TrimSpace(k.b), mid(rs), quantile(rs, 0.25), quantile(rs, 0.75), m, 2*se, mid(cs), cm)
	}
	return nil
}

// logMean returns the geometric mean of vs and the standard error of the
// mean of their logarithms, as a factor above it (e.g. 0.01 for ±1 %).
func logMean(vs []float64) (mean, se float64) {
	n := float64(len(vs))
	var sum, sq float64
	for _, v := range vs {
		sum += math.Log(v)
	}
	mu := sum / n
	for _, v := range vs {
		sq += (math.Log(v) - mu) * (math.Log(v) - mu)
	}
	if len(vs) > 1 {
		se = math.Sqrt(sq/(n-1)) / math.Sqrt(n)
	}
	return math.Exp(mu), math.Exp(mu) * se
}

// quantile returns the q-quantile of sorted vs (nearest rank).
func quantile(vs []float64, q float64) float64 {
	i := int(math.Round(q * float64(len(vs)-1)))
	return vs[i]
}

// check is one target and whether the run met it.
type check struct {
	what string
	ok   bool
	got  string
}

// report prints PASS or MISS per check and returns errMissed if any missed.
func report(w io.Writer, checks []check) error {
	missed := false
	for _, c := range checks {
		verdict := "PASS"
		if !c.ok {
			verdict, missed = "MISS", true
		}
		fmt.Fprintf(w, "%s  %-44s %s\n", verdict, c.what, c.got)
	}
	if missed {
		return errMissed
	}
	return nil
}

// median returns the measurement with the median req/s, with each other
// column's own median.
func median(ms []measurement) measurement {
	if len(ms) == 0 {
		return measurement{}
	}
	col := func(f func(measurement) float64) float64 {
		vs := make([]float64, len(ms))
		for i, m := range ms {
			vs[i] = f(m)
		}
		slices.Sort(vs)
		return mid(vs)
	}
	var out measurement
	out.rps = col(func(m measurement) float64 { return m.rps })
	out.p50 = time.Duration(col(func(m measurement) float64 { return float64(m.p50) }))
	out.p99 = time.Duration(col(func(m measurement) float64 { return float64(m.p99) }))
	out.cpuPerReq = time.Duration(col(func(m measurement) float64 { return float64(m.cpuPerReq) }))
	out.rss = int64(col(func(m measurement) float64 { return float64(m.rss) }))
	return out
}

// mid is the median of sorted vs: the mean of the middle two when their
// number is even.
func mid(vs []float64) float64 {
	n := len(vs)
	if n%2 == 0 {
		return (vs[n/2-1] + vs[n/2]) / 2
	}
	return vs[n/2]
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	default:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
}

// missingTools returns the tools not found on PATH.
func missingTools(tools ...string) []string {
	var out []string
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			out = append(out, t)
		}
	}
	return out
}

// aptPackages names the Debian packages of tools.
func aptPackages(tools []string) string {
	pkgs := make([]string, len(tools))
	for i, t := range tools {
		pkgs[i] = map[string]string{"taskset": "util-linux"}[t]
		if pkgs[i] == "" {
			pkgs[i] = t
		}
	}
	return strings.Join(pkgs, " ")
}

// fetchToken asks the broker for a token and returns the answer's bytes,
// its headers and the token.
func fetchToken(url string) ([]byte, http.Header, string, error) {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Metadata", "true")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, nil, "", err
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(b, &tok); err != nil || res.StatusCode != http.StatusOK || tok.AccessToken == "" {
		return nil, nil, "", fmt.Errorf("GET /token = %d, not a token answer", res.StatusCode)
	}
	return b, res.Header, tok.AccessToken, nil
}

// constantHeaders are the headers of a broker answer that the constant
// handler sends too ("Key: value"), so that both write the same bytes: all
// but those net/http writes by itself.
func constantHeaders(h http.Header) []string {
	var out []string
	for k, vs := range h {
		if k == "Date" || k == "Content-Length" {
			continue
		}
		for _, v := range vs {
			out = append(out, k+": "+v)
		}
	}
	slices.Sort(out)
	return out
}

// checkAnswer makes sure s answers 200 with the body expected, before it is
// measured.
func checkAnswer(s server) error {
	req, _ := http.NewRequest("GET", s.url, nil)
	for _, h := range s.headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d: %.300s", s.name, res.StatusCode, b)
	}
	if strings.HasPrefix(s.name, "proxy") && string(b) != string(upstreamBody) {
		return fmt.Errorf("%s answered another body than the upstream's: %.300s", s.name, b)
	}
	return nil
}

// waitHTTP polls url until it answers 200.
func waitHTTP(ctx context.Context, url string, p *process) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", res.StatusCode)
		}
		if p.exited() {
			return fmt.Errorf("exited: %w\n%s", err, p.output())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer within 15 s: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// writeNginxConf renders nginx.conf.tmpl into dir.
func writeNginxConf(dir, listen, upstream, token string) error {
	data := struct{ Dir, Listen, Upstream, Token, User, Group string }{Dir: dir, Listen: listen, Upstream: upstream, Token: token}
	if os.Geteuid() == 0 {
		// nginx started by root hands its workers to "nobody" unless told
		// otherwise; keep them as the current user, who owns dir.
		if u, err := user.Current(); err == nil {
			data.User = u.Username
			if g, err := user.LookupGroupId(u.Gid); err == nil {
				data.Group = g.Name
			}
		}
	}
	t, err := template.New("nginx").Parse(nginxConf)
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "nginx.conf"))
	if err != nil {
		return err
	}
	if err := t.Execute(f, data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// scrapeSum reads the broker's /metrics and sums the samples of name.
func scrapeSum(opsURL, name string) (float64, error) {
	res, err := http.Get(opsURL + "/metrics")
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, err
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? ([0-9.e+-]+)$`)
	sum := 0.0
	found := false
	for _, m := range re.FindAllSubmatch(b, -1) {
		v, err := strconv.ParseFloat(string(m[2]), 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %w", name, err)
		}
		sum += v
		found = true
	}
	if !found {
		return 0, errors.New("metric " + name + " not found")
	}
	return sum, nil
}
