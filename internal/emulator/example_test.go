package emulator_test

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"

	"github.com/entrabroker/broker/internal/emulator"
)

// A client-credentials token from the demo registration, the way any OAuth
// client asks for it.
func Example() {
	e := emulator.New(emulator.Options{})
	if err := e.AddDemo(); err != nil {
		panic(err)
	}
	srv := httptest.NewTLSServer(e)
	defer srv.Close()

	res, err := srv.Client().PostForm(srv.URL+"/"+emulator.DemoTenantID+"/oauth2/v2.0/token", url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {emulator.DemoClientID},
		"client_secret": {emulator.DemoClientSecret},
		"scope":         {"https://api.loganalytics.io/.default"},
	})
	if err != nil {
		panic(err)
	}
	defer res.Body.Close()
	var body struct {
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		panic(err)
	}
	claims, err := e.VerifyAccessToken(body.AccessToken)
	if err != nil {
		panic(err)
	}
	fmt.Println(res.StatusCode, body.TokenType, body.ExpiresIn)
	fmt.Println(claims.Audience, claims.Roles)
	// Output:
	// 200 Bearer 3599
	// https://api.loganalytics.io [Data.Read]
}

// Faults make the next requests of one app fail, for retry tests.
func ExampleEmulator_InjectFault() {
	e := emulator.New(emulator.Options{})
	if err := e.AddDemo(); err != nil {
		panic(err)
	}
	srv := httptest.NewServer(e)
	defer srv.Close()

	e.InjectFault(emulator.DemoClientID, emulator.Fault{Kind: emulator.FaultThrottle, Times: 2})
	for range 3 {
		res, err := srv.Client().PostForm(srv.URL+"/"+emulator.DemoTenantID+"/oauth2/v2.0/token", url.Values{
			"grant_type": {"client_credentials"}, "client_id": {emulator.DemoClientID},
			"client_secret": {emulator.DemoClientSecret}, "scope": {"https://vault.azure.net/.default"},
		})
		if err != nil {
			panic(err)
		}
		res.Body.Close()
		fmt.Printf("%d %q\n", res.StatusCode, res.Header.Get("Retry-After"))
	}
	fmt.Println(e.Requests(emulator.DemoClientID, "https://vault.azure.net/.default"))
	// Output:
	// 429 "60"
	// 429 "60"
	// 200 ""
	// 3
}
