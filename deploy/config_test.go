package deploy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/entrabroker/broker/internal/config"
)

// TestBrokerEnvValidates runs the broker's own validation on each
// manifest's broker environment, as `broker serve` would in the pod. As
// shipped, the manifests hold the all-zero placeholder GUID for the tenant
// and client IDs, which the broker refuses on purpose, naming each setting:
// nobody can deploy them unedited. With the placeholders replaced by real
// IDs the environment is valid and the broker has nothing to warn about.
func TestBrokerEnvValidates(t *testing.T) {
	t.Parallel()
	const (
		realTenant = "5d1b3f8e-2c47-4a9b-9e61-0f3a7c2d8b54"
		realClient = "a93e0c71-6f25-4d8a-b4c2-17e5d9f06a3b"
	)
	for _, dir := range variants {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			v := loadVariant(t, dir)
			files := t.TempDir()
			env := map[string]string{}
			for name, e := range envMap(v.broker(t)) {
				switch {
				case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
					// A Secret's value, e.g. openssl rand -hex 16 as the
					// example Secret suggests for the identity header.
					env[name] = "5f0c9a7e3b2d41c68e1f7a9b0c3d2e4f"
				case strings.HasSuffix(name, "_FILE") || strings.HasSuffix(name, "_PATH"):
					// The file the kubelet mounts there, readable by the
					// broker alone.
					path := filepath.Join(files, filepath.Base(e.Value))
					if err := os.WriteFile(path, []byte("mounted credential\n"), 0o400); err != nil {
						t.Fatal(err)
					}
					env[name] = path
				default:
					env[name] = e.Value
				}
			}

			validate := func() (errs []string, cfg config.Config) {
				cfg = config.Default()
				if err := cfg.FromEnv(func(k string) string { return env[k] }); err != nil {
					t.Fatalf("FromEnv: %v", err)
				}
				if err := cfg.Validate(config.Serve); err != nil {
					errs = strings.Split(err.Error(), "\n")
				}
				return errs, cfg
			}
			errs, _ := validate()
			want := []string{
				`AZURE_TENANT_ID "00000000-0000-0000-0000-000000000000" is a placeholder: replace the placeholder with your app's Directory (tenant) ID from the portal (the app registration's Overview page)`,
				`AZURE_CLIENT_ID "00000000-0000-0000-0000-000000000000" is a placeholder: replace the placeholder with your app's Application (client) ID from the portal (the app registration's Overview page)`,
			}
			if diff := cmp.Diff(want, errs); diff != "" {
				t.Errorf("the manifest's broker env as shipped: Validate errors (-want +got):\n%s", diff)
			}

			env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"] = realTenant, realClient
			errs, cfg := validate()
			if errs != nil {
				t.Errorf("the manifest's broker env with real IDs: Validate errors %q, want none", errs)
			}
			if w := cfg.Warnings(); w != nil {
				t.Errorf("the manifest's broker env with real IDs: warnings %q, want none", w)
			}
		})
	}
}
