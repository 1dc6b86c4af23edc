package main

// Abuse tests: the real program (run()) against the emulator, pushed with
// what a hostile or broken caller on the host can send — oversized headers
// and bodies, a slowloris, ten thousand idle connections, a burst of two
// thousand callers of a cold scope, and requests that the Host,
// X-Forwarded-For and Metadata guards must refuse. Every test checks that
// the answers are clear (4xx, JSON where the broker answers), that nothing
// panicked, and, where it measures goroutines, that none leaked.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/emulator"
	"github.com/entrabroker/broker/internal/emulator/loganalytics"
)

// tokenPath asks for the Log Analytics token, which serveEnv prefetches.
const tokenPath = "/token?resource=https://api.loganalytics.io"

// startReady starts the broker against a fresh emulator and waits for
// /readyz, so that the prefetched Log Analytics token is cached.
func startReady(t *testing.T, env map[string]string) (*emulator.Azure, *running) {
	t.Helper()
	az, emu := emulated(t)
	e := serveEnv(emu.URL)
	for k, v := range env {
		e[k] = v
	}
	r := start(t, e)
	waitFor(t, "/readyz to answer 200", func() bool {
		code, _, _ := call(t, "GET", r.ops+"/readyz", nil, "")
		return code == http.StatusOK
	})
	return az, r
}

// hostPort is the API listener's address without the scheme.
func (r *running) hostPort() string { return strings.TrimPrefix(r.api, "http://") }

