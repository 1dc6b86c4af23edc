//go:build linux

package main

// The callers policy end to end: the real program, real system users, real
// curl processes over the unix socket and TCP loopback. The kernel is the
// only source of who asks; headers a caller sends change nothing.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/entrabroker/broker/internal/access"
	"github.com/entrabroker/broker/internal/caller/callertest"
	"github.com/entrabroker/broker/internal/emulator/loganalytics"
)

func TestCallersPolicyWithRealUsers(t *testing.T) {
	callertest.RequireRoot(t)
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv(callertest.RequireToolsEnv) == "1" {
			t.Fatalf("curl is missing: install it (apt-get install curl)")
		}
		t.Skip("SKIP (missing tool curl)")
	}
	curl, _ = filepath.EvalSymlinks(curl)
	reports := callertest.AddUser(t, "broker-e2e-reports")
	other := callertest.AddUser(t, "broker-e2e-other")

	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			dir := callertest.SharedDir(t)
			cfgPath := filepath.Join(dir, "broker.yaml")
			if err := os.WriteFile(cfgPath, []byte(`callers:
  - name: reports
    match: {user: `+reports.Name+`}
    identities: [default]
    scopes: [https://api.loganalytics.io]
    routes: [loganalytics]
    rate: {per_second: 0.001, burst: 3}
`), 0o600); err != nil {
				t.Fatal(err)
			}
			auditPath := filepath.Join(dir, "audit.jsonl")
			_, emu := emulated(t)
			env := serveEnv(emu.URL)
			env["BROKER_CONFIG"] = cfgPath
			env["BROKER_AUDIT_FILE"] = auditPath
			sock := filepath.Join(dir, "broker.sock")
			if network == "unix" {
				env["BROKER_LISTEN"] = "unix://" + sock
			}
			r := start(t, env)
			base := r.api
			if network == "unix" {
				// The broker makes its socket 0660; these users are in
				// neither its owner nor its group.
				if err := os.Chmod(sock, 0o666); err != nil {
					t.Fatal(err)
				}
				base = "http://localhost"
			}
			waitFor(t, "/readyz to answer 200", func() bool {
				code, _, _ := call(t, "GET", r.ops+"/readyz", nil, "")
				return code == http.StatusOK
			})
			run := func(u callertest.User, header []string, paths ...string) []*http.Response {
				t.Helper()
				args := []string{"-s", "-D", "-", "-o", "-"}
				if network == "unix" {
					args = append(args, "--unix-socket", sock)
				}
				for _, h := range header {
					args = append(args, "-H", h)
				}
				for i, p := range paths {
					if i > 0 {
						args = append(args, "--next", "-s", "-D", "-")
						if network == "unix" {
							args = append(args, "--unix-socket", sock)
						}
						for _, h := range header {
							args = append(args, "-H", h)
						}
					}
					args = append(args, base+p)
				}
				cmd := exec.Command(curl, args...)
				cmd.SysProcAttr = &syscallAttr{Credential: u.Credential()}
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("curl as %s: %v", u.Name, err)
				}
				var res []*http.Response
				br := bufio.NewReader(bytes.NewReader(out))
				for range paths {
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatalf("read curl's answer as %s: %v\n%s", u.Name, err, out)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body = io.NopCloser(bytes.NewReader(body))
					res = append(res, resp)
				}
				return res
			}
			const la = "/token?resource=https://api.loganalytics.io"
			query := "/proxy/loganalytics/v1/workspaces/" + loganalytics.DemoWorkspaceID + "/query?query=Heartbeat%20%7C%20take%201"
			got := run(reports, []string{"Metadata: true"}, la, "/token?resource=https://vault.azure.net", query, "/proxy/arm/subscriptions", la, la)
			for i, want := range []struct {
				status int
				code   string
			}{{200, ""}, {403, "caller_not_allowed"}, {200, ""}, {403, "caller_not_allowed"}, {200, ""}, {429, "caller_rate_limited"}} {
				body, _ := io.ReadAll(got[i].Body)
				var e struct {
					Error  string
					Caller struct {
						UID  int
						User string
						Exe  string
					}
				}
				_ = json.Unmarshal(body, &e)
				if got[i].StatusCode != want.status || e.Error != want.code {
					t.Errorf("request %d as %s = %d %s, want %d %s", i+1, reports.Name, got[i].StatusCode, body, want.status, want.code)
				}
				if want.code != "" && (e.Caller.UID != reports.UID || e.Caller.User != reports.Name || e.Caller.Exe != curl || bytes.Contains(body, []byte("eyJ"))) {
					t.Errorf("refusal %d names caller %+v, want uid %d (%s) and %s, and no token", i+1, e.Caller, reports.UID, reports.Name, curl)
				}
			}
			if ra := got[5].Header.Get("Retry-After"); ra == "" {
				t.Errorf("429 has no Retry-After")
			}

			// Another user is refused whatever it claims to be.
			spoof := []string{"Metadata: true", "X-Remote-User: " + reports.Name, "X-Broker-Caller: uid=" + strconv.Itoa(reports.UID), "X-Identity-Header: " + identityHeader}
			for _, resp := range run(other, spoof, la, query, "/msi/token?api-version=2019-08-01&resource=https://api.loganalytics.io") {
				body, _ := io.ReadAll(resp.Body)
				var e struct {
					Error, Hint string
					Caller      struct {
						UID  int
						User string
					}
				}
				_ = json.Unmarshal(body, &e)
				if resp.StatusCode != http.StatusForbidden || e.Error != "caller_not_allowed" || e.Caller.UID != other.UID || e.Caller.User != other.Name ||
					!strings.Contains(e.Hint, "match: {user: "+other.Name+"}") {
					t.Errorf("as %s: %d %s, want 403 caller_not_allowed naming uid %d and a rule for it", other.Name, resp.StatusCode, body, other.UID)
				}
			}
			if network == "tcp" { // root, the test itself: no rule either
				code, _, body := call(t, "GET", r.api+la, map[string]string{"Metadata": "true"}, "")
				if code != http.StatusForbidden || !bytes.Contains(body, []byte(`"uid":0`)) {
					t.Errorf("as root = %d %s, want 403 naming uid 0", code, body)
				}
			}
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}

			data, err := os.ReadFile(auditPath)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(data, []byte("eyJ")) {
				t.Errorf("the audit file holds a token:\n%s", data)
			}
			var lines []access.Line
			for _, l := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
				var line access.Line
				if err := json.Unmarshal(l, &line); err != nil {
					t.Fatalf("audit line %s: %v", l, err)
				}
				lines = append(lines, line)
			}
			count := func(decision, route string, uid int, reason string) int {
				n := 0
				for _, l := range lines {
					if l.Decision == decision && l.Route == route && l.Caller.UID == uid && l.Reason == reason {
						n++
						if uid == reports.UID && (l.Caller.Exe != curl || l.Caller.PID <= 0 || l.Caller.User != reports.Name) {
							t.Errorf("audit line %+v: want pid, user %s and exe %s", l, reports.Name, curl)
						}
						if decision == access.Granted && (len(l.TokenSHA256) != 12 || l.ExpiresOn == 0 || l.Caller.Rule != "reports" || l.Scope != "https://api.loganalytics.io/.default") {
							t.Errorf("grant line %+v: want a fingerprint, expiry, rule and scope", l)
						}
					}
				}
				return n
			}
			for _, c := range []struct {
				decision, route string
				uid             int
				reason          string
				want            int
			}{
				{access.Granted, "token", reports.UID, "", 1}, // twice granted, one token: one line
				{access.Granted, "proxy/loganalytics", reports.UID, "", 1},
				{access.Denied, "token", reports.UID, "caller_not_allowed", 1},
				{access.Denied, "proxy/arm", reports.UID, "caller_not_allowed", 1},
				{access.Denied, "token", reports.UID, "caller_rate_limited", 1},
				{access.Denied, "token", other.UID, "caller_not_allowed", 1},
				{access.Denied, "proxy/loganalytics", other.UID, "caller_not_allowed", 1},
				{access.Denied, "msi", other.UID, "caller_not_allowed", 1},
			} {
				if n := count(c.decision, c.route, c.uid, c.reason); n != c.want {
					t.Errorf("audit lines %s %s uid %d %s = %d, want %d\n%s", c.decision, c.route, c.uid, c.reason, n, c.want, data)
				}
			}
		})
	}
}
