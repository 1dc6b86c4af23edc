package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/entrabroker/broker/internal/config"
)

// refreshTimeout bounds `broker refresh`: the ops listener answers within
// 25 s (it reports fetches still running as pending), so 35 s leaves room
// for the connection and the answer.
const refreshTimeout = 35 * time.Second

// maxRefreshAnswer caps the answer read: one line per cached key.
const maxRefreshAnswer = 4 << 20

// runRefresh asks the running broker's ops listener (BROKER_OPS_LISTEN, or
// --ops-listen) to fetch fresh tokens now: every cached token, or those of
// --identity and --scope. It prints the answer, one key per line, and
// fails (exit status 1) when a fetch failed or the broker refused.
func runRefresh(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ops := getenv("BROKER_OPS_LISTEN")
	if ops == "" {
		ops = config.Default().OpsListen
	}
	var identity, scope string
	var asJSON bool
	c, _ := commandNamed("refresh")
	if err := parseFlags(c, args, stdout, nil, func(fs *flag.FlagSet) {
		fs.StringVar(&ops, "ops-listen", ops, "the broker's ops `address`, host:port or unix:///path (BROKER_OPS_LISTEN when set)")
		fs.StringVar(&identity, "identity", "", "refresh only this identity's tokens, by `name` or client ID")
		fs.StringVar(&scope, "scope", "", "refresh only the tokens of this `scope` or resource")
		fs.BoolVar(&asJSON, "json", false, "print the broker's JSON answer as it is")
	}); err != nil {
		return err
	}

	hc, base := opsClient(ops)
	q := url.Values{}
	if identity != "" {
		q.Set("identity", identity)
	}
	if scope != "" {
		q.Set("scope", scope)
	}
	target := base + "/cache/refresh"
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, nil)
	if err != nil {
		return fmt.Errorf("refresh: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("refresh: the broker's ops listener at %s did not answer (is the broker running, and is BROKER_OPS_LISTEN its ops address?): %w", ops, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRefreshAnswer))
	if err != nil {
		return fmt.Errorf("refresh: reading the answer: %w", err)
	}
	if asJSON {
		_, _ = stdout.Write(body)
	}
	var ans struct {
		Refreshed, Failed, Pending int
		Keys                       []struct {
			Identity, Scope, Capabilities, Result string
			Error                                 string `json:"error"`
			Description                           string `json:"error_description"`
			Hint                                  string `json:"hint"`
		}
		Error       string `json:"error"`
		Description string `json:"error_description"`
		Hint        string `json:"hint"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return fmt.Errorf("refresh: the ops listener answered HTTP %d with something other than JSON: %q", resp.StatusCode, bytes.TrimSpace(body[:min(len(body), 200)]))
	}
	if ans.Error != "" {
		fmt.Fprintf(stderr, "%s\n  hint: %s\n", ans.Description, ans.Hint)
		return fmt.Errorf("refresh: %s (HTTP %d)", ans.Error, resp.StatusCode)
	}
	if !asJSON {
		for _, k := range ans.Keys {
			scope := k.Scope
			if k.Capabilities != "" {
				scope += " (" + k.Capabilities + ")"
			}
			line := fmt.Sprintf("%-9s %s %s", k.Result, k.Identity, scope)
			if k.Error != "" {
				line += ": " + k.Description
				if k.Hint != "" {
					line += " (" + k.Hint + ")"
				}
			}
			fmt.Fprintln(stdout, line)
		}
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("refresh: %d refreshed, %d failed, %d still running", ans.Refreshed, ans.Failed, ans.Pending)
	}
	return nil
}

// opsClient returns an HTTP client for the ops listener at addr and the
// base URL of its requests: over the unix socket for "unix:///path", else
// TCP, with a wildcard host replaced by loopback (the refresh route takes
// callers on this host only).
func opsClient(addr string) (*http.Client, string) {
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}}
		// Timeout: one refresh answer, see refreshTimeout.
		return &http.Client{Transport: tr, Timeout: refreshTimeout}, "http://localhost"
	}
	if h, p, err := net.SplitHostPort(addr); err == nil && (h == "" || h == "0.0.0.0" || h == "::") {
		addr = net.JoinHostPort("127.0.0.1", p)
	}
	// Timeout: one refresh answer, see refreshTimeout.
	return &http.Client{Timeout: refreshTimeout}, "http://" + addr
}
