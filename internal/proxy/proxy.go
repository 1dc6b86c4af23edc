package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/entrabroker/broker/internal/httperr"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// DefaultMaxBodyBytes is the request body cap when Options.MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 16 << 20

// HintHeader is the response header in which the broker explains an upstream
// error it passes through unchanged (403 InsufficientAccessError, a 401 the
// retry could not cure).
const HintHeader = "X-Broker-Hint"

// PathPrefix is the path under which the handler serves its routes.
const PathPrefix = "/proxy/"

// Tokens is where the proxy gets the bearer tokens it sends upstream. Its
// methods are called concurrently.
type Tokens interface {
	// Bearer returns a servable access token for scope, used by the proxy
	// route named route (for the caller policy), or an error that is (or
	// wraps) an *httperr.Error to answer with (e.g. 503 with RetryAfter when
	// no valid token can be had, 403 when the scope is not allowed).
	Bearer(ctx context.Context, route, scope string) (string, error)
	// Invalidate asks to drop token, which an upstream of route refused with
	// 401, if it is still the one held for scope, so that the next Bearer
	// fetches a fresh one (single-flight). It reports whether the token was
	// dropped and a retry may get a fresh one; false means the forced
	// refresh was refused (e.g. the scope's token was refreshed recently),
	// and the proxy then does not retry.
	Invalidate(route, scope, token string) bool
}

// Options configure New.
type Options struct {
	// Routes are the upstreams served, at least one; names must be unique.
	// Routes gives a cloud's built-in routes.
	Routes []Route
	// Tokens supplies the bearer tokens; required.
	Tokens Tokens
	// Transport sends requests upstream. Nil means a tuned *http.Transport
	// with bounded dial, TLS-handshake and response-header timeouts that
	// still lets a 10-minute Log Analytics query finish, and no transparent
	// decompression. A custom transport must not decompress either.
	Transport http.RoundTripper
	// MaxBodyBytes caps request bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// BodyBudgetBytes bounds the request-body bytes the handler buffers at
	// once, over all requests (bodies up to 1 MiB are buffered so that they
	// can be sent again; a larger, streamed body counts 64 KiB). A request
	// that cannot reserve its bytes is answered 503 "busy" with Retry-After.
	// 0 means DefaultBodyBudgetBytes. The process should run one handler.
	BodyBudgetBytes int64
	// BodyReadTimeout is how long a request body may go without a single
	// byte arriving before the request is answered 408 "body_timeout" and its
	// connection closed; 0 means DefaultBodyReadTimeout. It needs the
	// server's own ResponseWriter (or one that unwraps to it), as
	// http.ResponseController does.
	BodyReadTimeout time.Duration
	// Logger receives errors (route and status, never a token, query value
	// or body); nil means no logging.
	Logger *zap.Logger
	// Registerer receives the proxy's metrics; nil means they are kept but
	// not exported.
	Registerer prometheus.Registerer
	// Now is the clock for request durations; nil means time.Now.
	Now func() time.Time
	// QueryQueue configures the per-identity query queue of the
	// loganalytics route; the zero value means Log Analytics' own limits.
	QueryQueue QueueOptions
	// Ingestion configures the Logs Ingestion routes.
	Ingestion IngestionOptions
	// Clock times the query queue's waits and pauses and the ingestion
	// retries; nil means the wall clock.
	Clock Clock
}

// route is a Route prepared for serving.
type route struct {
	Route
	scheme, host      string
	basePath, baseRaw string // upstream path without a trailing slash
	m                 *routeMetrics
	hint401           string
	// queues is the per-identity query queue; nil for a route without one.
	queues *queues
	// ingest is set on a Logs Ingestion route.
	ingest bool
}

// join prefixes a cleaned request path with the upstream's path.
func (rt *route) join(path, raw string) (string, string) {
	if path == "" {
		path, raw = "/", "/"
	}
	if rt.basePath == "" {
		return path, raw
	}
	return rt.basePath + path, rt.baseRaw + raw
}

