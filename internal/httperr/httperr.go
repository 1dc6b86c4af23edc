// Package httperr owns the broker's HTTP error: one type that keeps apart the
// status, the words for the client and the cause for the log, and one writer
// that turns it into the JSON body every route answers with.
//
// A client only ever sees what an *Error's public fields say; the cause (Err)
// and any other error's text stay in the process.
package httperr

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// Error is an HTTP error answer.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Code is a short machine-readable code, sent as "error".
	Code string
	// Description is one sentence for the user, sent as "error_description".
	Description string
	// Hint says what to do, sent as "hint"; may be empty.
	Hint string
	// AADCodes are Entra's AADSTS codes, sent as "aad_error_codes"; may be nil.
	AADCodes []int
	// CorrelationID is Entra's correlation ID, sent as "correlation_id"; may be empty.
	CorrelationID string
	// Message, when set, is sent as "message" too: the Azure SDKs for
	// JavaScript and Python show only that field of a managed-identity error.
	Message string
	// Caller, when set, is sent as "caller": who the broker saw asking
	// (uid, user, pid, executable), on a refusal of the callers policy.
	Caller any
	// RetryAfter, when positive, is sent as the Retry-After header (whole
	// seconds, rounded up).
	RetryAfter time.Duration
	// Err is the cause, for the log only. It is never sent to the client.
	Err error
}

// New returns an Error without a cause.
func New(status int, code, description, hint string) *Error {
	return &Error{Status: status, Code: code, Description: description, Hint: hint}
}

// Error returns the code and description, and the cause when there is one.
func (e *Error) Error() string {
	s := strconv.Itoa(e.Status) + " " + e.Code + ": " + e.Description
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Body is the JSON error body. Fields that do not apply are left out.
type Body struct {
	Error         string `json:"error"`
	Description   string `json:"error_description"`
	Hint          string `json:"hint,omitempty"`
	AADCodes      []int  `json:"aad_error_codes,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`
	Message       string `json:"message,omitempty"`
	Caller        any    `json:"caller,omitempty"`
}

// Internal is what a client sees for an error that is not an *Error: a
// generic 500 that says nothing of the process's insides.
var Internal = &Error{
	Status:      http.StatusInternalServerError,
	Code:        "internal_error",
	Description: "The broker failed to handle the request.",
	Hint:        "This is a bug in the broker; its log has the details (search for the request ID).",
}

// As returns err as an *Error, or Internal (with err as its cause) when err is
// not one.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	c := *Internal
	c.Err = err
	return &c
}

// Write sends err as a JSON error answer: status, Retry-After when set,
// Cache-Control: no-store, and the Body.
func Write(w http.ResponseWriter, err error) {
	e := As(err)
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((e.RetryAfter+time.Second-1)/time.Second), 10))
	}
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(Body{
		Error:         e.Code,
		Description:   e.Description,
		Hint:          e.Hint,
		AADCodes:      e.AADCodes,
		CorrelationID: e.CorrelationID,
		Message:       e.Message,
		Caller:        e.Caller,
	})
}
