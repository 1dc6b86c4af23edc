package loganalytics

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// Fault is a scripted misbehaviour for the next Count requests. Several
// effects may be combined; they apply in this order: the wait (Gate, then
// Delay), then Drop, Malformed or Status (the first that is set), and
// otherwise the request runs normally with PartialError and QueryDuration
// applied.
type Fault struct {
	// Count is how many requests the fault applies to; 0 means 1.
	Count int
	// Gate, when non-nil, holds the request until it is closed or the
	// request's context ends. Tests use it to hold a request without sleeping.
	Gate <-chan struct{}
	// Delay holds the request for this long, or until its context ends.
	Delay time.Duration
	// Drop closes the connection without an answer.
	Drop bool
	// Malformed answers 200 with a truncated JSON body.
	Malformed bool
	// Status, when nonzero, answers with this status and its error body
	// (429 ThrottledError, 500, 503 ServiceUnavailable, 504 GatewayTimeout …;
	// 204 answers with no body).
	Status int
	// RetryAfter, when positive and Status is set, is sent as Retry-After in
	// whole seconds (rounded up).
	RetryAfter time.Duration
	// PartialError answers 200 with the rows and a PartialError object.
	PartialError bool
	// QueryDuration, when positive, replaces the workspace's simulated query
	// duration for the request (see Service.SetQueryDuration).
	QueryDuration time.Duration
}

// InjectFault queues f for the next requests in scope: "" for every request
// the Service receives (checked first), or a workspace ID for the requests and
// batch items that target it. Faults in one scope are used in the order they
// were queued.
func (s *Service) InjectFault(scope string, f Fault) {
	if f.Count <= 0 {
		f.Count = 1
	}
	key := s.scopeKey(scope)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[key] = append(s.faults[key], &f)
}

// ClearFaults drops every queued fault.
func (s *Service) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = map[string][]*Fault{}
}

// takeFault uses one request's worth of the first fault in scope and returns
// a copy of it, or nil.
func (s *Service) takeFault(scope string) *Fault {
	key := strings.ToLower(scope)
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.faults[key]
	if len(q) == 0 {
		return nil
	}
	f := *q[0]
	q[0].Count--
	if q[0].Count <= 0 {
		s.faults[key] = q[1:]
	}
	return &f
}

// hold waits as f asks; it returns the context's error when the request ends
// first.
func (f *Fault) hold(ctx context.Context) error {
	if f.Gate != nil {
		select {
		case <-f.Gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// malformedBody is the truncated answer of a Malformed fault.
const malformedBody = `{"tables":[{"name":"PrimaryResult","columns":[{"name":"Computer","type":"str`

// dropConnection closes the client connection without an answer: by
// hijacking it when the writer allows, else by aborting the handler.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		_ = conn.Close()
		return
	}
	panic(http.ErrAbortHandler)
}
