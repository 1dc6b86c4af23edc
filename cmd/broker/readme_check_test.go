package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"

	"github.com/entrabroker/broker/internal/emulator"
)

// TestReadmeCheckSample runs the scenario of the README's broker check
// sample — the example emulator registrations, the demo app in the
// environment and the example's reporting app in BROKER_CONFIG — and
// compares the output with the README's, expiry times aside.
func TestReadmeCheckSample(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```text\n\\$ broker check --workspace ([0-9a-f-]+)\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no broker check sample")
	}
	workspace, want := string(m[1]), string(m[2])

	az, err := newEmulator("../../examples/emulator.yaml", 0, zap.NewNop()) // as broker emulator --config does
	if err != nil {
		t.Fatal(err)
	}
	emu := httptest.NewServer(az)
	t.Cleanup(emu.Close)

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "reporting-secret"), []byte("reporting-secret-rotated-yearly\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "broker.yaml"), []byte(`identities:
  - name: reporting
    tenant_id: 6f1c2a9e-1111-4000-8000-000000000001
    client_id: 6f1c2a9e-2222-4000-8000-000000000002
    client_secret_file: reporting-secret
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"AZURE_TENANT_ID":              emulator.DemoTenantID,
		"AZURE_CLIENT_ID":              emulator.DemoClientID,
		"AZURE_CLIENT_SECRET":          emulator.DemoClientSecret,
		"AZURE_AUTHORITY_HOST":         emu.URL,
		"BROKER_LOGANALYTICS_ENDPOINT": emu.URL,
		"BROKER_CONFIG":                filepath.Join(dir, "broker.yaml"),
	}
	var stdout bytes.Buffer
	err = run(context.Background(), []string{"check", "--workspace", workspace}, func(k string) string { return env[k] }, &stdout, &bytes.Buffer{})
	if err == nil {
		t.Error("broker check = nil, want a failure as in the README")
	}
	exp := regexp.MustCompile(`exp=\S+ \(in \d+m\)`)
	norm := func(s string) string { return exp.ReplaceAllString(s, "exp=…") }
	got := strings.ReplaceAll(stdout.String(), emu.URL, "http://127.0.0.1:8500")
	if diff := cmp.Diff(norm(want), norm(got)); diff != "" {
		t.Errorf("README's broker check sample differs from a real run (-README +run):\n%s", diff)
	}
}
