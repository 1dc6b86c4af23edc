package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/entrabroker/broker/internal/yamlfile"
)

func TestParseIdentities(t *testing.T) {
	t.Parallel()
	path := filepath.Join("testdata", "good.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseIdentities(path, data)
	if err != nil {
		t.Fatalf("ParseIdentities(%s) = %v, want no error", path, err)
	}
	want := []Identity{
		{
			Name:             "reports",
			TenantID:         tenant,
			ClientID:         "11111111-aaaa-2222-bbbb-3333cccc4444",
			ObjectID:         "22222222-aaaa-2222-bbbb-3333cccc4444",
			ResourceID:       "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/reports",
			ClientSecretFile: filepath.Join("testdata", "secrets", "reports"),
			SecretExpiresOn:  time.Date(2027, 5, 1, 0, 0, 0, 0, time.UTC),
			AllowedScopes:    []string{"https://api.loganalytics.io/.default", "https://management.azure.com"},
			PrefetchScopes:   []string{"https://api.loganalytics.io/.default"},
			Source:           "testdata/good.yaml:3",
		},
		{
			Name:                          "billing",
			TenantID:                      "contoso.onmicrosoft.com",
			ClientID:                      "33333333-AAAA-2222-bbbb-3333cccc4444",
			ClientCertificatePath:         filepath.Join("testdata", "secrets", "billing.pfx"),
			ClientCertificatePasswordFile: filepath.Join("testdata", "secrets", "billing-password"),
			SendCertificateChain:          true,
			PrefetchScopes:                []string{"https://api.applicationinsights.io/.default", "https://vault.azure.net"},
			Source:                        "testdata/good.yaml:13",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseIdentities(%s) (-want +got):\n%s", path, diff)
	}
}

// TestParseIdentitiesProblems has one file per kind of mistake and pins every
// line of the error: each problem is reported, with its file and line, at once.
func TestParseIdentitiesProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want []string
	}{
		{"unknown-keys", []string{
			`testdata/unknown-keys.yaml:2: identity "reports": tenant_id is missing: use the Directory (tenant) ID from the app registration's Overview page`,
			`testdata/unknown-keys.yaml:3: unknown key "tenant" of an identity: did you mean tenant_id? (known keys: name, tenant_id, client_id, object_id, resource_id, client_secret_file, client_certificate_path, client_certificate_password_file, send_certificate_chain, federated_token_file, secret_expires_on, allowed_scopes, prefetch_scopes)`,
			`testdata/unknown-keys.yaml:6: unknown key "scopes" of an identity (known keys: name, tenant_id, client_id, object_id, resource_id, client_secret_file, client_certificate_path, client_certificate_password_file, send_certificate_chain, federated_token_file, secret_expires_on, allowed_scopes, prefetch_scopes)`,
			`testdata/unknown-keys.yaml:7: unknown key "listen" (known keys: identities, callers, log_level)`,
		}},
		{"bad-values", []string{
			`testdata/bad-values.yaml:2: identity 1: name "Reports Team" must be lower-case letters, digits, '-', '_' or '.' (at most 63), such as reports`,
			`testdata/bad-values.yaml:3: identity 1: tenant_id is "common": the client-credentials grant needs your own tenant; use the Directory (tenant) ID from the app's Overview page`,
			`testdata/bad-values.yaml:4: identity 1: client_id "my-app" is not a GUID: use the Application (client) ID from the app registration's Overview page (not its display name)`,
			`testdata/bad-values.yaml:5: identity 1: object_id "not-a-guid" is not a GUID: use the Object ID of the app's service principal (Enterprise applications → the app → Overview)`,
			`testdata/bad-values.yaml:6: identity 1: resource_id "reports" is not an Azure resource ID: write it like /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>`,
			`testdata/bad-values.yaml:8: identity 1: secret_expires_on "next May" is not a date: write it like 2027-05-01 or 2027-05-01T12:00:00Z`,
			`testdata/bad-values.yaml:9: identity 1: send_certificate_chain must be true or false`,
			`testdata/bad-values.yaml:10: identity 1: allowed_scopes item "Data.Read" is not a scope or resource URI: write items like https://api.loganalytics.io/.default`,
			`testdata/bad-values.yaml:11: identity 1: prefetch_scopes must be a list of scopes, such as [https://api.loganalytics.io/.default]`,
			`testdata/bad-values.yaml:12: identity 2: name is missing: give each identity a short name for logs and metrics, such as reports`,
			`testdata/bad-values.yaml:12: identity 2: tenant_id is missing: use the Directory (tenant) ID from the app registration's Overview page`,
			`testdata/bad-values.yaml:12: identity 2: no credential: set one of client_secret_file, client_certificate_path or federated_token_file`,
		}},
		{"inline-secret", []string{
			`testdata/inline-secret.yaml:5: identity "reports": an inline client_secret is refused: secrets live in files; put the secret's Value in a file (e.g. a Kubernetes secret volume) and name it in client_secret_file`,
		}},
		{"credentials", []string{
			`testdata/credentials.yaml:2: identity "none": no credential: set one of client_secret_file, client_certificate_path or federated_token_file`,
			`testdata/credentials.yaml:5: identity "two": both client_secret_file and client_certificate_path are set, but an identity uses exactly one credential: keep one`,
			`testdata/credentials.yaml:14: identity "orphans": no credential: set one of client_secret_file, client_certificate_path or federated_token_file`,
			`testdata/credentials.yaml:17: identity "orphans": client_certificate_password_file is set without client_certificate_path: drop it, or name the PKCS#12 file`,
			`testdata/credentials.yaml:18: identity "orphans": send_certificate_chain is set without client_certificate_path: the chain is sent only with a certificate`,
			`testdata/credentials.yaml:19: identity "orphans": secret_expires_on describes a client secret, but the identity has none (a certificate's expiry is read from the certificate): drop it`,
			`testdata/credentials.yaml:20: identity "orphans": federated_token_file is empty: name a file`,
		}},
		{"duplicates", []string{
			`testdata/duplicates.yaml:7: identity "reports": name "reports" is already used on line 2: each identity needs its own`,
			`testdata/duplicates.yaml:9: identity "reports": client_id "11111111-aaaa-2222-bbbb-3333cccc4444" is already used on line 4: each identity needs its own`,
			`testdata/duplicates.yaml:10: identity "reports": object_id "22222222-aaaa-2222-bbbb-3333cccc4444" is already used on line 5: each identity needs its own`,
			`testdata/duplicates.yaml:12: identity 3: the name "default" belongs to the identity from the environment (AZURE_CLIENT_ID): choose another`,
			`testdata/duplicates.yaml:17: identity 3: prefetch_scopes item "https://vault.azure.net/.default" is not in allowed_scopes: add it there, or drop it from prefetch_scopes`,
		}},
		{"placeholders", []string{
			`testdata/placeholders.yaml:3: identity "copied": tenant_id "00000000-0000-0000-0000-000000000000" is a placeholder: replace the placeholder with your app's Directory (tenant) ID from the portal (the app registration's Overview page)`,
			`testdata/placeholders.yaml:4: identity "copied": client_id "00001111-aaaa-2222-bbbb-3333cccc4444" is a placeholder: replace the placeholder with your app's Application (client) ID from the portal (the app registration's Overview page)`,
			`testdata/placeholders.yaml:7: identity "typed": tenant_id "AAAABBBB-0000-CCCC-1111-DDDD2222EEEE" is a placeholder: replace the placeholder with your app's Directory (tenant) ID from the portal (the app registration's Overview page)`,
			`testdata/placeholders.yaml:8: identity "typed": client_id "ffffffff-ffff-ffff-ffff-ffffffffffff" is a placeholder: replace the placeholder with your app's Application (client) ID from the portal (the app registration's Overview page)`,
		}},
		{"routes", []string{
			`testdata/routes.yaml:7: routes do not belong here: put them in their own file and name it in BROKER_ROUTES_FILE`,
		}},
		{"syntax", []string{
			`testdata/syntax.yaml:2: did not find expected ',' or ']': fix the YAML syntax`,
		}},
		{"empty", []string{
			`testdata/empty.yaml: the file is empty: list the identities under "identities:"`,
		}},
		{"no-identities", []string{
			`testdata/no-identities.yaml: the file names no identities: list them under "identities:"`,
		}},
		{"wrong-shape", []string{
			"testdata/wrong-shape.yaml:1: cannot unmarshal !!str `reports` into a list of identities",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			path := "testdata/" + tt.file + ".yaml"
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseIdentities(path, data)
			if err == nil {
				t.Fatalf("ParseIdentities(%s) = nil error, want %d problems", path, len(tt.want))
			}
			if diff := cmp.Diff(tt.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("ParseIdentities(%s) errors (-want +got):\n%s", path, diff)
			}
		})
	}
}

