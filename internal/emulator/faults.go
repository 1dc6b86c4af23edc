package emulator

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// FaultKind is what an injected fault does to a token request.
type FaultKind int

// The fault kinds.
const (
	// FaultThrottle answers 429 Too Many Requests with Retry-After
	// (Fault.RetryAfter, default 60 s) and the plain-text body Entra sends.
	FaultThrottle FaultKind = iota + 1
	// FaultServerError answers 500 with an AADSTS50000 server_error body.
	FaultServerError
	// FaultUnavailable answers 503 with an AADSTS90033
	// temporarily_unavailable body, and Retry-After when Fault.RetryAfter is
	// set.
	FaultUnavailable
	// FaultDelay holds the request (see Fault.Delay and Fault.Release), then
	// answers it normally. A request whose context ends first gets no answer.
	FaultDelay
	// FaultMalformedBody answers 200 with a truncated JSON body.
	FaultMalformedBody
	// FaultDropConnection closes the connection without an answer.
	FaultDropConnection
)

// String names the kind, for logs and test names.
func (k FaultKind) String() string {
	switch k {
	case FaultThrottle:
		return "throttle"
	case FaultServerError:
		return "server-error"
	case FaultUnavailable:
		return "unavailable"
	case FaultDelay:
		return "delay"
	case FaultMalformedBody:
		return "malformed-body"
	case FaultDropConnection:
		return "drop-connection"
	}
	return "fault(" + strconv.Itoa(int(k)) + ")"
}

// DefaultThrottleRetryAfter is the Retry-After Entra sends with a 429 for the
// client-credentials grant.
const DefaultThrottleRetryAfter = 60 * time.Second

// Fault is a misbehaviour for the next token requests of one app.
type Fault struct {
	// Kind is what happens.
	Kind FaultKind
	// Times is how many requests get the fault; zero means one.
	Times int
	// RetryAfter is the Retry-After of FaultThrottle (zero means
	// DefaultThrottleRetryAfter) and FaultUnavailable (zero means none). It is
	// sent in whole seconds, rounded up.
	RetryAfter time.Duration
	// Delay is how long FaultDelay holds a request. Zero means until Release
	// is closed or the request's context ends.
	Delay time.Duration
	// Release, when not nil, ends every FaultDelay hold early when closed, so
	// that tests need not wait for real time.
	Release <-chan struct{}
	// Reached, when not nil, receives a value each time a request takes this
	// fault, before the fault acts; the send does not block (a full channel
	// loses the value), so give it a buffer.
	Reached chan<- struct{}
}

// InjectFault queues f for the next token requests whose client ID (form or
// Basic) is clientID; faults queued for the same app act one after another.
// A request takes its fault before any other check, so faults also reach
// unknown apps.
func (e *Emulator) InjectFault(clientID string, f Fault) {
	if f.Times <= 0 {
		f.Times = 1
	}
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	k := strings.ToLower(clientID)
	e.faults[k] = append(e.faults[k], &f)
}

// ClearFaults drops the faults still queued for clientID.
func (e *Emulator) ClearFaults(clientID string) {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	delete(e.faults, strings.ToLower(clientID))
}

// takeFault returns the fault the current request of clientID gets, or nil,
// and counts it against the fault's Times.
func (e *Emulator) takeFault(clientID string) *Fault {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	k := strings.ToLower(clientID)
	q := e.faults[k]
	if len(q) == 0 {
		return nil
	}
	f := q[0]
	f.Times--
	if f.Times == 0 {
		if len(q) == 1 {
			delete(e.faults, k)
		} else {
			e.faults[k] = q[1:]
		}
	}
	return f
}

// applyFault acts out f. It reports whether the request is finished (true
// for all kinds but a delay that ran out or was released).
func (e *Emulator) applyFault(w http.ResponseWriter, r *http.Request, x exchange, f *Fault) bool {
	if f.Reached != nil {
		select {
		case f.Reached <- struct{}{}:
		default:
		}
	}
	switch f.Kind {
	case FaultThrottle:
		ra := f.RetryAfter
		if ra <= 0 {
			ra = DefaultThrottleRetryAfter
		}
		w.Header().Set("Retry-After", retryAfterSeconds(ra))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if x.clientRequestID != "" {
			w.Header().Set("client-request-id", x.clientRequestID)
		}
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte("Too Many Requests"))
	case FaultServerError:
		e.writeError(w, x, errServerError())
	case FaultUnavailable:
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", retryAfterSeconds(f.RetryAfter))
		}
		e.writeError(w, x, errTemporarilyUnavailable())
	case FaultDelay:
		var timeout <-chan time.Time
		if f.Delay > 0 {
			t := time.NewTimer(f.Delay)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-r.Context().Done():
			return true
		case <-timeout:
		case <-f.Release:
		}
		return false
	case FaultMalformedBody:
		x.setCommonHeaders(w.Header(), 0)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"token_type":"Bearer","expires_in":35`))
	case FaultDropConnection:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return true
			}
		}
		// HTTP/2 and wrapped writers cannot hijack: abort the stream.
		panic(http.ErrAbortHandler)
	}
	return true
}

func retryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}

// count records one token request.
func (e *Emulator) count(clientID, scope string) {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	e.total++
	e.counts[counterKey{strings.ToLower(clientID), scope}]++
}

// Requests returns how many token requests named clientID (any case) and
// scope. The scope is compared as the request sent it without the OIDC
// scopes MSAL adds, e.g. "https://api.loganalytics.io/.default"; an empty
// scope counts the app's requests for every scope. Requests that failed or
// met a fault count too.
func (e *Emulator) Requests(clientID, scope string) int {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	id := strings.ToLower(clientID)
	if scope != "" {
		return e.counts[counterKey{id, requestedScopes(scope)}]
	}
	n := 0
	for k, c := range e.counts {
		if k.clientID == id {
			n += c
		}
	}
	return n
}

// TotalRequests returns how many requests reached the token endpoint, with
// any method, client or outcome.
func (e *Emulator) TotalRequests() int {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	return e.total
}

// ResetCounters sets every request counter back to zero.
func (e *Emulator) ResetCounters() {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	e.total = 0
	clear(e.counts)
}
