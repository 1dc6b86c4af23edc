package loganalytics

import (
	"errors"
	"net/http"
	"strings"

	"go.uber.org/zap"
)

// Route kinds, as Record.Route names them.
const (
	routeQuery    = "query"
	routeResource = "resource"
	routeBatch    = "batch"
	routeMetadata = "metadata"
	routeUnknown  = "unknown"
)

// match is a routed request.
type match struct {
	kind        string
	workspaceID string // routeQuery, routeMetadata
	resourceID  string // routeResource: "/subscriptions/…"
}

// route maps a method and path to a route. The routes (reference §5.2):
//
//	GET|POST /v1/workspaces/{id}/query
//	GET|POST /v1/workspaces/{id}/metadata
//	GET|POST /v1/subscriptions/…/query     (resource-centric)
//	POST     /v1/$batch
//
// Anything else, including a known path with another verb, is unknown (404
// PathNotFoundError). Path segment names are matched case-insensitively.
func route(method, path string) match {
	rest, ok := cutPrefixFold(path, "/v1/")
	if !ok {
		return match{kind: routeUnknown}
	}
	rest = strings.TrimSuffix(rest, "/")
	getOrPost := method == http.MethodGet || method == http.MethodPost
	if strings.EqualFold(rest, "$batch") {
		if method == http.MethodPost {
			return match{kind: routeBatch}
		}
		return match{kind: routeUnknown}
	}
	segs := strings.Split(rest, "/")
	if !getOrPost {
		return match{kind: routeUnknown}
	}
	switch {
	case len(segs) == 3 && strings.EqualFold(segs[0], "workspaces") && segs[1] != "":
		switch {
		case strings.EqualFold(segs[2], "query"):
			return match{kind: routeQuery, workspaceID: segs[1]}
		case strings.EqualFold(segs[2], "metadata"):
			return match{kind: routeMetadata, workspaceID: segs[1]}
		}
	case len(segs) >= 3 && strings.EqualFold(segs[0], "subscriptions") && strings.EqualFold(segs[len(segs)-1], "query"):
		for _, s := range segs[:len(segs)-1] {
			if s == "" {
				return match{kind: routeUnknown}
			}
		}
		return match{kind: routeResource, resourceID: "/" + strings.Join(segs[:len(segs)-1], "/")}
	}
	return match{kind: routeUnknown}
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// exchange carries one request through the handlers.
type exchange struct {
	w   *statusWriter
	r   *http.Request
	cid string
	rec *Record
	// fault is a non-terminal fault taken for this request (PartialError,
	// QueryDuration), or nil.
	fault *Fault
}

// ServeHTTP answers the Log Analytics Query API routes.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	m := route(r.Method, r.URL.Path)
	rec := &Record{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Route: m.kind,
		Header: redactedHeader(r.Header),
	}
	x := &exchange{w: sw, r: r, cid: s.newID(), rec: rec}
	s.countRequest()
	defer func() {
		rec.Status = sw.status
		s.addRecord(*rec)
		s.log.Debug("request",
			zap.String("method", r.Method), zap.String("route", m.kind),
			zap.String("workspace", rec.WorkspaceID), zap.String("app_id", rec.AppID),
			zap.Int("status", sw.status), zap.String("correlation_id", x.cid))
	}()

	if f := s.takeFault(""); f != nil {
		if done := s.applyFault(x, f); done {
			return
		}
		x.fault = f
	}

	switch m.kind {
	case routeQuery, routeMetadata:
		s.serveWorkspace(x, m)
	case routeResource:
		s.serveResource(x, m)
	case routeBatch:
		s.serveBatch(x)
	default:
		s.writeFailure(sw, r, errPathNotFound(x.cid))
	}
}

// applyFault waits as f asks and answers when f is terminal. It reports
// whether the request is finished (answered, dropped or abandoned).
func (s *Service) applyFault(x *exchange, f *Fault) bool {
	if err := f.hold(x.r.Context()); err != nil {
		return true // the client went away; nobody to answer
	}
	switch {
	case f.Drop:
		dropConnection(x.w)
		return true
	case f.Malformed:
		s.writeBody(x.w, x.r, http.StatusOK, []byte(malformedBody))
		return true
	case f.Status != 0:
		fl := errStatus(x.cid, f.Status)
		if f.RetryAfter > 0 {
			if fl.header == nil {
				fl.header = http.Header{}
			}
			fl.header.Set("Retry-After", retryAfterSeconds(f.RetryAfter))
		}
		if f.Status == http.StatusNoContent {
			s.writeJSON(x.w, x.r, f.Status, fl.header, nil)
			return true
		}
		s.writeFailure(x.w, x.r, fl)
		return true
	}
	return false
}

// authenticate checks the bearer token and returns its principal, or the
// failure to answer: 401 AuthenticationFailed when the header is missing, not
// Bearer, or the token expired; 403 InvalidAuthenticationToken for a
// malformed token; 403 InvalidTokenError for a bad signature or the wrong
// audience.
func (s *Service) authenticate(x *exchange) (Principal, *failure) {
	scheme, raw, _ := strings.Cut(strings.TrimSpace(x.r.Header.Get("Authorization")), " ")
	raw = strings.TrimSpace(raw)
	if !strings.EqualFold(scheme, "Bearer") || raw == "" {
		return Principal{}, errAuthMissing(x.cid)
	}
	if s.verify == nil {
		return Principal{}, errInvalidToken(x.cid)
	}
	p, err := s.verify(raw)
	if err != nil {
		// The verifier's words are logged without the token, whatever they say.
		s.log.Debug("token refused", zap.String("reason", strings.ReplaceAll(err.Error(), raw, "[redacted]")),
			zap.String("correlation_id", x.cid))
		switch {
		case errors.Is(err, ErrTokenExpired):
			return Principal{}, errTokenExpired(x.cid)
		case errors.Is(err, ErrTokenMalformed):
			return Principal{}, errMalformedToken(x.cid)
		}
		return Principal{}, errInvalidToken(x.cid)
	}
	if strings.TrimSuffix(p.Audience, "/") != s.audience {
		s.log.Debug("token refused", zap.String("reason", "audience "+p.Audience), zap.String("correlation_id", x.cid))
		return Principal{}, errInvalidToken(x.cid)
	}
	if !p.ExpiresAt.IsZero() && !s.now().Before(p.ExpiresAt) {
		return Principal{}, errTokenExpired(x.cid)
	}
	x.rec.AppID, x.rec.ObjectID = p.AppID, p.ObjectID
	s.countPrincipal(p)
	return p, nil
}
