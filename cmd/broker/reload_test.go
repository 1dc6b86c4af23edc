//go:build unix

package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/emulator"
)

const (
	billingReloadClient = "22222222-bbbb-4333-cccc-4444dddd5555"
	billingReloadSecret = "billing-reload-secret-value"
)

// reloadFiles writes BROKER_CONFIG with the reports identity, and billing
// too when withBilling, and returns its path.
func reloadFiles(t *testing.T, dir string, withBilling bool) string {
	t.Helper()
	for name, secret := range map[string]string{"reports-secret": reportsCheckSecret, "billing-secret": billingReloadSecret} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	doc := "identities:\n  - name: reports\n    tenant_id: " + emulator.DemoTenantID + "\n    client_id: " + reportsCheckClient +
		"\n    client_secret_file: reports-secret\n    allowed_scopes: [https://api.loganalytics.io]\n"
	if withBilling {
		doc = "log_level: warn\n" + doc + "  - name: billing\n    tenant_id: " + emulator.DemoTenantID + "\n    client_id: " + billingReloadClient +
			"\n    client_secret_file: billing-secret\n"
	}
	path := filepath.Join(dir, "broker.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// reloadEmulator is the emulated cloud with the demo app, reports and
// billing.
func reloadEmulator(t *testing.T) (*emulator.Azure, string) {
	t.Helper()
	az, emu := emulated(t)
	for client, secret := range map[string]string{reportsCheckClient: reportsCheckSecret, billingReloadClient: billingReloadSecret} {
		if err := az.Entra.AddApp(emulator.App{TenantID: emulator.DemoTenantID, ClientID: client, DisplayName: client[:8],
			Secrets: []emulator.Secret{{Value: secret}}}); err != nil {
			t.Fatal(err)
		}
	}
	return az, emu.URL
}

// configHash reads the configuration hash /readyz reports.
func configHash(t *testing.T, r *running) string {
	t.Helper()
	_, _, body := call(t, "GET", r.ops+"/readyz", nil, "")
	var v struct{ Config struct{ Hash string } }
	if err := json.Unmarshal(body, &v); err != nil || v.Config.Hash == "" {
		t.Fatalf("/readyz = %s, want the configuration's hash", body)
	}
	return v.Config.Hash
}

// TestReloadUnderLoad changes the identities file while callers ask for
// tokens, reloads, and checks: no request failed, the new identity is
// served, the old tokens stayed cached (no Entra call for them), and a
// broken file is refused whole while the configuration in force serves on.
func TestReloadUnderLoad(t *testing.T) {
	t.Parallel()
	az, url := reloadEmulator(t)
	dir := t.TempDir()
	env := serveEnv(url)
	env["BROKER_CONFIG"] = reloadFiles(t, dir, false)
	r := start(t, env)
	waitFor(t, "/readyz to answer 200", func() bool {
		code, _, _ := call(t, "GET", r.ops+"/readyz", nil, "")
		return code == http.StatusOK
	})
	before := configHash(t, r)
	md := map[string]string{"Metadata": "true"}
	if code, _, body := call(t, "GET", r.api+tokenPath+"&client_id="+billingReloadClient, md, ""); code != http.StatusBadRequest {
		t.Fatalf("billing before the reload = %d %s, want 400 identity_not_found", code, body)
	}
	entraBefore := az.Entra.Requests(emulator.DemoClientID, "https://api.loganalytics.io/.default")

	// Callers ask without pause while the configuration changes.
	ctx, stop := context.WithCancel(context.Background())
	var failed, served atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < 4; i++ {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequest("GET", r.api+tokenPath, nil)
				req.Header.Set("Metadata", "true")
				res, err := client.Do(req)
				if err != nil || res.StatusCode != http.StatusOK {
					failed.Add(1)
				} else {
					served.Add(1)
				}
				if res != nil {
					res.Body.Close()
				}
			}
		})
	}
	waitFor(t, "the load to run", func() bool { return served.Load() > 20 })

	reloadFiles(t, dir, true)
	code, _, body := call(t, "POST", r.ops+"/config/reload", nil, "")
	if code != http.StatusOK || !strings.Contains(string(body), `"reloaded":true`) {
		t.Fatalf("POST /config/reload = %d %s, want 200", code, body)
	}
	after := configHash(t, r)
	if after == before {
		t.Errorf("the configuration hash stayed %s after a reload of a changed file", after)
	}
	if code, _, body := call(t, "GET", r.api+tokenPath+"&client_id="+billingReloadClient, md, ""); code != http.StatusOK {
		t.Errorf("billing after the reload = %d %s, want 200", code, body)
	}

	// A broken file is refused whole: the configuration in force serves.
	if err := os.WriteFile(env["BROKER_CONFIG"], []byte("identities:\n  - name: Bad Name\n    tenant: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, body = call(t, "POST", r.ops+"/config/reload", nil, "")
	var refused struct {
		Error    string
		Problems []string
	}
	_ = json.Unmarshal(body, &refused)
	if code != http.StatusUnprocessableEntity || refused.Error != "config_refused" || len(refused.Problems) < 2 {
		t.Errorf("POST /config/reload of a broken file = %d %s, want 422 config_refused with every problem", code, body)
	}
	if h := configHash(t, r); h != after {
		t.Errorf("configuration hash after a refused reload = %s, want %s still", h, after)
	}
	if code, _, body := call(t, "GET", r.api+tokenPath+"&client_id="+billingReloadClient, md, ""); code != http.StatusOK {
		t.Errorf("billing after a refused reload = %d %s, want 200 (the configuration in force)", code, body)
	}
	if !strings.Contains(r.stderr.String(), "configuration reload refused") {
		t.Errorf("the refused reload's problems are not in the log")
	}

	stop()
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed across the reloads, want 0", n, n+served.Load())
	}
	if n := az.Entra.Requests(emulator.DemoClientID, "https://api.loganalytics.io/.default") - entraBefore; n != 0 {
		t.Errorf("Entra saw %d requests for the default identity's cached token across the reloads, want 0", n)
	}

	// The reload set the file's log level: no more debug access lines.
	mark := len(r.stderr.String())
	for range 3 {
		call(t, "GET", r.api+tokenPath, md, "")
	}
	if tail := r.stderr.String()[mark:]; strings.Contains(tail, `"level":"debug"`) {
		t.Errorf("debug lines after a reload to log_level warn:\n%s", tail)
	}

	// Callers elsewhere may not reload.
	code, _, _ = call(t, "POST", strings.Replace(r.ops, "127.0.0.1", "localhost", 1)+"/config/reload", map[string]string{"Origin": "http://attacker.test"}, "")
	if code != http.StatusForbidden {
		t.Errorf("POST /config/reload from a web page = %d, want 403", code)
	}
}