// handler is the proxy's http.Handler.
type handler struct {
	routes  map[string]*route
	unknown *routeMetrics
	names   string // "appinsights, arm, loganalytics"
	example string
	tokens  Tokens
	maxBody int64
	budget  *budget
	// bodyTimeout is the read timeout of a request body.
	bodyTimeout time.Duration
	// The proxy's own answers about bodies, prepared by bodyErrors.
	tooLarge, busy, bodyTimeoutErr *httperr.Error
	log                            *zap.Logger
	now                            func() time.Time
	rp                             *httputil.ReverseProxy
	clock                          Clock
	// ing is the Logs Ingestion uploader, shared by the ingestion routes.
	ing *ingester
}

// New returns the proxy handler. It serves request paths
// /proxy/{route}/{path...} (the prefix is stripped when present, so the
// handler also works behind http.StripPrefix("/proxy", …)), sending each to
// the route's upstream with the route's token. It is safe for concurrent
// use. New fails on an empty or invalid route list, a missing Tokens, or a
// metrics registration error.
func New(opts Options) (http.Handler, error) {
	if opts.Tokens == nil {
		return nil, errors.New("proxy: Tokens is required")
	}
	if len(opts.Routes) == 0 {
		return nil, errors.New("proxy: no routes")
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("proxy")
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	h := &handler{
		routes:  make(map[string]*route, len(opts.Routes)),
		unknown: m.forRoute(routeUnknown),
		tokens:  opts.Tokens,
		maxBody: opts.MaxBodyBytes,
		log:     log,
		now:     opts.Now,
	}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	h.budget = &budget{limit: opts.BodyBudgetBytes}
	if h.budget.limit <= 0 {
		h.budget.limit = DefaultBodyBudgetBytes
	}
	h.bodyTimeout = opts.BodyReadTimeout
	if h.bodyTimeout <= 0 {
		h.bodyTimeout = DefaultBodyReadTimeout
	}
	if opts.Registerer != nil {
		buffered := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "broker_proxy_body_buffered_bytes",
			Help: "Request-body bytes the proxy holds now, against its budget (a streamed body counts 64 KiB).",
		}, func() float64 { return float64(h.budget.used.Load()) })
		if err := opts.Registerer.Register(buffered); err != nil {
			return nil, fmt.Errorf("register proxy metrics: %w", err)
		}
	}
	if h.now == nil {
		h.now = time.Now
	}
	h.clock = opts.Clock
	if h.clock == nil {
		h.clock = realClock{}
	}
	qc, err := newQueueCollectors(opts.Registerer)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(opts.Routes))
	for _, r := range opts.Routes {
		if err := validateRoute(r); err != nil {
			return nil, errors.New("proxy: route " + strconv.Quote(r.Name) + ": " + err.Error())
		}
		if _, dup := h.routes[r.Name]; dup {
			return nil, errors.New("proxy: route " + strconv.Quote(r.Name) + " is defined twice")
		}
		u := *r.Upstream
		rt := &route{
			Route:    r,
			scheme:   u.Scheme,
			host:     u.Host,
			basePath: strings.TrimSuffix(u.Path, "/"),
			baseRaw:  strings.TrimSuffix(u.EscapedPath(), "/"),
			m:        m.forRoute(r.Name),
			hint401: "The upstream refused a freshly fetched token for scope " + r.Scope +
				": check that this scope is the API's audience and that the app registration has the API's permission.",
		}
		rt.Upstream = &u
		if r.Name == RouteLogAnalytics && opts.QueryQueue.MaxConcurrent >= 0 {
			rt.queues = newQueues(opts.QueryQueue, h.clock, r.Name, qc.forRoute(r.Name))
		}
		rt.ingest = r.Kind == KindIngestion
		h.routes[r.Name] = rt
		names = append(names, r.Name)
	}
	slices.Sort(names)
	h.names = strings.Join(names, ", ")
	h.example = "Call /proxy/<route>/<upstream path>"
	if _, ok := h.routes[RouteLogAnalytics]; ok {
		h.example += ", e.g. /proxy/loganalytics/v1/workspaces/<workspace id>/query"
	}
	h.example += "."
	h.bodyErrors()

	transport := opts.Transport
	if transport == nil {
		transport = newTransport()
	}
	if h.ing, err = newIngester(h, opts.Ingestion, transport, opts.Registerer); err != nil {
		return nil, err
	}
	errLog, err := zap.NewStdLogAt(log, zapcore.WarnLevel)
	if err != nil {
		return nil, err
	}
	h.rp = &httputil.ReverseProxy{
		Rewrite:   h.rewrite,
		Transport: &retryTransport{base: transport, tokens: opts.Tokens, log: log},
		// FlushInterval 0: ReverseProxy flushes every write of a response of
		// unknown length (chunked, as Log Analytics sends its gzip results,
		// and text/event-stream) by itself; a response of known length goes
		// through the server's write buffer, which passes it on every few
		// kilobytes, without the per-request cost of a flushing writer.
		FlushInterval:  0,
		BufferPool:     bufferPool{},
		ErrorLog:       errLog,
		ErrorHandler:   h.errorHandler,
		ModifyResponse: h.modifyResponse,
	}
	return h, nil
}

