package deploy_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/testenv"
)

// requireTool returns the path of the named executable (promtool,
// prometheus). When it is not on PATH the test is skipped with a notice that
// `make test` repeats at the end, or fails when BROKER_REQUIRE_TOOLS=1 (CI).
func requireTool(t *testing.T, name string) string {
	t.Helper()
	return testenv.LookPath(t, name, "Debian: apt-get install prometheus")
}

// repoRoot is the repository root, relative to this package's directory (the
// working directory of go test).
const repoRoot = ".."

// metricSpec is one line of testdata/metrics.txt.
type metricSpec struct {
	Name     string
	Type     string   // counter, gauge or histogram
	Labels   []string // nil when the metric has no labels
	Presence string   // "always", "conditional" or "prometheus"
	Why      string   // the reason given after "conditional:" or "prometheus:"
}

// loadContract reads testdata/metrics.txt, the single list of metric names the
// dashboard and the alert rules may use, keyed by name.
func loadContract(t *testing.T) map[string]metricSpec {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "metrics.txt"))
	if err != nil {
		t.Fatalf("open contract: %v", err)
	}
	defer f.Close()
	specs := make(map[string]metricSpec)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 4 {
			t.Fatalf("testdata/metrics.txt:%d: want name type labels presence, got %q", n, line)
		}
		s := metricSpec{Name: fields[0], Type: fields[1], Presence: strings.TrimSuffix(fields[3], ":")}
		if fields[2] != "-" {
			s.Labels = strings.Split(fields[2], ",")
		}
		s.Why = strings.Join(fields[4:], " ")
		switch s.Type {
		case "counter", "gauge", "histogram":
		default:
			t.Fatalf("testdata/metrics.txt:%d: unknown type %q", n, s.Type)
		}
		switch {
		case s.Presence == "always" && s.Why == "":
		case (s.Presence == "conditional" || s.Presence == "prometheus") && s.Why != "":
		default:
			t.Fatalf("testdata/metrics.txt:%d: presence %q: want always, or conditional:/prometheus: with a reason", n, fields[3])
		}
		if _, dup := specs[s.Name]; dup {
			t.Fatalf("testdata/metrics.txt:%d: %s listed twice", n, s.Name)
		}
		specs[s.Name] = s
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read contract: %v", err)
	}
	return specs
}

// eventually polls cond every interval until it reports true or the timeout
// passes; then the test fails with the last status cond gave. It waits for a
// condition, never for a fixed time.
func eventually(t *testing.T, timeout, interval time.Duration, cond func() (ok bool, status string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		ok, status := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %s", timeout, status)
		}
		<-tick.C
	}
}
