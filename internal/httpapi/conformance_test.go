package httpapi

// Conformance tests with the real Azure SDK for Go (azidentity v1.15.0): an
// unmodified app's ManagedIdentityCredential and DefaultAzureCredential get
// their tokens from the broker. These tests set process environment
// variables, so none of them is parallel.
//
// msal-go keeps a process-global token cache, so every case asks for a
// resource of its own (registered in its emulator), and a token cached by one
// case can never answer another.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/entrabroker/broker/internal/emulator"
)

// sdkEnv are the variables that steer the SDKs' choice of credential and
// managed-identity source. Each conformance test clears them all, then sets
// what its case needs.
var sdkEnv = []string{
	"AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH",
	"AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "AZURE_USERNAME", "AZURE_PASSWORD",
	"AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST", "AZURE_TOKEN_CREDENTIALS", "AZURE_ADDITIONALLY_ALLOWED_TENANTS",
	"AZURE_POD_IDENTITY_AUTHORITY_HOST", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT",
	"MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT",
}

// clearSDKEnv unsets sdkEnv for the test; t.Setenv restores them after.
func clearSDKEnv(t *testing.T) {
	t.Helper()
	for _, k := range sdkEnv {
		t.Setenv(k, "")
		if err := os.Unsetenv(k); err != nil {
			t.Fatal(err)
		}
	}
}

// resourceSeq makes the per-case resources unique in the process.
var resourceSeq atomic.Int64

// conformanceHarness starts a broker whose emulator knows one extra resource
// for this case, and returns both.
func conformanceHarness(t *testing.T, o harnessOptions) (*harness, string) {
	t.Helper()
	resource := fmt.Sprintf("https://conformance-%d.broker.test", resourceSeq.Add(1))
	setup := o.Setup
	o.Setup = func(a *emulator.Azure) error {
		if setup != nil {
			if err := setup(a); err != nil {
				return err
			}
		}
		return a.Entra.AddResource(emulator.Resource{URIs: []string{resource}})
	}
	return newHarness(t, o), resource
}

// appServiceEnv points the SDK at the broker's /msi/token.
func appServiceEnv(t *testing.T, h *harness, header string) {
	t.Helper()
	clearSDKEnv(t)
	t.Setenv("IDENTITY_ENDPOINT", h.api.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", header)
}

// imdsTransport is an HTTP client that dials the broker for the IMDS
// address (reference §6.4) and refuses every other address, so a test never
// reaches the network.
func imdsTransport(h *harness) *http.Client {
	broker := h.api.Listener.Addr().String()
	var d net.Dialer
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr != imdsAddress+":80" {
				return nil, fmt.Errorf("test transport: refusing to dial %s", addr)
			}
			return d.DialContext(ctx, network, broker)
		},
	}}
}

// getToken asks cred for resource's token and checks it against the broker's
// emulator: the right audience and an expiry about an hour out.
func getToken(t *testing.T, h *harness, cred azcore.TokenCredential, resource string) azcore.AccessToken {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{resource + "/.default"}})
	if err != nil {
		t.Fatalf("GetToken(%s) = %v", resource, err)
	}
	c, err := h.cloud.Entra.VerifyAccessToken(tok.Token)
	if err != nil {
		t.Fatalf("VerifyAccessToken(the SDK's token) = %v", err)
	}
	if c.Audience != resource || c.AppID != emulator.DemoClientID {
		t.Errorf("token aud, appid = %s, %s; want %s, %s", c.Audience, c.AppID, resource, emulator.DemoClientID)
	}
	if d := time.Until(tok.ExpiresOn); d < 55*time.Minute || d > time.Hour {
		t.Errorf("ExpiresOn in %v, want about an hour", d)
	}
	return tok
}

