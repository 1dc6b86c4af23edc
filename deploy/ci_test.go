package deploy_test

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/entrabroker/broker/internal/testenv"
)

// TestCIWaitsForTheDpkgLock checks that every apt-get in .ci/run waits for
// a lock held by another apt process instead of failing at once.
func TestCIWaitsForTheDpkgLock(t *testing.T) {
	t.Parallel()
	script := readFile(t, filepath.Join(repoRoot, ".ci", "run"))
	calls := regexp.MustCompile(`(?m)^[^#\n]*\bapt-get\b.*$`).FindAllString(script, -1)
	if len(calls) == 0 {
		t.Fatal(".ci/run calls apt-get nowhere; this test expects it to install prometheus")
	}
	for _, c := range calls {
		if !strings.Contains(c, "DPkg::Lock::Timeout=") && !strings.Contains(c, `"${apt_get[@]}"`) {
			t.Errorf(".ci/run: %q does not wait for the dpkg lock (-o DPkg::Lock::Timeout=…)", strings.TrimSpace(c))
		}
	}
}

// TestMakeTestNamesSkippedTests checks that the Makefile's test targets
// collect the tests skipped for a missing tool and print them.
func TestMakeTestNamesSkippedTests(t *testing.T) {
	t.Parallel()
	mk := readFile(t, filepath.Join(repoRoot, "Makefile"))
	for _, target := range []string{"test", "test-short"} {
		recipe := regexp.MustCompile(`(?ms)^` + regexp.QuoteMeta(target) + `:[^\n]*\n((?:\t[^\n]*\n)+)`).FindStringSubmatch(mk)
		if recipe == nil {
			t.Errorf("Makefile has no target %s", target)
			continue
		}
		if !strings.Contains(recipe[1], testenv.SkippedFileEnv+"=") || !strings.Contains(recipe[1], "report_skipped") || !strings.Contains(recipe[1], "exit $$status") {
			t.Errorf("Makefile %s does not set %s, report the skipped tests and keep go test's status:\n%s", target, testenv.SkippedFileEnv, recipe[1])
		}
	}
}
