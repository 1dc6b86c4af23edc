package loganalytics

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestEvaluate(t *testing.T) {
	t.Parallel()
	now := time.Date(2024, 5, 1, 13, 0, 0, 0, time.UTC)
	catalog := cannedTables()
	type want struct {
		cols   []column
		rows   [][]any
		render string
	}
	tests := []struct {
		query string
		want  want
		// err: "" none, "syntax", or the SEM0100 message.
		err string
	}{
		{query: "print 1", want: want{cols: []column{{"print_0", "long"}}, rows: [][]any{{int64(1)}}}},
		{query: `print x=1, y="a"`, want: want{cols: []column{{"x", "long"}, {"y", "string"}}, rows: [][]any{{int64(1), "a"}}}},
		{query: `print -2, 1.5, -1e3, true, false, 'q', @"c:\x", "a\"b"`, want: want{
			cols: []column{{"print_0", "long"}, {"print_1", "real"}, {"print_2", "real"}, {"print_3", "bool"}, {"print_4", "bool"}, {"print_5", "string"}, {"print_6", "string"}, {"print_7", "string"}},
			rows: [][]any{{int64(-2), 1.5, -1000.0, true, false, "q", `c:\x`, `a"b`}}}},
		{query: "print d=datetime(2024-05-01), g=guid(5B3F2C1D-0000-4000-8000-000000000001), j=dynamic({\"a\": [1, 2]}), i=int(7), l=long(8), r=real(0.5), b=bool(true)", want: want{
			cols: []column{{"d", "datetime"}, {"g", "guid"}, {"j", "dynamic"}, {"i", "int"}, {"l", "long"}, {"r", "real"}, {"b", "bool"}},
			rows: [][]any{{"2024-05-01T00:00:00Z", "5b3f2c1d-0000-4000-8000-000000000001", `{"a":[1,2]}`, int32(7), int64(8), 0.5, true}}}},
		{query: "print t=1d, u=90m, v=100ms, w=timespan(2h), n=datetime(null)", want: want{
			cols: []column{{"t", "timespan"}, {"u", "timespan"}, {"v", "timespan"}, {"w", "timespan"}, {"n", "datetime"}},
			rows: [][]any{{"1.00:00:00", "01:30:00", "00:00:00.1000000", "02:00:00", nil}}}},
		{query: "print now(), ago(1h)", want: want{
			cols: []column{{"print_0", "datetime"}, {"print_1", "datetime"}},
			rows: [][]any{{"2024-05-01T13:00:00Z", "2024-05-01T12:00:00Z"}}}},
		{query: "Heartbeat | count", want: want{cols: []column{{"Count", "long"}}, rows: [][]any{{int64(12)}}}},
		{query: "Heartbeat | take 0", want: want{cols: catalog["Heartbeat"].Columns, rows: [][]any{}}},
		{query: "Heartbeat | take 100 | count", want: want{cols: []column{{"Count", "long"}}, rows: [][]any{{int64(12)}}}},
		{query: "Heartbeat | limit 2 | project Computer, OSType", want: want{
			cols: []column{{"Computer", "string"}, {"OSType", "string"}},
			rows: [][]any{{"vm-web-01", "Linux"}, {"vm-web-02", "Linux"}}}},
		{query: "Heartbeat\n| project C = Computer // rename\n| take 1;", want: want{
			cols: []column{{"C", "string"}}, rows: [][]any{{"vm-web-01"}}}},
		{query: "AzureActivity | take 1 | project CorrelationId, Properties_d", want: want{
			cols: []column{{"CorrelationId", "guid"}, {"Properties_d", "dynamic"}},
			rows: [][]any{{"5b3f2c1d-0000-4000-8000-000000000001", `{"eventCategory":"Administrative","entity":"/subscriptions/00000000-0000-4000-8000-0000000005b5/resourceGroups/demo"}`}}}},
		{query: "Perf | count | project Count | take 1", want: want{cols: []column{{"Count", "long"}}, rows: [][]any{{int64(12)}}}},
		{query: "Usage | count | render columnchart", want: want{cols: []column{{"Count", "long"}}, rows: [][]any{{int64(6)}}, render: "columnchart"}},

		{query: "Nope", err: "Failed to resolve table or column expression named 'Nope'"},
		{query: "Nope | take 1", err: "'take' operator: Failed to resolve table or column expression named 'Nope'"},
		{query: "Nope | summarize count() by x", err: "'summarize' operator: Failed to resolve table or column expression named 'Nope'"},
		{query: "heartbeat | count", err: "'count' operator: Failed to resolve table or column expression named 'heartbeat'"},
		{query: "Heartbeat | project Missing", err: "'project' operator: Failed to resolve scalar expression named 'Missing'"},
		{query: "Heartbeat | count | project Computer", err: "'project' operator: Failed to resolve scalar expression named 'Computer'"},

		{query: "", err: "syntax"},
		{query: "print", err: "syntax"},
		{query: "print x=", err: "syntax"},
		{query: "print 1 +", err: "syntax"},
		{query: "print 1 + 1", err: "syntax"},
		{query: `print "unterminated`, err: "syntax"},
		{query: `print "bad \q escape"`, err: "syntax"},
		{query: "print 5parsecs", err: "syntax"},
		{query: "print datetime(yesterday)", err: "syntax"},
		{query: "print guid(123)", err: "syntax"},
		{query: "print dynamic({bad)", err: "syntax"},
		{query: "print int(99999999999)", err: "syntax"},
		{query: "print now(1)", err: "syntax"},
		{query: "print ago(x)", err: "syntax"},
		{query: "Heartbeat | take", err: "syntax"},
		{query: "Heartbeat | take -1", err: "syntax"},
		{query: "Heartbeat | take 1.5", err: "syntax"},
		{query: "Heartbeat | where Computer == 'x'", err: "syntax"},
		{query: "Heartbeat | summarize count()", err: "syntax"},
		{query: "Heartbeat | project", err: "syntax"},
		{query: "Heartbeat | project a,", err: "syntax"},
		{query: "Heartbeat | render", err: "syntax"},
		{query: "Heartbeat | render table | take 1", err: "syntax"},
		{query: "Heartbeat Heartbeat", err: "syntax"},
		{query: "Heartbeat; print 1", err: "syntax"},
		{query: "take 1", err: "syntax"},
		{query: "Heartbeat | ", err: "syntax"},
		{query: "Heartbeat ~", err: "syntax"},
		{query: "print \xff", err: "syntax"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			t.Parallel()
			res, err := evaluate(tt.query, catalog, now)
			if tt.err != "" {
				var qe *queryError
				if !errors.As(err, &qe) {
					t.Fatalf("evaluate(%q) error = %v, want a query error", tt.query, err)
				}
				if tt.err == "syntax" {
					if !qe.syntax {
						t.Errorf("evaluate(%q) = semantic error %q, want a syntax error", tt.query, qe.message)
					}
					return
				}
				if qe.syntax || qe.message != tt.err {
					t.Errorf("evaluate(%q) error = %q (syntax %v), want semantic %q", tt.query, qe.message, qe.syntax, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("evaluate(%q) error = %v", tt.query, err)
			}
			got := want{cols: res.table.Columns, rows: res.table.Rows, render: res.render}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("evaluate(%q) mismatch (-want +got):\n%s", tt.query, diff)
			}
			if res.table.Name != "PrimaryResult" {
				t.Errorf("evaluate(%q) table name = %q, want PrimaryResult", tt.query, res.table.Name)
			}
		})
	}
}

