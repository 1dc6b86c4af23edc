package config

import (
	"fmt"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// CallerRule is one rule of the callers: section of the configuration file:
// which local programs it matches, and what it grants them. A caller (as the
// kernel names it: uid, gid, executable) matches a rule when it matches
// every field of the rule's Match.
type CallerRule struct {
	// Name labels the rule in logs, audit lines and 403 answers.
	Name string
	// Match says which callers the rule is for.
	Match CallerMatch
	// Identities are the identity names granted; ["*"] grants every one.
	Identities []string
	// Scopes are the scopes granted, as written (scopes or resource URIs;
	// the broker normalizes them when it starts); ["*"] grants any.
	Scopes []string
	// Routes are the proxy routes granted; ["*"] grants every one, empty
	// none.
	Routes []string
	// PerSecond and Burst, when PerSecond > 0, bound each caller (uid) the
	// rule matches to PerSecond requests a second on average, Burst at once.
	PerSecond float64
	Burst     int
	// Source is where the rule is defined, "<file>:<line>", for messages.
	Source string
}

// CallerMatch selects callers. Unset fields (UID and GID -1, strings empty)
// match anything; at least one is set. User and Group are resolved to UID
// and GID when the file is read, so that the check at request time compares
// numbers the kernel reported.
type CallerMatch struct {
	UID, GID    int
	User, Group string
	// Executable is an absolute path, compared with the caller's
	// /proc/<pid>/exe.
	Executable string
}

// callerEntry is one rule as written; each value is a node for its line.
type callerEntry struct {
	Name       yaml.Node   `yaml:"name"`
	Match      *matchEntry `yaml:"match"`
	Identities yaml.Node   `yaml:"identities"`
	Scopes     yaml.Node   `yaml:"scopes"`
	Routes     yaml.Node   `yaml:"routes"`
	Rate       *rateEntry  `yaml:"rate"`
}

type matchEntry struct {
	UID        yaml.Node `yaml:"uid"`
	User       yaml.Node `yaml:"user"`
	GID        yaml.Node `yaml:"gid"`
	Group      yaml.Node `yaml:"group"`
	Executable yaml.Node `yaml:"executable"`
}

type rateEntry struct {
	PerSecond yaml.Node `yaml:"per_second"`
	Burst     yaml.Node `yaml:"burst"`
}

const (
	callerKeys = "name, match, identities, scopes, routes, rate"
	matchKeys  = "uid, user, gid, group, executable"
	rateKeys   = "per_second, burst"
)

// userDB is how names become IDs: the system's user database, replaced in
// tests.
type userDB struct {
	lookupUser  func(name string) (uid, gid int, groups []int, ok bool)
	lookupGroup func(name string) (gid int, ok bool)
	// groupsOf returns the primary and supplementary groups of uid.
	groupsOf func(uid int) ([]int, bool)
}

// systemUsers reads /etc/passwd and /etc/group (or NSS, with cgo).
var systemUsers = userDB{
	lookupUser: func(name string) (int, int, []int, bool) {
		u, err := user.Lookup(name)
		if err != nil {
			return 0, 0, nil, false
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return uid, gid, groupIDs(u), true
	},
	lookupGroup: func(name string) (int, bool) {
		g, err := user.LookupGroup(name)
		if err != nil {
			return 0, false
		}
		gid, err := strconv.Atoi(g.Gid)
		return gid, err == nil
	},
	groupsOf: func(uid int) ([]int, bool) {
		u, err := user.LookupId(strconv.Itoa(uid))
		if err != nil {
			return nil, false
		}
		return groupIDs(u), true
	},
}

func groupIDs(u *user.User) []int {
	ids, _ := u.GroupIds()
	var out []int
	for _, s := range append(ids, u.Gid) {
		if n, err := strconv.Atoi(s); err == nil && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// callers parses the callers: section. identities are the identity names
// the rules may grant ("default" and the file's).
func (p *fileParser) callers(entries []callerEntry, lines []int, identities []string, db userDB) []CallerRule {
	var out []CallerRule
	names := map[string]int{}
	for i, e := range entries {
		line := 0
		if i < len(lines) {
			line = lines[i]
		}
		n := len(p.errs)
		r := p.caller(i, line, &e, identities, db)
		if prev, dup := names[r.Name]; dup && r.Name != "" {
			p.fail(at(&e.Name, line), "each rule needs its own", "%s: name %q is already used on line %d", p.label, r.Name, prev)
		}
		names[r.Name] = at(&e.Name, line)
		if len(p.errs) == n {
			out = append(out, r)
		}
	}
	// Two rules that one caller could match would make the grant depend on
	// their order: refuse them, naming both.
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if !disjoint(out[i].Match, out[j].Match, db) {
				line, _ := strconv.Atoi(out[j].Source[strings.LastIndexByte(out[j].Source, ':')+1:])
				p.fail(line, "a caller could match both; add a field (uid, user, executable) that tells them apart, or merge them", "caller rule %q overlaps rule %q (%s)", out[j].Name, out[i].Name, out[i].Source)
			}
		}
	}
	return out
}

// caller parses and checks the i-th rule (0-based) at line.
func (p *fileParser) caller(i, line int, e *callerEntry, identities []string, db userDB) CallerRule {
	r := CallerRule{Source: p.path + ":" + strconv.Itoa(line), Match: CallerMatch{UID: -1, GID: -1}}
	p.label = "caller rule " + strconv.Itoa(i+1)
	str := func(n *yaml.Node, key string) string { return p.str(n, key, line) }
	list := func(n *yaml.Node, key string, required bool) []string {
		if !present(n) {
			if required {
				p.fail(line, "list what the rule grants, or [\"*\"] for everything", "%s: %s is missing", p.label, key)
			}
			return nil
		}
		var items []string
		if err := n.Decode(&items); err != nil {
			p.fail(at(n, line), "", "%s: %s must be a list such as [a, b]", p.label, key)
			return nil
		}
		if slices.Contains(items, "*") && len(items) > 1 {
			p.fail(at(n, line), "\"*\" alone grants everything", "%s: %s holds \"*\" and more", p.label, key)
		}
		return items
	}
	id := func(n *yaml.Node, key string) int {
		v := str(n, key)
		if v == "" {
			return -1
		}
		x, err := strconv.Atoi(v)
		if err != nil || x < 0 {
			p.fail(at(n, line), fmt.Sprintf("write the numeric ID, or use %s", map[string]string{"uid": "user", "gid": "group"}[key]), "%s: %s %q is not a number", p.label, key, v)
			return -1
		}
		return x
	}

	r.Name = str(&e.Name, "name")
	switch {
	case r.Name == "":
		p.fail(line, "give the rule a name such as reports (it labels audit lines)", "%s: name is missing", p.label)
	case !nameRE.MatchString(r.Name):
		p.fail(at(&e.Name, line), "", "%s: name %q may hold only lower-case letters, digits, '-', '_' and '.' (at most 63)", p.label, r.Name)
	default:
		p.label = "caller rule " + strconv.Quote(r.Name)
	}

	if e.Match == nil {
		p.fail(line, fmt.Sprintf("say which callers the rule is for, e.g. match: {user: svc-reports} (keys: %s)", matchKeys), "%s: match is missing", p.label)
	} else {
		m := e.Match
		r.Match.UID = id(&m.UID, "uid")
		r.Match.GID = id(&m.GID, "gid")
		if name := str(&m.User, "user"); name != "" {
			uid, _, _, ok := db.lookupUser(name)
			switch {
			case !ok:
				p.fail(at(&m.User, line), "create it, or match by uid", "%s: there is no user %q on this host", p.label, name)
			case r.Match.UID >= 0 && r.Match.UID != uid:
				p.fail(at(&m.User, line), "keep one of uid and user", "%s: user %q has uid %d, not %d", p.label, name, uid, r.Match.UID)
			default:
				r.Match.User, r.Match.UID = name, uid
			}
		}
		if name := str(&m.Group, "group"); name != "" {
			gid, ok := db.lookupGroup(name)
			switch {
			case !ok:
				p.fail(at(&m.Group, line), "create it, or match by gid", "%s: there is no group %q on this host", p.label, name)
			case r.Match.GID >= 0 && r.Match.GID != gid:
				p.fail(at(&m.Group, line), "keep one of gid and group", "%s: group %q has gid %d, not %d", p.label, name, gid, r.Match.GID)
			default:
				r.Match.Group, r.Match.GID = name, gid
			}
		}
		if exe := str(&m.Executable, "executable"); exe != "" {
			if !filepath.IsAbs(exe) || filepath.Clean(exe) != exe {
				p.fail(at(&m.Executable, line), "", "%s: executable %q must be a clean absolute path, such as /usr/local/bin/report", p.label, exe)
			}
			r.Match.Executable = exe
		}
		if !present(&m.UID) && !present(&m.GID) && !present(&m.User) && !present(&m.Group) && !present(&m.Executable) {
			p.fail(line, fmt.Sprintf("give at least one of %s", matchKeys), "%s: match names no field", p.label)
		}
	}

	r.Identities = list(&e.Identities, "identities", true)
	for _, name := range r.Identities {
		if name != "*" && !slices.Contains(identities, name) {
			p.fail(at(&e.Identities, line), "", "%s: identities names %q, which is no identity of the broker (%s)", p.label, name, strings.Join(identities, ", "))
		}
	}
	r.Scopes = list(&e.Scopes, "scopes", true)
	for _, s := range r.Scopes {
		if s != "*" && !scopeLike(s) {
			p.fail(at(&e.Scopes, line), "write items like https://api.loganalytics.io/.default", "%s: scopes item %q is not a scope or resource URI", p.label, s)
		}
	}
	r.Routes = list(&e.Routes, "routes", false)
	if r.Routes == nil {
		r.Routes = []string{}
	}

	if e.Rate != nil {
		if v := str(&e.Rate.PerSecond, "per_second"); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f <= 0 || f > 1e6 {
				p.fail(at(&e.Rate.PerSecond, line), "", "%s: rate.per_second %q must be a positive number such as 10", p.label, v)
			}
			r.PerSecond = f
		} else {
			p.fail(line, "say how many requests a second each caller may make", "%s: rate.per_second is missing", p.label)
		}
		r.Burst = 1
		if v := str(&e.Rate.Burst, "burst"); v != "" {
			b, err := strconv.Atoi(v)
			if err != nil || b < 1 || b > 1e6 {
				p.fail(at(&e.Rate.Burst, line), "", "%s: rate.burst %q must be a whole number from 1, such as 20", p.label, v)
			}
			r.Burst = b
		} else if r.PerSecond >= 1 {
			r.Burst = int(r.PerSecond)
		}
	}
	return r
}

// disjoint reports whether no caller can match both a and b: they name
// different uids or executables, or one names a user who is not in the
// other's group (a process's effective gid is one of its user's groups).
func disjoint(a, b CallerMatch, db userDB) bool {
	if a.UID >= 0 && b.UID >= 0 && a.UID != b.UID {
		return true
	}
	if a.Executable != "" && b.Executable != "" && a.Executable != b.Executable {
		return true
	}
	if a.GID >= 0 && b.GID >= 0 && a.GID != b.GID {
		return true
	}
	notIn := func(uid, gid int) bool {
		if uid < 0 || gid < 0 {
			return false
		}
		groups, ok := db.groupsOf(uid)
		return ok && !slices.Contains(groups, gid)
	}
	return notIn(a.UID, b.GID) || notIn(b.UID, a.GID)
}
