package loganalytics

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// DefaultAudience is the token audience the Log Analytics Query API accepts
// in the public cloud (reference §5.1).
const DefaultAudience = "https://api.loganalytics.io"

// Demo names: the workspace, its subscription and the resources AddDemo
// registers.
const (
	// DemoWorkspaceID is the workspace (customer) ID of the demo workspace.
	DemoWorkspaceID = "00000000-0000-4000-8000-00000000de30"
	// DemoWorkspaceResourceID is the ARM ID of the demo workspace itself,
	// queryable through the resource-centric route.
	DemoWorkspaceResourceID = "/subscriptions/" + demoSubscriptionID + "/resourceGroups/demo/providers/Microsoft.OperationalInsights/workspaces/demo"
	// DemoVMResourceID is a virtual machine whose logs land in the demo
	// workspace, queryable through the resource-centric route.
	DemoVMResourceID = "/subscriptions/" + demoSubscriptionID + "/resourceGroups/demo/providers/Microsoft.Compute/virtualMachines/vm-web-01"

	demoSubscriptionID = "00000000-0000-4000-8000-0000000005b5"
)

// RoleReader and RoleLogAnalyticsReader are the built-in roles that let a
// principal read a workspace's logs; Grant also accepts the broader
// Contributor, Owner, Log Analytics Contributor and Monitoring Reader.
const (
	RoleReader             = "Reader"
	RoleLogAnalyticsReader = "Log Analytics Reader"
)

// readerRoles are the roles (lower case) whose actions include reading logs.
var readerRoles = map[string]bool{
	"reader": true, "log analytics reader": true, "log analytics contributor": true,
	"monitoring reader": true, "contributor": true, "owner": true,
}

// maxRecords bounds the request log kept for Records.
const maxRecords = 1000

// defaultWait is the server timeout when the request sets none, and maxWait
// the largest one the service honours, in seconds (reference §5.3).
const (
	defaultWait = 180
	maxWait     = 600
)

// ErrTokenExpired is what a Verifier returns (wrapped or not) for a token
// whose lifetime is over, or that the issuer has revoked: the caller should
// fetch a new one. The Service answers 401 AuthenticationFailed.
var ErrTokenExpired = errors.New("loganalytics: token expired")

// ErrTokenMalformed is what a Verifier returns (wrapped or not) for a string
// that is not a JWT at all. The Service answers 403 InvalidAuthenticationToken.
// Any other Verifier error (bad signature, unknown key, wrong issuer) is
// answered 403 InvalidTokenError / SignatureVerificationFailed.
var ErrTokenMalformed = errors.New("loganalytics: token malformed")

// Principal is what a verified access token says about its bearer.
type Principal struct {
	// TenantID is the token's tid claim.
	TenantID string
	// AppID is the appid (v1) or azp (v2) claim: the client application.
	AppID string
	// ObjectID is the oid claim: the service principal's object ID.
	ObjectID string
	// Audience is the aud claim; the Service compares it with its audience.
	Audience string
	// Roles are the app roles in the token (e.g. Data.Read); informational.
	Roles []string
	// ExpiresAt is the exp claim; zero means the Verifier already checked it.
	ExpiresAt time.Time
}

// Verifier checks a raw bearer token's signature and lifetime and returns what
// it says. An error means the token is not acceptable; see ErrTokenExpired and
// ErrTokenMalformed for how errors are answered. It is called concurrently.
type Verifier func(rawToken string) (Principal, error)

// Options configure a Service. The zero value is usable: every token is then
// refused, as there is no Verifier.
type Options struct {
	// Verify checks tokens. Nil refuses every token (403 InvalidTokenError).
	Verify Verifier
	// Now is the clock for token expiry, role propagation and now(); nil
	// means time.Now.
	Now func() time.Time
	// Audience is the accepted token audience; empty means DefaultAudience.
	// The same audience with one trailing slash is accepted too.
	Audience string
	// Logger receives one debug line per request (never a token); nil
	// discards.
	Logger *zap.Logger
	// NewCorrelationID makes the correlationId of error bodies; nil means a
	// random UUID. Tests set it to get stable bodies.
	NewCorrelationID func() string
	// Limits are the per-principal query limits; the zero value means the
	// service's own (5 running, 200 queued, 200 per 30 s).
	Limits Limits
}

// Service is the Log Analytics Query API emulator. Create it with New and
// register workspaces, resources and role assignments; it is an http.Handler
// serving the /v1 routes. All methods are safe for concurrent use.
type Service struct {
	verify   Verifier
	now      func() time.Time
	audience string
	log      *zap.Logger
	newID    func() string

	mu         sync.Mutex
	workspaces map[string]*workspace // lower-case ID →
	resources  map[string]resource   // lower-case resource ID →
	grants     map[string][]grant    // lower-case scope (workspace or resource ID) →
	faults     map[string][]*Fault   // lower-case workspace ID, "" for global →
	total      int
	perWS      map[string]int // lower-case workspace ID →
	perPrin    map[string]int // lower-case app or object ID →
	records    []Record

	limits   Limits
	limMu    sync.Mutex
	limiters map[string]*limiter // principal key →
	gate     queryGate
}

