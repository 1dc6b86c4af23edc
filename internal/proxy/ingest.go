package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/entrabroker/broker/internal/httperr"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// The Logs Ingestion API takes a JSON array of records per call,
// POST {endpoint}/dataCollectionRules/{dcr-immutable-id}/streams/{stream},
// and refuses a call over 1 MB with 413. The ingestion routes accept an
// array of any size up to a cap, split it on record boundaries into calls
// under that limit (gzip'd when more records fit that way), send them a few
// at a time, retry what the service did not take for a passing reason, and
// answer 204 only when every record was accepted; otherwise the answer
// names the records (index ranges) that were not, and why.

// Ingestion defaults.
const (
	// DefaultIngestionMaxBodyBytes is IngestionOptions.MaxBodyBytes when 0.
	DefaultIngestionMaxBodyBytes = 64 << 20
	// DefaultIngestionMaxCallBytes is IngestionOptions.MaxCallBytes when 0:
	// under the service's limit of 1,048,576 bytes per call with room to
	// spare (the service documents the limit as "1 MB").
	DefaultIngestionMaxCallBytes = 1_000_000
	// DefaultIngestionConcurrency is IngestionOptions.Concurrency when 0.
	DefaultIngestionConcurrency = 4
	// DefaultIngestionMaxAttempts is IngestionOptions.MaxAttempts when 0.
	DefaultIngestionMaxAttempts = 6
)

// ingestCallTimeout bounds one upstream call. A call carries at most 1 MB
// and the service answers in about a second; a minute frees a call whose
// upstream went silent.
const ingestCallTimeout = time.Minute

// Backoff between attempts without Retry-After: 1 s, doubling, at most 30 s;
// a Retry-After larger than maxIngestRetryAfter ends the retries.
const (
	ingestBackoff       = time.Second
	maxIngestBackoff    = 30 * time.Second
	maxIngestRetryAfter = 2 * time.Minute
)

// IngestionOptions configure the Logs Ingestion routes.
type IngestionOptions struct {
	// MaxBodyBytes caps an upload, as sent and after gzip decoding; 0 means
	// DefaultIngestionMaxBodyBytes.
	MaxBodyBytes int64
	// MaxCallBytes caps one upstream call's body; 0 means
	// DefaultIngestionMaxCallBytes. A record larger than this less two
	// bytes is refused without being sent.
	MaxCallBytes int
	// Concurrency is how many calls of one upload are upstream at once; 0
	// means DefaultIngestionConcurrency.
	Concurrency int
	// MaxAttempts bounds the attempts of one call (429, 5xx, a connection
	// that failed before the call was sent); 0 means
	// DefaultIngestionMaxAttempts.
	MaxAttempts int
}

// ingester serves uploads on the ingestion routes.
type ingester struct {
	h      *handler
	opts   IngestionOptions
	client *http.Client
	m      *ingestMetrics
	// tooLarge answers a Content-Length over the cap.
	tooLarge *httperr.Error
}

func newIngester(h *handler, opts IngestionOptions, transport http.RoundTripper, reg prometheus.Registerer) (*ingester, error) {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultIngestionMaxBodyBytes
	}
	if opts.MaxCallBytes <= 0 {
		opts.MaxCallBytes = DefaultIngestionMaxCallBytes
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultIngestionConcurrency
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultIngestionMaxAttempts
	}
	m, err := newIngestMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &ingester{
		h:    h,
		opts: opts,
		client: &http.Client{
			Transport: transport,
			// The service never redirects; following one would carry the
			// broker's token elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		m: m,
		tooLarge: &httperr.Error{
			Status:      http.StatusRequestEntityTooLarge,
			Code:        "request_too_large",
			Description: "The upload is larger than the broker's ingestion limit of " + formatBytes(opts.MaxBodyBytes) + ".",
			Hint:        "Send the records in several uploads, or raise BROKER_INGESTION_MAX_BODY_BYTES.",
		},
	}, nil
}

