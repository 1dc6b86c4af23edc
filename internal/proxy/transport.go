package proxy

import (
	"io"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/entrabroker/broker/internal/azure"
)

// newTransport returns the default upstream transport: azure.NewTransport
// (bounded connection set-up) with no bound on a running query and no
// transparent decompression.
func newTransport() *http.Transport {
	t := azure.NewTransport()
	// ResponseHeaderTimeout bounds the wait for the status line once the
	// request is sent. Log Analytics answers only when the query is done,
	// and a query may run 10 minutes (Prefer: wait=600), after which the
	// service answers 504 itself; 11 minutes never cuts a query short but
	// still frees a request whose upstream died silently.
	t.ResponseHeaderTimeout = 11 * time.Minute
	// MaxIdleConnsPerHost keeps enough warm connections for a sidecar's
	// burst of concurrent HTTP/1.1 calls (Go's default of 2 makes most of a
	// burst dial anew); HTTP/2 upstreams multiplex on one.
	t.MaxIdleConnsPerHost = 64
	t.MaxIdleConns = 256
	// DisableCompression stops the transport from adding its own
	// "Accept-Encoding: gzip" and decompressing: the caller's
	// Accept-Encoding goes upstream as sent and a gzip body comes back byte
	// for byte.
	t.DisableCompression = true
	// Bigger buffers than the 4 KiB default cut system calls for the
	// multi-megabyte query results Log Analytics returns.
	t.WriteBufferSize = 32 << 10
	t.ReadBufferSize = 32 << 10
	return t
}

// retryTransport sends a request and, when the upstream answers 401, asks
// Tokens to drop the token it carried and, when Tokens did and the request
// is replayable, sends it once more with a fresh token. Tokens rations the
// drops, so an upstream that refuses every token cannot make the broker
// fetch a new one per request; a refused drop passes the 401 on.
type retryTransport struct {
	base   http.RoundTripper
	tokens Tokens
	log    *zap.Logger
}

// RoundTrip implements http.RoundTripper. It runs on the goroutine of the
// request it serves.
func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if res.Request == nil {
		res.Request = req // the response handler finds the request's state there
	}
	if res.StatusCode == http.StatusTooManyRequests {
		if res, err = t.requeue(req, res); err != nil {
			return nil, err
		}
	}
	if res.StatusCode != http.StatusUnauthorized {
		return res, nil
	}
	st := stateOf(req.Context())
	if st == nil || st.retried {
		return res, nil
	}
	rt := st.route
	if !t.tokens.Invalidate(rt.Name, rt.Scope, st.token) {
		st.rationed = true
		return res, nil // the response handler explains it
	}
	if !st.replayable {
		return res, nil // the response handler explains it
	}
	tok, err := t.tokens.Bearer(req.Context(), rt.Name, rt.Scope)
	if err == nil && tok == "" {
		err = errEmptyToken
	}
	if err != nil {
		discard(res)
		return nil, &tokenFailure{err: err}
	}
	discard(res)
	t.log.Info("upstream refused the token; retrying once with a fresh one",
		zap.String("route", rt.Name), zap.Int("status", res.StatusCode))
	st.retried = true
	rt.m.retries.Inc()
	retry := req.Clone(req.Context())
	retry.Header["Authorization"] = []string{"Bearer " + tok}
	retry.Body = st.newBody()
	res, err = t.base.RoundTrip(retry)
	if err == nil && res.Request == nil {
		res.Request = retry
	}
	return res, err
}

// requeue answers an upstream 429 to a queued route's replayable request
// with a Retry-After: it pauses the identity's queue for that long, gives
// back the request's turn, waits for a new one and sends the request once
// more, so that the caller sees the answer instead of the 429. A request
// that may not be sent again, was already, or whose wait would be longer
// than the queue's maximum gets the 429 (and the pause, from the response
// handler).
func (t *retryTransport) requeue(req *http.Request, res *http.Response) (*http.Response, error) {
	st := stateOf(req.Context())
	if st == nil || st.queue == nil || !st.replayable || st.requeued {
		return res, nil
	}
	q := st.queue
	d := parseRetryAfter(res.Header.Get("Retry-After"), q.qs.clock.Now())
	if d <= 0 || d > q.qs.opts.MaxWait {
		return res, nil
	}
	discard(res)
	q.pause(d)
	st.requeued = true
	st.release()
	st.release = func() {}
	release, err := q.acquire(req.Context())
	if err != nil {
		return nil, err
	}
	st.release = release
	t.log.Info("upstream answered 429; the query waited out its Retry-After in the queue and is sent again",
		zap.String("route", st.route.Name), zap.Duration("retry_after", d))
	retry := req.Clone(req.Context())
	retry.Body = st.newBody()
	res, err = t.base.RoundTrip(retry)
	if err == nil && res.Request == nil {
		res.Request = retry
	}
	return res, err
}

// tokenFailure marks a Tokens error met while retrying, so that the error
// handler answers it as a token error, not as an unreachable upstream.
type tokenFailure struct{ err error }

func (e *tokenFailure) Error() string { return "proxy: fetch fresh token: " + e.err.Error() }
func (e *tokenFailure) Unwrap() error { return e.err }

// discard drains a little of a response body, so that its connection can be
// reused, and closes it.
func discard(res *http.Response) {
	_, _ = io.CopyN(io.Discard, res.Body, 4<<10)
	_ = res.Body.Close()
}
