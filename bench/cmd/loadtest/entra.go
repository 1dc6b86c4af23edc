package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/entrabroker/broker/internal/emulator"
)

// cloud is the emulated Entra ID and Log Analytics, in this process so that
// faults can be injected through the emulator's Go API, served on a
// loopback port behind a recorder that notes every token request.
type cloud struct {
	az  *emulator.Azure
	url string
	srv *http.Server

	mu    sync.Mutex
	calls []entraCall
}

// entraCall is one token request that reached the emulated Entra ID.
type entraCall struct {
	start, end time.Time
	scope      string
	status     int // 0: the connection was dropped without an answer
}

// startCloud starts the emulator with the demo registration and tokens of
// the given lifetime (0: the emulator's default).
func startCloud(lifetime time.Duration) (*cloud, error) {
	az := emulator.NewAzure(emulator.Options{TokenLifetime: lifetime})
	if err := az.AddDemo(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("emulator: listen: %w", err)
	}
	c := &cloud{az: az, url: "http://" + ln.Addr().String()}
	c.srv = &http.Server{Handler: http.HandlerFunc(c.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

func (c *cloud) close() { _ = c.srv.Close() }

// serve records token requests and passes everything to the emulator.
func (c *cloud) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token") {
		c.az.ServeHTTP(w, r)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	call := entraCall{start: time.Now(), scope: form.Get("scope")}
	rw := &statusWriter{ResponseWriter: w}
	defer func() {
		call.end = time.Now()
		call.status = rw.status
		c.mu.Lock()
		c.calls = append(c.calls, call)
		c.mu.Unlock()
	}()
	c.az.ServeHTTP(rw, r)
}

// entraCalls returns the token requests recorded so far.
func (c *cloud) entraCalls() []entraCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]entraCall(nil), c.calls...)
}

// statusWriter notes the status and lets the emulator hijack the connection
// (how it drops one).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hijack not supported")
	}
	return hj.Hijack()
}

// brokerEnv is the environment of `broker serve` against c, with the Log
// Analytics proxy pointed at laEndpoint.
func brokerEnv(c *cloud, listen, opsListen, laEndpoint string) []string {
	return []string{
		"AZURE_TENANT_ID=" + emulator.DemoTenantID,
		"AZURE_CLIENT_ID=" + emulator.DemoClientID,
		"AZURE_CLIENT_SECRET=" + emulator.DemoClientSecret,
		"AZURE_AUTHORITY_HOST=" + c.url,
		"BROKER_LOGANALYTICS_ENDPOINT=" + laEndpoint,
		"BROKER_LISTEN=" + listen,
		"BROKER_OPS_LISTEN=" + opsListen,
		"BROKER_PREFETCH_SCOPES=" + laScope,
		"BROKER_LOG_LEVEL=info",
	}
}

// laScope is the scope the broker prefetches and the load asks for.
const laScope = "https://api.loganalytics.io/.default"

// waitReady polls the broker's /readyz until it answers 200.
func waitReady(ctx context.Context, opsURL string, p *process) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(opsURL + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p != nil && p.exited() {
			return fmt.Errorf("the broker exited before it was ready:\n%s", p.output())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the broker was not ready within 30 s (last: %w)", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// servedBroker is `broker serve` against a freshly started emulated cloud,
// ready: what the expiry and fault runs measure.
type servedBroker struct {
	cl       *cloud
	proc     *process
	api, ops string // base URLs
}

// startServedBroker starts the emulated cloud with tokens of lifetime and
// the broker binary bin against it, and waits for /readyz.
func startServedBroker(ctx context.Context, bin string, lifetime time.Duration) (b *servedBroker, err error) {
	cl, err := startCloud(lifetime)
	if err != nil {
		return nil, err
	}
	b = &servedBroker{cl: cl}
	defer func() {
		if err != nil {
			b.stop()
		}
	}()
	apiAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	opsAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	b.api, b.ops = "http://"+apiAddr, "http://"+opsAddr
	if b.proc, err = startProcess("broker", "", brokerEnv(cl, apiAddr, opsAddr, cl.url), bin, "serve"); err != nil {
		return nil, err
	}
	if err := waitReady(ctx, b.ops, b.proc); err != nil {
		return nil, err
	}
	return b, nil
}

// stop ends the broker, if it started, then the cloud.
func (b *servedBroker) stop() {
	if b.proc != nil {
		b.proc.stop()
	}
	b.cl.close()
}