// isUpload reports whether method and the cleaned path are a Logs
// Ingestion upload: POST /dataCollectionRules/{id}/streams/{stream}.
func isUpload(method, path string) bool {
	if method != http.MethodPost {
		return false
	}
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	return len(segs) == 4 && strings.EqualFold(segs[0], "dataCollectionRules") && segs[1] != "" &&
		strings.EqualFold(segs[2], "streams") && segs[3] != ""
}

// outcome is what became of a range of records.
type outcome struct {
	First int `json:"first"`
	Last  int `json:"last"`
	// Status is the HTTP status the range got, from the service or the
	// broker.
	Status int `json:"status"`
	// Code is the service's error code, or the broker's.
	Code string `json:"error"`
	// Reason says why, in words.
	Reason string `json:"reason"`
	// Sent is true when the records went upstream.
	Sent bool `json:"sent"`
	// MayHaveLanded is true when the connection failed after the call was
	// sent: the service may have stored the records, so the broker did not
	// send them again.
	MayHaveLanded bool `json:"may_have_landed,omitempty"`

	hint       string
	retryAfter time.Duration
	halt       bool // every later call would fail the same way
}

// same reports whether o and p may be merged into one range.
func (o outcome) same(p outcome) bool {
	return o.Status == p.Status && o.Code == p.Code && o.Reason == p.Reason && o.Sent == p.Sent && o.MayHaveLanded == p.MayHaveLanded
}

// upload is one upload's state, shared by its sending goroutines.
type upload struct {
	ing *ingester
	rt  *route
	ctx context.Context
	url string
	// auth is the upload's token: fetched through the gate once, at the
	// first call (one policy decision and one audit line per upload, not
	// per call), and again only after the service refused it with 401.
	auth struct {
		sync.Mutex
		token   string
		retried bool // a 401 already dropped the token once
	}

	// readDone is closed when the reading of the caller's body ended.
	readDone chan struct{}
	readOnce sync.Once

	mu       sync.Mutex
	failed   []outcome
	accepted int
	halted   *outcome
}

// doneReading notes that the caller's body is read (or failed).
func (up *upload) doneReading() { up.readOnce.Do(func() { close(up.readDone) }) }

// fail records an outcome other than accepted.
func (up *upload) fail(o outcome) {
	up.mu.Lock()
	defer up.mu.Unlock()
	up.failed = append(up.failed, o)
	if o.halt && up.halted == nil {
		h := o
		up.halted = &h
	}
}

// halt returns the refusal that stops every later call, or nil.
func (up *upload) halt() *outcome {
	up.mu.Lock()
	defer up.mu.Unlock()
	return up.halted
}