type workspace struct {
	id            string
	tables        map[string]*table
	queryDuration time.Duration
}

type resource struct {
	id          string
	workspaceID string // lower case
}

type grant struct {
	principal   string // lower case
	role        string
	effectiveAt time.Time
}

// New returns a Service with no workspaces.
func New(opts Options) *Service {
	s := &Service{
		verify:     opts.Verify,
		now:        opts.Now,
		audience:   strings.TrimSuffix(opts.Audience, "/"),
		log:        opts.Logger,
		newID:      opts.NewCorrelationID,
		workspaces: map[string]*workspace{},
		resources:  map[string]resource{},
		grants:     map[string][]grant{},
		faults:     map[string][]*Fault{},
		perWS:      map[string]int{},
		perPrin:    map[string]int{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.audience == "" {
		s.audience = DefaultAudience
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.log = s.log.Named("loganalytics")
	if s.newID == nil {
		s.newID = randomUUID
	}
	s.limits = opts.Limits
	if s.limits.MaxConcurrent == 0 {
		s.limits.MaxConcurrent = DefaultMaxConcurrent
	}
	if s.limits.MaxQueued <= 0 {
		s.limits.MaxQueued = DefaultMaxQueued
	}
	if s.limits.MaxQueueWait <= 0 {
		s.limits.MaxQueueWait = DefaultMaxQueueWait
	}
	if s.limits.RateLimit == 0 {
		s.limits.RateLimit = DefaultRateLimit
	}
	s.limiters = map[string]*limiter{}
	return s
}

// randomUUID returns a random (version 4) UUID.
func randomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// AddWorkspace registers a workspace with the canned tables (Heartbeat,
// AzureActivity, Perf, Usage). Adding a workspace that exists changes nothing.
func (s *Service) AddWorkspace(id string) {
	key := strings.ToLower(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.workspaces[key]; ok {
		return
	}
	s.workspaces[key] = &workspace{id: id, tables: cannedTables()}
}

// AddResource registers an Azure resource ID (e.g.
// /subscriptions/…/providers/Microsoft.Compute/virtualMachines/vm1) whose
// logs live in workspaceID, so that the resource-centric route answers for
// it. Resource IDs are matched case-insensitively, as ARM does.
func (s *Service) AddResource(resourceID, workspaceID string) error {
	id := normalizeResourceID(resourceID)
	if !strings.HasPrefix(strings.ToLower(id), "/subscriptions/") {
		return fmt.Errorf("add resource: %q does not start with /subscriptions/", resourceID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := strings.ToLower(workspaceID)
	if _, ok := s.workspaces[ws]; !ok {
		return fmt.Errorf("add resource: unknown workspace %q", workspaceID)
	}
	s.resources[strings.ToLower(id)] = resource{id: id, workspaceID: ws}
	return nil
}

func normalizeResourceID(id string) string {
	id = strings.TrimSuffix(id, "/")
	if !strings.HasPrefix(id, "/") {
		id = "/" + id
	}
	return id
}

// Grant assigns role on scope (a registered workspace ID or resource ID) to
// principalID, which matches a token's appid or oid. The assignment takes
// effect at effectiveAt by the Service's clock (zero: at once), which is how
// RBAC propagation is simulated: before then the principal gets 403
// InsufficientAccessError. role must be one that can read logs (RoleReader,
// RoleLogAnalyticsReader, …; case-insensitive).
func (s *Service) Grant(scope, principalID, role string, effectiveAt time.Time) error {
	if !readerRoles[strings.ToLower(role)] {
		return fmt.Errorf("grant: role %q cannot read logs (use %q or %q)", role, RoleReader, RoleLogAnalyticsReader)
	}
	if principalID == "" {
		return errors.New("grant: empty principal ID")
	}
	key := s.scopeKey(scope)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.workspaces[key]; !ok {
		if _, ok := s.resources[key]; !ok {
			return fmt.Errorf("grant: unknown scope %q (add the workspace or resource first)", scope)
		}
	}
	s.grants[key] = append(s.grants[key], grant{principal: strings.ToLower(principalID), role: role, effectiveAt: effectiveAt})
	return nil
}

// Revoke removes every role assignment of principalID on scope.
func (s *Service) Revoke(scope, principalID string) {
	key := s.scopeKey(scope)
	p := strings.ToLower(principalID)
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.grants[key][:0]
	for _, g := range s.grants[key] {
		if g.principal != p {
			kept = append(kept, g)
		}
	}
	s.grants[key] = kept
}

func (s *Service) scopeKey(scope string) string {
	if strings.HasPrefix(scope, "/") || strings.HasPrefix(strings.ToLower(scope), "subscriptions/") {
		return strings.ToLower(normalizeResourceID(scope))
	}
	return strings.ToLower(scope)
}

// SetQueryDuration sets how long queries on workspaceID pretend to run. The
// emulator never sleeps for it: a duration beyond the request's Prefer wait
// (default 180 s) is answered 504 GatewayTimeout at once, and statistics
// report it as the execution time.
func (s *Service) SetQueryDuration(workspaceID string, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws, ok := s.workspaces[strings.ToLower(workspaceID)]
	if !ok {
		return fmt.Errorf("set query duration: unknown workspace %q", workspaceID)
	}
	ws.queryDuration = d
	return nil
}

// AddDemo registers the demo workspace (DemoWorkspaceID) with the canned
// tables, its resources (DemoWorkspaceResourceID, DemoVMResourceID), and a
// Reader assignment for appID that is effective at once.
func (s *Service) AddDemo(appID string) error {
	s.AddWorkspace(DemoWorkspaceID)
	for _, r := range []string{DemoWorkspaceResourceID, DemoVMResourceID} {
		if err := s.AddResource(r, DemoWorkspaceID); err != nil {
			return fmt.Errorf("add demo: %w", err)
		}
	}
	if err := s.Grant(DemoWorkspaceID, appID, RoleReader, time.Time{}); err != nil {
		return fmt.Errorf("add demo: %w", err)
	}
	return nil
}

// authorized reports whether principal p holds an effective role on any of
// the scopes (lower-case keys).
func (s *Service) authorized(p Principal, scopes ...string) bool {
	now := s.now()
	ids := []string{strings.ToLower(p.AppID), strings.ToLower(p.ObjectID)}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sc := range scopes {
		for _, g := range s.grants[sc] {
			if g.effectiveAt.After(now) {
				continue
			}
			for _, id := range ids {
				if id != "" && id == g.principal {
					return true
				}
			}
		}
	}
	return false
}

// lookupWorkspace returns the workspace with the given ID, or nil.
func (s *Service) lookupWorkspace(id string) *workspace {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.workspaces[strings.ToLower(id)]
}

// lookupResource returns the registered resource and its workspace.
func (s *Service) lookupResource(id string) (resource, *workspace, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.resources[strings.ToLower(normalizeResourceID(id))]
	if !ok {
		return resource{}, nil, false
	}
	return r, s.workspaces[r.workspaceID], true
}

// workspaceDuration reads a workspace's simulated query duration.
func (s *Service) workspaceDuration(ws *workspace) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ws.queryDuration
}

// ---- counters and records ----

// Record is one request as the Service saw it, for tests that assert what
// crossed the wire.
type Record struct {
	// Method, Path and RawQuery are the request's.
	Method, Path, RawQuery string
	// Route is "query", "resource", "batch", "metadata" or "unknown".
	Route string
	// WorkspaceID is the workspace the request resolved to, if any (for a
	// batch, empty).
	WorkspaceID string
	// AppID and ObjectID identify the verified principal; empty when the
	// token was missing or refused.
	AppID, ObjectID string
	// Status is the answer's status; 0 when the connection was dropped or
	// the client went away first.
	Status int
	// Header is a copy of the request headers with the Authorization
	// credential replaced by "[redacted]" (the scheme is kept).
	Header http.Header
}

// Requests returns how many requests the Service has received.
func (s *Service) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// WorkspaceRequests returns how many requests (and batch items) targeted
// workspaceID, directly or through a resource in it.
func (s *Service) WorkspaceRequests(workspaceID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perWS[strings.ToLower(workspaceID)]
}

// PrincipalRequests returns how many requests carried a valid token of the
// principal whose appid or oid is id.
func (s *Service) PrincipalRequests(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perPrin[strings.ToLower(id)]
}

// Records returns a copy of the most recent requests (up to 1000), oldest
// first.
func (s *Service) Records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.records...)
}

// ResetCounters zeroes every counter and forgets the records; registrations,
// grants and faults stay.
func (s *Service) ResetCounters() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total = 0
	s.perWS = map[string]int{}
	s.perPrin = map[string]int{}
	s.records = nil
}

func (s *Service) countRequest() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total++
}

func (s *Service) countWorkspace(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.perWS[strings.ToLower(id)]++
}

func (s *Service) countPrincipal(p Principal) {
	app, obj := strings.ToLower(p.AppID), strings.ToLower(p.ObjectID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if app != "" {
		s.perPrin[app]++
	}
	if obj != "" && obj != app {
		s.perPrin[obj]++
	}
}

func (s *Service) addRecord(rec Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.records) >= maxRecords {
		s.records = append(s.records[:0], s.records[1:]...)
	}
	s.records = append(s.records, rec)
}

// redactedHeader copies h, keeping only the scheme of Authorization.
func redactedHeader(h http.Header) http.Header {
	c := h.Clone()
	if v := c.Values("Authorization"); len(v) > 0 {
		red := make([]string, len(v))
		for i, a := range v {
			scheme, _, _ := strings.Cut(a, " ")
			red[i] = scheme + " [redacted]"
		}
		c["Authorization"] = red
	}
	return c
}