// stateKey is the context key of a request's *reqState.
type stateKey struct{}

// reqState is one proxied request's state, in the outbound request's
// context under stateKey.
type reqState struct {
	route      *route
	path, raw  string // target path, decoded and encoded
	token      string // the token sent first
	body       *body  // the request body as held, nil when there is none
	replayable bool
	retried    bool        // set by the transport, on the handler's goroutine
	rationed   bool        // the refresh after a 401 was refused; set like retried
	tooLarge   atomic.Bool // set by the transport's body writer
	// bodyTimeout is set when the client's body stalled past the read
	// timeout, by whichever goroutine read it.
	bodyTimeout atomic.Bool
	code        int // status answered, for the metrics
	// queue is the identity's query queue the request took a turn of, or
	// nil; release gives the turn back, and requeued is set when an
	// upstream 429 sent the request through the queue again. All three
	// are used on the handler's goroutine only.
	queue    *queue
	release  func()
	requeued bool
}

func stateOf(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

// ServeHTTP implements http.Handler.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	name, rest := splitRoute(r.URL.EscapedPath())
	rt := h.routes[name]
	if rt == nil {
		h.answer(w, r, h.unknown, start, h.notFound(name))
		return
	}
	path, raw, err := cleanPath(rest)
	if err != nil {
		var pe pathError
		errors.As(err, &pe)
		h.answer(w, r, rt.m, start, &httperr.Error{
			Status:      http.StatusBadRequest,
			Code:        "bad_path",
			Description: "The request path was refused: " + string(pe) + ".",
			Hint:        "Send the upstream API's path as it is, without dot segments or encoded separators; the proxy never lets a path leave its route.",
		})
		return
	}
	// Checks that need neither the body nor a token come first, so that a
	// refused request reaches neither the upstream nor Entra.
	if e := h.checkMethod(w, r); e != nil {
		h.answer(w, r, rt.m, start, e)
		return
	}
	if r.Method == http.MethodOptions {
		h.options(w)
		rt.m.count(http.StatusNoContent)
		rt.m.duration.Observe(h.now().Sub(start).Seconds())
		return
	}
	if rt.ingest && isUpload(r.Method, path) {
		h.ing.serve(w, r, rt, path, raw, start)
		return
	}
	if r.ContentLength > h.maxBody {
		h.answer(w, r, rt.m, start, h.tooLarge)
		return
	}
	st := &reqState{route: rt}
	st.path, st.raw = rt.join(path, raw)
	body, n, getBody, e := h.prepareBody(w, st, r)
	if st.body != nil {
		defer st.body.done()
	}
	if e != nil {
		h.answer(w, r, rt.m, start, e)
		return
	}
	if rt.queues != nil {
		q := rt.queues.of(h.identity(r.Context(), rt.Name))
		release, err := q.acquire(r.Context())
		if err != nil {
			var qe *httperr.Error
			if errors.As(err, &qe) {
				h.answer(w, r, rt.m, start, qe)
				return
			}
			// The caller hung up while waiting; nobody reads an answer.
			rt.m.count(499)
			rt.m.duration.Observe(h.now().Sub(start).Seconds())
			return
		}
		st.queue, st.release = q, release
		// st.release may change: a query sent again after an upstream 429
		// takes a new turn (retryTransport).
		defer func() { st.release() }()
	}
	tok, err := h.tokens.Bearer(r.Context(), rt.Name, rt.Scope)
	if err == nil && tok == "" {
		err = errEmptyToken
	}
	if err != nil {
		h.answer(w, r, rt.m, start, h.tokenError(rt, err))
		return
	}
	st.token = tok
	if st.body != nil {
		st.body.forwarded = true
	}
	out := r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
	out.Body, out.ContentLength, out.GetBody = body, n, getBody
	defer h.record(rt.m, st, start)
	// The answer's X-Content-Type-Options and Cross-Origin-Resource-Policy
	// come from modifyResponse (ReverseProxy adds the upstream's headers to
	// those already set, and clears them after a 1xx answer).
	hdr := w.Header()
	delete(hdr, "X-Content-Type-Options")
	delete(hdr, "Cross-Origin-Resource-Policy")
	h.rp.ServeHTTP(w, out)
}

