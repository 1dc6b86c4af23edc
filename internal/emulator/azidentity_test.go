package emulator_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/google/go-cmp/cmp"

	"github.com/entrabroker/broker/internal/emulator"
)

// The faithfulness check: the real Azure SDK for Go (azidentity v1.15.0 on
// msal-go) gets a token from the emulator through its whole flow —
// openid-configuration discovery with issuer validation, then the token POST
// with the OIDC scopes and, with CAE, the claims parameter.

// sdkServer starts the emulator with the demo registration on TLS.
func sdkServer(t *testing.T) (*emulator.Emulator, *httptest.Server) {
	t.Helper()
	e := emulator.New(emulator.Options{})
	if err := e.AddDemo(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(e)
	t.Cleanup(srv.Close)
	return e, srv
}

func sdkCredential(t *testing.T, srv *httptest.Server, tenant, clientID, secret string) *azidentity.ClientSecretCredential {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential(tenant, clientID, secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions: azcore.ClientOptions{
			Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: srv.URL},
			Transport: srv.Client(),
			Retry:     policy.RetryOptions{MaxRetries: -1},
		},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatalf("NewClientSecretCredential = %v", err)
	}
	return cred
}

func TestAzidentityGetsToken(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		tenant string
		cae    bool
	}{
		{"tenant id", emulator.DemoTenantID, false},
		{"tenant domain with cae", emulator.DemoTenantDomain, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, srv := sdkServer(t)
			cred := sdkCredential(t, srv, tt.tenant, emulator.DemoClientID, emulator.DemoClientSecret)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			opts := policy.TokenRequestOptions{Scopes: []string{"https://api.loganalytics.io/.default"}, EnableCAE: tt.cae}
			tok, err := cred.GetToken(ctx, opts)
			if err != nil {
				t.Fatalf("GetToken = %v", err)
			}
			if until := time.Until(tok.ExpiresOn); until < 3500*time.Second || until > 3600*time.Second {
				t.Errorf("ExpiresOn in %s, want about 3599 s", until)
			}
			c, err := e.VerifyAccessToken(tok.Token)
			if err != nil {
				t.Fatalf("VerifyAccessToken(SDK's token) = %v", err)
			}
			got := []any{c.Audience, c.TenantID, c.AppID, c.Issuer, c.Roles, c.Version}
			want := []any{"https://api.loganalytics.io", emulator.DemoTenantID, emulator.DemoClientID,
				"https://sts.windows.net/" + emulator.DemoTenantID + "/", []string{"Data.Read"}, "1.0"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("claims aud, tid, appid, iss, roles, ver (-want +got):\n%s", diff)
			}
			// msal-go's cache answers the second call.
			if _, err := cred.GetToken(ctx, opts); err != nil {
				t.Fatalf("second GetToken = %v", err)
			}
			if n := e.Requests(emulator.DemoClientID, "https://api.loganalytics.io/.default"); n != 1 {
				t.Errorf("token requests = %d, want 1 (the SDK caches)", n)
			}
		})
	}
}

func TestAzidentityWrongSecret(t *testing.T) {
	t.Parallel()
	_, srv := sdkServer(t)
	cred := sdkCredential(t, srv, emulator.DemoTenantID, emulator.DemoClientID, "not-the-secret")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://api.loganalytics.io/.default"}})
	var afe *azidentity.AuthenticationFailedError
	if !errors.As(err, &afe) {
		t.Fatalf("GetToken error = %v, want *azidentity.AuthenticationFailedError", err)
	}
	if afe.RawResponse == nil || afe.RawResponse.StatusCode != http.StatusUnauthorized {
		t.Errorf("RawResponse = %v, want status 401", afe.RawResponse)
	}
	for _, want := range []string{"AADSTS7000215: Invalid client secret provided", "RESPONSE 401", `"error": "invalid_client"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("SDK error does not contain %q:\n%s", want, err)
		}
	}
	if strings.Contains(err.Error(), "not-the-secret") {
		t.Errorf("SDK error quotes the secret:\n%s", err)
	}
}