// serve answers one upload.
func (ing *ingester) serve(w http.ResponseWriter, r *http.Request, rt *route, path, raw string, start time.Time) {
	h := ing.h
	if r.ContentLength > ing.opts.MaxBodyBytes {
		h.answer(w, r, rt.m, start, ing.tooLarge)
		return
	}
	var gz bool
	switch ce := strings.TrimSpace(r.Header.Get("Content-Encoding")); {
	case ce == "" || strings.EqualFold(ce, "identity"):
	case strings.EqualFold(ce, "gzip"):
		gz = true
	default:
		h.answer(w, r, rt.m, start, &httperr.Error{
			Status:      http.StatusUnsupportedMediaType,
			Code:        "unsupported_content_encoding",
			Description: "The ingestion route takes a plain or gzip'd JSON array; the body's Content-Encoding is " + strconv.Quote(ce) + ".",
			Hint:        "Send the body plain or with Content-Encoding: gzip.",
		})
		return
	}
	// The working set: the calls in flight, the one being filled (plain
	// and compressed) and the scanner's current record; a small plain
	// body of known length needs no more than twice its size.
	reserve := int64(ing.opts.Concurrency+3) * int64(ing.opts.MaxCallBytes)
	if !gz && r.ContentLength >= 0 {
		reserve = min(reserve, 2*r.ContentLength+streamReserve)
	}
	if !h.budget.reserve(reserve) {
		h.answer(w, r, rt.m, start, h.busy)
		return
	}
	st := &reqState{route: rt}
	b := &body{h: h, st: st, rc: http.NewResponseController(w), reserved: reserve}
	defer b.done()

	var in io.Reader = &cappedReader{r: b.client(r.Body), n: ing.opts.MaxBodyBytes}
	// The upload's calls stop when the caller goes away, but not when only
	// its body stalled: the records read by then are still sent, and the
	// 408 says what became of them. The server cancels the request's
	// context on either, so the upload has a context of its own.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	up := &upload{ing: ing, rt: rt, ctx: ctx, readDone: make(chan struct{})}
	defer up.doneReading()
	go func() {
		select {
		case <-r.Context().Done():
		case <-ctx.Done():
			return
		}
		<-up.readDone
		if !st.bodyTimeout.Load() {
			cancel()
		}
	}()
	_, upRaw := rt.join(path, raw)
	up.url = rt.scheme + "://" + rt.host + upRaw
	if r.URL.RawQuery != "" {
		up.url += "?" + r.URL.RawQuery
	}

	var rerr error
	received := 0
	if gz {
		zr, err := gzip.NewReader(in)
		if err != nil {
			rerr = err
		} else {
			defer func() { _ = zr.Close() }()
			in = zr
		}
	}
	if rerr == nil {
		received, rerr = ing.run(up, in)
	}
	ing.answer(w, r, rt, up, received, rerr, start)
}

// cappedReader fails past n bytes.
type cappedReader struct {
	r io.Reader
	n int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, errTooMuchInput
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}

// run reads the records from in and sends them in calls; it returns how
// many records it read and the error that stopped the reading, if any
// (the records read before it were handled).
func (ing *ingester) run(up *upload, in io.Reader) (int, error) {
	calls := make(chan *batch)
	var wg sync.WaitGroup
	for range ing.opts.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range calls {
				up.send(c)
			}
		}()
	}
	defer wg.Wait()
	defer close(calls)

	sc := newRecordScanner(in, ing.opts.MaxCallBytes-2, ing.opts.MaxBodyBytes)
	bt := newBatcher(ing.opts.MaxCallBytes)
	defer bt.release()
	dispatch := func(c *batch) {
		if c == nil {
			return
		}
		if o := up.halt(); o != nil {
			ing.notSent(up, c.first, c.last, *o)
			return
		}
		select {
		case calls <- c:
		case <-up.ctx.Done():
			ing.notSent(up, c.first, c.last, canceledOutcome)
		}
	}
	i := 0
	for {
		rec, size, err := sc.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			up.doneReading()
			dispatch(bt.flush())
			return i, err
		}
		if rec == nil {
			// The call so far ends here, so that every call is one range
			// of records.
			dispatch(bt.flush())
			up.fail(outcome{First: i, Last: i, Status: http.StatusRequestEntityTooLarge, Code: "record_too_large",
				Reason: fmt.Sprintf("The record is %d bytes; one call to the Logs Ingestion API carries at most 1 MB, so a record must be under %d bytes. It was not sent.", size, ing.opts.MaxCallBytes-2),
				hint:   "Split or shorten the record: the service refuses any call over 1 MB."})
			i++
			continue
		}
		dispatch(bt.add(i, rec))
		i++
	}
	up.doneReading()
	if i == 0 {
		// An empty array still makes one call: it checks the route, the
		// token and the role without storing anything (broker check --dcr).
		dispatch(&batch{first: 0, last: -1, body: []byte("[]")})
		return 0, nil
	}
	dispatch(bt.flush())
	return i, nil
}

// canceledOutcome is the fate of records not sent because the caller left.
var canceledOutcome = outcome{Status: 499, Code: "canceled", Reason: "The caller went away before these records were sent."}

