package main

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/entrabroker/broker/internal/access"
	"github.com/entrabroker/broker/internal/caller"
	"github.com/entrabroker/broker/internal/config"
)

// callers shows, when the configuration has a callers policy, the caller
// the broker would see for the process running `broker check` (the kernel
// would name this process's uid, gid, pid and executable), the rule it
// matches, and what each rule grants.
func (c *checker) callers(cfg config.Config) {
	if cfg.Callers == nil {
		return
	}
	self := selfCaller()
	p := access.NewPolicy(cfg.Callers, nil)
	if r := p.Rule(self); r != nil {
		c.pass("caller", access.Describe(self)+": matches rule "+strconv.Quote(r.Name)+" ("+r.Source+"), which grants "+grants(r))
	} else {
		c.pass("caller", access.Describe(self)+": matches no rule, so the broker refuses it every token (403 caller_not_allowed)")
	}
	for _, r := range cfg.Callers {
		c.pass("rule:"+r.Name, "match "+matchWords(r.Match)+" ("+r.Source+"): "+grants(&r))
	}
	if len(cfg.Callers) == 0 {
		c.results = append(c.results, checkResult{Check: "warning", OK: true, Setting: "BROKER_CONFIG",
			Detail: "the callers: list is empty: the broker serves no one",
			Hint:   "Add rules under callers:, or remove the key to let every local caller have every token."})
	}
}

// selfCaller is this process as the broker's kernel lookups would name it.
func selfCaller() caller.Caller {
	c := caller.Caller{Known: true, Network: "unix", UID: os.Geteuid(), GID: os.Getegid(), PID: os.Getpid()}
	if u, err := user.LookupId(strconv.Itoa(c.UID)); err == nil {
		c.User = u.Username
	}
	if g, err := user.LookupGroupId(strconv.Itoa(c.GID)); err == nil {
		c.Group = g.Name
	}
	if exe, err := os.Executable(); err == nil {
		if r, err := filepath.EvalSymlinks(exe); err == nil {
			exe = r
		}
		c.Exe = exe
	}
	return c
}

// grants says in words what a rule lets out.
func grants(r *config.CallerRule) string {
	list := func(items []string) string {
		switch {
		case len(items) == 0:
			return "none"
		case len(items) == 1 && items[0] == "*":
			return "all"
		}
		return strings.Join(items, ", ")
	}
	s := "identities " + list(r.Identities) + "; scopes " + list(r.Scopes) + "; proxy routes " + list(r.Routes)
	if r.PerSecond > 0 {
		s += fmt.Sprintf("; at most %g a second per uid, bursts of %d", r.PerSecond, r.Burst)
	}
	return s
}

// matchWords says in words whom a rule matches.
func matchWords(m config.CallerMatch) string {
	var parts []string
	switch {
	case m.User != "":
		parts = append(parts, fmt.Sprintf("user %s (uid %d)", m.User, m.UID))
	case m.UID >= 0:
		parts = append(parts, fmt.Sprintf("uid %d", m.UID))
	}
	switch {
	case m.Group != "":
		parts = append(parts, fmt.Sprintf("group %s (gid %d)", m.Group, m.GID))
	case m.GID >= 0:
		parts = append(parts, fmt.Sprintf("gid %d", m.GID))
	}
	if m.Executable != "" {
		parts = append(parts, "executable "+m.Executable)
	}
	return strings.Join(parts, ", ")
}