func TestConformanceAppService(t *testing.T) {
	const header = "conformance-identity-header-61aa"
	tests := []struct {
		name string
		env  map[string]string // besides IDENTITY_ENDPOINT and IDENTITY_HEADER
		cred func() (azcore.TokenCredential, error)
		// wantClientID is the client_id the SDK sends, "" for none.
		wantClientID string
	}{
		{
			name: "ManagedIdentityCredential system-assigned",
			cred: func() (azcore.TokenCredential, error) { return azidentity.NewManagedIdentityCredential(nil) },
		},
		{
			name: "ManagedIdentityCredential user-assigned client_id",
			cred: func() (azcore.TokenCredential, error) {
				return azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(emulator.DemoClientID)})
			},
			wantClientID: emulator.DemoClientID,
		},
		{
			name: "DefaultAzureCredential",
			cred: func() (azcore.TokenCredential, error) { return azidentity.NewDefaultAzureCredential(nil) },
		},
		{
			// DefaultAzureCredential forwards AZURE_CLIENT_ID as client_id.
			name:         "DefaultAzureCredential with AZURE_CLIENT_ID",
			env:          map[string]string{"AZURE_CLIENT_ID": emulator.DemoClientID},
			cred:         func() (azcore.TokenCredential, error) { return azidentity.NewDefaultAzureCredential(nil) },
			wantClientID: emulator.DemoClientID,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sawClientID atomic.Value
			sawClientID.Store("")
			h, resource := conformanceHarness(t, harnessOptions{IdentityHeader: header, Wrap: func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					sawClientID.Store(r.URL.Query().Get("client_id"))
					next.ServeHTTP(w, r)
				})
			}})
			appServiceEnv(t, h, header)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cred, err := tt.cred()
			if err != nil {
				t.Fatalf("new credential: %v", err)
			}
			first := getToken(t, h, cred, resource)
			if got := sawClientID.Load(); got != tt.wantClientID {
				t.Errorf("the SDK sent client_id=%q, want %q", got, tt.wantClientID)
			}
			// The SDK caches the token: a second call does not reach the broker.
			second := getToken(t, h, cred, resource)
			if second.Token != first.Token {
				t.Errorf("second GetToken returned another token, want the cached one")
			}
			if n := h.hitCount("/msi/token"); n != 1 {
				t.Errorf("the broker saw %d requests for two GetToken calls, want 1", n)
			}
			if got := tokenRequestCounts(t, h)["msi/success"]; got != 1 {
				t.Errorf("broker_token_requests_total{endpoint=\"msi\",result=\"success\"} = %v, want 1", got)
			}
		})
	}
}

func TestConformanceIMDS(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		cred func(*http.Client) (azcore.TokenCredential, error)
		// probes is how many requests the credential sends before its
		// token request (DefaultAzureCredential probes IMDS once).
		probes int
	}{
		{
			name: "ManagedIdentityCredential system-assigned",
			cred: func(c *http.Client) (azcore.TokenCredential, error) {
				return azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ClientOptions: azcore.ClientOptions{Transport: c}})
			},
		},
		{
			name: "ManagedIdentityCredential user-assigned client_id",
			cred: func(c *http.Client) (azcore.TokenCredential, error) {
				return azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
					ClientOptions: azcore.ClientOptions{Transport: c}, ID: azidentity.ClientID(emulator.DemoClientID),
				})
			},
		},
		{
			name: "DefaultAzureCredential",
			cred: func(c *http.Client) (azcore.TokenCredential, error) {
				return azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{ClientOptions: azcore.ClientOptions{Transport: c}})
			},
			probes: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, resource := conformanceHarness(t, harnessOptions{IdentityHeader: "unused-imds"})
			clearSDKEnv(t)
			cred, err := tt.cred(imdsTransport(h))
			if err != nil {
				t.Fatalf("new credential: %v", err)
			}
			first := getToken(t, h, cred, resource)
			second := getToken(t, h, cred, resource)
			if second.Token != first.Token {
				t.Errorf("second GetToken returned another token, want the cached one")
			}
			const path = "/metadata/identity/oauth2/token"
			if n := h.hitCount(path); n != 1+tt.probes {
				t.Errorf("the broker saw %d requests on %s for two GetToken calls, want %d", n, path, 1+tt.probes)
			}
			want := map[string]float64{"imds/success": 1}
			if tt.probes > 0 {
				want["imds/bad_request"] = float64(tt.probes)
			}
			got := tokenRequestCounts(t, h)
			for k, v := range want {
				if got[k] != v {
					t.Errorf("broker_token_requests_total %s = %v, want %v (all: %v)", k, got[k], v, got)
				}
			}
		})
	}
}

