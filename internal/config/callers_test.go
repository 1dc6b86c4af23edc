package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeUsers is a user database: svc-reports (uid 1500, groups 1500 and 2000
// "ops"), alice (uid 1600, group 1600).
var fakeUsers = userDB{
	lookupUser: func(name string) (int, int, []int, bool) {
		switch name {
		case "svc-reports":
			return 1500, 1500, []int{1500, 2000}, true
		case "alice":
			return 1600, 1600, []int{1600}, true
		}
		return 0, 0, nil, false
	},
	lookupGroup: func(name string) (int, bool) {
		switch name {
		case "ops":
			return 2000, true
		case "staff":
			return 3000, true
		}
		return 0, false
	},
	groupsOf: func(uid int) ([]int, bool) {
		switch uid {
		case 1500:
			return []int{1500, 2000}, true
		case 1600:
			return []int{1600}, true
		}
		return nil, false
	},
}

const callersIdentity = `identities:
  - name: reports
    tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
    client_id: 11111111-aaaa-4222-bbbb-3333cccc4444
    client_secret_file: /dev/null
`

func TestParseCallers(t *testing.T) {
	t.Parallel()
	data := callersIdentity + `callers:
  - name: reports
    match: {user: svc-reports}
    identities: [reports]
    scopes: [https://api.loganalytics.io/.default]
    routes: [loganalytics]
    rate: {per_second: 10, burst: 20}
  - name: backup
    match: {uid: 1600, executable: /usr/local/bin/backup}
    identities: ["*"]
    scopes: ["*"]
  - name: staff
    match: {group: staff}
    identities: [default]
    scopes: [https://vault.azure.net]
    routes: ["*"]
    rate: {per_second: 2}
`
	f, err := parseFile("broker.yaml", []byte(data), fakeUsers)
	if err != nil {
		t.Fatalf("parseFile = %v", err)
	}
	want := []CallerRule{
		{Name: "reports", Match: CallerMatch{UID: 1500, GID: -1, User: "svc-reports"}, Identities: []string{"reports"},
			Scopes: []string{"https://api.loganalytics.io/.default"}, Routes: []string{"loganalytics"}, PerSecond: 10, Burst: 20, Source: "broker.yaml:7"},
		{Name: "backup", Match: CallerMatch{UID: 1600, GID: -1, Executable: "/usr/local/bin/backup"}, Identities: []string{"*"},
			Scopes: []string{"*"}, Routes: []string{}, Source: "broker.yaml:13"},
		{Name: "staff", Match: CallerMatch{UID: -1, GID: 3000, Group: "staff"}, Identities: []string{"default"},
			Scopes: []string{"https://vault.azure.net"}, Routes: []string{"*"}, PerSecond: 2, Burst: 2, Source: "broker.yaml:17"},
	}
	if diff := cmp.Diff(want, f.callers); diff != "" {
		t.Errorf("callers (-want +got):\n%s", diff)
	}

	// No callers: key is no policy; an empty one is a policy that serves no one.
	if f, _ := parseFile("broker.yaml", []byte(callersIdentity), fakeUsers); f.callers != nil {
		t.Errorf("callers without the key = %v, want nil", f.callers)
	}
	if f, err := parseFile("broker.yaml", []byte("callers: []\n"), fakeUsers); err != nil || f.callers == nil || len(f.callers) != 0 {
		t.Errorf("callers: [] = %#v, %v; want an empty, non-nil list and no error", f.callers, err)
	}
}

// TestParseCallersProblems pins the message of every mistake a callers:
// section can hold, each with its line.
func TestParseCallersProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, rules string
		want        []string
	}{
		{"unknown keys", `  - name: a
    match: {user: alice, pid: 4}
    identities: [default]
    scopes: ["*"]
    rates: {per_second: 1}
`, []string{
			`f.yaml:8: unknown key "pid" of a caller rule's match (known keys: uid, user, gid, group, executable)`,
			`f.yaml:11: unknown key "rates" of a caller rule (known keys: name, match, identities, scopes, routes, rate)`,
		}},
		{"unknown user and group", `  - name: a
    match: {user: mallory}
    identities: [default]
    scopes: ["*"]
  - name: b
    match: {group: wheel}
    identities: [default]
    scopes: ["*"]
`, []string{
			`f.yaml:8: caller rule "a": there is no user "mallory" on this host: create it, or match by uid`,
			`f.yaml:12: caller rule "b": there is no group "wheel" on this host: create it, or match by gid`,
		}},
		{"missing parts", `  - match: {}
  - name: Bad Name
    match: {uid: x}
    identities: [nobody]
    scopes: [vault, "*"]
    rate: {burst: 0}
`, []string{
			`f.yaml:7: caller rule 1: name is missing: give the rule a name such as reports (it labels audit lines)`,
			`f.yaml:7: caller rule 1: match names no field: give at least one of uid, user, gid, group, executable`,
			`f.yaml:7: caller rule 1: identities is missing: list what the rule grants, or ["*"] for everything`,
			`f.yaml:7: caller rule 1: scopes is missing: list what the rule grants, or ["*"] for everything`,
			`f.yaml:8: caller rule 2: name "Bad Name" may hold only lower-case letters, digits, '-', '_' and '.' (at most 63)`,
			`f.yaml:8: caller rule 2: rate.per_second is missing: say how many requests a second each caller may make`,
			`f.yaml:9: caller rule 2: uid "x" is not a number: write the numeric ID, or use user`,
			`f.yaml:10: caller rule 2: identities names "nobody", which is no identity of the broker (default, reports)`,
			`f.yaml:11: caller rule 2: scopes holds "*" and more: "*" alone grants everything`,
			`f.yaml:11: caller rule 2: scopes item "vault" is not a scope or resource URI: write items like https://api.loganalytics.io/.default`,
			`f.yaml:12: caller rule 2: rate.burst "0" must be a whole number from 1, such as 20`,
		}},
		{"overlaps", `  - name: by-user
    match: {user: svc-reports}
    identities: [default]
    scopes: ["*"]
  - name: by-group
    match: {group: ops}
    identities: [default]
    scopes: ["*"]
  - name: by-uid
    match: {uid: 1500, executable: /usr/bin/report}
    identities: [default]
    scopes: ["*"]
  - name: other-user
    match: {user: alice}
    identities: [default]
    scopes: ["*"]
  - name: alice-not-ops
    match: {group: ops, executable: /usr/bin/x}
    identities: [default]
    scopes: ["*"]
`, []string{
			`f.yaml:11: caller rule "by-group" overlaps rule "by-user" (f.yaml:7): a caller could match both; add a field (uid, user, executable) that tells them apart, or merge them`,
			`f.yaml:15: caller rule "by-uid" overlaps rule "by-user" (f.yaml:7): a caller could match both; add a field (uid, user, executable) that tells them apart, or merge them`,
			`f.yaml:15: caller rule "by-uid" overlaps rule "by-group" (f.yaml:11): a caller could match both; add a field (uid, user, executable) that tells them apart, or merge them`,
			`f.yaml:23: caller rule "alice-not-ops" overlaps rule "by-user" (f.yaml:7): a caller could match both; add a field (uid, user, executable) that tells them apart, or merge them`,
			`f.yaml:23: caller rule "alice-not-ops" overlaps rule "by-group" (f.yaml:11): a caller could match both; add a field (uid, user, executable) that tells them apart, or merge them`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseFile("f.yaml", []byte(callersIdentity+"callers:\n"+tt.rules), fakeUsers)
			if err == nil {
				t.Fatalf("parseFile = nil error, want %d problems", len(tt.want))
			}
			if diff := cmp.Diff(tt.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}
