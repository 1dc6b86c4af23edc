package access

import (
	"net/http"
	"strings"
	"testing"
)

func TestBrowser(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header map[string]string
		marker string // "" = not refused
	}{
		{"curl", map[string]string{"User-Agent": "curl/8.5.0", "Metadata": "true"}, ""},
		{"azure sdk", map[string]string{"User-Agent": "azsdk-go-azidentity/v1.15.0", "X-Identity-Header": "x"}, ""},
		{"typed url", map[string]string{"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"}, ""},
		{"cors fetch", map[string]string{"Origin": "http://attacker.test", "Sec-Fetch-Site": "cross-site"}, "Origin"},
		{"empty origin", map[string]string{"Origin": ""}, "Origin"},
		{"null origin", map[string]string{"Origin": "null"}, "Origin"},
		{"img cross-site", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}, "Sec-Fetch-Site: cross-site"},
		{"img same-site", map[string]string{"Sec-Fetch-Site": "same-site"}, "Sec-Fetch-Site: same-site"},
		{"same-origin", map[string]string{"Sec-Fetch-Site": "same-origin"}, "Sec-Fetch-Site: same-origin"},
		{"empty sec-fetch-site", map[string]string{"Sec-Fetch-Site": ""}, "Sec-Fetch-Site: "},
		{"old browser subresource", map[string]string{"Referer": "http://attacker.test/"}, "Referer"},
		{"long value", map[string]string{"Sec-Fetch-Site": strings.Repeat("x", 100)}, "Sec-Fetch-Site: " + strings.Repeat("x", 32) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.header {
				h[http.CanonicalHeaderKey(k)] = []string{v}
			}
			e := Browser(h)
			if tt.marker == "" {
				if e != nil {
					t.Fatalf("Browser(%v) = %v, want nil", tt.header, e)
				}
				return
			}
			if e == nil {
				t.Fatalf("Browser(%v) = nil, want a refusal naming %q", tt.header, tt.marker)
			}
			if e.Status != http.StatusForbidden || e.Code != "browser_request" {
				t.Errorf("Browser(%v) = %d %s, want 403 browser_request", tt.header, e.Status, e.Code)
			}
			if !strings.Contains(e.Description, "("+"this one carries "+tt.marker+")") {
				t.Errorf("description = %q, want it to name %q", e.Description, tt.marker)
			}
		})
	}
}
