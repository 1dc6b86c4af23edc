package access

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/entrabroker/broker/internal/caller"
	"github.com/entrabroker/broker/internal/config"
	"github.com/entrabroker/broker/internal/httperr"
)

// Exit is one token about to leave the process: through which route, of
// which identity, for which normalized scope.
type Exit struct {
	// Route is the endpoint ("token", "msi", "imds") or "proxy/<name>".
	Route string
	// Identity is the name of the identity whose token it is.
	Identity string
	// Scope is the normalized scope.
	Scope string
}

// proxyRoute returns the proxy route's name, or "" for a token endpoint.
func (e Exit) proxyRoute() string {
	name, _ := strings.CutPrefix(e.Route, "proxy/")
	if name == e.Route {
		return ""
	}
	return name
}

// Policy is the callers: section at work: it matches the caller the kernel
// named to one rule and lets out only what that rule grants, at the rule's
// rate. A nil *Policy lets every caller have everything (no callers:
// section). Safe for concurrent use.
type Policy struct {
	rules []config.CallerRule
	now   func() time.Time
	// process is set when a rule matches a gid or an executable, which for
	// a TCP caller takes a search of /proc; uid rules need only the kernel's
	// socket tables.
	process bool

	mu       sync.Mutex
	limiters map[limiterKey]*rate.Limiter
}

type limiterKey struct {
	rule string
	uid  int
}

// maxLimiters bounds the rate limiters kept: one per (rule, uid) that has
// asked; past it they start afresh (uids on a host are few).
const maxLimiters = 4096