// TestHelperBroker is the broker TestReloadOnHangup runs as a child
// process, so that its SIGHUP reaches that broker alone.
func TestHelperBroker(t *testing.T) {
	if os.Getenv("BROKER_TEST_HELPER") != "serve" {
		t.Skip("the child process of TestReloadOnHangup")
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		<-term
		stop()
	}()
	if err := run(ctx, []string{"serve"}, os.Getenv, os.Stdout, os.Stderr); err != nil {
		t.Fatal(err)
	}
}

// TestReloadOnHangup sends SIGHUP to a broker process after changing its
// identities file: the new identity is served, and a broken file leaves
// the process serving on.
func TestReloadOnHangup(t *testing.T) {
	t.Parallel()
	_, url := reloadEmulator(t)
	dir := t.TempDir()
	env := serveEnv(url)
	env["BROKER_CONFIG"] = reloadFiles(t, dir, false)
	ports := make([]string, 2)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().String()
		ln.Close()
	}
	env["BROKER_LISTEN"], env["BROKER_OPS_LISTEN"] = ports[0], ports[1]
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperBroker$")
	cmd.Env = append(os.Environ(), "BROKER_TEST_HELPER=serve")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	r := &running{api: "http://" + ports[0], ops: "http://" + ports[1], stderr: &stderr}
	waitFor(t, "the broker process to be ready", func() bool {
		res, err := http.Get(r.ops + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	before := configHash(t, r)
	reloadFiles(t, dir, true)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reload to put billing in force", func() bool {
		code, _, _ := call(t, "GET", r.api+tokenPath+"&client_id="+billingReloadClient, map[string]string{"Metadata": "true"}, "")
		return code == http.StatusOK
	})
	if h := configHash(t, r); h == before {
		t.Errorf("hash unchanged after SIGHUP")
	}
	if err := os.WriteFile(env["BROKER_CONFIG"], []byte("identities: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refused reload to be logged", func() bool {
		return strings.Contains(stderr.String(), "configuration reload refused")
	})
	if code, _, body := call(t, "GET", r.api+tokenPath+"&client_id="+billingReloadClient, map[string]string{"Metadata": "true"}, ""); code != http.StatusOK {
		t.Errorf("after a broken file and SIGHUP: %d %s, want 200 from the configuration in force", code, body)
	}
}
