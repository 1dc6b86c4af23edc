package azure

import (
	"fmt"
	"strings"
	"time"
)

// Error is a failed token request, explained. Every error returned by a
// TokenSource is (or wraps) an *Error.
//
// Error never holds the client secret or an access token; Description is the
// first line of Entra's error_description (the AADSTS sentence), without the
// trace lines, or a sentence of the broker's for a failure Entra did not
// answer. A bad scope or a bad Config found locally carries the AADSTS code
// Entra would have answered, so callers treat them alike; a credential that
// cannot be applied (a missing, unreadable or empty file) carries none: Entra
// never saw the request.
type Error struct {
	// Op names the operation: "token" (a request to Entra), "scope" (a
	// scope refused locally), "credential" (the credential could not be
	// applied) or "config" (New refused its Config).
	Op string
	// StatusCode is the HTTP status Entra answered; 0 when no answer came
	// (network failure, timeout).
	StatusCode int
	// Code is the OAuth error code, e.g. "invalid_client"; empty when absent.
	Code string
	// Description is the AADSTS sentence, e.g. "AADSTS7000215: Invalid client secret provided. …".
	Description string
	// AADCodes are Entra's error_codes, e.g. [7000215].
	AADCodes []int
	// CorrelationID and TraceID identify the request at Entra. When Entra
	// sent no correlation_id (or did not answer), CorrelationID is the
	// client-request-id the broker sent, which Entra records as the
	// correlation ID of any request that reached it.
	CorrelationID string
	TraceID       string
	// Transient reports a failure worth retrying: network, timeout, 5xx, 429.
	// A permanent failure (bad secret, unknown app, tenant or scope) is not.
	Transient bool
	// RetryAfter is the wait Entra asked for (Retry-After), or 0.
	RetryAfter time.Duration
	// Hint says in plain words what the user should do.
	Hint string
	// Err is the underlying cause (a network error), or nil. It never carries
	// the secret.
	Err error
}

// Error returns "op: description[: cause]", with the status when known. It
// is meant for logs; a client is shown Description and Hint, never Error().
func (e *Error) Error() string {
	var b strings.Builder
	op := e.Op
	if op == "" {
		op = "token"
	}
	b.WriteString(op)
	b.WriteString(": ")
	switch {
	case e.Description != "":
		b.WriteString(e.Description)
		if e.Err != nil {
			b.WriteString(": ")
			b.WriteString(e.Err.Error())
		}
	case e.Code != "":
		b.WriteString(e.Code)
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	default:
		b.WriteString("request failed")
	}
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.StatusCode)
	}
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether retrying later may succeed.
func (e *Error) Temporary() bool { return e.Transient }
