package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
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

// Targets of `loadtest compare`, on this machine (issue 9).
const (
	targetTokenRatio    = 0.9 // broker /token ÷ constant handler
	targetProxyGoRatio  = 1.1 // broker proxy ÷ minimal Go proxy
	targetProxyNginx    = 0.5 // broker proxy ÷ nginx
	targetRSSBytes      = 32 << 20
	laQuery             = "/v1/workspaces/" + loganalytics.DemoWorkspaceID + "/query?query=Heartbeat%20%7C%20take%2029"
	tokenQuery          = "/token?resource=https://api.loganalytics.io"
	metadataHeader      = "Metadata: true"
	compareConnsHigh    = 64
	compareConnsLow     = 1
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

func runCompare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadtest compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokerBin := fs.String("broker", "bin/broker", "the broker binary")
	rounds := fs.Int("rounds", defaultCompareRound, "interleaved rounds")
	duration := fs.Duration("duration", 10*time.Second, "length of one wrk run")
	warmup := fs.Duration("warmup", 2*time.Second, "wrk warm-up per server before the rounds")
	pin := fs.Bool("pin", runtime.NumCPU() >= 2, "pin the servers to CPU 0, wrk and the upstream to CPU 1 (taskset)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if missing := missingTools("wrk", "nginx", "taskset"); len(missing) > 0 {
		fmt.Fprintf(stderr, "loadtest compare needs %s. Install with:\n  sudo apt-get update && sudo apt-get install -y %s\n",
			strings.Join(missing, ", "), aptPackages(missing))
		return fmt.Errorf("missing tools: %s", strings.Join(missing, ", "))
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	bin, err := filepath.Abs(*brokerBin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("the broker binary: %w (run make build)", err)
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

	apiAddr, err := freePort()
	if err != nil {
		return err
	}
	opsAddr, err := freePort()
	if err != nil {
		return err
	}
	broker, err := spawn("broker", serverCPU, brokerEnv(cl, apiAddr, opsAddr, "http://"+upAddr), bin, "serve")
	if err != nil {
		return err
	}
	opsURL := "http://" + opsAddr
	if err := waitReady(ctx, opsURL, broker); err != nil {
		return err
	}
	// The constant handler answers the very bytes the broker answers, and
	// the Go proxy and nginx send the very token it sends.
	body, token, err := fetchToken("http://" + apiAddr + tokenQuery)
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
	constant, err := spawn("constant", serverCPU, nil, self, "constant", "-body", bodyFile)
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

	servers := []server{
		{name: "/token  constant handler", proc: constant, url: "http://" + constAddr + tokenQuery, headers: []string{metadataHeader}},
		{name: "/token  broker", proc: broker, url: "http://" + apiAddr + tokenQuery, headers: []string{metadataHeader}},
		{name: "proxy   minimal Go ReverseProxy", proc: goproxy, url: "http://" + goproxyAddr + laQuery},
		{name: "proxy   nginx", proc: nginx, url: "http://" + nginxAddr + laQuery},
		{name: "proxy   broker", proc: broker, url: "http://" + apiAddr + "/proxy/loganalytics" + laQuery},
	}
	for _, s := range servers {
		if err := checkAnswer(s); err != nil {
			return err
		}
	}

	fmt.Fprintf(stdout, "loadtest compare: %d interleaved rounds × %v per run, wrk -t1 at %d and %d connections\n",
		*rounds, *duration, compareConnsHigh, compareConnsLow)
	if *pin {
		fmt.Fprintln(stdout, "pinned: servers under test on CPU 0 (GOMAXPROCS 1, nginx 1 worker); wrk and the fake upstream on CPU 1")
	}
	for _, s := range servers {
		if _, _, err := runWrk(ctx, loadCPU, compareConnsHigh, *warmup, s.url, s.headers...); err != nil {
			return fmt.Errorf("warm-up of %s: %w", s.name, err)
		}
	}
	entraBefore := len(cl.entraCalls())
	fetchesBefore, err := scrapeSum(opsURL, "broker_token_fetches_total")
	if err != nil {
		return err
	}

	results := map[string]map[int][]measurement{}
	var brokerRSS int64
	for round := 1; round <= *rounds; round++ {
		for _, conns := range []int{compareConnsHigh, compareConnsLow} {
			for _, s := range servers {
				cpu0 := s.proc.cpuTime()
				r, out, err := runWrk(ctx, loadCPU, conns, *duration, s.url, s.headers...)
				if err != nil {
					return fmt.Errorf("%s: %w", s.name, err)
				}
				if r.errors > 0 {
					return fmt.Errorf("%s at %d connections: %d errors:\n%s", s.name, conns, r.errors, out)
				}
				m := measurement{wrkResult: r, rss: s.proc.rss()}
				if r.requests > 0 {
					m.cpuPerReq = (s.proc.cpuTime() - cpu0) / time.Duration(r.requests)
				}
				if s.proc == broker {
					brokerRSS = max(brokerRSS, m.rss)
				}
				if results[s.name] == nil {
					results[s.name] = map[int][]measurement{}
				}
				results[s.name][conns] = append(results[s.name][conns], m)
				fmt.Fprintf(stderr, "round %d  %-32s c=%-2d %9.0f req/s  p99 %v\n", round, s.name, conns, r.rps, r.p99)
			}
		}
	}
	entraWarm := len(cl.entraCalls()) - entraBefore
	fetchesAfter, err := scrapeSum(opsURL, "broker_token_fetches_total")
	if err != nil {
		return err
	}
	rssAfter := broker.rss()

	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\tconns\treq/s\tp50\tp99\tCPU µs/req\tRSS MiB\t")
	med := map[string]map[int]measurement{}
	for _, conns := range []int{compareConnsHigh, compareConnsLow} {
		for _, s := range servers {
			m := median(results[s.name][conns])
			if med[s.name] == nil {
				med[s.name] = map[int]measurement{}
			}
			med[s.name][conns] = m
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%.1f\t%.1f\t\n", s.name, conns, m.rps, fmtDur(m.p50), fmtDur(m.p99),
				float64(m.cpuPerReq)/float64(time.Microsecond), float64(m.rss)/(1<<20))
		}
	}
	_ = tw.Flush()

	tokenRatio := med[servers[1].name][compareConnsHigh].rps / med[servers[0].name][compareConnsHigh].rps
	goRatio := med[servers[4].name][compareConnsHigh].rps / med[servers[2].name][compareConnsHigh].rps
	nginxRatio := med[servers[4].name][compareConnsHigh].rps / med[servers[3].name][compareConnsHigh].rps
	fmt.Fprintln(stdout)
	fmt.Fprintf(stdout, "ratios of medians at %d connections (at 1 connection in brackets):\n", compareConnsHigh)
	ratio1 := func(a, b int) float64 {
		return med[servers[a].name][compareConnsLow].rps / med[servers[b].name][compareConnsLow].rps
	}
	fmt.Fprintf(stdout, "  broker /token ÷ constant handler   %.2f  (%.2f)\n", tokenRatio, ratio1(1, 0))
	fmt.Fprintf(stdout, "  broker proxy ÷ minimal Go proxy    %.2f  (%.2f)\n", goRatio, ratio1(4, 2))
	fmt.Fprintf(stdout, "  broker proxy ÷ nginx               %.2f  (%.2f)\n", nginxRatio, ratio1(4, 3))
	fmt.Fprintf(stdout, "Entra token requests during the warm run: %d (emulator), %.0f (broker_token_fetches_total delta)\n",
		entraWarm, fetchesAfter-fetchesBefore)
	fmt.Fprintf(stdout, "broker RSS after load: %.1f MiB (highest after a run: %.1f MiB)\n", float64(rssAfter)/(1<<20), float64(brokerRSS)/(1<<20))

	fmt.Fprintln(stdout)
	checks := []check{
		{fmt.Sprintf("/token ≥ %.1f× constant handler", targetTokenRatio), tokenRatio >= targetTokenRatio, fmt.Sprintf("%.2f×", tokenRatio)},
		{fmt.Sprintf("proxy ≥ %.1f× minimal Go proxy", targetProxyGoRatio), goRatio >= targetProxyGoRatio, fmt.Sprintf("%.2f×", goRatio)},
		{fmt.Sprintf("proxy ≥ %.1f× nginx", targetProxyNginx), nginxRatio >= targetProxyNginx, fmt.Sprintf("%.2f×", nginxRatio)},
		{"zero Entra requests warm", entraWarm == 0 && fetchesAfter == fetchesBefore, fmt.Sprintf("%d", entraWarm)},
		{"broker RSS after load ≤ 32 MiB", max(rssAfter, brokerRSS) <= targetRSSBytes, fmt.Sprintf("%.1f MiB", float64(max(rssAfter, brokerRSS))/(1<<20))},
	}
	return report(stdout, checks)
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
	mid := func(vs []float64) float64 {
		slices.Sort(vs)
		return vs[len(vs)/2]
	}
	col := func(f func(measurement) float64) float64 {
		vs := make([]float64, len(ms))
		for i, m := range ms {
			vs[i] = f(m)
		}
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

// fetchToken asks the broker for a token and returns the answer's bytes and
// the token.
func fetchToken(url string) ([]byte, string, error) {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Metadata", "true")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, "", err
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(b, &tok); err != nil || res.StatusCode != http.StatusOK || tok.AccessToken == "" {
		return nil, "", fmt.Errorf("GET /token = %d, not a token answer", res.StatusCode)
	}
	return b, tok.AccessToken, nil
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
