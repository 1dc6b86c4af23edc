package httpapi

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/cache"
	"github.com/entrabroker/broker/internal/httperr"
)

// Protocol versions of the managed-identity endpoints.
const (
	appServiceAPIVersion = "2019-08-01"
	imdsAPIVersion       = "2018-02-01"
)

// staleHeader marks a token served while its refresh is failing.
const staleHeader = "X-Broker-Token-Stale"

// served is a token the cache handed out, with what the answer needs.
type served struct {
	cache.Result
	identity *Identity
}

// tokenError maps a cache failure to the answer: a permanent Entra refusal is
// 502 with Entra's codes and the hint; the cache's budget of new scopes is
// 429; anything transient is 503 with Retry-After from the cache's next
// attempt.
func tokenError(err error, nextAttempt, now time.Time) (*httperr.Error, result) {
	var ce *cache.Error
	if errors.As(err, &ce) && !ce.NextAttempt.IsZero() {
		nextAttempt = ce.NextAttempt
	}
	retryAfter := time.Second
	if !nextAttempt.IsZero() {
		if d := nextAttempt.Sub(now); d > retryAfter {
			retryAfter = d
		}
	}
	if errors.Is(err, cache.ErrNewKeyBudget) {
		// No Err: a flood of these is the caller's doing and must not
		// become a flood of warnings (the access log still has each).
		return &httperr.Error{
			Status:      http.StatusTooManyRequests,
			Code:        "too_many_new_scopes",
			Description: "The broker has asked Entra ID for too many scopes it had not served before, so it did not ask for this one now.",
			Hint:        "The broker limits how fast new scopes reach Entra ID, per identity. Retry after the Retry-After delay; to refuse unexpected scopes at once, list the ones your apps need in BROKER_ALLOWED_SCOPES.",
			RetryAfter:  retryAfter,
		}, resultRateLimited
	}
	var ae *azure.Error
	if errors.As(err, &ae) {
		if ae.Transient {
			desc := "Entra ID could not be reached or asked the broker to slow down, and no valid token is cached."
			if ae.StatusCode == http.StatusTooManyRequests {
				desc = "Entra ID is throttling token requests, and no valid token is cached."
			}
			return &httperr.Error{
				Status:        http.StatusServiceUnavailable,
				Code:          "entra_unavailable",
				Description:   desc,
				Hint:          orDefault(ae.Hint, "The broker retries by itself; try again after the Retry-After delay."),
				AADCodes:      ae.AADCodes,
				CorrelationID: ae.CorrelationID,
				RetryAfter:    retryAfter,
				Err:           err,
			}, resultUnavailable
		}
		code := ae.Code
		if code == "" {
			code = "entra_error"
		}
		desc := ae.Description
		if desc == "" {
			desc = "Entra ID refused the token request."
		}
		return &httperr.Error{
			Status:        http.StatusBadGateway,
			Code:          code,
			Description:   desc,
			Hint:          ae.Hint,
			AADCodes:      ae.AADCodes,
			CorrelationID: ae.CorrelationID,
			Err:           err,
		}, resultEntraError
	}
	if errors.Is(err, cache.ErrClosed) {
		return &httperr.Error{
			Status:      http.StatusServiceUnavailable,
			Code:        "shutting_down",
			Description: "The broker is shutting down.",
			Hint:        "Retry in a moment; another broker instance or a restart will answer.",
			RetryAfter:  time.Second,
			Err:         err,
		}, resultUnavailable
	}
	return &httperr.Error{
		Status:      http.StatusServiceUnavailable,
		Code:        "token_unavailable",
		Description: "The broker could not get a token in time.",
		Hint:        "Try again after the Retry-After delay; the broker's log has the cause.",
		RetryAfter:  retryAfter,
		Err:         err,
	}, resultUnavailable
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// scopeParam reads the scope of a /token request from scope= or resource=.
func (s *server) scopeParam(q url.Values) (string, error) {
	scope, resource := q.Get("scope"), q.Get("resource")
	switch {
	case scope != "" && resource != "":
		return "", badRequest("ambiguous_scope", "The request names both scope and resource.", "Send one of them: scope=https://api.loganalytics.io/.default or resource=https://api.loganalytics.io.")
	case scope != "":
		return normalize(s.scopes.normalize(scope, false))
	case resource != "":
		return normalize(s.scopes.normalize(resource, true))
	default:
		return "", badRequest("missing_scope", "The request names no scope.", "Add scope=<resource>/.default or resource=<resource>, e.g. resource=https://api.loganalytics.io.")
	}
}

// normalize turns a local scope-normalization failure into a 400 answer.
func normalize(scope string, err error) (string, error) {
	if err == nil {
		return scope, nil
	}
	var ae *azure.Error
	if errors.As(err, &ae) {
		return "", &httperr.Error{
			Status:      http.StatusBadRequest,
			Code:        "invalid_scope",
			Description: orDefault(ae.Description, "The scope is not valid."),
			Hint:        ae.Hint,
			AADCodes:    ae.AADCodes,
		}
	}
	return "", badRequest("invalid_scope", "The scope is not valid.", "Use <resource>/.default, e.g. https://api.loganalytics.io/.default.")
}

func badRequest(code, desc, hint string) *httperr.Error {
	return httperr.New(http.StatusBadRequest, code, desc, hint)
}

// token serves GET /token.
func (s *server) token(w http.ResponseWriter, r *http.Request) error {
	if !strings.EqualFold(r.Header.Get("Metadata"), "true") {
		s.metrics.token(endpointToken, resultBadRequest)
		return badRequest("metadata_header_required", "The request lacks the header Metadata: true.",
			"Send -H 'Metadata: true'. It proves the request was made on purpose and not forged by a web page or a redirect (the same guard as Azure's IMDS).")
	}
	q := r.URL.Query()
	scope, err := s.scopeParam(q)
	if err != nil {
		s.metrics.token(endpointToken, resultBadRequest)
		return err
	}
	id := s.identity(q.Get("client_id"))
	if id == nil {
		s.metrics.token(endpointToken, resultNotFound)
		return identityNotFound(q.Get("client_id"))
	}
	t, rs, err := s.grant(r.Context(), exit{route: "token", id: id, scope: scope})
	s.metrics.token(endpointToken, rs)
	if err != nil {
		return err
	}
	now := s.now()
	bp := getBuffer()
	defer putBuffer(bp)
	b := (*bp)[:0]
	b = append(b, `{"access_token":`...)
	b = appendJSONString(b, t.Token.AccessToken)
	b = append(b, `,"token_type":"Bearer","expires_in":`...)
	b = strconv.AppendInt(b, secondsLeft(t.Token.ExpiresOn, now), 10)
	b = append(b, `,"expires_on":`...)
	b = strconv.AppendInt(b, t.Token.ExpiresOn.Unix(), 10)
	b = append(b, `,"scope":`...)
	b = appendJSONString(b, scope)
	b = append(b, "}\n"...)
	writeToken(w, t, b)
	*bp = b
	return nil
}

// imdsToken serves GET /metadata/identity/oauth2/token, the IMDS protocol
// (api-version 2018-02-01). A request without Metadata: true is answered at
// once, as IMDS does: the Azure SDKs probe with such a request and expect a
// fast 400.
func (s *server) imdsToken(w http.ResponseWriter, r *http.Request) error {
	fail := func(rs result, e *httperr.Error) error {
		s.metrics.token(endpointIMDS, rs)
		e.Message = e.Description + " " + e.Hint
		return e
	}
	if !strings.EqualFold(r.Header.Get("Metadata"), "true") {
		s.metrics.token(endpointIMDS, resultBadRequest)
		return httperr.New(http.StatusBadRequest, "invalid_request", "Required metadata header not specified", "")
	}
	q := r.URL.Query()
	if v := q.Get("api-version"); v == "" {
		return fail(resultBadRequest, badRequest("invalid_request",
			"Required query variable 'api-version' is missing",
			"Add api-version="+imdsAPIVersion+"."))
	} else if !validAPIVersion(v) {
		return fail(resultBadRequest, badRequest("invalid_request",
			"The api-version parameter is not a date like "+imdsAPIVersion+".",
			"Use api-version="+imdsAPIVersion+"."))
	}
	id, err := s.selectIdentity(q)
	if err != nil {
		return fail(resultNotFound, httperr.As(err))
	}
	return s.managedIdentity(w, r, q, dialectIMDS, id, fail)
}

// validAPIVersion accepts yyyy-mm-dd from 2018-02-01 on.
func validAPIVersion(v string) bool {
	if len(v) != len(imdsAPIVersion) || v[4] != '-' || v[7] != '-' {
		return false
	}
	if _, err := time.Parse("2006-01-02", v); err != nil {
		return false
	}
	return v >= imdsAPIVersion
}

// identitySelectors are the query parameters the SDKs use to pick a
// user-assigned identity; they are one selector under different names.
var identitySelectors = []string{"client_id", "object_id", "principal_id", "mi_res_id", "msi_res_id"}

// managedIdentity is the part the managed-identity dialects share: the
// resource, the identity (already selected), the revocation and
// capability parameters (p is the query, or Cloud Shell's form body), the
// token and the body. Every dialect's body has
// every number as a string of an integer, except expires_on of 2017-09-01,
// a date.
func (s *server) managedIdentity(w http.ResponseWriter, r *http.Request, p url.Values, d dialect, id *Identity, fail func(result, *httperr.Error) error) error {
	resource := p.Get("resource")
	if resource == "" {
		return fail(resultBadRequest, badRequest("invalid_request", "The resource parameter is missing.",
			"Ask for a resource such as resource=https://vault.azure.net (the SDKs derive it from the scope)."))
	}
	scope, err := normalize(s.scopes.normalize(resource, true))
	if err != nil {
		e := httperr.As(err)
		return fail(resultBadRequest, e)
	}
	x := exit{route: endpointNames[d.endpoint], id: id, scope: scope, capabilities: capabilities(p.Get("xms_cc"))}
	if h := p.Get("token_sha256_to_refresh"); h != "" {
		if !isSHA256Hex(h) {
			return fail(resultBadRequest, badRequest("invalid_request",
				"The token_sha256_to_refresh parameter is not a SHA-256 in hex (64 hexadecimal digits).",
				"Send the lower-case hex SHA-256 of the access token to replace, as MSAL does, or leave the parameter out."))
		}
		x.refreshSHA256 = strings.ToLower(h)
	}
	t, rs, err := s.grant(r.Context(), x)
	if err != nil {
		e := httperr.As(err)
		if rs == resultEntraError {
			// A permanent Entra refusal is 400 here, not /token's 502:
			// every Azure SDK retries 5xx (Go's IMDS policy for about
			// 70 s) and a bad secret does not mend itself, while a 400
			// is not retried and each SDK shows its body to the app
			// (reference §2.6).
			e.Status = http.StatusBadRequest
		}
		return fail(rs, e)
	}
	s.metrics.token(d.endpoint, rs)
	now := s.now()
	left := secondsLeft(t.Token.ExpiresOn, now)
	bp := getBuffer()
	defer putBuffer(bp)
	b := (*bp)[:0]
	b = append(b, `{"access_token":`...)
	b = appendJSONString(b, t.Token.AccessToken)
	b = append(b, `,"client_id":`...)
	b = appendJSONString(b, id.ClientID)
	if d.dateExpiry {
		b = append(b, `,"expires_on":"`...)
		b = t.Token.ExpiresOn.UTC().AppendFormat(b, appService2017Expiry)
		b = append(b, '"')
	} else {
		b = appendQuotedInt(append(b, `,"expires_in":`...), left)
		b = appendQuotedInt(append(b, `,"expires_on":`...), t.Token.ExpiresOn.Unix())
	}
	if d.imdsFields {
		b = appendQuotedInt(append(b, `,"ext_expires_in":`...), left)
		b = appendQuotedInt(append(b, `,"not_before":`...), t.Token.IssuedAt.Unix())
	}
	b = append(b, `,"resource":`...)
	b = appendJSONString(b, resource)
	b = append(b, `,"token_type":"Bearer"}`+"\n"...)
	writeToken(w, t, b)
	*bp = b
	return nil
}

// selectIdentity applies the managed-identity selector, if any. More than
// one selector, or one that matches no identity, is 400 "identity not found"
// (never 404 or 410, which the JavaScript SDK retries for seconds).
func (s *server) selectIdentity(q url.Values) (*Identity, error) {
	var name, value string
	for _, k := range identitySelectors {
		if v := q.Get(k); v != "" {
			if name != "" {
				return nil, badRequest("invalid_request",
					"The request names more than one identity ("+name+" and "+k+").",
					"Send at most one of client_id, object_id, principal_id, mi_res_id, msi_res_id.")
			}
			name, value = k, v
		}
	}
	var id *Identity
	switch name {
	case "":
		return &s.opts.Identities[0], nil
	case "client_id":
		id = s.identity(value)
	case "object_id", "principal_id":
		id = s.find(func(id *Identity) string { return id.ObjectID }, value)
	case "mi_res_id", "msi_res_id":
		id = s.find(func(id *Identity) string { return id.ResourceID }, value)
	}
	if id == nil {
		return nil, identityNotFound(value)
	}
	return id, nil
}

func identityNotFound(value string) *httperr.Error {
	if len(value) > 128 {
		value = value[:128]
	}
	return badRequest("identity_not_found",
		"No identity held by the broker matches "+strconv.Quote(value)+".",
		"Select an identity by its Application (client) ID (or by the object_id or resource_id the broker's configuration file gives it), or send no selector to use the broker's default identity. In the app's environment, leave AZURE_CLIENT_ID unset or set it to an ID the broker holds: DefaultAzureCredential forwards it as client_id.")
}

// writeToken sends a token body with the headers every token answer has.
func writeToken(w http.ResponseWriter, t served, body []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	h["Pragma"] = noCache
	if t.Stale {
		h[staleHeader] = trueValue
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// Header values shared by every answer, so the hot path does not allocate them.
var (
	jsonContentType = []string{"application/json; charset=utf-8"}
	noStore         = []string{"no-store"}
	noCache         = []string{"no-cache"}
	trueValue       = []string{"true"}
)

// secondsLeft is the whole seconds from now until t, at least 0.
func secondsLeft(t, now time.Time) int64 {
	d := t.Sub(now) / time.Second
	if d < 0 {
		return 0
	}
	return int64(d)
}

func appendQuotedInt(b []byte, n int64) []byte {
	b = append(b, '"')
	b = strconv.AppendInt(b, n, 10)
	return append(b, '"')
}

// bodies recycles answer buffers: a token answer is written and forgotten,
// and its 1–3 KiB need not be garbage on every request.
var bodies = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

func getBuffer() *[]byte { return bodies.Get().(*[]byte) }

// putBuffer returns b to the pool unless it grew unusually large.
func putBuffer(b *[]byte) {
	if cap(*b) <= 64<<10 {
		bodies.Put(b)
	}
}

// jsonSafe marks the ASCII bytes that stand for themselves in a JSON
// string. <, > and & are escaped too, as encoding/json does, so an answer
// is safe to embed in HTML.
var jsonSafe = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' && c != 0x7f
	}
	for c := 0x80; c < 0x100; c++ {
		t[c] = true // UTF-8 passes through; scopes are validated ASCII anyway
	}
	return t
}()

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if jsonSafe[c] {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
