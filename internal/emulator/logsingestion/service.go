// Package logsingestion emulates the Azure Monitor Logs Ingestion API:
// POST /dataCollectionRules/{dcr-immutable-id}/streams/{stream}?api-version=2023-01-01
// with a JSON array of records, optionally gzip'd, and a bearer token for
// https://monitor.azure.com. It answers as the service does: 204 when the
// records were stored, 413 ContentLengthLimitExceeded over 1,048,576 bytes,
// 403 OperationFailed until the caller holds Monitoring Metrics Publisher on
// the DCR (after a propagation delay), 404 for an unknown DCR or stream,
// 429 with Retry-After over the request rate, and hands the stored rows to a
// Sink, such as the Log Analytics emulator's custom tables.
package logsingestion

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/entrabroker/broker/internal/emulator/loganalytics"
	"go.uber.org/zap"
)

// DefaultAudience is the token audience of the Logs Ingestion API in the
// public cloud.
const DefaultAudience = "https://monitor.azure.com"

// MaxCallBytes is the service's limit on one call's body, counted as the
// bytes that arrive (compressed when the body is gzip'd).
const MaxCallBytes = 1_048_576

// maxDecodedBytes bounds a gzip'd body once decompressed.
const maxDecodedBytes = 64 << 20

// DefaultRequestsPerMinute is the service's documented request rate limit per DCR.
const DefaultRequestsPerMinute = 12000

// RoleMonitoringMetricsPublisher is the role that lets a principal upload
// through a DCR.
const RoleMonitoringMetricsPublisher = "Monitoring Metrics Publisher"

// Demo names: the DCR and stream AddDemo registers.
const (
	// DemoDCR is the immutable ID of the demo data collection rule.
	DemoDCR = "dcr-00000000000000000000000000de30"
	// DemoStream is the demo DCR's stream, feeding DemoTable.
	DemoStream = "Custom-BrokerDemo_CL"
	// DemoTable is the custom table the demo stream lands in.
	DemoTable = "BrokerDemo_CL"
)

// Sink stores rows uploaded to a stream: into table of workspaceID.
type Sink func(workspaceID, table string, rows []map[string]any) error

// Stream is where a DCR's stream sends its rows.
type Stream struct {
	WorkspaceID string
	Table       string
}

// Options configure a Service.
type Options struct {
	// Verify checks tokens, as the Log Analytics emulator's Verifier does;
	// nil refuses every token.
	Verify loganalytics.Verifier
	// Now is the clock for role propagation, token expiry and the rate
	// limit; nil means time.Now.
	Now func() time.Time
	// Audience is the accepted token audience; empty means DefaultAudience.
	Audience string
	// Sink receives the stored rows; nil keeps only the counts.
	Sink Sink
	// RequestsPerMinute bounds calls per DCR per minute by the clock; 0
	// means DefaultRequestsPerMinute, negative no limit.
	RequestsPerMinute int
	// Logger gets one debug line per call (never a token); nil discards.
	Logger *zap.Logger
}

// Fault is a scripted misbehaviour for the next Count calls.
type Fault struct {
	// Count is how many calls it applies to; 0 means 1.
	Count int
	// Status answers with this status and the service's error body (429
	// with RetryAfter, 500, 503 …) without storing anything.
	Status int
	// RetryAfter is sent as Retry-After with Status, in whole seconds.
	RetryAfter time.Duration
	// Drop closes the connection after reading the body, without storing
	// the records and without an answer.
	Drop bool
	// DropAfterStore stores the records, then closes the connection
	// without an answer: the client cannot know they landed.
	DropAfterStore bool
}

// Call is one call as the Service saw it.
type Call struct {
	DCR, Stream string
	// Bytes is the body's size as it arrived; Gzip says it was gzip'd.
	Bytes int
	Gzip  bool
	// Records is how many records the body held (0 when unread).
	Records int
	Status  int
}

type dcr struct {
	id      string
	streams map[string]Stream // stream name, lower case →
	grants  []grant
}

type grant struct {
	principal   string
	effectiveAt time.Time
}

// Service is the Logs Ingestion API emulator, an http.Handler. Its methods
// are safe for concurrent use.
type Service struct {
	verify   loganalytics.Verifier
	now      func() time.Time
	audience string
	sink     Sink
	rate     int
	log      *zap.Logger

	mu     sync.Mutex
	dcrs   map[string]*dcr // lower-case immutable ID →
	faults []*Fault
	calls  []Call
	starts map[string][]time.Time // DCR → call times in the last minute
	rows   int
}

