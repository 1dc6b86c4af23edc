package httpapi

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/entrabroker/broker/internal/emulator"
)

// TestFindLeaks checks the leak checker itself: a planted secret or token in
// a log field or an error body is found.
func TestFindLeaks(t *testing.T) {
	t.Parallel()
	const planted = "planted-secret-for-the-checker"
	noteSecret(planted)
	core, logs := observer.New(zapcore.DebugLevel)
	core.Write(zapcore.Entry{Message: "innocent"}, []zapcore.Field{{Key: "x", Type: zapcore.StringType, String: "a " + planted + " b"}})
	core.Write(zapcore.Entry{Message: "bearer"}, []zapcore.Field{{Key: "auth", Type: zapcore.StringType, String: "Bearer eyJ0eXAiOiJKV1Qi.x.y"}})
	found := findLeaks(logs.All(), []string{`{"error":"x","error_description":"` + planted + `"}`})
	if len(found) != 3 {
		t.Errorf("findLeaks = %v, want the planted secret in a log field and a body, and the JWT", found)
	}
	if found := findLeaks(nil, []string{`{"error":"invalid_client"}`}); len(found) != 0 {
		t.Errorf("findLeaks(clean) = %v, want none", found)
	}
}

// TestNoSecretsInLogs runs the broker through successes and every kind of
// failure, with every component logging at debug level, and checks that
// neither client secret, nor the identity header secret, nor any issued
// access token appears in a log entry (message or field) or an error body.
// (TestMain repeats the check over the whole run.)
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	const header = "leak-test-identity-header-93c1"
	clock := newFakeClock(time.Now())
	var bodies []string
	run := func(h *harness, reqs ...request) {
		for _, req := range reqs {
			r := h.do(req)
			if r.status >= 400 {
				bodies = append(bodies, string(r.body))
			}
		}
	}
	msi := "/msi/token?api-version=2019-08-01&resource="
	imds := "/metadata/identity/oauth2/token?api-version=2018-02-01&resource="
	all := func(resource string) []request {
		return []request{
			{target: "/token?resource=" + resource, header: metadata},
			{target: msi + resource, header: map[string]string{"X-IDENTITY-HEADER": header}},
			{target: imds + resource, header: metadata},
		}
	}

	good := newHarness(t, harnessOptions{IdentityHeader: header, Clock: clock, PrefetchScopes: []string{laScope}})
	run(good, all(laResource)...)
	run(good, all(kvResource)...)
	// Wrong and missing identity headers, with a secret-looking query.
	run(good,
		request{target: msi + laResource, header: map[string]string{"X-IDENTITY-HEADER": header + "x"}},
		request{target: msi + laResource + "&client_secret=" + emulator.DemoClientSecret},
		request{target: "/token?resource=" + laResource + "&client_secret=" + emulator.DemoClientSecret, header: hdr(metadata, map[string]string{"Authorization": "Bearer " + header})},
	)
	// Transient failures, cold and during a refresh (stale serving).
	good.cloud.Entra.InjectFault(emulator.DemoClientID, emulator.Fault{Kind: emulator.FaultThrottle, Times: 3})
	run(good, all("https://storage.azure.com")...)
	good.cloud.Entra.InjectFault(emulator.DemoClientID, emulator.Fault{Kind: emulator.FaultServerError, Times: 10})
	clock.Advance(emulator.DefaultTokenLifetime/2 + time.Minute)
	good.prefetch(laScope)
	run(good, all(laResource)...)
	good.cloud.Entra.ClearFaults(emulator.DemoClientID)
	good.cloud.Entra.InjectFault(emulator.DemoClientID, emulator.Fault{Kind: emulator.FaultMalformedBody})
	run(good, request{target: "/token?resource=https://graph.microsoft.com", header: metadata})
	good.cloud.Entra.InjectFault(emulator.DemoClientID, emulator.Fault{Kind: emulator.FaultDropConnection})
	run(good, request{target: "/token?resource=https://api.applicationinsights.io", header: metadata})
	run(good, request{target: "/readyz"})

	// Permanent failures: a wrong secret, and a secret the app no longer has.
	bad := newHarness(t, harnessOptions{ClientSecret: wrongSecret, IdentityHeader: header, PrefetchScopes: []string{laScope}})
	run(bad, all(laResource)...)
	r := bad.doOps(request{target: "/readyz"})
	if r.status != http.StatusServiceUnavailable {
		t.Errorf("/readyz with a wrong secret = %d, want 503", r.status)
	}
	bodies = append(bodies, string(r.body))
	rotated := newHarness(t, harnessOptions{IdentityHeader: header, Setup: func(a *emulator.Azure) error {
		return a.Entra.SetSecrets(emulator.DemoClientID, emulator.Secret{Value: "rotated-secret-0b7e5f"})
	}})
	noteSecret("rotated-secret-0b7e5f")
	run(rotated, all(laResource)...)

	var entries []observer.LoggedEntry
	for _, h := range []*harness{good, bad, rotated} {
		entries = append(entries, h.logs.All()...)
	}
	if len(entries) == 0 || len(bodies) == 0 {
		t.Fatalf("got %d log entries and %d error bodies; the test exercised nothing", len(entries), len(bodies))
	}
	// The run must have logged the failures it caused, at debug level and up.
	var sawFailure bool
	for _, e := range entries {
		if strings.Contains(e.Message, "fetch failed") || strings.Contains(e.Message, "request failed") {
			sawFailure = true
		}
	}
	if !sawFailure {
		t.Errorf("no failure was logged; want the fetch failures in the log")
	}
	for _, f := range findLeaks(entries, bodies) {
		t.Errorf("%s in %s", f.what, f.where)
	}
}