// identity names the identity whose token route's requests carry, for the
// query queue: "" when Tokens does not say (one identity).
func (h *handler) identity(ctx context.Context, route string) string {
	if n, ok := h.tokens.(IdentityNamer); ok {
		return n.Identity(ctx, route)
	}
	return ""
}

// splitRoute splits an escaped request path into the route name and the rest
// ("/v1/…", or "" when nothing follows the name).
func splitRoute(p string) (name, rest string) {
	if strings.HasPrefix(p, PathPrefix) {
		p = p[len(PathPrefix)-1:]
	} else if p == "/proxy" {
		p = ""
	}
	for len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	if i := strings.IndexByte(p, '/'); i >= 0 {
		return p[:i], p[i:]
	}
	return p, ""
}

// rewrite points the outbound request at the route's upstream and swaps the
// caller's credentials for the broker's token.
func (h *handler) rewrite(pr *httputil.ProxyRequest) {
	st := stateOf(pr.In.Context())
	rt := st.route
	u := pr.Out.URL
	u.Scheme, u.Host, u.User, u.Opaque, u.Fragment = rt.scheme, rt.host, nil, "", ""
	u.Path, u.RawPath = st.path, ""
	if st.raw != st.path {
		u.RawPath = st.raw
	}
	// The query goes upstream exactly as sent (ReverseProxy drops
	// parameters it cannot parse).
	u.RawQuery = pr.In.URL.RawQuery
	pr.Out.Host = ""
	hdr := pr.Out.Header
	delete(hdr, "Cookie")
	for k := range hdr {
		// Forwarded and X-Forwarded-For/Host/Proto are already gone; no
		// other X-Forwarded-* header leaves the host either.
		if len(k) > len("X-Forwarded-") && strings.EqualFold(k[:len("X-Forwarded-")], "X-Forwarded-") {
			delete(hdr, k)
		}
	}
	hdr["Authorization"] = []string{"Bearer " + st.token}
}

