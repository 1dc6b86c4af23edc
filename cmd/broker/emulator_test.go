package main

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/emulator"
)

func TestEmulatorConfigFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "emulator.yaml")
	const cfg = `token_lifetime: 3h
tenants:
  - id: 6f1c2a9e-1111-4000-8000-000000000001
    domains: [contoso.example]
apps:
  - tenant: 6f1c2a9e-1111-4000-8000-000000000001
    client_id: 6f1c2a9e-2222-4000-8000-000000000002
    secrets:
      - value: contoso-secret
resources:
  - uris: [https://api.contoso.example]
`
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	az, err := newEmulator(file, 0, zap.NewNop())
	if err != nil {
		t.Fatalf("newEmulator(%s) = %v", file, err)
	}
	srv := httptest.NewServer(az)
	defer srv.Close()
	c, err := azure.New(azure.Config{AuthorityHost: srv.URL, TenantID: "contoso.example",
		ClientID: "6f1c2a9e-2222-4000-8000-000000000002", Credential: azure.SecretCredential("contoso-secret")})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(context.Background(), "https://api.contoso.example/.default")
	if err != nil {
		t.Fatalf("token from the configured app = %v", err)
	}
	if life := tok.ExpiresOn.Sub(tok.IssuedAt); life < 2*time.Hour || tok.RefreshOn.IsZero() {
		t.Errorf("token lifetime %s, refresh-on %v; want the file's 3h with refresh_in", life, tok.RefreshOn)
	}
	// Without demo: true there is no demo app.
	if err := az.Entra.SetEnabled(emulator.DemoClientID, true); err == nil {
		t.Error("the demo app is registered although the file does not ask for it")
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte("tenants:\n  - id: 1\n    colour: blue\n"), 0o600)
	if _, err := newEmulator(bad, 0, zap.NewNop()); err == nil || !strings.Contains(err.Error(), bad+":") {
		t.Errorf("newEmulator(bad file) = %v, want an error naming the file and line", err)
	}
}

func TestEmulatorExampleConfig(t *testing.T) {
	t.Parallel()
	if _, err := newEmulator("../../examples/emulator.yaml", 0, zap.NewNop()); err != nil {
		t.Errorf("the README's example registration file does not load: %v", err)
	}
}

func TestEmulatorCommand(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- runEmulator(ctx, []string{"--listen", "127.0.0.1:0", "--tls"}, out, &syncBuffer{}) }()
	waitFor(t, "the emulator to describe itself", func() bool {
		return strings.Contains(out.String(), emulator.DemoClientSecret) && strings.Contains(out.String(), "Log Analytics: https://127.0.0.1:")
	})
	if !strings.Contains(out.String(), "BEGIN CERTIFICATE") {
		t.Errorf("--tls output lacks the certificate to trust:\n%s", out)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("runEmulator after the signal = %v, want nil", err)
	}
}
