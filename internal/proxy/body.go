package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/entrabroker/broker/internal/httperr"
)

// maxReplayBytes is the largest request body kept in memory so that the
// request can be sent again after an upstream 401. Log Analytics query
// bodies are a few kilobytes; larger bodies stream and are not retried.
const maxReplayBytes = 1 << 20

// DefaultBodyBudgetBytes is the process-wide budget of buffered request-body
// bytes when Options.BodyBudgetBytes is 0. The shipped sidecar manifest gives
// the container 64 MiB and sets GOMEMLIMIT from it; the broker idles at about
// 15 MB, and the garbage collector lets the heap reach about twice what is
// live, so 16 MiB of bodies (at most ~47 MB in all) stays under the limit
// while still holding sixteen full 1 MiB replayable bodies, or thousands of
// the few-kilobyte bodies Log Analytics queries send, at once.
const DefaultBodyBudgetBytes = 16 << 20

// DefaultBodyReadTimeout is how long the proxy waits for the next bytes of a
// request body when Options.BodyReadTimeout is 0. Callers are on the same
// host or pod and send their bodies at once; 10 s without a single byte means
// a stalled or hostile client, whose connection and buffers are then freed.
const DefaultBodyReadTimeout = 10 * time.Second

// Chunk sizes of a buffered body: the first chunk is small because most
// bodies are a few kilobytes; later chunks double up to maxChunk, so a body
// is held in a handful of pieces and at most one chunk is partly empty.
const (
	firstChunk = 4 << 10
	maxChunk   = firstChunk << 4
)

// chunkPools recycle the chunks of bodies that were refused before being
// forwarded (busy, timed out, too large, no token), so that a flood of
// refused bodies reuses memory instead of piling up garbage between
// collections. The chunks of a forwarded body go to the garbage collector: a
// transport may still read them after the handler returns. Pool i holds
// chunks of firstChunk<<i bytes.
var chunkPools [5]sync.Pool

// poolOf returns the pool for chunks of capacity size, or nil.
func poolOf(size int) *sync.Pool {
	for i := range chunkPools {
		if size == firstChunk<<i {
			return &chunkPools[i]
		}
	}
	return nil
}

// newChunk returns an empty chunk of capacity size, recycled when possible.
func newChunk(size int64) []byte {
	if p := poolOf(int(size)); p != nil {
		if c, ok := p.Get().(*[]byte); ok {
			return (*c)[:0]
		}
	}
	return make([]byte, 0, size)
}

// streamReserve is what a streamed body (larger than maxReplayBytes) takes
// from the budget for as long as it is sent: the upstream connection's 32 KiB
// write buffer and ReverseProxy's 32 KiB copy buffer are held meanwhile.
const streamReserve = 64 << 10

// busyRetryAfter is the Retry-After of a 503 busy answer: buffered bodies are
// sent within milliseconds and stalled ones freed by the read timeout, so the
// budget frees up quickly.
const busyRetryAfter = 2 * time.Second

// errBodyTooLarge is what a capped body returns past the limit.
var errBodyTooLarge = errors.New("proxy: request body too large")

// errBodyTimeout is what a body returns when the client stalled past the
// read timeout.
var errBodyTimeout = errors.New("proxy: request body read timed out")

// errBusy reports that the body budget could not cover a request.
var errBusy = errors.New("proxy: body budget exhausted")

// budget counts the request-body bytes buffered by the whole process. It is
// safe for concurrent use.
type budget struct {
	limit int64
	used  atomic.Int64
}

// reserve takes n bytes from the budget and reports whether they were free.
func (b *budget) reserve(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// release gives back n reserved bytes.
func (b *budget) release(n int64) { b.used.Add(-n) }

// body is one request's body as the proxy holds it: its buffered chunks, the
// budget they took, and the client's read deadline.
type body struct {
	h        *handler
	st       *reqState
	rc       *http.ResponseController
	chunks   [][]byte // the buffered bytes, each chunk full but the last
	n        int64    // bytes buffered
	reserved int64    // bytes taken from the budget
	// forwarded is set, on the handler's goroutine, when the body is handed
	// to the upstream transport; its chunks are then never recycled.
	forwarded bool
	// finished is set when the handler returns; a transport still reading
	// the body afterwards must not move the deadline of a connection that
	// may already serve the next request.
	finished atomic.Bool
}

// extend moves the client's read deadline to the timeout from now. It runs
// before every read of the client's body, so the timeout bounds the time
// without progress, not the whole upload.
func (b *body) extend() {
	if b.finished.Load() {
		return
	}
	// Deadlines on a connection are wall-clock times, never the injected
	// clock. A ResponseWriter that cannot set one (not the server's own)
	// leaves the body without a deadline.
	_ = b.rc.SetReadDeadline(time.Now().Add(b.h.bodyTimeout))
}

// clear removes the read deadline once the body is read: the connection
// stays open for a query that may run 10 minutes, and the server's
// background read must not time out meanwhile and cancel the request.
func (b *body) clear() {
	if !b.finished.Load() {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
}

// read reads from the client's body under the read deadline and turns a
// timeout into errBodyTimeout.
func (b *body) read(r io.Reader, p []byte) (int, error) {
	b.extend()
	n, err := r.Read(p)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		b.clear()
	case isDeadline(err):
		b.st.bodyTimeout.Store(true)
		err = errBodyTimeout
	}
	return n, err
}

// isDeadline reports whether err is a connection's read deadline passing.
func isDeadline(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// fill buffers the client's body until EOF or until more than limit bytes
// arrived, growing chunk by chunk as bytes arrive and taking each chunk from
// the budget first; length is the declared Content-Length (-1 when unknown),
// which only ever makes the first chunk smaller. It reports whether the
// whole body was read.
func (b *body) fill(r io.Reader, length, limit int64) (bool, error) {
	size := int64(firstChunk)
	if length > 0 && length < size {
		size = length // a small body of known length: no larger chunk than needed
	}
	for {
		var c []byte
		if k := len(b.chunks); k > 0 && len(b.chunks[k-1]) < cap(b.chunks[k-1]) {
			c = b.chunks[k-1]
			b.chunks = b.chunks[:k-1]
		} else {
			if !b.h.budget.reserve(size) {
				return false, errBusy
			}
			b.reserved += size
			c = newChunk(size)
			size = min(2*size, maxChunk)
		}
		n, err := b.read(r, c[len(c):cap(c)])
		c = c[:len(c)+n]
		b.chunks = append(b.chunks, c)
		b.n += int64(n)
		if b.n > limit {
			return false, nil
		}
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err == nil && b.n == length {
			// The server ends a body at its Content-Length: no chunk is
			// needed to see the EOF.
			b.clear()
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// reader returns a fresh reader of the buffered bytes.
func (b *body) reader() io.Reader {
	switch len(b.chunks) {
	case 0:
		return http.NoBody
	case 1:
		return bytes.NewReader(b.chunks[0])
	}
	rs := make([]io.Reader, len(b.chunks))
	for i, c := range b.chunks {
		rs[i] = bytes.NewReader(c)
	}
	return io.MultiReader(rs...)
}

// done gives the budget back and recycles the chunks of a body that was not
// forwarded. It runs when the handler returns; a transport still finishing
// the write of a forwarded body then reads chunks the garbage collector
// frees afterwards, never recycled ones. A deadline still set (the body was
// not read to its end) stays: the server may read the rest of the body to
// reuse the connection, and a stalled client must not hold it open meanwhile.
func (b *body) done() {
	b.finished.Store(true)
	if !b.forwarded {
		for _, c := range b.chunks {
			if p := poolOf(cap(c)); p != nil {
				c = c[:0]
				p.Put(&c)
			}
		}
		b.chunks = nil
	}
	if b.reserved > 0 {
		b.h.budget.release(b.reserved)
		b.reserved = 0
	}
}

// prepareBody reads a body of up to maxReplayBytes into st (making the
// request replayable) or sets up a larger one to stream under the read
// deadline and the cap, and returns the body, its length (-1 when unknown)
// and GetBody to send upstream. Its errors are the answers to send: 413, 408
// body_timeout, 503 busy, or 400 when the client's body failed. st.body.done
// must run when the request ends.
func (h *handler) prepareBody(w http.ResponseWriter, st *reqState, r *http.Request) (io.ReadCloser, int64, func() (io.ReadCloser, error), *httperr.Error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		st.replayable = true
		return http.NoBody, 0, nil, nil
	}
	b := &body{h: h, st: st, rc: http.NewResponseController(w)}
	st.body = b
	if r.ContentLength > maxReplayBytes {
		// Large and of known length: streamed, so only the upstream
		// connection's buffers are held; the server stops at
		// Content-Length, which is within the cap (checked before).
		if !h.budget.reserve(streamReserve) {
			return nil, 0, nil, h.busy
		}
		b.reserved = streamReserve
		return &streamBody{st: st, r: b.client(r.Body), c: r.Body, n: r.ContentLength}, r.ContentLength, nil, nil
	}
	limit := min(int64(maxReplayBytes), h.maxBody)
	all, err := b.fill(r.Body, r.ContentLength, limit)
	switch {
	case errors.Is(err, errBusy):
		return nil, 0, nil, h.busy
	case errors.Is(err, errBodyTimeout):
		return nil, 0, nil, h.bodyTimeoutErr
	case err != nil:
		return nil, 0, nil, &httperr.Error{Status: http.StatusBadRequest, Code: "bad_request", Description: "The request body could not be read.", Err: err}
	case all:
		st.replayable = true
		return st.newBody(), b.n, func() (io.ReadCloser, error) { return st.newBody(), nil }, nil
	case b.n > h.maxBody:
		return nil, 0, nil, h.tooLarge
	}
	// Unknown length (chunked) and longer than may be kept: send what was
	// read, then stream the rest, both under the cap and the deadline.
	return &streamBody{st: st, r: io.MultiReader(b.reader(), b.client(r.Body)), c: r.Body, n: h.maxBody}, -1, nil, nil
}

// client returns r read under the read deadline.
func (b *body) client(r io.Reader) io.Reader {
	return readerFunc(func(p []byte) (int, error) { return b.read(r, p) })
}

// readerFunc is a function that reads.
type readerFunc func(p []byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// newBody returns a fresh reader of the kept body, or http.NoBody.
func (st *reqState) newBody() io.ReadCloser {
	if st.body == nil || st.body.n == 0 {
		return http.NoBody
	}
	return io.NopCloser(st.body.reader())
}

// streamBody is a body streamed upstream as it arrives. It passes at most n
// bytes and fails past them, marking the request as too large so that the
// error handler answers 413; reads from the client run under the read
// deadline, and a stall marks the request for a 408.
type streamBody struct {
	st *reqState
	r  io.Reader // the client's body under the read deadline
	c  io.Closer // the client's body
	n  int64     // bytes still allowed
}

func (s *streamBody) Read(p []byte) (int, error) {
	if int64(len(p)) > s.n+1 {
		p = p[:s.n+1]
	}
	n, err := s.r.Read(p)
	if int64(n) <= s.n {
		s.n -= int64(n)
		return n, err
	}
	n = int(s.n)
	s.n = 0
	s.st.tooLarge.Store(true)
	return n, errBodyTooLarge
}

func (s *streamBody) Close() error { return s.c.Close() }

// bodyErrors prepares the proxy's own answers about request bodies.
func (h *handler) bodyErrors() {
	h.tooLarge = &httperr.Error{
		Status:      http.StatusRequestEntityTooLarge,
		Code:        "request_too_large",
		Description: "The request body is larger than the broker's limit of " + formatBytes(h.maxBody) + ".",
		Hint:        "Send a smaller body (Log Analytics query bodies are a few kilobytes), or raise the broker's proxy body limit.",
	}
	h.busy = &httperr.Error{
		Status:      http.StatusServiceUnavailable,
		Code:        "busy",
		Description: "The broker is holding as many request bodies as its memory budget allows (" + formatBytes(h.budget.limit) + ").",
		Hint:        "Retry after the Retry-After delay; if this persists, a client is sending bodies without finishing them.",
		RetryAfter:  busyRetryAfter,
	}
	h.bodyTimeoutErr = &httperr.Error{
		Status:      http.StatusRequestTimeout,
		Code:        "body_timeout",
		Description: "The request body stopped arriving: no bytes for " + h.bodyTimeout.String() + ".",
		Hint:        "Send the whole body without pauses; the broker closes a connection whose body stalls that long.",
	}
}
