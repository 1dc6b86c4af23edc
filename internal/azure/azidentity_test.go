package azure

import (
	"bytes"
	"crypto/x509"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/entrabroker/broker/internal/emulator"
)

// The conformance checks: the real Azure SDK (azidentity v1.15.0 on msal-go
// v1.10.1) authenticates to the emulator with a certificate and with a
// federated token file. If the emulator's verification accepted only what
// this package sends, these would fail; they prove it checks what MSAL
// really sends. msal-go stamps assertions with the real clock, so the
// emulator runs on it too.

// sdkEmulator serves an emulator on the real clock with one app holding a
// certificate and a federated credential.
func sdkEmulator(t *testing.T, cert *x509.Certificate) (*emulator.Emulator, *httptest.Server) {
	t.Helper()
	emu := emulator.New(emulator.Options{})
	if err := emu.AddDemo(); err != nil {
		t.Fatal(err)
	}
	err := emu.AddApp(emulator.App{TenantID: emulator.DemoTenantID, ClientID: certAppID,
		Certificates: emulator.PEMCertificates{cert},
		FederatedCredentials: []emulator.FederatedCredential{
			{Issuer: testFedIssuer, Subject: testFedSubject, Keys: emulator.PEMPublicKeys{&testRSAKeys()[1].PublicKey}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(emu)
	t.Cleanup(srv.Close)
	return emu, srv
}

func sdkClientOptions(srv *httptest.Server) azcore.ClientOptions {
	return azcore.ClientOptions{
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: srv.URL},
		Transport: srv.Client(),
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}
}

func TestAzidentityConformance(t *testing.T) {
	t.Parallel()
	keys := testRSAKeys()
	now := time.Now()
	ca := newCert(t, &keys[1].PublicKey, "Contoso test CA", now.AddDate(5, 0, 0), nil, keys[1])
	leaf := newCert(t, &keys[0].PublicKey, "reporting", now.AddDate(1, 0, 0), ca, keys[1])
	certPEM := bytes.Join([][]byte{pemCert(leaf), pemCert(ca), pemPKCS8(t, keys[0])}, nil)
	scope := policy.TokenRequestOptions{Scopes: []string{testScope}}

	for _, chain := range []bool{false, true} {
		t.Run("ClientCertificateCredential chain="+map[bool]string{false: "no", true: "yes"}[chain], func(t *testing.T) {
			t.Parallel()
			emu, srv := sdkEmulator(t, leaf)
			certs, key, err := azidentity.ParseCertificates(certPEM, nil)
			if err != nil {
				t.Fatal(err)
			}
			cred, err := azidentity.NewClientCertificateCredential(emulator.DemoTenantID, certAppID, certs, key,
				&azidentity.ClientCertificateCredentialOptions{
					ClientOptions:            sdkClientOptions(srv),
					DisableInstanceDiscovery: true,
					SendCertificateChain:     chain,
				})
			if err != nil {
				t.Fatal(err)
			}
			tok, err := cred.GetToken(t.Context(), scope)
			if err != nil {
				t.Fatalf("azidentity GetToken with a certificate = %v", err)
			}
			if c, err := emu.VerifyAccessToken(tok.Token); err != nil || c.AppID != certAppID {
				t.Errorf("SDK token claims = %+v, %v, want appid %s", c, err, certAppID)
			}
		})
	}

	t.Run("WorkloadIdentityCredential", func(t *testing.T) {
		t.Parallel()
		emu, srv := sdkEmulator(t, leaf)
		path := writeBytes(t, t.TempDir(), "azure-identity-token", []byte(newFederatedTokenAt(t, testFedSubject, now, now.Add(time.Hour))))
		cred, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions:            sdkClientOptions(srv),
			ClientID:                 certAppID,
			TenantID:                 emulator.DemoTenantID,
			TokenFilePath:            path,
			DisableInstanceDiscovery: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := cred.GetToken(t.Context(), scope)
		if err != nil {
			t.Fatalf("azidentity GetToken with a federated token = %v", err)
		}
		if c, err := emu.VerifyAccessToken(tok.Token); err != nil || c.AppID != certAppID {
			t.Errorf("SDK token claims = %+v, %v, want appid %s", c, err, certAppID)
		}
	})

	// And this package's credentials against the same emulator on the real
	// clock, for symmetry.
	t.Run("CertificateCredential on the real clock", func(t *testing.T) {
		t.Parallel()
		emu, srv := sdkEmulator(t, leaf)
		path := writeBytes(t, t.TempDir(), "tls.pem", certPEM)
		cred, err := CertificateCredential(path, CertificateOptions{SendCertificateChain: true})
		if err != nil {
			t.Fatal(err)
		}
		c, err := New(Config{AuthorityHost: srv.URL, HTTPClient: srv.Client(), TenantID: emulator.DemoTenantID, ClientID: certAppID, Credential: cred})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := c.Token(t.Context(), testScope)
		if err != nil {
			t.Fatalf("Token() = %v", err)
		}
		if claims, err := emu.VerifyAccessToken(tok.AccessToken); err != nil || claims.AppID != certAppID {
			t.Errorf("token claims = %+v, %v, want appid %s", claims, err, certAppID)
		}
	})
}
