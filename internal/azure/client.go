package azure

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// maxResponseBody caps a token response. x/oauth2 reads at most 1 MiB
// (io.LimitReader(r.Body, 1<<20) in internal.doTokenRoundTrip) but truncates
// silently, so an oversized answer turns into a confusing JSON error. The
// client's own, smaller cap fails clearly instead: an app-only token response
// is a few kilobytes.
const maxResponseBody = 256 << 10

// Config configures a Client. TenantID, ClientID and Credential are
// required; everything else has a default.
type Config struct {
	// Cloud chooses the authority host when AuthorityHost is empty. The zero
	// Cloud means AzurePublic.
	Cloud Cloud
	// AuthorityHost overrides Cloud.AuthorityHost (AZURE_AUTHORITY_HOST), e.g.
	// "https://login.microsoftonline.us". It must be https, except that plain
	// http is allowed for loopback hosts (localhost, 127.0.0.0/8, ::1) so the
	// emulator can run without TLS. A path prefix is kept; a trailing slash
	// is dropped.
	AuthorityHost string
	// TenantID is the Directory (tenant) ID GUID or a verified domain such as
	// "contoso.onmicrosoft.com". "common", "consumers" and "organizations"
	// are refused: client credentials need a specific tenant.
	TenantID string
	// ClientID is the app registration's Application (client) ID, a GUID.
	ClientID string
	// Credential proves the app's identity: SecretCredential,
	// SecretFileCredential, CertificateCredential or
	// FederatedTokenFileCredential.
	Credential Credential
	// HTTPClient sends the token requests. nil means a client with explicit
	// timeouts (see newHTTPClient). A given client is copied, never modified:
	// the copy adds the client-request-id header and the response size cap to
	// its transport, and never follows redirects (a redirected POST would
	// carry the secret to another host).
	HTTPClient *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives one debug line per token request, never a token or a
	// secret; nil means no logging. The caller names it (e.g. Named("azure")).
	Logger *zap.Logger
}

// Client gets tokens from Entra ID with the client-credentials grant (v2
// endpoint, credentials in the request body) through
// golang.org/x/oauth2/clientcredentials. It never caches: each Token call is
// one request to Entra. A Client is safe for concurrent use by multiple
// goroutines.
type Client struct {
	authority string
	tenantID  string
	clientID  string
	tokenURL  string
	cred      Credential
	hc        *http.Client
	now       func() time.Time
	log       *zap.Logger
}

var _ TokenSource = (*Client)(nil)