// notSent records that records first…last were not sent because of o.
func (ing *ingester) notSent(up *upload, first, last int, o outcome) {
	if last < first {
		return
	}
	n := o
	n.First, n.Last, n.Sent, n.MayHaveLanded, n.halt = first, last, false, false, false
	if o.Code != canceledOutcome.Code {
		n.Reason = "Not sent: an earlier call was refused (" + strconv.Itoa(o.Status) + " " + o.Code + ") and every call would be."
	}
	up.fail(n)
}

// send delivers one call, retrying what the service did not take for a
// passing reason, and records the result.
func (up *upload) send(c *batch) {
	ing := up.ing
	rt := up.rt
	if o := up.halt(); o != nil {
		ing.notSent(up, c.first, c.last, *o)
		return
	}
	n := c.last - c.first + 1
	for attempt := 1; ; attempt++ {
		if up.ctx.Err() != nil {
			ing.notSent(up, c.first, c.last, canceledOutcome)
			return
		}
		tok, err := up.token()
		if err != nil {
			e := ing.h.tokenError(rt, err)
			up.fail(outcome{First: c.first, Last: c.last, Status: e.Status, Code: e.Code, Reason: e.Description,
				hint: e.Hint, retryAfter: e.RetryAfter, halt: true})
			return
		}
		res, sent, err := up.call(c, tok)
		if err != nil {
			if up.ctx.Err() != nil {
				ing.notSent(up, c.first, c.last, canceledOutcome)
				return
			}
			ing.m.calls.WithLabelValues(rt.Name, "error").Inc()
			if sent {
				// The service may have stored the records: sending them
				// again could store them twice.
				ing.h.log.Warn("ingestion call failed after it was sent; not retried", zap.String("route", rt.Name), zap.Error(err))
				up.fail(outcome{First: c.first, Last: c.last, Status: http.StatusBadGateway, Code: "upstream_connection_lost",
					Reason: "The connection to the service failed after the call was sent; the service may or may not have stored these records, so the broker did not send them again.",
					Sent:   true, MayHaveLanded: true,
					hint: "Query the table for these records before sending them again."})
				return
			}
			if attempt < ing.opts.MaxAttempts && up.wait(backoff(attempt)) {
				continue
			}
			up.fail(outcome{First: c.first, Last: c.last, Status: http.StatusBadGateway, Code: "upstream_unreachable",
				Reason: "The broker could not reach the Logs Ingestion endpoint (" + rt.host + ") after " + strconv.Itoa(attempt) + " attempts; the records were not stored.",
				hint:   "Check the network path to " + rt.host + " and BROKER_INGESTION_ENDPOINT; sending these records again is safe."})
			return
		}
		ing.m.calls.WithLabelValues(rt.Name, strconv.Itoa(res.status)).Inc()
		switch {
		case res.status >= 200 && res.status < 300:
			ing.m.records.WithLabelValues(rt.Name, "accepted").Add(float64(n))
			up.mu.Lock()
			up.accepted += n
			up.mu.Unlock()
			return
		case res.status == http.StatusUnauthorized:
			up.auth.Lock()
			retry := up.auth.token != tok // another call already got a fresh one
			if !retry && !up.auth.retried {
				retry = ing.h.tokens.Invalidate(rt.Name, rt.Scope, tok)
				up.auth.retried = true
				if retry {
					up.auth.token = ""
				}
			}
			up.auth.Unlock()
			if retry {
				ing.h.log.Info("ingestion: upstream refused the token; retrying with a fresh one", zap.String("route", rt.Name))
				continue
			}
			up.fail(res.outcome(c, rt.hint401, true))
			return
		case res.status == http.StatusTooManyRequests || res.status == http.StatusRequestTimeout || res.status >= 500:
			d := res.retryAfter
			if d <= 0 {
				d = backoff(attempt)
			}
			if attempt < ing.opts.MaxAttempts && d <= maxIngestRetryAfter {
				ing.m.retries.WithLabelValues(rt.Name).Inc()
				if up.wait(d) {
					continue
				}
			}
			o := res.outcome(c, "Send these records again later; the service did not store them.", false)
			o.retryAfter = d
			up.fail(o)
			return
		case res.status == http.StatusForbidden:
			up.fail(res.outcome(c, hintIngestionForbidden, true))
			return
		case res.status == http.StatusNotFound:
			up.fail(res.outcome(c, hintIngestionNotFound, true))
			return
		default:
			up.fail(res.outcome(c, "", false))
			return
		}
	}
}