// modifyResponse removes what lets a web page use the answer, records the
// status and explains upstream errors the caller would otherwise be stuck on.
func (h *handler) modifyResponse(res *http.Response) error {
	stripUpstreamHeaders(res.Header)
	secureHeaders(res.Header)
	st := stateOf(res.Request.Context())
	if st == nil {
		return nil
	}
	st.code = res.StatusCode
	switch res.StatusCode {
	case http.StatusUnauthorized:
		var hint string
		switch {
		case st.rationed:
			hint = hintRationed
		case st.retried:
			hint = st.route.hint401
		default:
			hint = "The upstream refused the token. The request body was too large to send again, so the broker did not retry; it dropped the token, and sending the request again uses a fresh one."
		}
		res.Header.Set(HintHeader, hint)
		h.log.Warn("upstream refused the token", zap.String("route", st.route.Name), zap.Int("status", res.StatusCode),
			zap.Bool("retried", st.retried), zap.Bool("refresh_refused", st.rationed))
	case http.StatusTooManyRequests:
		if st.queue != nil {
			st.queue.pause(parseRetryAfter(res.Header.Get("Retry-After"), h.clock.Now()))
		}
	case http.StatusNotFound:
		if st.route.ingest {
			res.Header.Set(HintHeader, hintIngestionNotFound)
		}
	case http.StatusForbidden:
		if st.route.ingest {
			res.Header.Set(HintHeader, hintIngestionForbidden)
			h.log.Warn("ingestion refused: role assignment missing or not yet propagated", zap.String("route", st.route.Name))
		} else if insufficientAccess(res) {
			res.Header.Set(HintHeader, hintInsufficientAccess)
			h.log.Warn("upstream denied access: role assignment missing or not yet propagated", zap.String("route", st.route.Name), zap.Int("status", res.StatusCode))
		}
	default:
		if res.StatusCode >= 500 {
			h.log.Warn("upstream answered with a server error", zap.String("route", st.route.Name), zap.Int("status", res.StatusCode))
		}
	}
	return nil
}

// hintInsufficientAccess explains 403 InsufficientAccessError.
const hintInsufficientAccess = "The app's service principal has no role that lets it read this resource, or a new role assignment has not reached the API yet. " +
	"Assign Reader or Log Analytics Reader on the Log Analytics workspace (for Application Insights: Reader on the component) to the app. " +
	"A new role assignment can take up to 60 minutes to take effect; the API answers 403 InsufficientAccessError until then."

// maxPeekBytes bounds how much of a 403 body is read to find its error code.
const maxPeekBytes = 64 << 10

// insufficientAccess reports whether a 403 is InsufficientAccessError. It
// reads the start of the body and puts it back, so the caller gets the body
// byte for byte (gzip included).
func insufficientAccess(res *http.Response) bool {
	data, err := io.ReadAll(io.LimitReader(res.Body, maxPeekBytes))
	res.Body = &prefixedBody{Reader: io.MultiReader(bytes.NewReader(data), res.Body), Closer: res.Body}
	if err != nil || !bytes.Contains(data, []byte("{")) && res.Header.Get("Content-Encoding") == "" {
		return false
	}
	switch ce := res.Header.Get("Content-Encoding"); {
	case ce == "" || strings.EqualFold(ce, "identity"):
	case strings.EqualFold(ce, "gzip"):
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return false
		}
		data, _ = io.ReadAll(io.LimitReader(zr, 4*maxPeekBytes))
	default:
		return false
	}
	var body struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	return json.Unmarshal(data, &body) == nil && body.Error.Code == "InsufficientAccessError"
}

// prefixedBody is a response body whose start was read ahead.
type prefixedBody struct {
	io.Reader
	io.Closer
}

