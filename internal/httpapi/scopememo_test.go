package httpapi

import (
	"fmt"
	"testing"

	"github.com/entrabroker/broker/internal/azure"
)

func TestScopeMemoAnswersLikeAzure(t *testing.T) {
	t.Parallel()
	var m scopeMemo
	for range 2 { // the second pass answers from the memo
		for _, c := range []struct {
			raw      string
			resource bool
		}{
			{"https://api.loganalytics.io", true},
			{"https://api.loganalytics.io/", true},
			{"https://api.loganalytics.io/.default", false},
			{"https://vault.azure.net/.default", false},
			{"not a url", true},
			{"https://x/.default/extra", false},
		} {
			want, wantErr := azure.NormalizeScope(c.raw)
			if c.resource {
				want, wantErr = azure.ScopeForResource(c.raw)
			}
			got, err := m.normalize(c.raw, c.resource)
			if got != want || (err == nil) != (wantErr == nil) {
				t.Errorf("normalize(%q, %v) = %q, %v; azure says %q, %v", c.raw, c.resource, got, err, want, wantErr)
			}
		}
	}
}

func TestScopeMemoIsBounded(t *testing.T) {
	t.Parallel()
	var m scopeMemo
	for i := range 2 * maxScopeMemo {
		raw := fmt.Sprintf("https://r%d.example.com", i)
		if _, err := m.normalize(raw, true); err != nil {
			t.Fatal(err)
		}
	}
	if len(m.m) != maxScopeMemo {
		t.Errorf("the memo holds %d scopes, want the bound %d", len(m.m), maxScopeMemo)
	}
	// Past the bound, scopes are still normalized, just not remembered.
	if got, err := m.normalize("https://late.example.com", true); err != nil || got != "https://late.example.com/.default" {
		t.Errorf("normalize past the bound = %q, %v", got, err)
	}
}