// token returns the upload's token, asking the gate for it the first time
// and after a 401 dropped it.
func (up *upload) token() (string, error) {
	up.auth.Lock()
	defer up.auth.Unlock()
	if up.auth.token != "" {
		return up.auth.token, nil
	}
	tok, err := up.ing.h.tokens.Bearer(up.ctx, up.rt.Name, up.rt.Scope)
	if err == nil && tok == "" {
		err = errEmptyToken
	}
	if err != nil {
		return "", err
	}
	up.auth.token = tok
	return tok, nil
}

// backoff is the wait before attempt+1 when the service named none.
func backoff(attempt int) time.Duration {
	d := ingestBackoff << (attempt - 1)
	if d <= 0 || d > maxIngestBackoff {
		d = maxIngestBackoff
	}
	return d
}

// wait waits d on the handler's clock; false when the caller left first.
func (up *upload) wait(d time.Duration) bool {
	done := make(chan struct{})
	stop := up.ing.h.clock.AfterFunc(d, func() { close(done) })
	select {
	case <-done:
		return true
	case <-up.ctx.Done():
		stop()
		return false
	}
}

// callResult is the service's answer to one call.
type callResult struct {
	status     int
	code, msg  string
	retryAfter time.Duration
}

func (res callResult) outcome(c *batch, hint string, halt bool) outcome {
	reason := res.msg
	if reason == "" {
		reason = "The Logs Ingestion API answered " + strconv.Itoa(res.status) + " " + http.StatusText(res.status) + "."
	}
	code := res.code
	if code == "" {
		code = "upstream_" + strconv.Itoa(res.status)
	}
	return outcome{First: c.first, Last: c.last, Status: res.status, Code: code, Reason: reason, Sent: true, hint: hint, halt: halt}
}

// maxErrorBody bounds how much of an answer's body is read for its error.
const maxErrorBody = 64 << 10

// call sends c once. sent reports whether the whole body was handed to the
// connection, after which a failure leaves the call's fate unknown.
func (up *upload) call(c *batch, tok string) (callResult, bool, error) {
	ctx, cancel := context.WithTimeout(up.ctx, ingestCallTimeout)
	defer cancel()
	body := &sentReader{r: bytes.NewReader(c.body)}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, up.url, body)
	if err != nil {
		return callResult{}, false, err
	}
	req.ContentLength = int64(len(c.body))
	req.GetBody = func() (io.ReadCloser, error) {
		// The transport sends a body again only when nothing reached the
		// server (a reused connection closed under it).
		return io.NopCloser(bytes.NewReader(c.body)), nil
	}
	req.Header["Content-Type"] = []string{"application/json"}
	if c.gzip {
		req.Header["Content-Encoding"] = []string{"gzip"}
	}
	req.Header["Authorization"] = []string{"Bearer " + tok}
	up.ing.m.callBytes.WithLabelValues(up.rt.Name).Observe(float64(len(c.body)))
	res, err := up.ing.client.Do(req)
	if err != nil {
		return callResult{}, body.done, err
	}
	defer res.Body.Close()
	out := callResult{status: res.StatusCode, retryAfter: parseRetryAfter(res.Header.Get("Retry-After"), up.ing.h.clock.Now())}
	if res.StatusCode >= 300 {
		data, _ := io.ReadAll(io.LimitReader(res.Body, maxErrorBody))
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil {
			out.code, out.msg = e.Error.Code, e.Error.Message
		}
	}
	_, _ = io.CopyN(io.Discard, res.Body, maxErrorBody)
	return out, true, nil
}