func TestParseIdentitiesKeepsValidOnes(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/duplicates.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := ParseIdentities("testdata/duplicates.yaml", data)
	if err == nil || len(ids) != 1 || ids[0].Name != "reports" || ids[0].Source != "testdata/duplicates.yaml:2" {
		t.Errorf("ParseIdentities(duplicates) = %+v, %v; want the first identity and an error", ids, err)
	}
}

func TestInlineSecretNeverEchoed(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/inline-secret.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParseIdentities("inline-secret.yaml", data)
	if err == nil || strings.Contains(err.Error(), "abc~not-here") {
		t.Errorf("ParseIdentities(inline secret) = %v, want an error that does not repeat the secret", err)
	}
}

func TestLoadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, yamlfile.MaxSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file, want string
		n                int
	}{
		{"no file", "", "", 0},
		{"good", "testdata/good.yaml", "", 2},
		{"missing", filepath.Join(dir, "nope.yaml"), "BROKER_CONFIG: cannot read the configuration file: open " + filepath.Join(dir, "nope.yaml") + ": no such file or directory", 0},
		{"too big", big, "BROKER_CONFIG: " + big + " is larger than 1048576 bytes: is it the right file?", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			c.ConfigFile = tt.file
			err := c.LoadFile()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want || len(c.Identities) != tt.n {
				t.Errorf("LoadFile(%q) = %d identities, %q; want %d, %q", tt.file, len(c.Identities), got, tt.n, tt.want)
			}
		})
	}
}

func TestValidateWithFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missingFiles := filepath.Join(dir, "missing-files.yaml")
	if err := os.WriteFile(missingFiles, []byte(`identities:
  - name: reports
    tenant_id: `+tenant+`
    client_id: 11111111-aaaa-4222-bbbb-3333cccc4444
    client_secret_file: reports-secret
  - name: billing
    tenant_id: `+tenant+`
    client_id: 33333333-aaaa-4222-bbbb-3333cccc4444
    client_certificate_path: /
    client_certificate_password_file: billing-password
`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"file alone", []string{"BROKER_CONFIG", "testdata/good.yaml"}, nil},
		{"file and environment", append(valid(), "BROKER_CONFIG", "testdata/good.yaml"), nil},
		{"half an environment identity", []string{"BROKER_CONFIG", "testdata/good.yaml", "AZURE_TENANT_ID", tenant}, []string{
			"AZURE_CLIENT_ID is not set: use the Application (client) ID from the app registration's Overview page",
			"no credential: set one of AZURE_CLIENT_SECRET (the client secret's Value, shown once when the secret is created under Certificates & secrets), AZURE_CLIENT_SECRET_FILE (a file holding it), AZURE_CLIENT_CERTIFICATE_PATH (a certificate and its key) or AZURE_FEDERATED_TOKEN_FILE (workload identity)",
		}},
		{"same client twice", []string{"BROKER_CONFIG", "testdata/good.yaml", "AZURE_TENANT_ID", tenant, "AZURE_CLIENT_ID", "33333333-aaaa-2222-bbbb-3333cccc4444", "AZURE_CLIENT_SECRET", "s"}, []string{
			`testdata/good.yaml:13: identity "billing" has the client_id of AZURE_CLIENT_ID: each app registration is served once; drop one of them`,
		}},
		{"credential files that cannot be read", []string{"BROKER_CONFIG", missingFiles}, []string{
			missingFiles + `:2: identity "reports": client_secret_file "` + filepath.Join(dir, "reports-secret") + `" does not exist: check the path, and in Kubernetes the volume mount that provides the file`,
			missingFiles + `:6: identity "billing": client_certificate_path "/" is a directory: name the file in it that holds the credential`,
			missingFiles + `:6: identity "billing": client_certificate_password_file "` + filepath.Join(dir, "billing-password") + `" does not exist: check the path, and in Kubernetes the volume mount that provides the file`,
		}},
		{"no valid identity", []string{"BROKER_CONFIG", "testdata/no-identities.yaml"}, []string{
			"testdata/no-identities.yaml: the file names no identities: list them under \"identities:\"",
			"no identity: BROKER_CONFIG testdata/no-identities.yaml gives no valid identity and AZURE_CLIENT_ID is not set: fix the file, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and a credential",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			if err := c.FromEnv(env(tt.env...)); err != nil {
				t.Fatal(err)
			}
			var got []string
			if err := c.LoadFile(); err != nil {
				got = append(got, strings.Split(err.Error(), "\n")...)
			}
			if err := c.Validate(Serve); err != nil {
				got = append(got, strings.Split(err.Error(), "\n")...)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("LoadFile and Validate errors (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseIdentities(f *testing.F) {
	for _, name := range []string{"good", "bad-values", "unknown-keys", "credentials", "duplicates", "syntax"} {
		b, err := os.ReadFile("testdata/" + name + ".yaml")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ids, err := ParseIdentities("f.yaml", data)
		if err == nil && len(ids) == 0 {
			t.Errorf("ParseIdentities = no identities and no error")
		}
		for _, id := range ids {
			if id.Name == "" || id.ClientID == "" || id.TenantID == "" {
				t.Errorf("ParseIdentities accepted an incomplete identity %+v", id)
			}
		}
	})
}