// New checks cfg and returns a Client. Every problem in cfg is reported at
// once; each is an *Error with a hint (errors.As finds the first).
func New(cfg Config) (*Client, error) {
	var problems []error
	host := cfg.AuthorityHost
	if host == "" {
		host = cfg.Cloud.AuthorityHost
	}
	if host == "" {
		host = AzurePublic.AuthorityHost
	}
	authority, err := parseAuthority(host)
	if err != nil {
		problems = append(problems, err)
	}
	tenant, err := checkTenant(cfg.TenantID)
	if err != nil {
		problems = append(problems, err)
	}
	clientID := strings.ToLower(strings.TrimSpace(cfg.ClientID))
	if !IsGUID(clientID) {
		problems = append(problems, configError(nil, fmt.Sprintf("client ID %q is not a GUID", cfg.ClientID),
			"Set AZURE_CLIENT_ID to the app registration's Application (client) ID, a GUID such as 00001111-aaaa-2222-bbbb-3333cccc4444 (not its Object ID or display name)."))
	}
	if cfg.Credential == nil {
		problems = append(problems, configError([]int{7000218}, "no credential",
			"Set AZURE_CLIENT_SECRET, AZURE_CLIENT_SECRET_FILE, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE."))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("azure: invalid configuration: %w", errors.Join(problems...))
	}
	c := &Client{
		authority: authority,
		tenantID:  tenant,
		clientID:  clientID,
		tokenURL:  authority + "/" + url.PathEscape(tenant) + "/oauth2/v2.0/token",
		cred:      cfg.Credential,
		hc:        wrapHTTPClient(cfg.HTTPClient),
		now:       cfg.Now,
		log:       cfg.Logger,
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	return c, nil
}

// Authority returns the authority host in use, e.g.
// "https://login.microsoftonline.com": lower-case scheme and host, no
// trailing slash. With TenantID and ClientID it identifies the tokens the
// client gets (the cache key).
func (c *Client) Authority() string { return c.authority }

// TenantID returns the tenant, lower case.
func (c *Client) TenantID() string { return c.tenantID }

// ClientID returns the client ID, lower case.
func (c *Client) ClientID() string { return c.clientID }

// TokenURL returns the v2 token endpoint the client posts to.
func (c *Client) TokenURL() string { return c.tokenURL }

// Token requests a new access token for scope from Entra ID; it never caches.
// scope is normalized first (NormalizeScope) and a bad one is refused before
// any network call. Every failure is an *Error: Transient tells a network
// failure, timeout, 5xx or 429 (with RetryAfter) from a permanent one, and
// Hint says what to do. ctx bounds the request.
//
// Token is safe for concurrent use by multiple goroutines.
func (c *Client) Token(ctx context.Context, scope string) (Token, error) {
	return c.TokenWith(ctx, scope, TokenOptions{})
}

// TokenOptions are the choices of one token request beside its scope.
type TokenOptions struct {
	// Capabilities are the client capabilities the request declares, e.g.
	// "cp1" (the client handles continuous access evaluation's claims
	// challenges). They are sent as the claims parameter, as MSAL sends its
	// client capabilities: {"access_token":{"xms_cc":{"values":["cp1"]}}}.
	// Nil declares none.
	Capabilities []string
}

// CapabilitiesClaims is the claims parameter that declares the client
// capabilities caps, or "" for none.
func CapabilitiesClaims(caps []string) string {
	if len(caps) == 0 {
		return ""
	}
	type values struct {
		Values []string `json:"values"`
	}
	b, _ := json.Marshal(map[string]map[string]values{"access_token": {"xms_cc": {Values: caps}}})
	return string(b)
}

// TokenWith is Token with opts.
func (c *Client) TokenWith(ctx context.Context, scope string, opts TokenOptions) (Token, error) {
	s, err := NormalizeScope(scope)
	if err != nil {
		return Token{}, err
	}
	req := &TokenRequest{TokenURL: c.tokenURL, ClientID: c.clientID, Form: url.Values{}}
	if err := c.cred.Apply(ctx, req); err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Op: "credential", Description: "the credential failed", Hint: "Check the app registration's credential settings (AZURE_CLIENT_SECRET, AZURE_CLIENT_SECRET_FILE, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE).", Err: err}
		}
		c.log.Debug("token request refused", zap.String("scope", s), zap.Error(e))
		return Token{}, e
	}
	if claims := CapabilitiesClaims(opts.Capabilities); claims != "" {
		req.Form.Set("claims", claims)
	}
	var secrets []string
	for _, k := range sensitiveParams {
		secrets = append(secrets, req.Form[k]...)
	}

	ex := &exchange{}
	ctx = context.WithValue(ctx, exchangeKey{}, ex)
	ctx = context.WithValue(ctx, oauth2.HTTPClient, c.hc)
	cc := &clientcredentials.Config{
		ClientID:       c.clientID,
		TokenURL:       c.tokenURL,
		Scopes:         []string{s},
		EndpointParams: req.Form,
		AuthStyle:      oauth2.AuthStyleInParams,
	}
	sent := c.now()
	ot, err := cc.Token(ctx)
	now := c.now()
	var tok Token
	if err == nil {
		// IssuedAt is when the request was sent, so ExpiresOn errs early
		// rather than late by the round-trip time.
		tok, err = tokenFromResponse(ot.AccessToken, ot.Extra, sent)
	}
	if err != nil {
		e := c.explain(ctx, err, ex, now, secrets)
		c.log.Debug("token request failed",
			zap.String("scope", s),
			zap.Int("status", e.StatusCode),
			zap.Ints("aad_codes", e.AADCodes),
			zap.String("correlation_id", e.CorrelationID),
			zap.Bool("transient", e.Transient),
			zap.Duration("retry_after", e.RetryAfter),
			zap.Duration("took", now.Sub(sent)),
			zap.Error(e))
		return Token{}, e
	}
	c.log.Debug("token fetched",
		zap.String("scope", s),
		zap.String("client_request_id", ex.get().requestID),
		zap.Duration("expires_in", tok.ExpiresOn.Sub(tok.IssuedAt)),
		zap.Bool("refresh_in", !tok.RefreshOn.IsZero()),
		zap.Duration("took", now.Sub(sent)))
	return tok, nil
}

