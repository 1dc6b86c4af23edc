package access

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/entrabroker/broker/internal/caller"
)

// Decisions of an audit line.
const (
	Granted = "granted"
	Denied  = "denied"
)

// Line is one audit line: a token handed to a caller (or used by the proxy
// for it), or a request refused by the trust boundary. It never holds the
// token: TokenSHA256 is the first 12 hex characters of its SHA-256, enough
// to tell tokens apart and to match a token a caller shows, useless to
// rebuild it.
type Line struct {
	Time     time.Time  `json:"time"`
	Decision string     `json:"decision"`
	Caller   LineCaller `json:"caller"`
	Route    string     `json:"route"`
	Identity string     `json:"identity,omitempty"`
	Scope    string     `json:"scope,omitempty"`
	// TokenSHA256 and ExpiresOn describe the token granted.
	TokenSHA256 string `json:"token_sha256,omitempty"`
	ExpiresOn   int64  `json:"expires_on,omitempty"`
	// Reason is the refusal's error code, for a denial.
	Reason string `json:"reason,omitempty"`
}

// LineCaller is who asked, as the kernel named it, and the rule that
// matched ("" without a policy or when none did).
type LineCaller struct {
	Known bool   `json:"known"`
	UID   int    `json:"uid"`
	User  string `json:"user,omitempty"`
	PID   int    `json:"pid"`
	Exe   string `json:"exe,omitempty"`
	Rule  string `json:"rule,omitempty"`
}

// Fingerprint is the audit form of a token: the first 12 hex characters of
// its SHA-256.
func Fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}

// AuditOptions configure NewAuditor.
type AuditOptions struct {
	// Logger receives one "audit" line per entry; nil logs nothing.
	Logger *zap.Logger
	// File, when set, is the audit file: opened for appending (created
	// 0600), one JSON object per line, flushed and fsynced at most every
	// FlushInterval.
	File string
	// FlushInterval is how often written lines reach the disk; 0 means 1 s.
	FlushInterval time.Duration
	// Registerer receives the audit metrics; nil registers none.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Auditor writes the audit trail. Grants are written once per token per
// (caller's user, route, identity, scope), naming the process that got it
// first: a caller polling every second gives one line per token, not one
// per request; the rest are counted. Knowing the process costs a search of
// /proc for a TCP caller, so it is looked up only for a line written.
// Denials are always written. Safe for concurrent use; Close flushes. A
// nil *Auditor writes nothing.
type Auditor struct {
	log *zap.Logger
	now func() time.Time

	requests   *prometheus.CounterVec
	granted    prometheus.Counter // requests' granted child, looked up once
	suppressed prometheus.Counter

	mu sync.Mutex
	// last is the token last written per grant. It holds the cache's own
	// strings, so comparing is mostly a pointer check and no token is
	// hashed unless a line is written.
	last *simplelru.LRU[grantKey, string]
	out  *bufio.Writer // nil without a file
	file *os.File
	err  error // the file's first write error, reported once

	stop chan struct{}
	done chan struct{}
}

// grantKey is what one grant line stands for.
type grantKey struct {
	uid                    int
	route, identity, scope string
}

// maxRemembered bounds the grants remembered for deduplication; past it
// the oldest is forgotten (and written again when it recurs).
const maxRemembered = 8192

// NewAuditor opens the audit file, if any, and starts its flusher.
func NewAuditor(opts AuditOptions) (*Auditor, error) {
	a := &Auditor{log: opts.Logger, now: opts.Now}
	if a.log == nil {
		a.log = zap.NewNop()
	}
	if a.now == nil {
		a.now = time.Now
	}
	a.last, _ = simplelru.NewLRU[grantKey, string](maxRemembered, nil)
	a.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "broker_caller_requests_total",
		Help: "Requests for a token (token routes and proxy), by the trust boundary's decision: granted, denied (a browser, the callers policy, the allowed scopes) or rate_limited.",
	}, []string{"result"})
	a.suppressed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "broker_audit_lines_suppressed_total",
		Help: "Grants not written to the audit trail because the same caller process got the same token on the same route before.",
	})
	for _, r := range []string{"granted", "denied", "rate_limited"} {
		a.requests.WithLabelValues(r)
	}
	a.granted = a.requests.WithLabelValues("granted")
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{a.requests, a.suppressed} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	if opts.File == "" {
		return a, nil
	}
	f, err := os.OpenFile(opts.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("BROKER_AUDIT_FILE: %w", err)
	}
	a.file, a.out = f, bufio.NewWriterSize(f, 64<<10)
	interval := opts.FlushInterval
	if interval <= 0 {
		interval = time.Second
	}
	a.stop, a.done = make(chan struct{}), make(chan struct{})
	go a.flusher(interval)
	return a, nil
}

// Grant records that the token of e left for the caller of ctx under rule
// ("" without a policy): written unless this caller's user got this very
// token on this route before.
func (a *Auditor) Grant(ctx context.Context, rule string, e Exit, token string, expiresOn time.Time) {
	if a == nil {
		return
	}
	a.granted.Inc()
	k := grantKey{uid: caller.UserFromContext(ctx).UID, route: e.Route, identity: e.Identity, scope: e.Scope}
	a.mu.Lock()
	if prev, ok := a.last.Get(k); ok && prev == token {
		a.mu.Unlock()
		a.suppressed.Inc()
		return
	}
	a.last.Add(k, token)
	a.mu.Unlock()
	a.write(Line{Time: a.now(), Decision: Granted, Caller: lineCaller(caller.FromContext(ctx), rule), Route: e.Route, Identity: e.Identity,
		Scope: e.Scope, TokenSHA256: Fingerprint(token), ExpiresOn: expiresOn.Unix()})
}

// Deny records a refusal of the caller of ctx with its error code;
// rateLimited counts it apart.
func (a *Auditor) Deny(ctx context.Context, rule string, e Exit, reason string, rateLimited bool) {
	if a == nil {
		return
	}
	result := "denied"
	if rateLimited {
		result = "rate_limited"
	}
	a.requests.WithLabelValues(result).Inc()
	a.write(Line{Time: a.now(), Decision: Denied, Caller: lineCaller(caller.FromContext(ctx), rule), Route: e.Route, Identity: e.Identity,
		Scope: e.Scope, Reason: reason})
}

func lineCaller(c caller.Caller, rule string) LineCaller {
	return LineCaller{Known: c.Known, UID: c.UID, User: c.User, PID: c.PID, Exe: c.Exe, Rule: rule}
}

// write logs l and appends it to the file.
func (a *Auditor) write(l Line) {
	a.log.Info("audit", zap.String("decision", l.Decision), zap.Bool("caller_known", l.Caller.Known),
		zap.Int("uid", l.Caller.UID), zap.String("user", l.Caller.User), zap.Int("pid", l.Caller.PID),
		zap.String("exe", l.Caller.Exe), zap.String("rule", l.Caller.Rule), zap.String("route", l.Route),
		zap.String("identity", l.Identity), zap.String("scope", l.Scope), zap.String("token_sha256", l.TokenSHA256),
		zap.Int64("expires_on", l.ExpiresOn), zap.String("reason", l.Reason))
	if a.file == nil {
		return
	}
	b, _ := json.Marshal(l)
	b = append(b, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.out == nil {
		return // closed
	}
	if _, err := a.out.Write(b); err != nil {
		a.fileError(err)
	}
}

// fileError logs the first failure to write the audit file. Called with mu
// held.
func (a *Auditor) fileError(err error) {
	if a.err == nil {
		a.err = err
		a.log.Error("cannot write the audit file; audit lines still go to the log", zap.Error(err))
	}
}

// flusher writes buffered lines to the disk every interval until Close.
func (a *Auditor) flusher(interval time.Duration) {
	defer close(a.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			a.Flush()
		case <-a.stop:
			return
		}
	}
}

// Flush writes the buffered lines and fsyncs the file.
func (a *Auditor) Flush() {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.out == nil || a.out.Buffered() == 0 {
		return
	}
	if err := a.out.Flush(); err != nil {
		a.fileError(err)
		return
	}
	if err := a.file.Sync(); err != nil {
		a.fileError(err)
	}
}

// Close flushes and closes the audit file. Lines written after Close reach
// the log only.
func (a *Auditor) Close() error {
	if a == nil || a.file == nil {
		return nil
	}
	close(a.stop)
	<-a.done
	a.Flush()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.out = nil
	return errors.Join(a.err, a.file.Close())
}