// TestConformanceErrors checks that the SDK's error shows the app the
// broker's explanation and hint, and that the SDK does not retry an error
// that retrying cannot mend (the broker sees one request).
func TestConformanceErrors(t *testing.T) {
	const header = "conformance-errors-header-77f0"
	const unknownID = "00000000-0000-4000-8000-0000000000aa"
	tests := []struct {
		name string
		o    harnessOptions
		imds bool
		// sdkHeader is the IDENTITY_HEADER the app has.
		sdkHeader string
		id        azidentity.ManagedIDKind
		want      []string // in the SDK's error text
		// unavailable: the SDK reports the credential unavailable (a
		// chain goes on to its next credential) rather than
		// AuthenticationFailedError. Go does so for a 400 on the IMDS
		// path without a selected identity (reference §3.5).
		unavailable bool
	}{
		{
			name: "wrong identity header", o: harnessOptions{IdentityHeader: header}, sdkHeader: "not-the-header",
			want: []string{"401", "X-IDENTITY-HEADER does not match BROKER_IDENTITY_HEADER", "Set IDENTITY_HEADER in the app's environment"},
		},
		{
			name: "identity header not configured", o: harnessOptions{}, sdkHeader: "whatever",
			want: []string{"403", "BROKER_IDENTITY_HEADER is not set", "Set BROKER_IDENTITY_HEADER on the broker"},
		},
		{
			name: "unknown client_id", o: harnessOptions{IdentityHeader: header}, sdkHeader: header, id: azidentity.ClientID(unknownID),
			want: []string{"400", "identity_not_found", unknownID, "leave AZURE_CLIENT_ID unset"},
		},
		{
			name: "unknown object_id", o: harnessOptions{IdentityHeader: header}, sdkHeader: header, id: azidentity.ObjectID(unknownID),
			want: []string{"400", "identity_not_found", unknownID},
		},
		{
			name: "unknown resource ID", o: harnessOptions{IdentityHeader: header}, sdkHeader: header, id: azidentity.ResourceID("/subscriptions/x/resourceGroups/y/providers/Microsoft.ManagedIdentity/userAssignedIdentities/z"),
			want: []string{"400", "identity_not_found", "userAssignedIdentities/z"},
		},
		{
			name: "wrong broker secret", o: harnessOptions{IdentityHeader: header, ClientSecret: wrongSecret}, sdkHeader: header,
			want: []string{"400", "invalid_client", "AADSTS7000215", "Copy the secret's Value"},
		},
		{
			name: "imds unknown client_id", o: harnessOptions{}, imds: true, id: azidentity.ClientID(unknownID),
			want: []string{"400", "identity_not_found", unknownID},
		},
		{
			name: "imds wrong broker secret", o: harnessOptions{ClientSecret: wrongSecret}, imds: true, unavailable: true,
			want: []string{"invalid_client", "AADSTS7000215", "Copy the secret's Value"},
		},
		{
			name: "imds user-assigned wrong broker secret", o: harnessOptions{ClientSecret: wrongSecret}, imds: true, id: azidentity.ClientID(emulator.DemoClientID),
			want: []string{"400", "invalid_client", "AADSTS7000215", "Copy the secret's Value"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, resource := conformanceHarness(t, tt.o)
			path := "/msi/token"
			opts := &azidentity.ManagedIdentityCredentialOptions{ID: tt.id}
			if tt.imds {
				clearSDKEnv(t)
				path = "/metadata/identity/oauth2/token"
				opts.Transport = imdsTransport(h)
			} else {
				appServiceEnv(t, h, tt.sdkHeader)
			}
			cred, err := azidentity.NewManagedIdentityCredential(opts)
			if err != nil {
				t.Fatalf("NewManagedIdentityCredential() = %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			_, err = cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{resource + "/.default"}})
			if err == nil {
				t.Fatalf("GetToken succeeded, want an error")
			}
			var afe *azidentity.AuthenticationFailedError
			if got := errors.As(err, &afe); got == tt.unavailable {
				t.Errorf("GetToken error is %T; want AuthenticationFailedError: %v", err, !tt.unavailable)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the SDK's error lacks %q:\n%v", w, err)
				}
			}
			if n := h.hitCount(path); n != 1 {
				t.Errorf("the broker saw %d requests, want 1 (the SDK must not retry this error)", n)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("GetToken took %v to fail, want a fast answer", d)
			}
			if testing.Verbose() {
				t.Logf("SDK error:\n%v", err)
			}
		})
	}
}

// TestSDKNotLinked checks that the Azure SDK, a test-only dependency, is not
// linked into the broker binary.
func TestSDKNotLinked(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goTool := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		if goTool, err = exec.LookPath("go"); err != nil {
			t.Skip("no go command")
		}
	}
	out, err := exec.Command(goTool, "list", "-e", "-deps", "github.com/entrabroker/broker/cmd/broker").Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/broker: %v", err)
	}
	if !strings.Contains(string(out), "github.com/entrabroker/broker/internal/httpapi") {
		t.Fatalf("go list -deps ./cmd/broker does not list internal/httpapi; the check looked at the wrong thing:\n%s", out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/Azure/azure-sdk-for-go/") || strings.HasPrefix(dep, "github.com/AzureAD/") {
			t.Errorf("the broker binary links %s; the Azure SDK is test-only", dep)
		}
	}
}