// rawExchange sends raw bytes on a new connection and reads one answer.
func rawExchange(t *testing.T, addr, raw string) (int, http.Header, []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("write %.40q: %v", raw, err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read the answer to %.60q: %v", raw, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, b
}

// settleGoroutines polls runtime.NumGoroutine until it is at most limit, and
// fails the test after 20 s. It waits for a condition, not for a time.
func settleGoroutines(t *testing.T, limit int, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= limit {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%s: %d goroutines after 20 s, want at most %d; stacks:\n%.20000s", what, n, limit, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// goroutineSlack absorbs goroutines that come and go on their own (the
// emulator's and the test client's connection goroutines, timers).
const goroutineSlack = 8

// noPanics fails if the program's log mentions a panic.
func noPanics(t *testing.T, r *running) {
	t.Helper()
	if logs := r.stderr.String(); strings.Contains(strings.ToLower(logs), "panic") {
		t.Errorf("the log mentions a panic:\n%s", logs)
	}
}

// metricValue scrapes the ops listener and returns the sum of the samples of
// name (all label sets).
func metricValue(t *testing.T, r *running, name string) float64 {
	t.Helper()
	_, _, body := call(t, "GET", r.ops+"/metrics", nil, "")
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? ([0-9.e+-]+)$`)
	sum := 0.0
	for _, m := range re.FindAllSubmatch(body, -1) {
		v, err := strconv.ParseFloat(string(m[2]), 64)
		if err != nil {
			t.Fatalf("metric %s value %q: %v", name, m[2], err)
		}
		sum += v
	}
	return sum
}

func TestOversizedHeaders(t *testing.T) {
	_, r := startReady(t, nil)
	tests := []struct {
		name string
		size int
		want int
	}{
		// Go's server allows MaxHeaderBytes plus 4 KiB of slack for the
		// request line and framing.
		{"60 KiB header is served", 60 << 10, http.StatusOK},
		{"72 KiB header is refused", 72 << 10, http.StatusRequestHeaderFieldsTooLarge},
		{"1 MiB header is refused", 1 << 20, http.StatusRequestHeaderFieldsTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := "GET " + tokenPath + " HTTP/1.1\r\nHost: 127.0.0.1\r\nMetadata: true\r\nX-Padding: " +
				strings.Repeat("a", tt.size) + "\r\n\r\n"
			code, _, body := rawExchange(t, r.hostPort(), raw)
			if code != tt.want {
				t.Errorf("GET /token with a %d-byte header = %d %.200s, want %d", tt.size, code, body, tt.want)
			}
		})
	}
	if maxHeaderBytes > 64<<10 {
		t.Errorf("maxHeaderBytes = %d, want at most 64 KiB", maxHeaderBytes)
	}
	noPanics(t, r)
}

func TestOversizedProxyBodies(t *testing.T) {
	const limit = 1024
	az, r := startReady(t, map[string]string{"BROKER_PROXY_MAX_BODY_BYTES": strconv.Itoa(limit)})
	query := "/proxy/loganalytics/v1/workspaces/" + loganalytics.DemoWorkspaceID + "/query"
	small := `{"query":"Heartbeat | count"}`
	big := `{"query":"Heartbeat | where Computer != '` + strings.Repeat("x", 2*limit) + `' | count"}`

	tests := []struct {
		name    string
		body    string
		chunked bool
		want    int
	}{
		{"small body", small, false, http.StatusOK},
		{"small chunked body", small, true, http.StatusOK},
		{"body over the cap", big, false, http.StatusRequestEntityTooLarge},
		{"chunked body over the cap", big, true, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := az.LogAnalytics.Requests()
			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			req, err := http.NewRequest("POST", r.api+query, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.want {
				t.Fatalf("POST %d bytes (chunked %v) = %d %s, want %d", len(tt.body), tt.chunked, res.StatusCode, b, tt.want)
			}
			if tt.want == http.StatusRequestEntityTooLarge {
				var e struct{ Error, ErrorDescription string }
				if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
					t.Errorf("413 body = %s, want a JSON error", b)
				}
				if got := az.LogAnalytics.Requests() - before; got != 0 && !tt.chunked {
					t.Errorf("a body over the cap with a Content-Length reached the upstream %d times, want 0", got)
				}
			}
		})
	}
	noPanics(t, r)
}

func TestSlowloris(t *testing.T) {
	t.Parallel()
	// The configured value: a local caller sends its headers at once, so a
	// few seconds is generous, and anything above 10 s lets a slowloris hold
	// connections for long.
	if readHeaderTimeout <= 0 || readHeaderTimeout > 10*time.Second {
		t.Fatalf("readHeaderTimeout = %v, want in (0, 10s]", readHeaderTimeout)
	}
	if readHeaderTimeout+3*time.Second > 10*time.Second {
		t.Skipf("readHeaderTimeout = %v: a real slowloris would take too long", readHeaderTimeout)
	}
	_, r := startReady(t, nil)
	c, err := net.Dial("tcp", r.hostPort())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	begin := time.Now()
	if _, err := io.WriteString(c, "GET "+tokenPath+" HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	// Trickle one header byte every 200 ms, never finishing the headers.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := c.Write([]byte("z")); err != nil {
					return
				}
			}
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(readHeaderTimeout + 5*time.Second))
	n, err := c.Read(make([]byte, 512))
	elapsed := time.Since(begin)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the slowloris connection was still open after %v, want it closed after readHeaderTimeout (%v)", elapsed, readHeaderTimeout)
	}
	if n != 0 {
		t.Logf("the server answered %d bytes before closing", n)
	}
	if elapsed < readHeaderTimeout-500*time.Millisecond || elapsed > readHeaderTimeout+3*time.Second {
		t.Errorf("slowloris connection closed after %v, want about readHeaderTimeout (%v)", elapsed, readHeaderTimeout)
	}
	noPanics(t, r)
}

// idleHelperEnv names the environment of the idle-connection helper process.
const (
	idleHelperAddr = "BROKER_ABUSE_IDLE_ADDR"
	idleHelperN    = "BROKER_ABUSE_IDLE_N"
)

// TestIdleConnectionsHelper is not a test: TestTenThousandIdleConnections
// runs the test binary again with this test selected, as a separate process,
// so that the client ends of the connections do not count against this
// process's file limit. It opens N keep-alive connections to the broker,
// sends one /token request on each, prints "ready", holds them idle until
// its standard input closes, then closes them all.
func TestIdleConnectionsHelper(t *testing.T) {
	addr := os.Getenv(idleHelperAddr)
	if addr == "" {
		t.Skip("helper process of TestTenThousandIdleConnections")
	}
	n, _ := strconv.Atoi(os.Getenv(idleHelperN))
	conns := make([]net.Conn, n)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		next = make(chan int)
	)
	req := "GET " + tokenPath + " HTTP/1.1\r\nHost: 127.0.0.1\r\nMetadata: true\r\n\r\n"
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err == nil {
					_ = c.SetDeadline(time.Now().Add(30 * time.Second))
					if _, err = io.WriteString(c, req); err == nil {
						var res *http.Response
						if res, err = http.ReadResponse(bufio.NewReader(c), nil); err == nil {
							_, _ = io.Copy(io.Discard, res.Body)
							res.Body.Close()
							if res.StatusCode != http.StatusOK {
								err = fmt.Errorf("status %d", res.StatusCode)
							}
						}
					}
					_ = c.SetDeadline(time.Time{})
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("connection %d: %w", i, err))
					mu.Unlock()
					continue
				}
				conns[i] = c
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		fmt.Printf("failed %d connections, first: %v\n", len(errs), errs[0])
		os.Exit(1)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	fmt.Println("closed")
}

// raiseFileLimit raises the soft limit on open files to the hard limit and
// returns it.
func raiseFileLimit(t *testing.T) uint64 {
	t.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			t.Logf("raise RLIMIT_NOFILE: %v", err)
			_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
		}
	}
	return rl.Cur
}

func TestTenThousandIdleConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 connections")
	}
	n := 10000
	if raceEnabled() {
		// The race detector allows 8,128 live goroutines; each connection
		// holds one in the broker.
		n = 7000
		t.Logf("race detector on: %d idle connections instead of 10,000", n)
	}
	if limit := raiseFileLimit(t); limit < uint64(n+1024) {
		t.Skipf("RLIMIT_NOFILE is %d; %d idle connections need %d (ulimit -n)", limit, n, n+1024)
	}
	_, r := startReady(t, nil)
	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	tokenLatency := func() time.Duration {
		begin := time.Now()
		code, _, body := clientCall(t, client, "GET", r.api+tokenPath, map[string]string{"Metadata": "true"})
		if code != http.StatusOK {
			t.Fatalf("GET /token = %d %s", code, body)
		}
		return time.Since(begin)
	}
	tokenLatency()
	client.CloseIdleConnections()
	settleGoroutines(t, runtime.NumGoroutine(), "before the idle connections") // let start-up goroutines settle
	baseline := runtime.NumGoroutine()

	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleConnectionsHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), idleHelperAddr+"="+r.hostPort(), idleHelperN+"="+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	lines := bufio.NewScanner(stdout)
	ready := make(chan string, 1)
	go func() {
		for lines.Scan() {
			if l := lines.Text(); l == "ready" || strings.HasPrefix(l, "failed") {
				ready <- l
				break
			}
		}
		close(ready)
	}()
	select {
	case l := <-ready:
		if l != "ready" {
			t.Fatalf("the helper could not open its connections: %q", l)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the helper did not open its connections within 2 minutes")
	}
	open := runtime.NumGoroutine() - baseline
	if open < n*9/10 {
		t.Errorf("goroutines rose by %d with %d idle connections open, want about one per connection", open, n)
	}
	// The broker still answers at once.
	var worst time.Duration
	for range 20 {
		worst = max(worst, tokenLatency())
	}
	if worst > time.Second {
		t.Errorf("slowest of 20 GET /token with %d idle connections open = %v, want under 1 s", n, worst)
	}
	t.Logf("%d idle connections: +%d goroutines; slowest /token of 20: %v", n, open, worst)

	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	client.CloseIdleConnections()
	settleGoroutines(t, baseline+goroutineSlack, "after the idle connections closed")
	noPanics(t, r)
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// clientCall is call with a given client.
func clientCall(t *testing.T, c *http.Client, method, u string, header map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, b
}

func TestColdBurstMakesOneEntraRequest(t *testing.T) {
	const (
		callers = 2000
		scope   = "https://storage.azure.com/.default"
	)
	// Each caller holds a connection on both ends, in this one process.
	conns := callers
	if limit := raiseFileLimit(t); limit < 2*callers+1024 {
		conns = 256
		t.Logf("RLIMIT_NOFILE is %d: %d connections carry the %d callers", limit, conns, callers)
	}
	if raceEnabled() {
		// The race detector allows 8,128 live goroutines; a client
		// connection holds three (two in the transport, one in the broker).
		conns = min(conns, 1000)
		t.Logf("race detector on: %d connections carry the %d callers", conns, callers)
	}
	az, r := startReady(t, nil)
	release := make(chan struct{})
	reached := make(chan struct{}, 1)
	az.Entra.InjectFault(emulator.DemoClientID, emulator.Fault{Kind: emulator.FaultDelay, Release: release, Reached: reached})
	waitsBefore := metricValue(t, r, "broker_token_cache_shared_waits_total")

	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	type answer struct {
		code  int
		token string
		err   error
	}
	answers := make(chan answer, callers)
	for range callers {
		go func() {
			req, _ := http.NewRequest("GET", r.api+"/token?scope="+scope, nil)
			req.Header.Set("Metadata", "true")
			res, err := client.Do(req)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			defer res.Body.Close()
			var tok struct {
				AccessToken string `json:"access_token"`
			}
			err = json.NewDecoder(res.Body).Decode(&tok)
			answers <- answer{code: res.StatusCode, token: tok.AccessToken, err: err}
		}()
	}
	select {
	case <-reached:
	case <-time.After(time.Minute):
		t.Fatal("no token request reached the emulator")
	}
	// Every caller that holds a connection joins the one fetch in flight
	// before the emulator answers it.
	waitFor(t, fmt.Sprintf("%d callers to wait on the one fetch", conns-1), func() bool {
		return metricValue(t, r, "broker_token_cache_shared_waits_total")-waitsBefore >= float64(conns-1)
	})
	close(release)

	tokens := map[string]int{}
	codes := map[int]int{}
	for range callers {
		a := <-answers
		if a.err != nil {
			t.Fatalf("a caller failed: %v", a.err)
		}
		codes[a.code]++
		tokens[a.token]++
	}
	if codes[http.StatusOK] != callers {
		t.Errorf("answers by status = %v, want %d × 200", codes, callers)
	}
	if len(tokens) != 1 {
		t.Errorf("%d distinct tokens served, want 1", len(tokens))
	}
	if got := az.Entra.Requests(emulator.DemoClientID, scope); got != 1 {
		t.Errorf("Entra token requests for %s = %d, want exactly 1", scope, got)
	}
	noPanics(t, r)
}

func TestGuardsUnderAbuse(t *testing.T) {
	_, r := startReady(t, nil)
	client := &http.Client{Transport: &http.Transport{}}
	clientCall(t, client, "GET", r.api+tokenPath, map[string]string{"Metadata": "true"})
	client.CloseIdleConnections()
	settleGoroutines(t, runtime.NumGoroutine(), "before the abuse")
	baseline := runtime.NumGoroutine()

	const proxyPrefix = "/proxy/loganalytics/v1/workspaces/" + loganalytics.DemoWorkspaceID
	req := func(target string, headers ...string) string {
		return "GET " + target + " HTTP/1.1\r\n" + strings.Join(headers, "\r\n") + "\r\n\r\n"
	}
	const (
		host = "Host: 127.0.0.1"
		meta = "Metadata: true"
	)
	tests := []struct {
		name      string
		raw       string
		wantCode  int    // 0: any 4xx
		wantError string // the JSON error code; "" when Go's server answers before the broker
	}{
		{"well-formed", req(tokenPath, host, meta), 200, ""},
		{"foreign Host", req(tokenPath, "Host: evil.example", meta), 421, "host_not_allowed"},
		{"rebinding-looking Host", req(tokenPath, "Host: 127.0.0.1.evil.example:8400", meta), 421, "host_not_allowed"},
		{"absolute-form target names a foreign host", req("http://evil.example"+tokenPath, host, meta), 421, "host_not_allowed"},
		{"HTTP/1.0 without Host", "GET " + tokenPath + " HTTP/1.0\r\n" + meta + "\r\n\r\n", 421, "host_not_allowed"},
		{"HTTP/1.1 without Host", req(tokenPath, meta), 400, ""},
		{"two Hosts", req(tokenPath, host, "Host: evil.example", meta), 400, ""},
		{"X-Forwarded-For", req(tokenPath, host, meta, "X-Forwarded-For: 10.0.0.1"), 403, "forwarded_request"},
		{"Forwarded", req(tokenPath, host, meta, "Forwarded: for=10.0.0.1"), 403, "forwarded_request"},
		{"x-forwarded-for in lower case", req(tokenPath, host, meta, "x-forwarded-for: 10.0.0.1"), 403, "forwarded_request"},
		{"Metadata missing", req(tokenPath, host), 400, "metadata_header_required"},
		{"Metadata false", req(tokenPath, host, "Metadata: false"), 400, "metadata_header_required"},
		{"Metadata false then true", req(tokenPath, host, "Metadata: false", meta), 400, "metadata_header_required"},
		{"query of 60 KiB", req("/token?resource="+strings.Repeat("a", 60<<10), host, meta), 400, "invalid_scope"},
		{"bad percent-encoding", req("/token?resource=%zz%", host, meta), 400, "missing_scope"},
		{"NUL in the scope", req("/token?scope=https://api.loganalytics.io%00/.default", host, meta), 400, "invalid_scope"},
		{"msi without identity header", req("/msi/token?api-version=2019-08-01&resource=https://vault.azure.net", host), 401, "invalid_identity_header"},
		{"imds with a bad api-version", req("/metadata/identity/oauth2/token?api-version=2018-13-99&resource=https://vault.azure.net", host, meta), 400, "invalid_request"},
		{"proxy dot segments", req("/proxy/loganalytics/v1/../../token", host), 0, ""},
		{"proxy encoded dot segments", req(proxyPrefix+"/%2e%2e/%2e%2e/x", host), 0, ""},
		{"proxy encoded slash", req(proxyPrefix+"%2f..%2fquery", host), 0, ""},
		{"proxy through a foreign Host", req(proxyPrefix+"/query?query=print%201", "Host: evil.example"), 421, "host_not_allowed"},
		{"proxy forwarded", req(proxyPrefix+"/query?query=print%201", host, "X-Forwarded-For: 10.0.0.1"), 403, "forwarded_request"},
		{"CONNECT", "CONNECT 127.0.0.1:443 HTTP/1.1\r\n" + host + "\r\n\r\n", 0, ""},
		{"Content-Length and chunked", "POST /token HTTP/1.1\r\n" + host + "\r\n" + meta + "\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, ""},
		{"bad method token", "G(T " + tokenPath + " HTTP/1.1\r\n" + host + "\r\n\r\n", 400, ""},
		{"header without a colon", req(tokenPath, host, meta, "Nonsense"), 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body := rawExchange(t, r.hostPort(), tt.raw)
			switch {
			case tt.wantCode == 0 && (code < 400 || code > 499):
				t.Fatalf("%s = %d %.300s, want a 4xx", tt.name, code, body)
			case tt.wantCode != 0 && code != tt.wantCode:
				t.Fatalf("%s = %d %.300s, want %d", tt.name, code, body, tt.wantCode)
			}
			if tt.wantError == "" {
				return
			}
			var e struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Error != tt.wantError || e.Description == "" {
				t.Errorf("%s body = %.300s, want JSON error %q with a description", tt.name, body, tt.wantError)
			}
			if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("%s Content-Type = %q, want JSON", tt.name, ct)
			}
			if bytes.Contains(body, []byte("eyJ")) {
				t.Errorf("%s error body carries a token: %.300s", tt.name, body)
			}
		})
	}
	settleGoroutines(t, baseline+goroutineSlack, "after the abuse")
	noPanics(t, r)
}

// TestForwardedGuardSeesEveryHeaderLine is the X-Forwarded-For guard with
// the header sent twice, the first line empty: a proxy that appends its own
// X-Forwarded-For line (HAProxy's "option forwardfor" does) after a
// client's empty one must still be refused.
func TestForwardedGuardSeesEveryHeaderLine(t *testing.T) {
	_, r := startReady(t, nil)
	raw := "GET " + tokenPath + " HTTP/1.1\r\nHost: 127.0.0.1\r\nMetadata: true\r\nX-Forwarded-For:\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"
	if code, _, _ := rawExchange(t, r.hostPort(), raw); code != http.StatusForbidden {
		t.Errorf("GET /token with an empty then a real X-Forwarded-For line = %d (a token), want 403", code)
	}
}
