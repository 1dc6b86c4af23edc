package access

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/caller"
	"github.com/entrabroker/broker/internal/config"
)

const la = "https://api.loganalytics.io/.default"

var (
	reports = caller.Caller{Known: true, Network: "unix", UID: 1500, GID: 1500, PID: 42, User: "svc-reports", Group: "svc-reports", Exe: "/usr/local/bin/report"}
	backup  = caller.Caller{Known: true, Network: "tcp", UID: 1600, GID: -1, PID: -1, User: "alice"}
	nobody  = caller.Caller{Network: "tcp", UID: -1, GID: -1, PID: -1}
)

func testRules() []config.CallerRule {
	return []config.CallerRule{
		{Name: "reports", Match: config.CallerMatch{UID: 1500, GID: -1}, Identities: []string{"default"}, Scopes: []string{la},
			Routes: []string{"loganalytics"}, PerSecond: 1, Burst: 2, Source: "broker.yaml:3"},
		{Name: "backup", Match: config.CallerMatch{UID: 1600, GID: -1, Executable: "/usr/bin/backup"}, Identities: []string{"*"},
			Scopes: []string{"*"}, Routes: []string{}, Source: "broker.yaml:9"},
		{Name: "ops", Match: config.CallerMatch{UID: -1, GID: 2000}, Identities: []string{"*"}, Scopes: []string{"*"},
			Routes: []string{"*"}, Source: "broker.yaml:13"},
	}
}

func TestPolicyCheck(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	p := NewPolicy(testRules(), func() time.Time { return now })
	backupExe := backup
	backupExe.Exe = "/usr/bin/backup"
	opsMember := caller.Caller{Known: true, UID: 1700, GID: 2000, PID: 7}
	tests := []struct {
		name     string
		c        caller.Caller
		e        Exit
		rule     string
		status   int
		describe string // in the description
	}{
		{"granted", reports, Exit{Route: "token", Identity: "default", Scope: la}, "reports", 0, ""},
		{"granted proxy route", reports, Exit{Route: "proxy/loganalytics", Identity: "default", Scope: la}, "reports", 0, ""},
		{"other scope", reports, Exit{Route: "token", Identity: "default", Scope: "https://vault.azure.net/.default"}, "reports", 403, "does not grant scope https://vault.azure.net/.default"},
		{"other identity", reports, Exit{Route: "msi", Identity: "billing", Scope: la}, "reports", 403, `does not grant identity "billing"`},
		{"other route", reports, Exit{Route: "proxy/arm", Identity: "default", Scope: la}, "reports", 403, `does not grant proxy route "arm"`},
		{"executable matches", backupExe, Exit{Route: "token", Identity: "x", Scope: la}, "backup", 0, ""},
		{"no routes granted", backupExe, Exit{Route: "proxy/loganalytics", Identity: "x", Scope: la}, "backup", 403, `does not grant proxy route "loganalytics"`},
		{"executable unknown fails closed", backup, Exit{Route: "token", Identity: "default", Scope: la}, "", 403, "uid 1600 (alice)"},
		{"group", opsMember, Exit{Route: "proxy/arm", Identity: "default", Scope: la}, "ops", 0, ""},
		{"unknown caller", nobody, Exit{Route: "token", Identity: "default", Scope: la}, "", 403, "a caller the kernel did not name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, e := p.Check(tt.c, tt.e)
			name := ""
			if r != nil {
				name = r.Name
			}
			if name != tt.rule {
				t.Errorf("Check(%v) rule = %q, want %q", tt.c, name, tt.rule)
			}
			if tt.status == 0 {
				if e != nil {
					t.Errorf("Check(%v, %v) = %v, want granted", tt.c, tt.e, e)
				}
				return
			}
			if e == nil || e.Status != tt.status || e.Code != "caller_not_allowed" || !strings.Contains(e.Description, tt.describe) || e.Hint == "" {
				t.Fatalf("Check(%v, %v) = %+v, want %d caller_not_allowed saying %q", tt.c, tt.e, e, tt.status, tt.describe)
			}
			if e.Caller != tt.c {
				t.Errorf("refusal's caller = %v, want %v", e.Caller, tt.c)
			}
		})
	}
	// The refusal of an unmatched caller shows a rule that would match it.
	_, e := p.Check(caller.Caller{Known: true, UID: 1001, GID: 1001, PID: 9, User: "bob", Exe: "/usr/bin/curl"}, Exit{Route: "proxy/loganalytics", Identity: "default", Scope: la})
	want := "{name: <name>, match: {user: bob}, identities: [default], scopes: [" + la + "], routes: [loganalytics]}"
	if e == nil || !strings.Contains(e.Hint, want) || !strings.Contains(e.Description, "uid 1001 (bob), gid 1001, pid 9, executable /usr/bin/curl") {
		t.Errorf("refusal of bob = %+v, want the hint to hold %s", e, want)
	}
	b, _ := json.Marshal(e.Caller)
	if !strings.Contains(string(b), `"uid":1001`) || !strings.Contains(string(b), `"exe":"/usr/bin/curl"`) {
		t.Errorf("caller JSON = %s, want uid and exe", b)
	}
}

// TestPolicyRate checks the per-caller rate on an injected clock: a burst,
// then 429 with Retry-After until the bucket refills; other uids have
// their own bucket.
func TestPolicyRate(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	p := NewPolicy(testRules(), func() time.Time { return now })
	e := Exit{Route: "token", Identity: "default", Scope: la}
	for i := 0; i < 2; i++ {
		if _, err := p.Check(reports, e); err != nil {
			t.Fatalf("request %d of the burst = %v, want granted", i+1, err)
		}
	}
	_, err := p.Check(reports, e)
	if err == nil || err.Status != http.StatusTooManyRequests || err.Code != "caller_rate_limited" || err.RetryAfter != time.Second {
		t.Fatalf("third request = %+v, want 429 caller_rate_limited with Retry-After 1s", err)
	}
	// A refused request takes nothing from the bucket.
	now = now.Add(time.Second)
	if _, err := p.Check(reports, e); err != nil {
		t.Errorf("after 1 s = %v, want granted", err)
	}
	if _, err := p.Check(reports, e); err == nil {
		t.Errorf("second request after 1 s granted, want 429")
	}
	other := reports
	other.UID = 1501
	p2 := NewPolicy([]config.CallerRule{{Name: "all", Match: config.CallerMatch{UID: -1, GID: 1500}, Identities: []string{"*"}, Scopes: []string{"*"}, PerSecond: 1, Burst: 1}}, func() time.Time { return now })
	if _, err := p2.Check(reports, e); err != nil {
		t.Errorf("uid 1500 = %v, want granted", err)
	}
	if _, err := p2.Check(other, e); err != nil {
		t.Errorf("uid 1501 = %v, want granted: each uid has its own bucket", err)
	}
}

func TestNilPolicyGrantsEverything(t *testing.T) {
	t.Parallel()
	p := NewPolicy(nil, nil)
	if r, e := p.Check(nobody, Exit{Route: "proxy/arm", Identity: "x", Scope: la}); r != nil || e != nil {
		t.Errorf("nil policy Check = %v, %v; want granted", r, e)
	}
	if NewPolicy([]config.CallerRule{}, nil) == nil {
		t.Errorf("NewPolicy(empty) = nil, want a policy that serves no one")
	}
	if _, e := NewPolicy([]config.CallerRule{}, nil).Check(reports, Exit{Route: "token"}); e == nil {
		t.Errorf("an empty policy granted a caller")
	}
}
