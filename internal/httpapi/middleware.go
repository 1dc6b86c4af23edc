package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/entrabroker/broker/internal/httperr"
)

// requestIDHeader carries the request ID in both directions.
const requestIDHeader = "X-Request-Id"

// requestID takes a well-formed X-Request-Id from the caller or makes one,
// echoes it in the response and puts it in the request's context, where the
// rest of the chain reads it (requestIDOf).
func (s *server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(requestIDHeader)
		if !validRequestID(id) {
			id = s.newRequestID()
		}
		w.Header()[requestIDHeader] = []string{id}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

// requestIDKey is the context key of the request ID.
type requestIDKey struct{}

// newRequestID is the process's random prefix and a sequence number: unique
// within the process and across restarts, and cheap (no syscall).
func (s *server) newRequestID() string {
	b := make([]byte, 0, len(s.idPrefix)+1+16)
	b = append(b, s.idPrefix...)
	b = append(b, '-')
	b = strconv.AppendUint(b, s.idSeq.Add(1), 16)
	return string(b)
}

// requestIDOf returns the request ID the requestID middleware put in ctx,
// or "".
func requestIDOf(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// validRequestID accepts 1 to 64 characters of [A-Za-z0-9._-], so a caller's
// ID can be logged without escaping or log injection.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// recoverer turns a panic into a 500 JSON answer and an error log line.
// http.ErrAbortHandler is re-panicked: it is how a handler aborts a response
// on purpose (the proxy uses it when the upstream fails mid-body).
func (s *server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(v)
				}
				s.log.Error("panic in handler", zap.Any("panic", v), zap.Stack("stack"),
					zap.String("request_id", requestIDOf(r.Context())))
				httperr.Write(w, httperr.Internal)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// observe writes the access log and the HTTP metrics. It logs the method, the
// route pattern, the status and the duration — never the raw path, the query
// (which can hold a secret) or any header. Successful requests log at debug
// level, so a busy sidecar does not spend its time writing logs; client
// errors log at info, server errors at error.
func (s *server) observe(listener string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := s.now()
			ww := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(ww, r)
			d := s.now().Sub(start)
			status := ww.status
			if status == 0 {
				status = http.StatusOK
			}
			route := chi.RouteContext(r.Context()).RoutePattern()
			if route == "" {
				route = "unmatched"
			}
			s.metrics.observe(listener, route, status, d)
			level := zapcore.DebugLevel
			switch {
			case status >= 500:
				level = zapcore.ErrorLevel
			case status >= 400:
				level = zapcore.InfoLevel
			}
			if ce := s.log.Check(level, "request"); ce != nil {
				ce.Write(
					zap.String("listener", listener),
					zap.String("method", r.Method),
					zap.String("route", route),
					zap.Int("status", status),
					zap.Duration("duration", d),
					zap.Int("bytes", ww.bytes),
					zap.String("request_id", requestIDOf(r.Context())),
				)
			}
		})
	}
}

// statusWriter records the status and size of an answer for observe. It
// passes Flush through and unwraps (http.ResponseController), so streaming
// and the proxy's upgrades work through it.
type statusWriter struct {
	http.ResponseWriter
	status int // the final (non-1xx) status written, or 0
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

// Flush sends what is buffered, for streamed answers.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the connection's own writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// guard refuses requests that came through a forwarding proxy (X-Forwarded-For
// or Forwarded: a token must not leave the host) and requests whose Host is
// not loopback, localhost or the listen host (a browser page that rebinds a
// DNS name to 127.0.0.1 must not read tokens). On the IMDS route the IMDS
// address 169.254.169.254 passes too: a Go app reaches that route only
// through a redirect of 169.254.169.254:80 (the Go SDK has no host
// override), and a rebound DNS name cannot make a browser send that Host.
func (s *server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if forwarded(r.Header) {
			s.writeError(w, r, httperr.New(http.StatusForbidden, "forwarded_request",
				"The request came through a proxy (it carries X-Forwarded-For, Forwarded or X-Real-IP); the broker only serves callers on its own host.",
				"Call the broker directly on localhost, not through a proxy or load balancer."))
			return
		}
		if !s.hostAllowed(r.Host) && !(isIMDSHost(r.Host) && strings.HasPrefix(r.URL.Path, imdsPathPrefix)) {
			s.writeError(w, r, httperr.New(http.StatusMisdirectedRequest, "host_not_allowed",
				"The Host header does not name this broker; it must be localhost, a loopback address or the listen address.",
				"Call the broker as http://127.0.0.1:<port> or http://localhost:<port>. This guard stops web pages that rebind a DNS name to 127.0.0.1."))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// opsGuard is the ops listener's Host guard (opsHostAllowed).
func (s *server) opsGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.opsHostAllowed(r.Host) {
			s.writeError(w, r, httperr.New(http.StatusMisdirectedRequest, "host_not_allowed",
				"The Host header does not name this broker's ops listener; it must be localhost, an IP address or the listen address.",
				"Scrape and probe the ops listener by IP address (as Prometheus and the kubelet do) or as localhost. This guard stops web pages that rebind a DNS name to the broker."))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// forwardingHeaders are the headers a proxy adds. Their presence, on any
// line and even empty, marks a forwarded request: a proxy may append its
// line after an empty one the client sent.
var forwardingHeaders = []string{"X-Forwarded-For", "Forwarded", "X-Real-Ip"}

func forwarded(h http.Header) bool {
	for _, k := range forwardingHeaders {
		if _, ok := h[k]; ok {
			return true
		}
	}
	return false
}

// writeError logs err with its cause and answers it as JSON. Only the
// *httperr.Error's public fields reach the client.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := httperr.As(err)
	if e.Status >= 500 || e.Err != nil {
		fields := []zap.Field{
			zap.Int("status", e.Status),
			zap.String("error", e.Code),
			zap.String("request_id", requestIDOf(r.Context())),
		}
		if e.Err != nil {
			fields = append(fields, zap.String("cause", e.Err.Error()))
		}
		if len(e.AADCodes) > 0 {
			fields = append(fields, zap.Ints("aad_error_codes", e.AADCodes))
		}
		if e.CorrelationID != "" {
			fields = append(fields, zap.String("correlation_id", e.CorrelationID))
		}
		level := zapcore.WarnLevel
		var unknown *httperr.Error
		if !errors.As(err, &unknown) {
			level = zapcore.ErrorLevel
		}
		if ce := s.log.Check(level, "request failed"); ce != nil {
			ce.Write(fields...)
		}
	}
	httperr.Write(w, e)
}

// zapErrorLog adapts zap to promhttp's error logger.
type zapErrorLog struct{ l *zap.Logger }

func (z zapErrorLog) Println(v ...any) { z.l.Error("metrics", zap.String("error", fmt.Sprint(v...))) }
