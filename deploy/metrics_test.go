package deploy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

// metricsFileEnv names the environment variable that points to a saved
// /metrics scrape of a running broker; when set, every contract metric must
// appear in it.
const metricsFileEnv = "BROKER_METRICS_FILE"

// selector is one metric name in a PromQL expression with the label names its
// matchers use.
type selector struct {
	Name   string
	Labels []string
}

// promqlKeywords are identifiers that are neither metric nor function names.
var promqlKeywords = []string{"and", "or", "unless", "bool", "offset", "inf", "nan", "start", "end"}

// aggregations are PromQL's aggregation operators, which may be followed by a
// grouping clause before their parenthesised argument.
var aggregations = []string{"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}

// groupingKeywords take a parenthesised list of label names.
var groupingKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right"}

// grafanaLabelValues matches Grafana's label_values(metric, label) variable query.
var grafanaLabelValues = regexp.MustCompile(`^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$`)

// metricSelectors returns the metric names a PromQL expression (or a Grafana
// label_values query) reads, with their matchers' label names. It is a small
// tokenizer, not a full parser: any identifier that is not a function, a
// keyword or a label list is taken for a metric name, so a typo shows up as an
// unknown metric rather than passing unseen.
func metricSelectors(expr string) ([]selector, error) {
	if m := grafanaLabelValues.FindStringSubmatch(expr); m != nil {
		expr = m[1]
	} else if strings.HasPrefix(strings.TrimSpace(expr), "label_values(") {
		return nil, nil // label_values(label): no metric
	}
	var out []selector
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	skipSpace := func(i int) int {
		for i < len(expr) && strings.IndexByte(" \t\r\n", expr[i]) >= 0 {
			i++
		}
		return i
	}
	// closing returns the index just after the bracket that closes expr[i].
	closing := func(i int, open, close byte) (int, error) {
		depth := 0
		for j := i; j < len(expr); j++ {
			switch c := expr[j]; {
			case c == '"' || c == '\'' || c == '`':
				k := j + 1
				for k < len(expr) && expr[k] != c {
					if expr[k] == '\\' && c != '`' {
						k++
					}
					k++
				}
				j = k
			case c == open:
				depth++
			case c == close:
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, fmt.Errorf("unbalanced %c in %q", open, expr)
	}
	matcherLabel := regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`" + `)`)
	depth := 0 // of parentheses
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			end := strings.IndexByte(expr[i+1:], c)
			for end >= 0 && c != '`' && expr[i+end] == '\\' {
				next := strings.IndexByte(expr[i+end+2:], c)
				if next < 0 {
					end = -1
					break
				}
				end += next + 1
			}
			if end < 0 {
				return nil, fmt.Errorf("unterminated string in %q", expr)
			}
			i += end + 2
		case c == '$':
			i++
			if i < len(expr) && expr[i] == '{' {
				j := strings.IndexByte(expr[i:], '}')
				if j < 0 {
					return nil, fmt.Errorf("unterminated ${ in %q", expr)
				}
				i += j + 1
			}
			for i < len(expr) && isIdent(expr[i]) {
				i++
			}
		case c == '[':
			j, err := closing(i, '[', ']')
			if err != nil {
				return nil, err
			}
			i = j
		case c == '{':
			// A matcher without a metric name in front of it: {__name__=…}.
			return nil, fmt.Errorf("selector without a metric name in %q", expr)
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			word := expr[i:j]
			next := skipSpace(j)
			switch {
			case slices.Contains(groupingKeywords, word):
				if next < len(expr) && expr[next] == '(' {
					end, err := closing(next, '(', ')')
					if err != nil {
						return nil, err
					}
					j = end
				}
			case slices.Contains(aggregations, word), next < len(expr) && expr[next] == '(':
				// An aggregation or a function call.
			case slices.Contains(promqlKeywords, strings.ToLower(word)):
			default:
				s := selector{Name: word}
				if next < len(expr) && expr[next] == '{' {
					end, err := closing(next, '{', '}')
					if err != nil {
						return nil, err
					}
					for _, m := range matcherLabel.FindAllStringSubmatch(expr[next+1:end-1], -1) {
						s.Labels = append(s.Labels, m[1])
					}
					j = end
				}
				out = append(out, s)
			}
			i = j
		case c == '(':
			depth++
			i++
		case c == ')':
			if depth--; depth < 0 {
				return nil, fmt.Errorf("unbalanced ) in %q", expr)
			}
			i++
		default:
			i++
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("unbalanced ( in %q", expr)
	}
	return out, nil
}

