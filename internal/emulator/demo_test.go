package emulator

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestDemo(t *testing.T) {
	t.Parallel()
	e := New(Options{})
	if err := e.AddDemo(); err != nil {
		t.Fatal(err)
	}
	if err := e.AddDemo(); err != nil {
		t.Errorf("second AddDemo = %v, want nil (no-op)", err)
	}
	for _, d := range DemoResources {
		var uris []string
		for _, u := range append([]string{d.URI}, d.Aliases...) {
			uris = append(uris, u, u+"/")
		}
		for _, uri := range uris {
			form := url.Values{"grant_type": {"client_credentials"}, "client_id": {DemoClientID},
				"client_secret": {DemoClientSecret}, "scope": {uri + "/.default"}}
			for _, tenant := range []string{DemoTenantID, DemoTenantDomain} {
				_, a := getToken(t, e, tenant, form)
				c, err := e.VerifyAccessToken(a.AccessToken)
				if err != nil {
					t.Fatalf("%s: %v", uri, err)
				}
				if c.Audience != uri || strings.Join(c.Roles, ",") != strings.Join(d.Roles, ",") {
					t.Errorf("%s: aud, roles = %q, %v, want %q, %v", uri, c.Audience, c.Roles, uri, d.Roles)
				}
			}
		}
	}
}

// TestDemoSecretShape keeps the demo secret out of the shape the commit hook
// flags as a real Entra secret.
func TestDemoSecretShape(t *testing.T) {
	t.Parallel()
	if regexp.MustCompile(`[0-9A-Za-z~_.-]{3}8Q~[0-9A-Za-z~_.-]{30,}`).MatchString(DemoClientSecret) {
		t.Errorf("DemoClientSecret %q looks like a real Entra secret", DemoClientSecret)
	}
	for name, id := range map[string]string{"DemoTenantID": DemoTenantID, "DemoClientID": DemoClientID} {
		if !isGUID(id) {
			t.Errorf("%s = %q, want a GUID", name, id)
		}
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	e := New(Options{})
	for _, err := range []error{
		e.AddDemo(),
		e.AddTenant(Tenant{ID: testTenant}),
		e.AddApp(App{TenantID: testTenant, ClientID: testClient, DisplayName: "reporting", Disabled: true,
			Secrets: []Secret{{Value: testSecret}, {Value: oldSecret}}}),
		e.AddResource(Resource{URIs: []string{"api://reporting"}}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	if err := e.Describe(&b, "https://127.0.0.1:8443/"); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	checkGolden(t, "describe.golden", []byte(out))
	if !strings.Contains(out, DemoClientSecret) {
		t.Errorf("Describe does not print the demo secret")
	}
	for _, s := range []string{testSecret, oldSecret} {
		if strings.Contains(out, s) {
			t.Errorf("Describe prints the secret %q of a non-demo app", s)
		}
	}
}

func TestSelfSignedTLS(t *testing.T) {
	t.Parallel()
	cfg, certPEM, err := SelfSignedTLS()
	if err != nil {
		t.Fatal(err)
	}
	e := New(Options{})
	if err := e.AddDemo(); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		t.Fatal("certificate PEM does not parse")
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, host := range []string{"127.0.0.1", "localhost"} {
		base := "https://" + net.JoinHostPort(host, port)
		res, err := client.Get(base + "/" + DemoTenantID + "/v2.0/.well-known/openid-configuration")
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		var doc struct {
			Issuer string `json:"issuer"`
		}
		err = json.NewDecoder(res.Body).Decode(&doc)
		res.Body.Close()
		if err != nil || doc.Issuer != base+"/"+DemoTenantID+"/v2.0" {
			t.Errorf("%s: issuer = %q (%v), want %s", host, doc.Issuer, err, base+"/"+DemoTenantID+"/v2.0")
		}
	}
}