// errorHandler answers a failed round trip.
func (h *handler) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	st := stateOf(r.Context())
	rt := st.route
	var e *httperr.Error
	var tf *tokenFailure
	switch {
	case st.bodyTimeout.Load():
		e = h.bodyTimeoutErr
		w.Header().Set("Connection", "close")
	case st.tooLarge.Load():
		e = h.tooLarge
	case errors.As(err, &tf):
		e = h.tokenError(rt, tf.err)
	case errors.As(err, &e):
		// The query queue's own refusal, met when a query waited again
		// after an upstream 429.
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The caller went away; nobody reads this answer.
		st.code = 499
		h.log.Debug("caller canceled the request", zap.String("route", rt.Name))
		return
	case isTimeout(err):
		e = &httperr.Error{
			Status:      http.StatusGatewayTimeout,
			Code:        "upstream_timeout",
			Description: "The upstream of route " + strconv.Quote(rt.Name) + " (" + rt.host + ") did not answer in time.",
			Hint:        "Check the network path from the broker to " + rt.host + " (DNS, firewall, egress proxy); a long query should say so with Prefer: wait=<seconds> (at most 600).",
			Err:         err,
		}
	default:
		e = &httperr.Error{
			Status:      http.StatusBadGateway,
			Code:        "upstream_unreachable",
			Description: "The broker could not reach the upstream of route " + strconv.Quote(rt.Name) + " (" + rt.host + ").",
			Hint:        "Check the network path from the broker to " + rt.host + " (DNS, firewall, egress proxy) and the route's upstream URL.",
			Err:         err,
		}
	}
	st.code = e.Status
	secureHeaders(w.Header())
	if tf == nil { // tokenError logged it already
		h.log.Warn("proxy request failed", zap.String("route", rt.Name), zap.Int("status", e.Status), zap.String("code", e.Code), zap.Error(e.Err))
	}
	httperr.Write(w, e)
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// tokenError turns a Tokens failure into the answer: the Tokens' own
// *httperr.Error, except that a 401 (which the caller could not act on)
// becomes a 503; any other error is a 503 with Retry-After.
func (h *handler) tokenError(rt *route, err error) *httperr.Error {
	var e *httperr.Error
	if errors.As(err, &e) {
		if e.Status == http.StatusUnauthorized {
			c := *e
			c.Status = http.StatusServiceUnavailable
			if c.RetryAfter <= 0 {
				c.RetryAfter = tokenRetryAfter
			}
			e = &c
		}
	} else {
		e = &httperr.Error{
			Status:      http.StatusServiceUnavailable,
			Code:        "token_unavailable",
			Description: "The broker has no valid token for route " + strconv.Quote(rt.Name) + " (scope " + rt.Scope + ").",
			Hint:        "Retry later; the broker's log says why the token could not be had.",
			RetryAfter:  tokenRetryAfter,
			Err:         err,
		}
	}
	h.log.Warn("no token for proxied request", zap.String("route", rt.Name), zap.Int("status", e.Status), zap.String("code", e.Code), zap.Error(err))
	return e
}

// errEmptyToken is a Tokens bug: an empty token and no error.
var errEmptyToken = errors.New("proxy: tokens returned an empty token")

// tokenRetryAfter is the Retry-After sent when a token error names none.
const tokenRetryAfter = 10 * time.Second

// notFound is the answer for a path that names no route.
func (h *handler) notFound(name string) *httperr.Error {
	desc := "The path names no proxy route; the routes are: " + h.names + "."
	if validName(name) == nil {
		desc = "No proxy route is named " + strconv.Quote(name) + "; the routes are: " + h.names + "."
	}
	return &httperr.Error{Status: http.StatusNotFound, Code: "unknown_route", Description: desc, Hint: h.example}
}

// answer writes one of the proxy's own errors and records it. A request
// with a body gets "Connection: close": the body may be unread, and the
// server would otherwise read what is left of it, however slowly it comes.
func (h *handler) answer(w http.ResponseWriter, r *http.Request, m *routeMetrics, start time.Time, e *httperr.Error) {
	hdr := w.Header()
	secureHeaders(hdr)
	if r.ContentLength != 0 {
		hdr.Set("Connection", "close")
	}
	httperr.Write(w, e)
	m.count(e.Status)
	m.duration.Observe(h.now().Sub(start).Seconds())
}

// record counts a proxied request once its answer is done.
func (h *handler) record(m *routeMetrics, st *reqState, start time.Time) {
	code := st.code
	if code == 0 {
		code = http.StatusBadGateway // the answer failed before any status
	}
	m.count(code)
	m.duration.Observe(h.now().Sub(start).Seconds())
}

// formatBytes writes n bytes in words: "16 MiB", "512 KiB" or "100 bytes".
func formatBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	default:
		return strconv.FormatInt(n, 10) + " bytes"
	}
}

// bufferPool lends ReverseProxy its 32 KiB copy buffers.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }
