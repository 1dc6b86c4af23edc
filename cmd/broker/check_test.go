package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/entrabroker/broker/internal/emulator"
	"github.com/entrabroker/broker/internal/emulator/loganalytics"
	"github.com/entrabroker/broker/internal/emulator/logsingestion"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/check and testdata/help")

// checkNow is the emulator's and broker check's clock in the check tests, so
// that the printed expiry times are stable.
var checkNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const (
	// reportsCheckClient is a second app of the check tests, with a secret
	// file and no role on the demo workspace.
	reportsCheckClient = "11111111-aaaa-4222-bbbb-3333cccc4444"
	reportsCheckSecret = "reports-check-secret-value"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	ws := loganalytics.DemoWorkspaceID
	tests := []struct {
		name     string
		args     []string
		env      func(t *testing.T, env map[string]string, dir string) // changes the environment of `broker serve`
		setup    func(t *testing.T, az *emulator.Azure)
		wantFail int // failed checks; 0 means run returns nil
	}{
		{name: "pass", args: []string{"--workspace", ws}},
		{name: "pass-without-workspace"},
		{name: "role-propagating", args: []string{"--workspace", ws}, wantFail: 1, setup: func(t *testing.T, az *emulator.Azure) {
			az.LogAnalytics.Revoke(ws, emulator.DemoClientID)
			if err := az.LogAnalytics.Grant(ws, emulator.DemoClientID, loganalytics.RoleReader, checkNow.Add(30*time.Minute)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "dcr-pass", args: []string{"--dcr", logsingestion.DemoDCR, "--stream", logsingestion.DemoStream}, env: ingestionEnv},
		{name: "dcr-role-propagating", args: []string{"--dcr", lateDCR, "--stream", logsingestion.DemoStream}, wantFail: 1, env: ingestionEnv, setup: addLateDCR(30 * time.Minute)},
		{name: "dcr-name", args: []string{"--dcr", "my-dcr", "--stream", logsingestion.DemoStream}, wantFail: 1, env: ingestionEnv},
		{name: "dcr-unknown-stream", args: []string{"--dcr", logsingestion.DemoDCR, "--stream", "Custom-Other_CL"}, wantFail: 1, env: ingestionEnv},
		{name: "dcr-without-endpoint", args: []string{"--dcr", logsingestion.DemoDCR, "--stream", logsingestion.DemoStream}, wantFail: 1},
		{name: "wrong-audience", args: []string{"--workspace", ws, "--scope", "https://management.azure.com/.default"}, wantFail: 1},
		{name: "unauthorized", args: []string{"--workspace", ws}, wantFail: 1, setup: func(t *testing.T, az *emulator.Azure) {
			az.LogAnalytics.InjectFault(ws, loganalytics.Fault{Status: 401})
		}},
		{name: "wrong-endpoint", args: []string{"--workspace", ws}, wantFail: 1, env: func(_ *testing.T, env map[string]string, _ string) {
			env["BROKER_LOGANALYTICS_ENDPOINT"] += "/api"
		}},
		{name: "unknown-workspace", args: []string{"--workspace", "00000000-0000-4000-8000-000000000bad"}, wantFail: 1},
		{name: "workspace-name", args: []string{"--workspace", "my-workspace"}, wantFail: 1},
		{name: "wrong-secret", args: []string{"--workspace", ws}, wantFail: 1, env: func(_ *testing.T, env map[string]string, _ string) {
			env["AZURE_CLIENT_SECRET"] = "a-wrong-secret-value"
		}},
		{name: "unknown-app", env: func(_ *testing.T, env map[string]string, _ string) {
			env["AZURE_CLIENT_ID"] = "00000000-0000-4000-8000-00000000abcd"
		}, wantFail: 1},
		{name: "configuration", env: func(_ *testing.T, env map[string]string, _ string) {
			delete(env, "AZURE_TENANT_ID")
			env["AZURE_CLIENT_SECRET"] = "9a1b2c3d-0000-4000-8000-000000000001"
			env["BROKER_LOG_LEVEL"] = "loud"
		}, wantFail: 3},
		// Warnings do not fail the check: a secret file every user can
		// read, and an API listener other hosts can reach.
		{name: "warnings", env: func(t *testing.T, env map[string]string, dir string) {
			secret := filepath.Join(dir, "client-secret")
			if err := os.WriteFile(secret, []byte(emulator.DemoClientSecret+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(secret, 0o644); err != nil {
				t.Fatal(err)
			}
			delete(env, "AZURE_CLIENT_SECRET")
			env["AZURE_CLIENT_SECRET_FILE"] = secret
			env["BROKER_LISTEN"] = "0.0.0.0:8400"
			env["BROKER_ALLOW_REMOTE_LISTEN"] = "true"
		}},
		// A callers policy: the caller broker check would be, its rule,
		// and what each rule grants.
		{name: "callers", env: func(t *testing.T, env map[string]string, dir string) {
			cfg := filepath.Join(dir, "broker.yaml")
			if err := os.WriteFile(cfg, []byte(`callers:
  - name: me
    match: {uid: `+strconv.Itoa(os.Geteuid())+`}
    identities: [default]
    scopes: [https://api.loganalytics.io]
    routes: [loganalytics]
    rate: {per_second: 10, burst: 20}
  - name: backup
    match: {uid: `+strconv.Itoa(os.Geteuid()+1)+`, executable: /usr/local/bin/backup}
    identities: ["*"]
    scopes: ["*"]
`), 0o600); err != nil {
				t.Fatal(err)
			}
			env["BROKER_CONFIG"] = cfg
		}},
		{name: "several-identities", args: []string{"--workspace", ws}, wantFail: 1, env: func(t *testing.T, env map[string]string, dir string) {
			secret := filepath.Join(dir, "reports-secret")
			cfg := filepath.Join(dir, "broker.yaml")
			if err := os.WriteFile(secret, []byte(reportsCheckSecret+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(cfg, []byte("identities:\n  - name: reports\n    tenant_id: "+emulator.DemoTenantID+
				"\n    client_id: "+reportsCheckClient+"\n    client_secret_file: reports-secret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			env["BROKER_CONFIG"] = cfg
		}, setup: func(t *testing.T, az *emulator.Azure) {
			if err := az.Entra.AddApp(emulator.App{TenantID: emulator.DemoTenantID, ClientID: reportsCheckClient, DisplayName: "reports",
				Secrets: []emulator.Secret{{Value: reportsCheckSecret}}}); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		for _, asJSON := range []bool{false, true} {
			name, ext := tt.name, ".txt"
			if asJSON {
				name, ext = tt.name+"/json", ".json"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				az := emulator.NewAzure(emulator.Options{Now: func() time.Time { return checkNow }})
				if err := az.AddDemo(); err != nil {
					t.Fatal(err)
				}
				if tt.setup != nil {
					tt.setup(t, az)
				}
				emu := httptest.NewServer(az)
				t.Cleanup(emu.Close)
				env := serveEnv(emu.URL)
				dir := t.TempDir()
				if tt.env != nil {
					tt.env(t, env, dir)
				}
				args := append([]string{"check"}, tt.args...)
				if asJSON {
					args = append(args, "--json")
				}
				ctx := context.WithValue(context.Background(), checkClockKey{}, func() time.Time { return checkNow })
				var stdout, stderr bytes.Buffer
				err := run(ctx, args, func(k string) string { return env[k] }, &stdout, &stderr)

				var cf checkFailed
				switch {
				case tt.wantFail == 0 && err != nil:
					t.Fatalf("broker %s = %v, want nil; stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, &stdout, &stderr)
				case tt.wantFail > 0 && (!errors.As(err, &cf) || cf.failed != tt.wantFail):
					t.Fatalf("broker %s = %v, want %d failed checks; stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, tt.wantFail, &stdout, &stderr)
				}
				if asJSON {
					var results []map[string]any
					if err := json.Unmarshal(stdout.Bytes(), &results); err != nil {
						t.Fatalf("--json output is not a JSON array: %v\n%s", err, &stdout)
					}
					for _, r := range results {
						if diff := cmp.Diff([]string{"check", "detail", "hint", "ok", "setting"}, keysOf(r)); diff != "" {
							t.Errorf("a JSON check's fields (-want +got):\n%s", diff)
						}
					}
				}
				self := selfCaller()
				got := strings.NewReplacer(emu.URL, "EMULATOR", dir, "DIR",
					fmt.Sprintf("uid %d (%s), gid %d (%s), pid %d, executable %s", self.UID, self.User, self.GID, self.Group, self.PID, self.Exe), "SELF",
					fmt.Sprintf("uid: %d", self.UID+1), "uid: OTHER", fmt.Sprintf("uid %d", self.UID+1), "uid OTHER", fmt.Sprintf("uid %d", self.UID), "uid SELF",
				).Replace(stdout.String())
				golden(t, filepath.Join("testdata", "check", tt.name+ext), got)

				// Nothing secret reached the output: not a token, not a secret.
				out := stdout.String() + stderr.String() + fmt.Sprint(err)
				for _, s := range []string{emulator.DemoClientSecret, reportsCheckSecret, "a-wrong-secret-value", "eyJ"} {
					if strings.Contains(out, s) {
						t.Errorf("the output contains a secret or a token (%q)", s)
					}
				}
			})
		}
	}
}

// lateDCR is a DCR whose role assignment propagates in the check tests.
const lateDCR = "dcr-0000000000000000000000000000late"

// ingestionEnv points BROKER_INGESTION_ENDPOINT at the emulator.
func ingestionEnv(_ *testing.T, env map[string]string, _ string) {
	env["BROKER_INGESTION_ENDPOINT"] = env["BROKER_LOGANALYTICS_ENDPOINT"]
}

// addLateDCR registers lateDCR with the demo stream, its role assignment
// effective after d.
func addLateDCR(d time.Duration) func(t *testing.T, az *emulator.Azure) {
	return func(t *testing.T, az *emulator.Azure) {
		t.Helper()
		if err := az.Ingestion.AddDCR(lateDCR, map[string]logsingestion.Stream{logsingestion.DemoStream: {WorkspaceID: loganalytics.DemoWorkspaceID, Table: logsingestion.DemoTable}}); err != nil {
			t.Fatal(err)
		}
		if err := az.Ingestion.Grant(lateDCR, emulator.DemoClientID, checkNow.Add(d)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCheckWaitsForTheRole runs broker check --wait while the role
// assignments on the workspace and the DCR propagate: it keeps trying, with
// the emulator's clock moved by each wait instead of sleeping, and passes
// once they arrive.
func TestCheckWaitsForTheRole(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := checkNow
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	az := emulator.NewAzure(emulator.Options{Now: clock})
	if err := az.AddDemo(); err != nil {
		t.Fatal(err)
	}
	ws := loganalytics.DemoWorkspaceID
	az.LogAnalytics.Revoke(ws, emulator.DemoClientID)
	if err := az.LogAnalytics.Grant(ws, emulator.DemoClientID, loganalytics.RoleReader, checkNow.Add(12*time.Minute)); err != nil {
		t.Fatal(err)
	}
	addLateDCR(25*time.Minute)(t, az)
	emu := httptest.NewServer(az)
	t.Cleanup(emu.Close)
	env := serveEnv(emu.URL)
	ingestionEnv(t, env, "")
	var slept []time.Duration
	ctx := context.WithValue(context.Background(), checkClockKey{}, clock)
	ctx = context.WithValue(ctx, checkSleepKey{}, func(_ context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(d)
		slept = append(slept, d)
		return nil
	})
	var stdout, stderr bytes.Buffer
	args := []string{"check", "--workspace", ws, "--dcr", lateDCR, "--stream", logsingestion.DemoStream, "--wait", "60m"}
	if err := run(ctx, args, func(k string) string { return env[k] }, &stdout, &stderr); err != nil {
		t.Fatalf("broker %s = %v; stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, &stdout, &stderr)
	}
	for _, want := range []string{"print 1 ran", "an empty upload was accepted", "of --wait 1h0m0s"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, &stdout)
		}
	}
	if !strings.Contains(stderr.String(), "still failing after") {
		t.Errorf("stderr shows no progress:\n%s", &stderr)
	}
	if len(slept) == 0 || slept[0] != checkWaitFirst {
		t.Errorf("waits = %v, want a backoff from %s", slept, checkWaitFirst)
	}

	// Without --wait, or when the role never arrives within it, the check fails.
	args = []string{"check", "--dcr", "dcr-00000000000000000000000000never", "--stream", logsingestion.DemoStream, "--wait", "1m"}
	if err := az.Ingestion.AddDCR("dcr-00000000000000000000000000never", map[string]logsingestion.Stream{logsingestion.DemoStream: {WorkspaceID: ws, Table: logsingestion.DemoTable}}); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	var cf checkFailed
	if err := run(ctx, args, func(k string) string { return env[k] }, &stdout, &stderr); !errors.As(err, &cf) || cf.failed != 1 {
		t.Fatalf("broker %s = %v, want 1 failed check; stdout:\n%s", strings.Join(args, " "), err, &stdout)
	}
}

// TestCheckNeverPrintsTheToken fetches the very tokens broker check got and
// looks for them, and for any part of them, in its output.
func TestCheckNeverPrintsTheToken(t *testing.T) {
	t.Parallel()
	az := emulator.NewAzure(emulator.Options{})
	if err := az.AddDemo(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var tokens []string
	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token") {
			az.ServeHTTP(w, r)
			return
		}
		// Note each token the emulator issues on its way to broker check.
		rr := httptest.NewRecorder()
		az.ServeHTTP(rr, r)
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		if json.Unmarshal(rr.Body.Bytes(), &tok) == nil && tok.AccessToken != "" {
			mu.Lock()
			tokens = append(tokens, tok.AccessToken)
			mu.Unlock()
		}
		maps.Copy(w.Header(), rr.Header())
		w.WriteHeader(rr.Code)
		_, _ = w.Write(rr.Body.Bytes())
	}))
	t.Cleanup(rec.Close)
	env := serveEnv(rec.URL)
	var stdout, stderr bytes.Buffer
	for _, args := range [][]string{
		{"check", "--workspace", loganalytics.DemoWorkspaceID},
		{"check", "--workspace", loganalytics.DemoWorkspaceID, "--json"},
		{"check", "--workspace", loganalytics.DemoWorkspaceID, "--scope", "https://management.azure.com/.default"},
	} {
		err := run(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr)
		if args[len(args)-1] != "https://management.azure.com/.default" && err != nil {
			t.Fatalf("broker %s = %v", strings.Join(args, " "), err)
		}
	}
	if len(tokens) != 3 {
		t.Fatalf("recorded %d tokens, want 3", len(tokens))
	}
	out := stdout.String() + stderr.String()
	for _, tok := range tokens {
		parts := strings.Split(tok, ".")
		for i, p := range append(parts, tok) {
			if len(p) > 16 && strings.Contains(out, p) {
				t.Errorf("the output contains the token or its part %d", i)
			}
		}
	}
}

func keysOf(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// golden compares got with the file at path, or rewrites the file with -update.
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("output differs from %s (-want +got):\n%s", path, diff)
	}
}

func TestFixHint(t *testing.T) {
	t.Parallel()
	for fix, want := range map[string]string{
		"use the Application (client) ID": "Use the Application (client) ID.",
		"":                                "Correct the configuration as the message says, then run broker check again.",
	} {
		if got := fixHint(fix); got != want {
			t.Errorf("fixHint(%q) = %q, want %q", fix, got, want)
		}
	}
}

func TestDecodeClaims(t *testing.T) {
	t.Parallel()
	enc := func(payload string) string {
		return "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".sig"
	}
	tests := []struct {
		name, token string
		want        tokenClaims
		wantErr     bool
	}{
		{"v1", enc(`{"aud":"https://api.loganalytics.io","tid":"t","appid":"a","roles":["Data.Read"],"exp":2000000000}`),
			tokenClaims{Audience: jsonStrings{"https://api.loganalytics.io"}, TenantID: "t", AppID: "a", Roles: []string{"Data.Read"}, Expiry: 2000000000}, false},
		{"v2 with an audience list", enc(`{"aud":["x","y"],"azp":"a","exp":1}`), tokenClaims{Audience: jsonStrings{"x", "y"}, AZP: "a", Expiry: 1}, false},
		{"two parts", "a.b", tokenClaims{}, true},
		{"not base64", "a.!!!.c", tokenClaims{}, true},
		{"not JSON", enc("nope"), tokenClaims{}, true},
	}
	for _, tt := range tests {
		got, err := decodeClaims(tt.token)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: decodeClaims error = %v, want error %v", tt.name, err, tt.wantErr)
		}
		if diff := cmp.Diff(tt.want, got); !tt.wantErr && diff != "" {
			t.Errorf("%s: decodeClaims (-want +got):\n%s", tt.name, diff)
		}
	}
}
