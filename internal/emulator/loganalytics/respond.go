package loganalytics

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// setCommonHeaders sets the headers every recorded answer carries
// (reference §5.4), except Content-Type and Content-Encoding.
func setCommonHeaders(h http.Header) {
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", "Retry-After,Age,WWW-Authenticate,x-resource-identities,x-ms-status-location")
	h.Set("Strict-Transport-Security", "max-age=15724800; includeSubDomains")
	h.Set("Vary", "Accept-Encoding")
	h.Set("Via", "1.1 loganalytics-emulator")
	h.Set("X-Content-Type-Options", "nosniff")
}

// acceptsGzip reports whether the request's Accept-Encoding allows gzip.
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(v, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
				continue
			}
			if q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q="); ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f == 0 {
					return false
				}
			}
			return true
		}
	}
	return false
}

// writeJSON writes status and v as JSON, gzip-compressed when the client
// accepts it. extra headers are added first. A nil v writes no body.
func (s *Service) writeJSON(w http.ResponseWriter, r *http.Request, status int, extra http.Header, v any) {
	h := w.Header()
	setCommonHeaders(h)
	for k, vs := range extra {
		h[k] = vs
	}
	if v == nil || status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	body, err := marshal(v)
	if err != nil { // only our own types are marshalled; cannot happen
		s.log.Error("marshal answer", zap.Error(err))
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	s.writeBody(w, r, status, body)
}

// marshal encodes v as compact JSON without HTML escaping ('<' stays '<'),
// as the service writes it.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// writeBody writes an already-encoded JSON body.
func (s *Service) writeBody(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	h := w.Header()
	setCommonHeaders(h)
	h.Set("Content-Type", "application/json; charset=utf-8")
	if !acceptsGzip(r) {
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		_, _ = w.Write(body)
		return
	}
	h.Set("Content-Encoding", "gzip")
	h.Del("Content-Length")
	w.WriteHeader(status)
	gz := gzip.NewWriter(w)
	_, _ = gz.Write(body)
	_ = gz.Close()
}

// writeFailure writes an error answer.
func (s *Service) writeFailure(w http.ResponseWriter, r *http.Request, f *failure) {
	s.writeJSON(w, r, f.status, f.header, f.body)
}

// retryAfterSeconds renders d as whole seconds, rounded up, at least 1.
func retryAfterSeconds(d time.Duration) string {
	sec := int64((d + time.Second - 1) / time.Second)
	if sec < 1 {
		sec = 1
	}
	return strconv.FormatInt(sec, 10)
}

// statusWriter remembers the status written, for records and logs.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer (Flush,
// Hijack).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
