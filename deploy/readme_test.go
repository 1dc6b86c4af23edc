package deploy_test

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeDocumentsEverything checks that deploy/README.md has a metrics
// reference row for every broker metric in the contract and a section for
// every alert in the rules.
func TestReadmeDocumentsEverything(t *testing.T) {
	t.Parallel()
	readme := readFile(t, "README.md")
	for name, spec := range loadContract(t) {
		if !strings.HasPrefix(name, "broker_") {
			continue
		}
		row := regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(name) + "` \\| " + spec.Type + " \\|")
		if !row.MatchString(readme) {
			t.Errorf("README.md has no metrics reference row for %s (%s)", name, spec.Type)
		}
	}
	for _, e := range ruleExpressions(t, filepath.Join("prometheus", "rules.yml")) {
		alert := strings.TrimPrefix(e.Where, "rules.yml: ")
		if !strings.Contains(readme, "**"+alert+".**") {
			t.Errorf("README.md does not say what to do about %s", alert)
		}
	}
}