// explain turns a failed exchange into an *Error.
func (c *Client) explain(ctx context.Context, err error, ex *exchange, now time.Time, secrets []string) *Error {
	st := ex.get()
	e := &Error{Op: "token", CorrelationID: st.requestID}
	var re *oauth2.RetrieveError
	switch {
	case errors.As(err, &re) && re.Response != nil:
		c.explainStatus(e, re.Response.StatusCode, re.Response.Header, re.Body, re.ErrorCode, now)
	case st.tooLarge:
		e.StatusCode = st.status
		e.Description = fmt.Sprintf("Entra ID's answer is larger than %d bytes", maxResponseBody)
		e.Hint = hintTooLarge
		e.Transient = true
	case st.readFailed:
		// The answer started but the connection broke while reading it.
		e.StatusCode = st.status
		e.Description = "the connection to Entra ID broke while reading its answer"
		e.Hint = hintNetwork
		e.Transient = true
		e.Err = redact(err, secrets)
	case errors.Is(err, errMalformed) || st.status != 0:
		// An answer came but it is not a token response: a 2xx with a body
		// that is not JSON, lacks access_token or expires_in.
		e.StatusCode = st.status
		e.Description = "Entra ID's answer is not a valid token response"
		e.Hint = hintMalformed
		e.Transient = true
		e.Err = redact(err, secrets)
	default:
		explainNetwork(ctx, e, err)
		e.Err = redact(err, secrets)
	}
	e.Description = redactString(e.Description, secrets)
	return e
}

// explainStatus fills e from an HTTP answer that x/oauth2 refused.
func (c *Client) explainStatus(e *Error, status int, h http.Header, body []byte, formCode string, now time.Time) {
	e.StatusCode = status
	if b, ok := parseErrorBody(body); ok {
		e.Code, e.Description, e.AADCodes, e.TraceID = b.Code, b.Description, b.Codes, b.TraceID
		if b.CorrelationID != "" {
			e.CorrelationID = b.CorrelationID
		}
	} else {
		e.Code = cleanLine(formCode, 128)
	}
	if e.Description == "" {
		e.Description = fmt.Sprintf("Entra ID answered HTTP %d %s", status, http.StatusText(status))
	}
	if id := cleanLine(h.Get("client-request-id"), 64); id != "" && e.CorrelationID == "" {
		e.CorrelationID = id
	}
	e.RetryAfter = retryAfter(h, now)
	e.Hint = hintFor(e.AADCodes)
	transientCode := e.Code == "temporarily_unavailable"
	for _, code := range e.AADCodes {
		transientCode = transientCode || transientAADCodes[code]
	}
	switch {
	case status == http.StatusTooManyRequests:
		e.Transient = true
		if e.Hint == "" {
			e.Hint = hintThrottled
		}
	case status >= 500 || status == http.StatusRequestTimeout:
		e.Transient = true
		if e.Hint == "" || !transientCode {
			e.Hint = hintServerError
		}
	case transientCode:
		e.Transient = true
	case status >= 300 && status < 400:
		e.Hint = hintRedirect
	}
	if e.Hint == "" {
		e.Hint = hintHTTP
	}
}