func TestMetricSelectors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr string
		want []selector
	}{
		{`up{job="broker"} == 0`, []selector{{"up", []string{"job"}}}},
		{
			`sum by (route) (rate(broker_proxy_requests_total{job="$job", code=~"5.."}[$__rate_interval])) / sum without (code) (rate(broker_proxy_requests_total[5m]))`,
			[]selector{{"broker_proxy_requests_total", []string{"job", "code"}}, {"broker_proxy_requests_total", nil}},
		},
		{
			`histogram_quantile(0.99, sum by (le) (rate(broker_token_fetch_duration_seconds_bucket{instance=~"a|b"}[1m])))`,
			[]selector{{"broker_token_fetch_duration_seconds_bucket", []string{"instance"}}},
		},
		{
			"max by (job, instance, scope) (broker_token_expiry_timestamp_seconds) - time() < 14 * 86400 and on (scope) x > 1e3 offset 5m",
			[]selector{{"broker_token_expiry_timestamp_seconds", nil}, {"x", nil}},
		},
		{`label_values(broker_build_info{job="$job"}, instance)`, []selector{{"broker_build_info", []string{"job"}}}},
		{`label_values(job)`, nil},
		{`count by (version) (broker_build_info{version!="a}b"})`, []selector{{"broker_build_info", []string{"version"}}}},
	}
	for _, tc := range tests {
		got, err := metricSelectors(tc.expr)
		if err != nil {
			t.Errorf("metricSelectors(%q) error: %v", tc.expr, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("metricSelectors(%q) (-want +got):\n%s", tc.expr, diff)
		}
	}
	for _, bad := range []string{`sum(rate(x[5m])`, `x)`, `x{a="b"`, `{__name__="x"}`, `x{a="b}`} {
		if got, err := metricSelectors(bad); err == nil {
			t.Errorf("metricSelectors(%q) = %v, want an error", bad, got)
		}
	}
}

// expression is one PromQL expression found in an artifact.
type expression struct {
	Where, Expr string
}

// dashboardExpressions returns every panel target expression of the
// dashboard JSON (nested rows included) and every query variable's query.
func dashboardExpressions(t *testing.T, path string) []expression {
	t.Helper()
	var dash struct {
		Panels     []any `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"` // a string, or {"query": string}
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal([]byte(readFile(t, path)), &dash); err != nil {
		t.Fatalf("dashboard %s: %v", path, err)
	}
	var out []expression
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(v)) {
				if s, ok := v[k].(string); ok && k == "expr" {
					out = append(out, expression{Where: where, Expr: s})
					continue
				}
				walk(where+"."+k, v[k])
			}
		case []any:
			for i, c := range v {
				walk(fmt.Sprintf("%s[%d]", where, i), c)
			}
		}
	}
	walk("panels", dash.Panels)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := v.Query
		if m, ok := q.(map[string]any); ok {
			q = m["query"]
		}
		s, ok := q.(string)
		if !ok {
			t.Errorf("template variable %s: query %v is not a string", v.Name, v.Query)
			continue
		}
		out = append(out, expression{Where: "variable " + v.Name, Expr: s})
	}
	return out
}

// ruleExpressions returns every rule expression of a Prometheus rules file.
func ruleExpressions(t *testing.T, path string) []expression {
	t.Helper()
	var rf struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, path)), &rf); err != nil {
		t.Fatalf("rules %s: %v", path, err)
	}
	var out []expression
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			out = append(out, expression{Where: fmt.Sprintf("%s: %s%s", filepath.Base(path), r.Alert, r.Record), Expr: r.Expr})
		}
	}
	return out
}

// contractName maps a series name to its metric in the contract: a
// histogram's _bucket, _sum and _count series belong to the histogram.
func contractName(name string, contract map[string]metricSpec) (metricSpec, bool) {
	if s, ok := contract[name]; ok {
		return s, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if s, ok := contract[base]; ok && s.Type == "histogram" {
				return s, true
			}
		}
	}
	return metricSpec{}, false
}

// checkExpressions checks that every metric an expression reads is in the
// contract and that its matchers use only the metric's labels. It returns
// the contract names used.
func checkExpressions(t *testing.T, exprs []expression, contract map[string]metricSpec) map[string]bool {
	t.Helper()
	used := map[string]bool{}
	if len(exprs) == 0 {
		t.Fatal("no expressions found")
	}
	for _, e := range exprs {
		sels, err := metricSelectors(e.Expr)
		if err != nil {
			t.Errorf("%s: %v", e.Where, err)
			continue
		}
		for _, s := range sels {
			spec, ok := contractName(s.Name, contract)
			if !ok {
				t.Errorf("%s: metric %s is not in testdata/metrics.txt (expr %q)", e.Where, s.Name, e.Expr)
				continue
			}
			used[spec.Name] = true
			allowed := append([]string{"job", "instance"}, spec.Labels...)
			if strings.HasSuffix(s.Name, "_bucket") {
				allowed = append(allowed, "le")
			}
			for _, l := range s.Labels {
				if !slices.Contains(allowed, l) {
					t.Errorf("%s: %s has no label %s (it has %q)", e.Where, s.Name, l, spec.Labels)
				}
			}
		}
	}
	return used
}

func TestDashboardMetricsInContract(t *testing.T) {
	t.Parallel()
	contract := loadContract(t)
	used := checkExpressions(t, dashboardExpressions(t, filepath.Join("grafana", "broker.json")), contract)
	// The dashboard shows every broker metric.
	for name := range contract {
		if strings.HasPrefix(name, "broker_") && !used[name] {
			t.Errorf("the dashboard does not show %s", name)
		}
	}
}

func TestAlertRuleMetricsInContract(t *testing.T) {
	t.Parallel()
	contract := loadContract(t)
	used := checkExpressions(t, ruleExpressions(t, filepath.Join("prometheus", "rules.yml")), contract)
	for _, name := range []string{"up", "broker_token_refresh_failures_consecutive", "broker_token_expiry_timestamp_seconds", "broker_credential_expiry_timestamp_seconds", "broker_proxy_requests_total"} {
		if !used[name] {
			t.Errorf("no alert rule reads %s", name)
		}
	}
}

func TestDashboardShape(t *testing.T) {
	t.Parallel()
	var dash struct {
		UID        string `json:"uid"`
		Title      string `json:"title"`
		Templating struct {
			List []struct {
				Name string `json:"name"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID         int    `json:"id"`
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			GridPos struct{ H, W, X, Y int } `json:"gridPos"`
			Targets []struct {
				Expr       string `json:"expr"`
				Datasource *struct {
					UID string `json:"uid"`
				} `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join("grafana", "broker.json"))), &dash); err != nil {
		t.Fatal(err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Errorf("dashboard uid %q title %q, want both", dash.UID, dash.Title)
	}
	var vars []string
	for _, v := range dash.Templating.List {
		vars = append(vars, v.Name)
	}
	if diff := cmp.Diff([]string{"datasource", "job", "instance"}, vars); diff != "" {
		t.Errorf("template variables (-want +got):\n%s", diff)
	}
	ids := map[int]string{}
	for _, p := range dash.Panels {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q gridPos %+v is off the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no targets", p.Title)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, `job="$job"`) || !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q expr %q does not filter on $job and $instance", p.Title, tg.Expr)
			}
		}
	}
}