// New returns a Service with no DCRs.
func New(opts Options) *Service {
	s := &Service{
		verify: opts.Verify, now: opts.Now, audience: strings.TrimSuffix(opts.Audience, "/"),
		sink: opts.Sink, rate: opts.RequestsPerMinute, log: opts.Logger,
		dcrs: map[string]*dcr{}, starts: map[string][]time.Time{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.audience == "" {
		s.audience = DefaultAudience
	}
	if s.rate == 0 {
		s.rate = DefaultRequestsPerMinute
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.log = s.log.Named("logsingestion")
	return s
}

// AddDCR registers a data collection rule by immutable ID (dcr-…) with its
// streams; adding one that exists adds its streams.
func (s *Service) AddDCR(immutableID string, streams map[string]Stream) error {
	if !strings.HasPrefix(immutableID, "dcr-") {
		return fmt.Errorf("add DCR: %q is not an immutable ID (dcr-…)", immutableID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dcrs[strings.ToLower(immutableID)]
	if d == nil {
		d = &dcr{id: immutableID, streams: map[string]Stream{}}
		s.dcrs[strings.ToLower(immutableID)] = d
	}
	for name, st := range streams {
		d.streams[strings.ToLower(name)] = st
	}
	return nil
}

// Grant gives principalID (a token's appid or oid) Monitoring Metrics
// Publisher on the DCR, effective at effectiveAt by the Service's clock
// (zero: at once); before then the principal gets 403 OperationFailed, as
// while a real role assignment propagates (up to 30 minutes).
func (s *Service) Grant(immutableID, principalID string, effectiveAt time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dcrs[strings.ToLower(immutableID)]
	if d == nil {
		return fmt.Errorf("grant: unknown DCR %q", immutableID)
	}
	d.grants = append(d.grants, grant{principal: strings.ToLower(principalID), effectiveAt: effectiveAt})
	return nil
}

// AddDemo registers DemoDCR with DemoStream into DemoTable of workspaceID,
// and grants appID the role at once.
func (s *Service) AddDemo(workspaceID, appID string) error {
	if err := s.AddDCR(DemoDCR, map[string]Stream{DemoStream: {WorkspaceID: workspaceID, Table: DemoTable}}); err != nil {
		return err
	}
	return s.Grant(DemoDCR, appID, time.Time{})
}

// InjectFault queues f for the next calls.
func (s *Service) InjectFault(f Fault) {
	if f.Count <= 0 {
		f.Count = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// Calls returns every call received so far.
func (s *Service) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Rows returns how many rows were stored.
func (s *Service) Rows() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rows
}

func (s *Service) takeFault() *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.faults) == 0 {
		return nil
	}
	f := *s.faults[0]
	s.faults[0].Count--
	if s.faults[0].Count <= 0 {
		s.faults = s.faults[1:]
	}
	return &f
}

// ServeHTTP answers the Logs Ingestion API.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	call := Call{}
	defer func() {
		s.mu.Lock()
		s.calls = append(s.calls, call)
		s.mu.Unlock()
		s.log.Debug("call", zap.String("dcr", call.DCR), zap.String("stream", call.Stream),
			zap.Int("bytes", call.Bytes), zap.Int("records", call.Records), zap.Int("status", call.Status))
	}()
	fail := func(status int, code, msg string, h ...string) {
		call.Status = status
		for i := 0; i+1 < len(h); i += 2 {
			w.Header().Set(h[i], h[i+1])
		}
		writeError(w, status, code, msg)
	}
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(segs) != 4 || !strings.EqualFold(segs[0], "dataCollectionRules") || !strings.EqualFold(segs[2], "streams") {
		fail(http.StatusNotFound, "NotFound", "The requested path does not exist.")
		return
	}
	call.DCR, call.Stream = segs[1], segs[3]
	if r.Method != http.MethodPost {
		fail(http.StatusMethodNotAllowed, "MethodNotAllowed", "The requested method is not allowed.")
		return
	}
	if v := r.URL.Query().Get("api-version"); v == "" {
		fail(http.StatusBadRequest, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
		return
	}
	// The body is read first: the service counts it as it arrives.
	raw, err := io.ReadAll(io.LimitReader(r.Body, MaxCallBytes+1))
	call.Bytes = len(raw)
	if err != nil {
		call.Status = 0
		return
	}
	if len(raw) > MaxCallBytes {
		fail(http.StatusRequestEntityTooLarge, "ContentLengthLimitExceeded",
			"Maximum allowed content length: "+strconv.Itoa(MaxCallBytes)+" bytes (1 MB). Provided content length: "+strconv.FormatInt(max(r.ContentLength, int64(len(raw))), 10)+" bytes.")
		return
	}
	if f := s.takeFault(); f != nil {
		switch {
		case f.Drop:
			drop(w)
			return
		case f.Status != 0:
			var h []string
			if f.RetryAfter > 0 {
				h = []string{"Retry-After", strconv.Itoa(int((f.RetryAfter + time.Second - 1) / time.Second))}
			}
			fail(f.Status, faultCode(f.Status), http.StatusText(f.Status)+".", h...)
			return
		case f.DropAfterStore:
			defer drop(w)
			call.Status = -1
		}
	}
	p, ferr := s.authenticate(r)
	if ferr != nil {
		fail(ferr.status, ferr.code, ferr.msg)
		return
	}
	st, d, ok := s.lookup(call.DCR, call.Stream)
	if !ok {
		if d == nil {
			fail(http.StatusNotFound, "NotFound", "Data collection rule with immutable Id '"+call.DCR+"' not found.")
		} else {
			fail(http.StatusNotFound, "InvalidStream", "Stream '"+call.Stream+"' is not declared in data collection rule '"+call.DCR+"'.")
		}
		return
	}
	if !s.authorized(d, p) {
		fail(http.StatusForbidden, "OperationFailed", "The authentication token provided does not have access to ingest data for the data collection rule with immutable Id '"+d.id+"'.")
		return
	}
	if retry, ok := s.rateOK(d.id); !ok {
		fail(http.StatusTooManyRequests, "TooManyRequests", "The request rate for this data collection rule is over the limit.", "Retry-After", strconv.Itoa(retry))
		return
	}
	body := raw
	if ce := r.Header.Get("Content-Encoding"); strings.EqualFold(ce, "gzip") {
		call.Gzip = true
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			body, err = io.ReadAll(io.LimitReader(zr, maxDecodedBytes))
		}
		if err != nil {
			fail(http.StatusBadRequest, "InvalidContentEncoding", "The body could not be decompressed as gzip.")
			return
		}
	} else if ce != "" {
		fail(http.StatusBadRequest, "InvalidContentEncoding", "Content-Encoding "+strconv.Quote(ce)+" is not supported.")
		return
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var rows []map[string]any
	if err := dec.Decode(&rows); err != nil {
		fail(http.StatusBadRequest, "InvalidRequestContent", "The request body is not a JSON array of objects: "+err.Error())
		return
	}
	call.Records = len(rows)
	if len(rows) > 0 && s.sink != nil {
		if err := s.sink(st.WorkspaceID, st.Table, rows); err != nil {
			fail(http.StatusInternalServerError, "InternalServerError", "The records could not be stored.")
			return
		}
	}
	s.mu.Lock()
	s.rows += len(rows)
	s.mu.Unlock()
	if call.Status == -1 {
		return // DropAfterStore: stored, then the deferred drop
	}
	call.Status = http.StatusNoContent
	w.Header().Set("x-ms-request-id", randomID())
	w.WriteHeader(http.StatusNoContent)
}

type authFailure struct {
	status    int
	code, msg string
}

// authenticate checks the bearer token and its audience.
func (s *Service) authenticate(r *http.Request) (loganalytics.Principal, *authFailure) {
	scheme, raw, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	raw = strings.TrimSpace(raw)
	if !strings.EqualFold(scheme, "Bearer") || raw == "" || s.verify == nil {
		return loganalytics.Principal{}, &authFailure{http.StatusUnauthorized, "InvalidToken", "The request has no valid bearer token."}
	}
	p, err := s.verify(raw)
	if err != nil {
		if errors.Is(err, loganalytics.ErrTokenExpired) {
			return p, &authFailure{http.StatusUnauthorized, "InvalidToken", "The access token has expired."}
		}
		return p, &authFailure{http.StatusUnauthorized, "InvalidToken", "The access token is invalid."}
	}
	if strings.TrimSuffix(p.Audience, "/") != s.audience {
		return p, &authFailure{http.StatusUnauthorized, "InvalidToken", "The access token's audience is not " + s.audience + "."}
	}
	if !p.ExpiresAt.IsZero() && !s.now().Before(p.ExpiresAt) {
		return p, &authFailure{http.StatusUnauthorized, "InvalidToken", "The access token has expired."}
	}
	return p, nil
}

func (s *Service) lookup(id, stream string) (Stream, *dcr, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dcrs[strings.ToLower(id)]
	if d == nil {
		return Stream{}, nil, false
	}
	st, ok := d.streams[strings.ToLower(stream)]
	return st, d, ok
}

func (s *Service) authorized(d *dcr, p loganalytics.Principal) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range d.grants {
		if g.effectiveAt.After(now) {
			continue
		}
		if g.principal != "" && (g.principal == strings.ToLower(p.AppID) || g.principal == strings.ToLower(p.ObjectID)) {
			return true
		}
	}
	return false
}

// rateOK counts a call against the DCR's per-minute limit; when over, it
// returns the seconds until a slot frees.
func (s *Service) rateOK(id string) (int, bool) {
	if s.rate < 0 {
		return 0, true
	}
	now := s.now()
	key := strings.ToLower(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.starts[key]
	cut := 0
	for cut < len(st) && !st[cut].After(now.Add(-time.Minute)) {
		cut++
	}
	st = st[cut:]
	if len(st) >= s.rate {
		s.starts[key] = st
		return int((st[0].Add(time.Minute).Sub(now) + time.Second - 1) / time.Second), false
	}
	s.starts[key] = append(st, now)
	return 0, true
}

func faultCode(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "TooManyRequests"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	}
	return "InternalServerError"
}

// writeError writes the service's error body.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("x-ms-request-id", randomID())
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// drop closes the client's connection without an answer.
func drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		_ = conn.Close()
		return
	}
	panic(http.ErrAbortHandler)
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
