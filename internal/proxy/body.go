package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
)

// maxReplayBytes is the largest request body kept in memory so that the
// request can be sent again after an upstream 401. Log Analytics query
// bodies are a few kilobytes; larger bodies stream and are not retried.
const maxReplayBytes = 1 << 20

// errBodyTooLarge is what a capped body returns past the limit.
var errBodyTooLarge = errors.New("proxy: request body too large")

// errBodyRead reports a request body that could not be read.
var errBodyRead = errors.New("proxy: read request body")

// prepareBody reads a small body into st (making the request replayable) or
// wraps a large one in a cap, and returns the body, its length (-1 when
// unknown) and GetBody to send upstream. It returns errBodyTooLarge when the
// body is over max and errBodyRead when the client's body failed.
func prepareBody(st *reqState, r *http.Request, max int64) (io.ReadCloser, int64, func() (io.ReadCloser, error), error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		st.replayable = true
		return http.NoBody, 0, nil, nil
	}
	if r.ContentLength > 0 {
		if r.ContentLength > maxReplayBytes {
			// Large and of known length: the server stops at Content-Length,
			// which is within max (checked before).
			return r.Body, r.ContentLength, nil, nil
		}
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return nil, 0, nil, errBodyRead
		}
		return st.keep(buf)
	}
	// Unknown length (chunked): read what may be kept, and stream the rest.
	limit := min(int64(maxReplayBytes), max)
	var b bytes.Buffer
	n, err := b.ReadFrom(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, 0, nil, errBodyRead
	}
	if n <= limit {
		return st.keep(b.Bytes())
	}
	if n > max {
		return nil, 0, nil, errBodyTooLarge
	}
	body := &capReader{
		r:  io.MultiReader(bytes.NewReader(b.Bytes()), r.Body),
		c:  r.Body,
		n:  max,
		st: st,
	}
	return body, -1, nil, nil
}

// keep makes buf the replayable body of st.
func (st *reqState) keep(buf []byte) (io.ReadCloser, int64, func() (io.ReadCloser, error), error) {
	st.replayable = true
	st.body = buf
	return st.newBody(), int64(len(buf)), func() (io.ReadCloser, error) { return st.newBody(), nil }, nil
}

// newBody returns a fresh reader of the kept body, or http.NoBody.
func (st *reqState) newBody() io.ReadCloser {
	if len(st.body) == 0 {
		return http.NoBody
	}
	return io.NopCloser(bytes.NewReader(st.body))
}

// capReader passes at most n bytes and fails past them, marking the request
// as too large so that the error handler answers 413.
type capReader struct {
	r  io.Reader
	c  io.Closer
	n  int64 // bytes still allowed
	st *reqState
}

func (c *capReader) Read(p []byte) (int, error) {
	if int64(len(p)) > c.n+1 {
		p = p[:c.n+1]
	}
	n, err := c.r.Read(p)
	if int64(n) <= c.n {
		c.n -= int64(n)
		return n, err
	}
	n = int(c.n)
	c.n = 0
	c.st.tooLarge.Store(true)
	return n, errBodyTooLarge
}

func (c *capReader) Close() error { return c.c.Close() }