// explainNetwork fills e for a request that got no HTTP answer.
func explainNetwork(ctx context.Context, e *Error, err error) {
	var (
		dnsErr      *net.DNSError
		netErr      net.Error
		verifyErr   *tls.CertificateVerificationError
		unknownCA   x509.UnknownAuthorityError
		hostnameErr x509.HostnameError
		invalidErr  x509.CertificateInvalidError
		recordErr   tls.RecordHeaderError
	)
	e.Transient = true
	switch {
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		e.Description = "the token request was canceled"
		e.Hint = hintCanceled
	case errors.As(err, &verifyErr) || errors.As(err, &unknownCA) || errors.As(err, &hostnameErr) || errors.As(err, &invalidErr):
		// Retrying will not make an untrusted certificate trusted.
		e.Transient = false
		e.Description = "the authority host's TLS certificate is not trusted"
		e.Hint = hintTLS
	case errors.As(err, &recordErr) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		// net/http turns a tls.RecordHeaderError that looks like HTTP into
		// a plain error with this text.
		e.Transient = false
		e.Description = "the authority host did not answer TLS (is it plain HTTP?)"
		e.Hint = hintNoTLS
	case errors.As(err, &dnsErr):
		e.Description = "cannot resolve the authority host"
		e.Hint = hintDNS
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout():
		e.Description = "the token request timed out"
		e.Hint = hintTimeout
	default:
		e.Description = "cannot reach Entra ID"
		e.Hint = hintNetwork
	}
}

// parseAuthority checks an authority host URL and returns it as
// scheme://host[:port][/path] in lower case, without a trailing slash.
func parseAuthority(s string) (string, error) {
	bad := func(why string) error {
		return configError(nil, fmt.Sprintf("authority host %q %s", s, why),
			"Set AZURE_AUTHORITY_HOST to the Entra ID host of your cloud, e.g. https://login.microsoftonline.com, or leave it unset.")
	}
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "", bad("is not an absolute URL")
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", bad("must not have user info, a query or a fragment")
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme == "https":
	case scheme == "http" && IsLoopbackHost(u.Hostname()):
	case scheme == "http":
		return "", bad("must use https (plain http is allowed only for localhost, e.g. the emulator)")
	default:
		return "", bad("must use https")
	}
	return scheme + "://" + strings.ToLower(u.Host) + strings.TrimRight(u.EscapedPath(), "/"), nil
}