// sentReader notes when its bytes were read to the end.
type sentReader struct {
	r    *bytes.Reader
	done bool
}

func (s *sentReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if errors.Is(err, io.EOF) || s.r.Len() == 0 {
		s.done = true
	}
	return n, err
}

// ingestAnswer is the body of an upload that was not wholly accepted.
type ingestAnswer struct {
	httperr.Body
	// Received is how many records the broker read.
	Received int `json:"records_received"`
	// Accepted is how many the service accepted.
	Accepted int `json:"records_accepted"`
	// NotAccepted are the ranges of records not accepted, by first index.
	NotAccepted []outcome `json:"not_accepted,omitempty"`
}

// answer writes the upload's result: 204 when every record landed, else
// a JSON body naming the records that did not.
func (ing *ingester) answer(w http.ResponseWriter, r *http.Request, rt *route, up *upload, received int, rerr error, start time.Time) {
	h := ing.h
	hdr := w.Header()
	secureHeaders(hdr)
	up.mu.Lock()
	failed := slices.Clone(up.failed)
	accepted := up.accepted
	up.mu.Unlock()
	slices.SortFunc(failed, func(a, b outcome) int { return a.First - b.First })
	var merged []outcome
	for _, o := range failed {
		if k := len(merged) - 1; k >= 0 && merged[k].same(o) && merged[k].Last+1 == o.First {
			merged[k].Last = o.Last
			continue
		}
		merged = append(merged, o)
	}
	notAccepted := 0
	for _, o := range merged {
		if o.Last >= o.First {
			notAccepted += o.Last - o.First + 1
		}
	}
	if rejected := float64(notAccepted); rejected > 0 {
		ing.m.records.WithLabelValues(rt.Name, "not_accepted").Add(rejected)
	}
	if rerr == nil && len(merged) == 0 {
		w.WriteHeader(http.StatusNoContent)
		rt.m.count(http.StatusNoContent)
		rt.m.duration.Observe(h.now().Sub(start).Seconds())
		return
	}
	ans := ingestAnswer{Received: received, Accepted: accepted, NotAccepted: merged}
	var status int
	var retryAfter time.Duration
	for _, o := range merged {
		retryAfter = max(retryAfter, o.retryAfter)
	}
	var syn *syntaxError
	switch {
	case rerr != nil && (errors.Is(rerr, errTooMuchInput) || errors.Is(rerr, errBodyTooLarge)):
		status = http.StatusRequestEntityTooLarge
		ans.Error, ans.Description = "request_too_large", fmt.Sprintf("The upload is larger than the broker's ingestion limit of %s; the broker read %d records before the limit.", formatBytes(ing.opts.MaxBodyBytes), received)
		ans.Hint = "Send the rest in another upload; records_accepted and not_accepted say what became of the records read."
		hdr.Set("Connection", "close")
	case rerr != nil && errors.As(rerr, &syn):
		status = http.StatusBadRequest
		ans.Error, ans.Description = "invalid_json", fmt.Sprintf("The body is not a JSON array of records (record %d, %s); records 0 to %d were handled as records_accepted and not_accepted say.", received, syn.Error(), received-1)
		if received == 0 {
			ans.Description = "The body is not a JSON array of records (" + syn.Error() + "); nothing was sent."
		}
		ans.Hint = "Send a JSON array of objects, e.g. [{\"TimeGenerated\":\"2024-05-01T12:00:00Z\",\"RawData\":\"…\"}]."
	case rerr != nil && errors.Is(rerr, errBodyTimeout):
		status = http.StatusRequestTimeout
		ans.Error, ans.Description = "body_timeout", fmt.Sprintf("The upload stopped arriving after %d records: no bytes for %s.", received, h.bodyTimeout)
		ans.Hint = "Send the whole body without pauses; records_accepted and not_accepted say what became of the records read."
		hdr.Set("Connection", "close")
	case rerr != nil && r.Context().Err() != nil:
		rt.m.count(499)
		rt.m.duration.Observe(h.now().Sub(start).Seconds())
		return
	case rerr != nil:
		status = http.StatusBadRequest
		ans.Error, ans.Description = "bad_request", "The upload could not be read (a gzip body that is not gzip?)."
		ans.Hint = "Send a JSON array, plain or with Content-Encoding: gzip."
		hdr.Set("Connection", "close")
	default:
		first := merged[0]
		status = first.Status
		if status < 400 || status > 599 {
			status = http.StatusBadGateway
		}
		ans.Error = "records_not_accepted"
		ans.Description = fmt.Sprintf("%d of %d records were not accepted; not_accepted names them (first: %s).", notAccepted, received, first.Reason)
		ans.Hint = first.hint
		if ans.Hint == "" {
			ans.Hint = "Send the records named in not_accepted again once the cause is fixed; the others were stored and must not be sent twice."
		}
	}
	if status == http.StatusForbidden {
		hdr.Set(HintHeader, hintIngestionForbidden)
	} else if status == http.StatusNotFound {
		hdr.Set(HintHeader, hintIngestionNotFound)
	}
	if retryAfter > 0 {
		hdr.Set("Retry-After", strconv.FormatInt(int64((retryAfter+time.Second-1)/time.Second), 10))
	}
	hdr.Set("Content-Type", "application/json; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(ans)
	rt.m.count(status)
	rt.m.duration.Observe(h.now().Sub(start).Seconds())
	h.log.Warn("upload not wholly accepted", zap.String("route", rt.Name), zap.Int("status", status), zap.String("code", ans.Error),
		zap.Int("received", received), zap.Int("accepted", accepted), zap.Int("not_accepted", notAccepted))
}

// Hints for the Logs Ingestion API's refusals.
const (
	hintIngestionForbidden = "The app's service principal has no Monitoring Metrics Publisher role on the data collection rule, or a new role assignment has not reached the service yet. " +
		"Assign Monitoring Metrics Publisher on the DCR (not the workspace) to the app; a new assignment can take up to 30 minutes to take effect, and the service answers 403 until then " +
		"(broker check --dcr <id> --stream <name> --wait 60m waits for it)."
	hintIngestionNotFound = "The service knows no data collection rule or stream by that name. The path takes the DCR's immutable ID (dcr-…, on the DCR's JSON view or `az monitor data-collection rule show --query immutableId`), " +
		"not its resource name, and a stream declared in the DCR (Custom-<table>)."
)

// ingestMetrics are the ingestion routes' collectors.
type ingestMetrics struct {
	records   *prometheus.CounterVec
	calls     *prometheus.CounterVec
	retries   *prometheus.CounterVec
	callBytes *prometheus.HistogramVec
}

func newIngestMetrics(reg prometheus.Registerer) (*ingestMetrics, error) {
	m := &ingestMetrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_proxy_ingestion_records_total",
			Help: "Records of uploads on the ingestion routes, by route and result (accepted, not_accepted).",
		}, []string{"route", "result"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_proxy_ingestion_calls_total",
			Help: "Calls the ingestion routes made to the Logs Ingestion API, by route and status (error: no answer).",
		}, []string{"route", "code"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_proxy_ingestion_retries_total",
			Help: "Ingestion calls sent again after a 429, 408 or 5xx, by route.",
		}, []string{"route"}),
		callBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "broker_proxy_ingestion_call_size_bytes",
			Help: "Body size of the calls the ingestion routes sent, as sent (gzip'd or not), by route.",
			// Up to the service's 1 MB limit.
			Buckets: []float64{1 << 10, 16 << 10, 64 << 10, 256 << 10, 512 << 10, 768 << 10, 1_000_000},
		}, []string{"route"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.records, m.calls, m.retries, m.callBytes} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register proxy metrics: %w", err)
			}
		}
	}
	return m, nil
}