// checkScrape checks a /metrics scrape in the Prometheus text format against
// the contract: every metric with presence "always" appears with its type and
// exactly its labels; a "conditional" one, when it appears, too; and every
// broker_ metric in the scrape is in the contract (so it is documented).
func checkScrape(t reporter, scrape io.Reader, contract map[string]metricSpec) {
	t.Helper()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(scrape)
	if err != nil {
		t.Errorf("parse scrape: %v", err)
		return
	}
	for _, name := range slices.Sorted(maps.Keys(families)) {
		if _, ok := contract[name]; !ok && strings.HasPrefix(name, "broker_") {
			t.Errorf("%s is exported but not in testdata/metrics.txt", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(contract)) {
		spec := contract[name]
		if spec.Presence == "prometheus" {
			if _, ok := families[name]; ok {
				t.Errorf("%s is in the scrape, but Prometheus writes it", name)
			}
			continue
		}
		mf, ok := families[name]
		if !ok {
			if spec.Presence == "always" {
				t.Errorf("%s is missing from the scrape", name)
			}
			continue
		}
		if got := strings.ToLower(mf.GetType().String()); got != spec.Type {
			t.Errorf("%s has type %s, want %s", name, got, spec.Type)
		}
		for _, m := range mf.GetMetric() {
			got := labelNames(m)
			want := slices.Sorted(slices.Values(spec.Labels))
			if !slices.Equal(got, want) {
				t.Errorf("%s has labels %q, want %q", name, got, want)
				break
			}
		}
	}
}

// reporter is the part of testing.TB that checkScrape uses.
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
}

// recorder is a reporter that keeps the errors, for testing a checker.
type recorder struct{ errors []string }

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

// labelNames returns a sample's label names, sorted.
func labelNames(m *dto.Metric) []string {
	var out []string
	for _, lp := range m.GetLabel() {
		out = append(out, lp.GetName())
	}
	slices.Sort(out)
	return out
}

func TestLiveScrapeHasContractMetrics(t *testing.T) {
	t.Parallel()
	path := os.Getenv(metricsFileEnv)
	if path == "" {
		t.Skipf("%s is not set; the end-to-end test checks a live scrape itself", metricsFileEnv)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", metricsFileEnv, err)
	}
	defer f.Close()
	checkScrape(t, f, loadContract(t))
}

func TestCheckScrape(t *testing.T) {
	t.Parallel()
	contract := map[string]metricSpec{
		"a_total": {Name: "a_total", Type: "counter", Labels: []string{"x"}, Presence: "always"},
		"b":       {Name: "b", Type: "histogram", Presence: "always"},
		"c":       {Name: "c", Type: "gauge", Labels: []string{"id"}, Presence: "conditional"},
		"up":      {Name: "up", Type: "gauge", Presence: "prometheus"},
	}
	good := "# TYPE a_total counter\na_total{x=\"1\"} 3\n# TYPE b histogram\nb_bucket{le=\"+Inf\"} 1\nb_sum 1\nb_count 1\n"
	rec := &recorder{}
	checkScrape(rec, strings.NewReader(good), contract)
	if len(rec.errors) > 0 {
		t.Errorf("checkScrape(good) reported %q, want nothing", rec.errors)
	}
	bad := "# TYPE a_total gauge\na_total{y=\"1\"} 3\n# TYPE c gauge\nc 1\n# TYPE up gauge\nup 1\n# TYPE broker_new_total counter\nbroker_new_total 1\n"
	rec = &recorder{}
	checkScrape(rec, strings.NewReader(bad), contract)
	want := []string{
		"broker_new_total is exported but not in testdata/metrics.txt",
		"a_total has type gauge, want counter",
		`a_total has labels ["y"], want ["x"]`,
		"b is missing from the scrape",
		`c has labels [], want ["id"]`,
		"up is in the scrape, but Prometheus writes it",
	}
	if diff := cmp.Diff(want, rec.errors); diff != "" {
		t.Errorf("checkScrape(bad) errors (-want +got):\n%s", diff)
	}
}