// TestSyntaxErrorPosition checks line, position and token of SYN0002.
func TestSyntaxErrorPosition(t *testing.T) {
	t.Parallel()
	tests := []struct {
		query     string
		line, pos int
		token     string
	}{
		{"Heartbeat | take", 1, 16, "<EOF>"},
		{"Heartbeat\n| whre 1", 2, 2, "whre"},
		{"print 1 1", 1, 8, "1"},
	}
	for _, tt := range tests {
		_, err := evaluate(tt.query, cannedTables(), time.Time{})
		var qe *queryError
		if !errors.As(err, &qe) || !qe.syntax {
			t.Fatalf("evaluate(%q) error = %v, want a syntax error", tt.query, err)
		}
		if qe.line != tt.line || qe.pos != tt.pos || qe.token != tt.token {
			t.Errorf("evaluate(%q) at line %d pos %d token %q, want %d %d %q", tt.query, qe.line, qe.pos, qe.token, tt.line, tt.pos, tt.token)
		}
	}
}

// TestCannedTablesShape checks every row has one value per column, of the
// column's wire type.
func TestCannedTablesShape(t *testing.T) {
	t.Parallel()
	for name, tab := range cannedTables() {
		if tab.Name != name || len(tab.Rows) == 0 {
			t.Errorf("table %q: name %q, %d rows", name, tab.Name, len(tab.Rows))
		}
		for i, row := range tab.Rows {
			if len(row) != len(tab.Columns) {
				t.Fatalf("%s row %d has %d values, want %d", name, i, len(row), len(tab.Columns))
			}
			for j, v := range row {
				ok := false
				switch tab.Columns[j].Type {
				case typeString, typeDynamic, typeTimespan:
					_, ok = v.(string)
				case typeGUID:
					s, isStr := v.(string)
					ok = isStr && isGUID(s)
				case typeDatetime:
					s, isStr := v.(string)
					_, err := time.Parse(time.RFC3339Nano, s)
					ok = isStr && err == nil
				case typeBool:
					_, ok = v.(bool)
				case typeReal:
					_, ok = v.(float64)
				case typeInt:
					_, ok = v.(int32)
				case typeLong:
					_, ok = v.(int64)
				}
				if !ok {
					t.Errorf("%s row %d column %s = %#v, not a %s", name, i, tab.Columns[j].Name, v, tab.Columns[j].Type)
				}
			}
		}
	}
}

func TestFormatTimespan(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "00:00:00"},
		{90 * time.Second, "00:01:30"},
		{25 * time.Hour, "1.01:00:00"},
		{-time.Hour, "-01:00:00"},
		{1500 * time.Millisecond, "00:00:01.5000000"},
	}
	for _, tt := range tests {
		if got := formatTimespan(tt.d); got != tt.want {
			t.Errorf("formatTimespan(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// FuzzEvaluate checks the evaluator never panics and answers every input
// with a table or a query error.
func FuzzEvaluate(f *testing.F) {
	for _, s := range []string{"print 1", `print x="a"`, "Heartbeat | take 3 | project Computer", "Heartbeat | count",
		"print dynamic({\"a\":1})", "Nope | where x", "print datetime(2024-01-01)", "print 1d, -2h", "Perf | render barchart"} {
		f.Add(s)
	}
	catalog := cannedTables()
	f.Fuzz(func(t *testing.T, q string) {
		res, err := evaluate(q, catalog, time.Time{})
		if err != nil {
			var qe *queryError
			if !errors.As(err, &qe) {
				t.Fatalf("evaluate(%q) error %T %v, want *queryError", q, err, err)
			}
			return
		}
		for _, row := range res.table.Rows {
			if len(row) != len(res.table.Columns) {
				t.Fatalf("evaluate(%q) row width %d, want %d", q, len(row), len(res.table.Columns))
			}
		}
	})
}
