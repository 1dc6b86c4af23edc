package emulator

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// tokenBody is the success JSON, fields in Entra's order. refresh_in is sent
// only for long-lived tokens.
type tokenBody struct {
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	ExtExpiresIn int64  `json:"ext_expires_in"`
	RefreshIn    int64  `json:"refresh_in,omitempty"`
	AccessToken  string `json:"access_token"`
}

// refreshInThreshold is the lifetime above which Entra adds refresh_in.
const refreshInThreshold = 2 * time.Hour

// oidcScopes are the scopes MSAL adds to every request, which Entra ignores
// beside a /.default scope in the client-credentials grant.
var oidcScopes = []string{"openid", "offline_access", "profile"}

// tokenRequest is what the token endpoint read from a request.
type tokenRequest struct {
	tenant       string // path segment as sent
	endpoint     string // the token endpoint's URL as the client addressed it
	form         url.Values
	clientID     string
	clientSecret string
	scope        string // as sent
}

// handleToken serves POST /{tenant}/oauth2/v2.0/token.
func (e *Emulator) handleToken(w http.ResponseWriter, r *http.Request) {
	x := e.begin(r)
	req := tokenRequest{tenant: r.PathValue("tenant"), endpoint: baseURL(r) + r.URL.EscapedPath()}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		// An unreadable body leaves the form empty: the answer is then the
		// missing-parameter error, as for an empty body.
		_ = r.ParseForm()
		req.form = r.PostForm
		req.clientID, req.clientSecret = clientCredentials(r)
		req.scope = req.form.Get("scope")
	}
	e.count(req.clientID, requestedScopes(req.scope))

	if r.Method == http.MethodOptions {
		// A CORS preflight, which Entra allows (900561 names POST, OPTIONS).
		h := w.Header()
		h.Set("Allow", "POST, OPTIONS")
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		w.WriteHeader(http.StatusOK)
		return
	}
	if f := e.takeFault(req.clientID); f != nil {
		if done := e.applyFault(w, r, x, f); done {
			e.logRequest(req, "fault", f.Kind.String())
			return
		}
	}
	token, lifetime, ae := e.grant(r, req)
	if ae != nil {
		e.logRequest(req, "error", ae.code, zap.Int("aadsts", ae.aadsts))
		e.writeError(w, x, *ae)
		return
	}
	e.logRequest(req, "ok", "")
	e.writeToken(w, x, token, lifetime)
}

// clientCredentials returns the client ID and secret from the form, or from
// HTTP Basic (client_secret_basic; both parts form-urlencoded, RFC 6749
// §2.3.1) when the form has none.
func clientCredentials(r *http.Request) (clientID, secret string) {
	clientID = r.PostForm.Get("client_id")
	secret = r.PostForm.Get("client_secret")
	if user, pass, ok := r.BasicAuth(); ok {
		if clientID == "" {
			clientID = formUnescape(user)
		}
		if secret == "" {
			secret = formUnescape(pass)
		}
	}
	return clientID, secret
}

func formUnescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// requestedScopes is the scope without the OIDC scopes MSAL adds: the key of
// the request counters.
func requestedScopes(scope string) string {
	var keep []string
	for s := range strings.FieldsSeq(scope) {
		if !slices.Contains(oidcScopes, s) {
			keep = append(keep, s)
		}
	}
	return strings.Join(keep, " ")
}

// grant runs Entra's checks in order and issues the token, or says which
// check failed.
func (e *Emulator) grant(r *http.Request, req tokenRequest) (token string, lifetime time.Duration, _ *aadError) {
	fail := func(ae aadError) (string, time.Duration, *aadError) { return "", 0, &ae }
	if r.Method != http.MethodPost {
		return fail(errMethodNotPost(r.Method))
	}
	tenantKind := strings.ToLower(req.tenant)
	multiTenant := tenantKind == "common" || tenantKind == "consumers" || tenantKind == "organizations"
	var tenant Tenant
	if !multiTenant {
		if !isGUID(req.tenant) && !isDomain(req.tenant) {
			return fail(errMalformedTenant(req.tenant))
		}
		var ok bool
		if tenant, ok = e.lookupTenant(req.tenant); !ok {
			return fail(errUnknownTenant("invalid_request", req.tenant))
		}
	}
	if req.form.Has("resource") {
		return fail(errResourceParameter())
	}
	grantType := req.form.Get("grant_type")
	switch grantType {
	case "":
		return fail(errMissingParameter("grant_type"))
	case "client_credentials":
	default:
		return fail(errUnsupportedGrantType(grantType))
	}
	switch tenantKind {
	case "common", "consumers":
		return fail(errCommonEndpoint())
	case "organizations":
		return fail(errNoTenantInformation())
	}
	if req.clientID == "" {
		return fail(errMissingParameter("client_id"))
	}
	if req.scope == "" {
		return fail(errMissingParameter("scope"))
	}
	resource, ae := parseScope(req.scope)
	if ae != nil {
		return fail(*ae)
	}
	app, ok := e.lookupApp(req.clientID)
	if !ok || !strings.EqualFold(app.TenantID, tenant.ID) {
		return fail(errUnknownApp(req.clientID, tenant))
	}
	if app.Disabled {
		return fail(errDisabledApp(app))
	}
	now := e.now()
	if ae := e.authenticate(req, app, tenant, now); ae != nil {
		return fail(*ae)
	}
	aud, roles, ok := e.lookupResource(resource, app.ClientID)
	if !ok {
		return fail(errUnknownResource(resource, tenant))
	}
	lifetime = app.TokenLifetime
	if lifetime <= 0 {
		lifetime = e.lifetime
	}
	token, err := e.issueToken(app, aud, roles, clientCapabilities(req.form.Get("claims")), now, lifetime)
	if err != nil {
		e.log.Error("issue token", zap.Error(err))
		return fail(errServerError())
	}
	return token, lifetime, nil
}