// IsLoopbackHost reports whether host (without a port) names the local
// machine: localhost, a name under .localhost, or a loopback IP. Plain http
// is allowed to such hosts only; the configuration and the proxy's routes
// apply the same rule.
func IsLoopbackHost(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// checkTenant checks a tenant ID or domain and returns it in lower case.
func checkTenant(t string) (string, error) {
	tenant := strings.ToLower(strings.TrimSpace(t))
	switch {
	case IsGUID(tenant):
		return tenant, nil
	case tenant == "":
		return "", configError([]int{900023}, "no tenant ID",
			"Set AZURE_TENANT_ID to the Directory (tenant) ID GUID or a verified domain such as contoso.onmicrosoft.com.")
	case tenant == "common" || tenant == "consumers" || tenant == "organizations":
		return "", configError([]int{9001023}, fmt.Sprintf("tenant %q cannot be used with client credentials", t), aadHints[9001023])
	case IsTenantDomain(tenant):
		return strings.TrimSuffix(tenant, "."), nil
	default:
		return "", configError([]int{900023}, fmt.Sprintf("tenant %q is neither a GUID nor a domain name", t), aadHints[900023])
	}
}

// configError is one problem New found in a Config.
func configError(codes []int, desc, hint string) *Error {
	return &Error{Op: "config", Description: desc, AADCodes: codes, Hint: hint}
}

// newHTTPClient returns the default client for token requests. Each timeout
// says why it has its value.
func newHTTPClient() *http.Client {
	t := NewTransport()
	// Entra's token endpoint answers within a second or two; waiting longer
	// for headers only delays the retry.
	t.ResponseHeaderTimeout = 20 * time.Second
	// Refreshes are minutes apart: two warm connections per host are plenty.
	t.MaxIdleConnsPerHost = 2
	// Entra's response headers are small; bound them like the body.
	t.MaxResponseHeaderBytes = 64 << 10
	return &http.Client{
		// Timeout bounds a whole token request, dial to last body byte. Entra
		// answers in well under a second; 30 s is msal-go's default and
		// leaves room for a slow egress proxy. A caller's ctx can cut it
		// shorter.
		Timeout:   30 * time.Second,
		Transport: t,
	}
}

// wrapHTTPClient returns a copy of hc (or of the default client) whose
// transport adds the client-request-id header and caps the response body,
// and which never follows redirects.
func wrapHTTPClient(hc *http.Client) *http.Client {
	if hc == nil {
		hc = newHTTPClient()
	}
	cp := *hc
	base := cp.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	cp.Transport = &transport{base: base}
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cp
}

// exchangeKey is the context key of the *exchange of one Token call.
type exchangeKey struct{}

// exchange is what the transport saw of one Token call's HTTP exchange, for
// explaining a failure that x/oauth2 reports only as text.
type exchange struct {
	mu sync.Mutex
	st exchangeState
}

type exchangeState struct {
	requestID  string
	status     int
	tooLarge   bool
	readFailed bool
}

func (x *exchange) get() exchangeState {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.st
}

func (x *exchange) update(f func(*exchangeState)) {
	if x == nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	f(&x.st)
}

// transport adds a fresh client-request-id to each request (Entra echoes it
// as correlation_id, so a failure can be found in Entra's sign-in logs) and
// caps the response body. It changes a clone of the request, never the
// caller's.
type transport struct{ base http.RoundTripper }

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ex, _ := req.Context().Value(exchangeKey{}).(*exchange)
	id := newRequestID()
	r := req.Clone(req.Context())
	r.Header.Set("client-request-id", id)
	ex.update(func(s *exchangeState) { s.requestID = id })
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	ex.update(func(s *exchangeState) { s.status = resp.StatusCode })
	resp.Body = &cappedBody{rc: resp.Body, left: maxResponseBody, ex: ex}
	return resp, nil
}

// errTooLarge is the read error of a response body over maxResponseBody.
var errTooLarge = errors.New("response body too large")

// cappedBody fails reads past its limit instead of truncating silently.
type cappedBody struct {
	rc   io.ReadCloser
	left int64
	ex   *exchange
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			b.ex.update(func(s *exchangeState) { s.tooLarge = true })
			return 0, errTooLarge
		}
		if err != nil && err != io.EOF {
			b.ex.update(func(s *exchangeState) { s.readFailed = true })
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if err != nil && err != io.EOF {
		b.ex.update(func(s *exchangeState) { s.readFailed = true })
	}
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }

// newRequestID returns a random (version 4) UUID.
func newRequestID() string {
	var u [16]byte
	_, _ = rand.Read(u[:]) // crypto/rand.Read never fails (Go 1.24+).
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// redactedError hides credential values in an error's text while keeping
// the error chain for errors.Is and errors.As.
type redactedError struct {
	err     error
	secrets []string
}

func (r *redactedError) Error() string { return redactString(r.err.Error(), r.secrets) }
func (r *redactedError) Unwrap() error { return r.err }

// redact wraps err so its text cannot carry a credential value. x/oauth2's
// errors never include the request body, and network errors only the URL;
// this is defence in depth.
func redact(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	return &redactedError{err: err, secrets: secrets}
}

// redactString replaces every credential value in s (and its URL-encoded
// form) with "[redacted]".
func redactString(s string, secrets []string) string {
	for _, v := range secrets {
		if v == "" {
			continue
		}
		s = strings.ReplaceAll(s, v, "[redacted]")
		if q := url.QueryEscape(v); q != v {
			s = strings.ReplaceAll(s, q, "[redacted]")
		}
	}
	return s
}
