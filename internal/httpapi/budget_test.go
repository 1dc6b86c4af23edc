package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/cache"
	"github.com/entrabroker/broker/internal/emulator"
)

// TestTokenNewScopeBudget: past the cache's budget of new scopes, every
// token endpoint answers 429 too_many_new_scopes with Retry-After, and
// Entra sees nothing more.
func TestTokenNewScopeBudget(t *testing.T) {
	t.Parallel()
	const header = "new-scope-budget-identity-header"
	h := newHarness(t, harnessOptions{IdentityHeader: header, Clock: newFakeClock(time.Now())})
	resource := func(i int) string { return fmt.Sprintf("https://r%d.example.com", i) }
	if r := h.do(request{target: "/token?resource=" + laResource, header: metadata}); r.status != http.StatusOK {
		t.Fatalf("GET /token for Log Analytics = %d %s, want 200", r.status, r.body)
	}
	for i := 1; i < cache.DefaultNewKeyBurst; i++ {
		if r := h.do(request{target: "/token?resource=" + resource(i), header: metadata}); r.status == http.StatusTooManyRequests {
			t.Fatalf("new scope %d of a burst of %d = 429, want it to reach Entra", i+1, cache.DefaultNewKeyBurst)
		}
	}
	before := h.cloud.Entra.Requests(emulator.DemoClientID, "")
	for _, req := range []request{
		{target: "/token?resource=" + resource(100), header: metadata},
		{target: "/msi/token?api-version=2019-08-01&resource=" + resource(101), header: map[string]string{"X-IDENTITY-HEADER": header}},
		{target: "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=" + resource(102), header: metadata},
	} {
		t.Run(req.target, func(t *testing.T) {
			r := h.do(req)
			b := checkError(t, r, http.StatusTooManyRequests, "too_many_new_scopes", true)
			if hint := b["hint"].(string); !strings.Contains(hint, "BROKER_ALLOWED_SCOPES") {
				t.Errorf("hint = %q, want it to name BROKER_ALLOWED_SCOPES", hint)
			}
			if got, want := r.header.Get("Retry-After"), fmt.Sprint(int(cache.DefaultNewKeyEvery/time.Second)); got != want {
				t.Errorf("Retry-After = %q, want %q", got, want)
			}
		})
	}
	if got := h.cloud.Entra.Requests(emulator.DemoClientID, ""); got != before {
		t.Errorf("Entra requests past the budget = %d, want 0", got-before)
	}
	// A scope the broker already serves is not affected.
	if r := h.do(request{target: "/token?resource=" + laResource, header: metadata}); r.status != http.StatusOK {
		t.Errorf("GET /token for Log Analytics past the budget = %d %s, want 200", r.status, r.body)
	}
}
