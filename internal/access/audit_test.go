package access

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/entrabroker/broker/internal/caller"
)

// TestAuditor checks one grant line per token per user and route (the rest
// counted), a line for every denial, the file's JSON lines with the fields
// of the contract, and that no token reaches the file or the log.
func TestAuditor(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	core, logs := observer.New(zapcore.InfoLevel)
	reg := prometheus.NewRegistry()
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	a, err := NewAuditor(AuditOptions{Logger: zap.New(core), File: path, Registerer: reg, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := caller.NewContext(context.Background(), reports)
	tok1, tok2 := "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.first.sig", "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.second.sig"
	e := Exit{Route: "token", Identity: "default", Scope: la}
	exp := now.Add(time.Hour)
	for i := 0; i < 30; i++ { // a caller polling: one line
		a.Grant(ctx, "reports", e, tok1, exp)
	}
	a.Grant(ctx, "reports", Exit{Route: "proxy/loganalytics", Identity: "default", Scope: la}, tok1, exp) // another route: a line
	a.Grant(ctx, "reports", e, tok2, exp)                                                                 // a new token: a line
	a.Deny(caller.NewContext(context.Background(), backup), "", e, "caller_not_allowed", false)
	a.Deny(caller.NewContext(context.Background(), backup), "", e, "caller_not_allowed", false)
	a.Deny(ctx, "reports", e, "caller_rate_limited", true)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []Line
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("audit line %q is not JSON: %v", sc.Text(), err)
		}
		lines = append(lines, l)
		if strings.Contains(sc.Text(), "sig") || strings.Contains(sc.Text(), "eyJ") {
			t.Errorf("audit line holds the token: %s", sc.Text())
		}
		for _, field := range []string{`"time":`, `"decision":`, `"caller":{`, `"uid":`, `"pid":`, `"route":`} {
			if !strings.Contains(sc.Text(), field) {
				t.Errorf("audit line %s lacks %s", sc.Text(), field)
			}
		}
	}
	if len(lines) != 6 {
		t.Fatalf("audit file has %d lines, want 6 (3 grants, 3 denials): %+v", len(lines), lines)
	}
	first := lines[0]
	want := Line{Time: now, Decision: Granted, Caller: LineCaller{Known: true, UID: 1500, User: "svc-reports", PID: 42, Exe: "/usr/local/bin/report", Rule: "reports"},
		Route: "token", Identity: "default", Scope: la, TokenSHA256: Fingerprint(tok1), ExpiresOn: exp.Unix()}
	if !first.Time.Equal(want.Time) || first.Caller != want.Caller || first.TokenSHA256 != want.TokenSHA256 || first.ExpiresOn != want.ExpiresOn || first.Scope != la {
		t.Errorf("first line = %+v, want %+v", first, want)
	}
	if len(first.TokenSHA256) != 12 || lines[2].TokenSHA256 == first.TokenSHA256 {
		t.Errorf("fingerprints %q, %q: want 12 hex characters, different per token", first.TokenSHA256, lines[2].TokenSHA256)
	}
	if lines[3].Decision != Denied || lines[3].Reason != "caller_not_allowed" || lines[3].Caller.UID != 1600 || lines[5].Reason != "caller_rate_limited" {
		t.Errorf("denials = %+v, want caller_not_allowed twice then caller_rate_limited", lines[3:])
	}
	if n := logs.FilterMessage("audit").Len(); n != 6 {
		t.Errorf("log has %d audit lines, want 6", n)
	}
	for _, entry := range logs.All() {
		for _, f := range entry.Context {
			if strings.Contains(f.String, "sig") {
				t.Errorf("log field %s holds the token", f.Key)
			}
		}
	}
	if got := testutil.ToFloat64(a.suppressed); got != 29 {
		t.Errorf("suppressed = %v, want 29", got)
	}
	for result, want := range map[string]float64{"granted": 32, "denied": 2, "rate_limited": 1} {
		if got := testutil.ToFloat64(a.requests.WithLabelValues(result)); got != want {
			t.Errorf("broker_caller_requests_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	// After Close, lines go to the log only.
	a.Deny(ctx, "", e, "browser_request", false)
}

func TestAuditorFileError(t *testing.T) {
	t.Parallel()
	_, err := NewAuditor(AuditOptions{File: filepath.Join(t.TempDir(), "no", "such", "dir", "audit.jsonl")})
	if err == nil || !strings.HasPrefix(err.Error(), "BROKER_AUDIT_FILE: ") {
		t.Errorf("NewAuditor(missing dir) = %v, want an error naming BROKER_AUDIT_FILE", err)
	}
	var a *Auditor
	a.Grant(context.Background(), "", Exit{}, "t", time.Time{}) // a nil auditor writes nothing
	if err := a.Close(); err != nil {
		t.Errorf("nil Close = %v", err)
	}
}
