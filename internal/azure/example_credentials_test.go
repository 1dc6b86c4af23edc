package azure_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/entrabroker/broker/internal/azure"
)

// ExampleCertificateCredential shows what a wrong path says, and how the
// wiring finds a certificate's expiry for the metric and the warning.
func ExampleCertificateCredential() {
	_, err := azure.CertificateCredential("/nonexistent/tls.pem", azure.CertificateOptions{})
	var e *azure.Error
	if errors.As(err, &e) {
		fmt.Println(e.Description)
		fmt.Println(e.Hint)
	}

	// With a readable file, the credential reports its certificate's NotAfter:
	//
	//	if x, ok := cred.(azure.ExpiringCredential); ok {
	//		notAfter, known := x.CredentialExpiry()
	//		...
	//	}

	// Output:
	// client certificate file "/nonexistent/tls.pem" does not exist
	// The client certificate file does not exist. Check AZURE_CLIENT_CERTIFICATE_PATH and that the broker's user can read the file (in Kubernetes, the secret volume mount and its key).
}

// ExampleFederatedTokenFileCredential reads the projected token the AKS
// workload identity webhook mounts; a token that expired in the file is a
// transient failure, retried after the kubelet rewrites the file.
func ExampleFederatedTokenFileCredential() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "azure-identity-token")
	// {"alg":"none"}.{"iss":"https://oidc.example/","sub":"system:serviceaccount:default:app","aud":"api://AzureADTokenExchange","exp":1748779200}
	_ = os.WriteFile(path, []byte("eyJhbGciOiJub25lIn0."+
		"eyJpc3MiOiJodHRwczovL29pZGMuZXhhbXBsZS8iLCJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDphcHAiLCJhdWQiOiJhcGk6Ly9BenVyZUFEVG9rZW5FeGNoYW5nZSIsImV4cCI6MTc0ODc3OTIwMH0."+
		"c2ln\n"), 0o600)

	cred := azure.FederatedTokenFileCredential(path, azure.FederatedTokenOptions{
		Now: func() time.Time { return time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC) },
	})
	c, _ := azure.New(azure.Config{TenantID: "contoso.onmicrosoft.com", ClientID: "00001111-aaaa-2222-bbbb-3333cccc4444", Credential: cred})
	_, err := c.Token(context.Background(), "https://api.loganalytics.io/.default") // refused before any request
	var e *azure.Error
	if errors.As(err, &e) {
		fmt.Println(e.Transient, e.AADCodes)
	}
	// Output:
	// true [700024]
}