// NewPolicy returns the policy of rules, whose scopes must be normalized;
// nil rules give a nil *Policy (no policy). now nil means time.Now.
func NewPolicy(rules []config.CallerRule, now func() time.Time) *Policy {
	if rules == nil {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	p := &Policy{rules: rules, now: now, limiters: map[limiterKey]*rate.Limiter{}}
	for _, r := range rules {
		p.process = p.process || r.Match.GID >= 0 || r.Match.Executable != ""
	}
	return p
}

// CheckContext is Check for the caller of ctx (see caller.ConnContext). It
// looks up the caller's process (pid, gid, executable), which for a TCP
// caller takes a search of /proc, only when a rule matches on it or to say
// who was refused.
func (p *Policy) CheckContext(ctx context.Context, e Exit) (*config.CallerRule, *httperr.Error) {
	if p == nil {
		return nil, nil
	}
	c := caller.UserFromContext(ctx)
	if p.process {
		c = caller.FromContext(ctx)
	}
	r, refusal := p.Check(c, e)
	if refusal != nil && !p.process {
		// Say who was refused in full; the decision stands.
		full := caller.FromContext(ctx)
		refusal.Description = strings.Replace(refusal.Description, Describe(c), Describe(full), 1)
		refusal.Caller = full
	}
	return r, refusal
}

// Rule returns the rule that c matches, or nil. Rules do not overlap (the
// configuration refuses overlapping ones), so at most one matches.
func (p *Policy) Rule(c caller.Caller) *config.CallerRule {
	if p == nil || !c.Known {
		return nil
	}
	for i := range p.rules {
		if matches(&p.rules[i].Match, c) {
			return &p.rules[i]
		}
	}
	return nil
}

// matches reports whether c matches every field m sets. A field the kernel
// did not name for c (a gid or executable of -1 or "") matches no rule that
// sets it: unknown fails closed.
func matches(m *config.CallerMatch, c caller.Caller) bool {
	return (m.UID < 0 || m.UID == c.UID) &&
		(m.GID < 0 || c.GID >= 0 && m.GID == c.GID) &&
		(m.Executable == "" || c.Exe != "" && m.Executable == c.Exe)
}

// Check decides whether the token of e may leave for c. It returns the rule
// that granted it (nil without a policy) or the answer to refuse with: 403
// caller_not_allowed when no rule matches or the rule does not grant the
// identity, scope or route; 429 caller_rate_limited past the rule's rate.
func (p *Policy) Check(c caller.Caller, e Exit) (*config.CallerRule, *httperr.Error) {
	if p == nil {
		return nil, nil
	}
	r := p.Rule(c)
	if r == nil {
		return nil, &httperr.Error{
			Status:      http.StatusForbidden,
			Code:        "caller_not_allowed",
			Description: "No rule of the broker's callers policy matches this caller: " + Describe(c) + ".",
			Hint:        "Add a rule under callers: in BROKER_CONFIG that matches it and grants what it needs, e.g. " + example(c, e) + ".",
			Caller:      c,
		}
	}
	var what, key string
	switch {
	case !grants(r.Identities, e.Identity):
		what, key = "identity "+strconv.Quote(e.Identity), "identities"
	case !grants(r.Scopes, e.Scope):
		what, key = "scope "+e.Scope, "scopes"
	case e.proxyRoute() != "" && !grants(r.Routes, e.proxyRoute()):
		what, key = "proxy route "+strconv.Quote(e.proxyRoute()), "routes"
	}
	if what != "" {
		return r, &httperr.Error{
			Status:      http.StatusForbidden,
			Code:        "caller_not_allowed",
			Description: "The callers rule " + strconv.Quote(r.Name) + " (" + r.Source + ") that matches this caller (" + Describe(c) + ") does not grant " + what + ".",
			Hint:        "Add it to the rule's " + key + " in BROKER_CONFIG if this caller should have it.",
			Caller:      c,
		}
	}
	if r.PerSecond > 0 {
		if wait := p.reserve(r, c.UID); wait > 0 {
			return r, &httperr.Error{
				Status:      http.StatusTooManyRequests,
				Code:        "caller_rate_limited",
				Description: "This caller (" + Describe(c) + ") asked faster than its callers rule " + strconv.Quote(r.Name) + " allows (" + strconv.FormatFloat(r.PerSecond, 'g', -1, 64) + " a second, bursts of " + strconv.Itoa(r.Burst) + ").",
				Hint:        "Keep the token until it nears expires_on instead of asking for every request, or raise the rule's rate.",
				RetryAfter:  wait,
				Caller:      c,
			}
		}
	}
	return r, nil
}

// reserve takes one request from the bucket of (r, uid) and returns 0, or
// how long until one would be free (nothing is taken then).
func (p *Policy) reserve(r *config.CallerRule, uid int) time.Duration {
	now := p.now()
	p.mu.Lock()
	k := limiterKey{r.Name, uid}
	l := p.limiters[k]
	if l == nil {
		if len(p.limiters) >= maxLimiters {
			clear(p.limiters)
		}
		l = rate.NewLimiter(rate.Limit(r.PerSecond), r.Burst)
		p.limiters[k] = l
	}
	p.mu.Unlock()
	res := l.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}

func grants(list []string, v string) bool {
	return slices.Contains(list, "*") || slices.Contains(list, v)
}

// Describe says who c is in words: "uid 1001 (bob), gid 1001 (bob), pid
// 4242, executable /usr/bin/curl", or that the kernel did not say.
func Describe(c caller.Caller) string {
	if !c.Known {
		return "a caller the kernel did not name (not on this host's loopback or unix socket, or the lookup failed)"
	}
	var b strings.Builder
	b.WriteString("uid " + strconv.Itoa(c.UID))
	if c.User != "" {
		b.WriteString(" (" + c.User + ")")
	}
	if c.GID >= 0 {
		b.WriteString(", gid " + strconv.Itoa(c.GID))
		if c.Group != "" {
			b.WriteString(" (" + c.Group + ")")
		}
	}
	if c.PID > 0 {
		b.WriteString(", pid " + strconv.Itoa(c.PID))
	}
	if c.Exe != "" {
		b.WriteString(", executable " + c.Exe)
	}
	return b.String()
}

// example is a rule that would let c have e, in the file's flow style.
func example(c caller.Caller, e Exit) string {
	match := "{uid: " + strconv.Itoa(c.UID) + "}"
	if c.User != "" {
		match = "{user: " + c.User + "}"
	}
	if !c.Known {
		match = "{user: <the program's user>}"
	}
	ex := "{name: <name>, match: " + match + ", identities: [" + e.Identity + "], scopes: [" + e.Scope + "]"
	if r := e.proxyRoute(); r != "" {
		ex += ", routes: [" + r + "]"
	}
	return ex + "}"
}
