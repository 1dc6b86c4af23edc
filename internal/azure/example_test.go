package azure_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/entrabroker/broker/internal/azure"
)

// ExampleClient_Token gets a token from a stand-in for Entra ID and then
// shows how a failure explains itself.
func ExampleClient_Token() {
	entra := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.FormValue("client_secret") != "the-secret-value" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1\r\nCorrelation ID: 2","error_codes":[7000215]}`)
			return
		}
		fmt.Fprint(w, `{"token_type":"Bearer","expires_in":86399,"ext_expires_in":86399,"refresh_in":43199,"access_token":"eyJ0..."}`)
	}))
	defer entra.Close()

	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	newClient := func(secret string) *azure.Client {
		c, err := azure.New(azure.Config{
			AuthorityHost: entra.URL, // plain http is allowed on loopback only
			TenantID:      "72f988bf-86f1-41af-91ab-2d7cd011db47",
			ClientID:      "00001111-aaaa-2222-bbbb-3333cccc4444",
			Credential:    azure.SecretCredential(secret),
			Now:           func() time.Time { return now },
		})
		if err != nil {
			panic(err)
		}
		return c
	}

	tok, err := newClient("the-secret-value\n").Token(context.Background(), azure.AzurePublic.LogAnalytics.Scope())
	if err != nil {
		panic(err)
	}
	fmt.Println("expires in:", tok.ExpiresOn.Sub(tok.IssuedAt))
	fmt.Println("refresh at:", tok.RefreshOn.Format(time.RFC3339))
	fmt.Println(tok) // never prints the token itself

	_, err = newClient("the-secret-id").Token(context.Background(), "https://api.loganalytics.io/.default")
	var e *azure.Error
	if errors.As(err, &e) {
		fmt.Println(e.StatusCode, e.Code, e.AADCodes, "transient:", e.Transient)
		fmt.Println(e.Description)
	}
	// Output:
	// expires in: 23h59m59s
	// refresh at: 2025-06-01T23:59:59Z
	// azure.Token{expires_on: 2025-06-02T11:59:59Z, access_token: [redacted]}
	// 401 invalid_client [7000215] transient: false
	// AADSTS7000215: Invalid client secret provided.
}

// ExampleNormalizeScope shows the forms a scope is accepted in and the one it
// is normalized to.
func ExampleNormalizeScope() {
	for _, s := range []string{
		"https://api.loganalytics.io/.default openid offline_access profile",
		"https://api.loganalytics.io//.default",
		"https://database.windows.net//.default",
	} {
		n, _ := azure.NormalizeScope(s)
		fmt.Println(n)
	}
	r, _ := azure.ScopeForResource("https://api.loganalytics.io/")
	fmt.Println(r)
	_, err := azure.NormalizeScope("Data.Read")
	var e *azure.Error
	errors.As(err, &e)
	fmt.Println(e.AADCodes)
	// Output:
	// https://api.loganalytics.io/.default
	// https://api.loganalytics.io/.default
	// https://database.windows.net//.default
	// https://api.loganalytics.io/.default
	// [1002012]
}