// clientCapabilities reads the capabilities a claims parameter declares
// ({"access_token":{"xms_cc":{"values":["cp1"]}}}, as MSAL sends them);
// nil when none, or when the parameter is not such JSON.
func clientCapabilities(claims string) []string {
	if claims == "" {
		return nil
	}
	var c struct {
		AccessToken struct {
			XmsCC struct {
				Values []string `json:"values"`
			} `json:"xms_cc"`
		} `json:"access_token"`
	}
	if json.Unmarshal([]byte(claims), &c) != nil {
		return nil
	}
	return c.AccessToken.XmsCC.Values
}

// parseScope applies the client-credentials scope rules: exactly one
// "{resource}/.default", optionally beside the OIDC scopes MSAL adds. It
// returns the resource identifier.
func parseScope(scope string) (string, *aadError) {
	var resources []string
	for s := range strings.FieldsSeq(scope) {
		if slices.Contains(oidcScopes, s) {
			continue
		}
		res, ok := strings.CutSuffix(s, "/.default")
		if !ok {
			ae := errScopeNotDefault(s)
			return "", &ae
		}
		if !validResourceID(res) {
			ae := errInvalidScope(s)
			return "", &ae
		}
		if !slices.ContainsFunc(resources, func(r string) bool { return strings.EqualFold(r, res) }) {
			resources = append(resources, res)
		}
	}
	switch len(resources) {
	case 0:
		ae := errScopeNotDefault(scope)
		return "", &ae
	case 1:
		return resources[0], nil
	default:
		ae := errMultipleResources(scope)
		return "", &ae
	}
}

// authenticate checks the client's credential: a secret, or an assertion
// (see assertion.go).
func (e *Emulator) authenticate(req tokenRequest, app App, tenant Tenant, now time.Time) *aadError {
	if req.form.Has("client_assertion") {
		return e.authenticateAssertion(req, app, tenant, req.endpoint, now)
	}
	if req.clientSecret == "" {
		ae := errMissingCredential()
		return &ae
	}
	expired := false
	for _, s := range app.Secrets {
		if subtle.ConstantTimeCompare([]byte(s.Value), []byte(req.clientSecret)) != 1 {
			continue
		}
		if s.ExpiresOn.IsZero() || now.Before(s.ExpiresOn) {
			return nil
		}
		expired = true
	}
	ae := errWrongSecret(app.ClientID)
	if expired {
		ae = errExpiredSecret(app.ClientID)
	}
	return &ae
}

// writeToken answers a token in Entra's v2 shape.
func (e *Emulator) writeToken(w http.ResponseWriter, x exchange, token string, lifetime time.Duration) {
	secs := int64(lifetime / time.Second)
	body := tokenBody{TokenType: "Bearer", ExpiresIn: secs, ExtExpiresIn: secs, AccessToken: token}
	if lifetime > refreshInThreshold {
		body.RefreshIn = secs / 2
	}
	x.setCommonHeaders(w.Header(), 0)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(marshal(body))
}

// logRequest writes one debug line; it never logs the secret, the assertion
// or the token.
func (e *Emulator) logRequest(req tokenRequest, result, detail string, fields ...zap.Field) {
	if ce := e.log.Check(zap.DebugLevel, "token request"); ce != nil {
		ce.Write(append([]zap.Field{
			zap.String("tenant", req.tenant),
			zap.String("client_id", req.clientID),
			zap.String("scope", req.scope),
			zap.String("result", result),
			zap.String("detail", detail),
		}, fields...)...)
	}
}
