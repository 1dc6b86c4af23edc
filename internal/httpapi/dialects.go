package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/entrabroker/broker/internal/httperr"
)

// The managed-identity dialects the broker speaks. Every Azure SDK picks one
// from the environment variables it finds (reference §1.4), and each
// dialect has its own request and answer:
//
//   - App Service 2019-08-01 (IDENTITY_ENDPOINT, IDENTITY_HEADER): GET
//     /msi/token, header X-IDENTITY-HEADER, selector client_id (object_id,
//     principal_id, mi_res_id, msi_res_id), expires_on in unix seconds.
//   - App Service 2017-09-01 (MSI_ENDPOINT, MSI_SECRET; the Azure ML source
//     of the SDKs and the Azure CLI on App Service): GET /msi/token, header
//     secret, selector clientid (or client_id), expires_on a date such as
//     "12/07/2026 18:04:05 +00:00".
//   - Cloud Shell (MSI_ENDPOINT alone): POST /msi/token of a form with
//     resource (and client_id), header Metadata: true; the answer is IMDS's.
//   - IMDS 2018-02-01: GET /metadata/identity/oauth2/token, header
//     Metadata: true.
//
// A request that mixes them, or speaks one the broker does not (Service
// Fabric, Azure Arc), is answered 400 with the dialect it looks like and the
// environment variables to set instead.
type dialect struct {
	// endpoint is the metrics label and the route the gate and the audit
	// trail name.
	endpoint int
	// dateExpiry answers expires_on as App Service 2017-09-01 does (a date
	// string, UTC) and leaves out expires_in.
	dateExpiry bool
	// imdsFields adds ext_expires_in and not_before, as IMDS and Cloud
	// Shell answer.
	imdsFields bool
}

var (
	dialectAppService     = dialect{endpoint: endpointMSI}
	dialectAppService2017 = dialect{endpoint: endpointMSI2017, dateExpiry: true}
	dialectCloudShell     = dialect{endpoint: endpointCloudShell, imdsFields: true}
	dialectIMDS           = dialect{endpoint: endpointIMDS, imdsFields: true}
)

// appService2017APIVersion is the api-version of the 2017 App Service
// dialect, and appService2017Expiry the layout of its expires_on (App
// Service on Linux; on Windows it has AM/PM, which no client needs).
const (
	appService2017APIVersion = "2017-09-01"
	appService2017Expiry     = "01/02/2006 15:04:05 +00:00"
)

// api-versions of the dialects the broker does not speak, to name them in
// the answer.
const (
	serviceFabricAPIVersion = "2019-07-01-preview"
	azureArcAPIVersion      = "2020-06-01"
)

// maxFormBytes bounds a Cloud Shell form: a resource URI and an identity
// selector fit in far less.
const maxFormBytes = 4 << 10

// msiFail returns the failure adapter of a managed-identity endpoint: it
// counts the result and copies the description and hint into "message",
// which the JavaScript and Python SDKs show.
func (s *server) msiFail(endpoint int) func(result, *httperr.Error) error {
	return func(rs result, e *httperr.Error) error {
		s.metrics.token(endpoint, rs)
		e.Message = e.Description + " " + e.Hint
		return e
	}
}

// msiToken serves GET /msi/token: the App Service managed-identity
// dialects, chosen by api-version (2019-08-01 with IDENTITY_ENDPOINT and
// IDENTITY_HEADER; 2017-09-01 with MSI_ENDPOINT and MSI_SECRET).
func (s *server) msiToken(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	v := q.Get("api-version")
	if v == appService2017APIVersion {
		return s.msiToken2017(w, r, q)
	}
	fail := s.msiFail(endpointMSI)
	if e := s.msiConfigured(); e != nil {
		return fail(resultUnauthorized, e)
	}
	switch v {
	case appServiceAPIVersion:
	case imdsAPIVersion:
		return fail(resultBadRequest, s.wrongDialect("IMDS (api-version "+imdsAPIVersion+")",
			"The request has IMDS's api-version "+imdsAPIVersion+" but was sent to the App Service endpoint /msi/token.",
			"Either give the app IDENTITY_ENDPOINT="+s.endpointURL("/msi/token")+" and IDENTITY_HEADER (the SDKs then send api-version "+appServiceAPIVersion+"), or, for IMDS, set AZURE_POD_IDENTITY_AUTHORITY_HOST="+s.endpointURL("")+" so that the request goes to /metadata/identity/oauth2/token."))
	case serviceFabricAPIVersion:
		return fail(resultBadRequest, s.wrongDialect("Service Fabric (api-version "+serviceFabricAPIVersion+")",
			"The request speaks Service Fabric's managed-identity protocol, which the broker does not.",
			"Unset IDENTITY_SERVER_THUMBPRINT in the app's environment: with IDENTITY_ENDPOINT="+s.endpointURL("/msi/token")+" and IDENTITY_HEADER alone, the SDKs speak App Service "+appServiceAPIVersion+"."))
	case azureArcAPIVersion:
		return fail(resultBadRequest, s.wrongDialect("Azure Arc (api-version "+azureArcAPIVersion+")",
			"The request speaks Azure Arc's managed-identity protocol, which the broker does not.",
			"Unset IMDS_ENDPOINT in the app's environment and set IDENTITY_HEADER to the broker's BROKER_IDENTITY_HEADER beside IDENTITY_ENDPOINT="+s.endpointURL("/msi/token")+": the SDKs then speak App Service "+appServiceAPIVersion+"."))
	default:
		return fail(resultBadRequest, badRequest("invalid_request",
			"The api-version parameter must be "+appServiceAPIVersion+" (or "+appService2017APIVersion+").",
			"The broker speaks the App Service managed-identity protocol of "+appServiceAPIVersion+": set IDENTITY_ENDPOINT to "+s.endpointURL("/msi/token")+" and IDENTITY_HEADER to the broker's BROKER_IDENTITY_HEADER, and use a current Azure SDK (older clients with MSI_ENDPOINT and MSI_SECRET send "+appService2017APIVersion+", which the broker speaks too)."))
	}
	got := r.Header.Get("X-Identity-Header")
	if got == "" && r.Header.Get("Secret") != "" {
		return fail(resultBadRequest, s.wrongDialect("App Service "+appService2017APIVersion+" (MSI_SECRET)",
			"The request has api-version "+appServiceAPIVersion+" but carries the secret header of the "+appService2017APIVersion+" protocol instead of X-IDENTITY-HEADER.",
			"A client sending api-version "+appServiceAPIVersion+" takes its secret from IDENTITY_HEADER: set IDENTITY_ENDPOINT="+s.endpointURL("/msi/token")+" and IDENTITY_HEADER to the broker's BROKER_IDENTITY_HEADER."))
	}
	if e := s.checkSecret(got, "X-IDENTITY-HEADER", "IDENTITY_HEADER"); e != nil {
		return fail(resultUnauthorized, e)
	}
	if q.Get("clientid") != "" {
		return fail(resultBadRequest, s.wrongDialect("App Service "+appService2017APIVersion+" (MSI_ENDPOINT)",
			"The request has api-version "+appServiceAPIVersion+" but selects its identity with clientid, the "+appService2017APIVersion+" spelling, which "+appServiceAPIVersion+" ignores.",
			"Send client_id=<Application (client) ID> with api-version "+appServiceAPIVersion+", or api-version "+appService2017APIVersion+" with the secret header (MSI_ENDPOINT and MSI_SECRET)."))
	}
	id, err := s.selectIdentity(q)
	if err != nil {
		return fail(resultNotFound, httperr.As(err))
	}
	return s.managedIdentity(w, r, q, dialectAppService, id, fail)
}

// msiToken2017 serves GET /msi/token?api-version=2017-09-01, the App
// Service dialect of MSI_ENDPOINT and MSI_SECRET: the secret comes in the
// header secret, the identity in clientid (or client_id), and expires_on is
// a date.
func (s *server) msiToken2017(w http.ResponseWriter, r *http.Request, q url.Values) error {
	fail := s.msiFail(endpointMSI2017)
	if e := s.msiConfigured(); e != nil {
		return fail(resultUnauthorized, e)
	}
	got := r.Header.Get("Secret")
	if got == "" && r.Header.Get("X-Identity-Header") != "" {
		return fail(resultBadRequest, s.wrongDialect("App Service "+appServiceAPIVersion+" (IDENTITY_HEADER)",
			"The request has api-version "+appService2017APIVersion+" but carries X-IDENTITY-HEADER, the secret header of the "+appServiceAPIVersion+" protocol, instead of secret.",
			"A client sending api-version "+appService2017APIVersion+" takes its secret from MSI_SECRET: set MSI_ENDPOINT="+s.endpointURL("/msi/token")+" and MSI_SECRET to the broker's BROKER_IDENTITY_HEADER, or let it use IDENTITY_ENDPOINT and IDENTITY_HEADER with "+appServiceAPIVersion+"."))
	}
	if e := s.checkSecret(got, "secret", "MSI_SECRET"); e != nil {
		return fail(resultUnauthorized, e)
	}
	for _, k := range identitySelectors[1:] {
		if q.Get(k) != "" {
			return fail(resultBadRequest, badRequest("invalid_request",
				"The "+appService2017APIVersion+" protocol selects an identity by clientid only, and the request names "+k+".",
				"Send clientid=<Application (client) ID>, or use api-version "+appServiceAPIVersion+" (IDENTITY_ENDPOINT and IDENTITY_HEADER), which takes "+k+"."))
		}
	}
	clientID, alias := q.Get("clientid"), q.Get("client_id")
	if clientID != "" && alias != "" && !strings.EqualFold(clientID, alias) {
		return fail(resultBadRequest, badRequest("invalid_request",
			"The request names two different identities in clientid and client_id.",
			"Send one of them."))
	}
	if clientID == "" {
		clientID = alias
	}
	id := s.identity(clientID)
	if id == nil {
		return fail(resultNotFound, identityNotFound(clientID))
	}
	return s.managedIdentity(w, r, q, dialectAppService2017, id, fail)
}

// cloudShellToken serves POST /msi/token, the Cloud Shell dialect that the
// SDKs speak when MSI_ENDPOINT is set without MSI_SECRET: a form with
// resource (and, beyond Cloud Shell, the identity selectors) and the header
// Metadata: true, answered as IMDS answers. Like IMDS it carries no secret:
// Metadata: true is the guard against forged requests (a web page cannot
// send it without a preflight, and refuseBrowsers refuses web pages), so it
// answers whether BROKER_IDENTITY_HEADER is set or not, as the IMDS route
// does.
func (s *server) cloudShellToken(w http.ResponseWriter, r *http.Request) error {
	fail := s.msiFail(endpointCloudShell)
	if q := r.URL.Query(); q.Get("api-version") != "" || r.Header.Get("X-Identity-Header") != "" || r.Header.Get("Secret") != "" {
		return fail(resultBadRequest, s.wrongDialect("App Service (IDENTITY_ENDPOINT or MSI_ENDPOINT with MSI_SECRET)",
			"The request is a POST, as in the Cloud Shell protocol, but carries an App Service api-version or secret header; App Service token requests are GET requests.",
			"For App Service send GET "+s.endpointURL("/msi/token")+"?api-version="+appServiceAPIVersion+"&resource=… (IDENTITY_ENDPOINT and IDENTITY_HEADER); for Cloud Shell set MSI_ENDPOINT="+s.endpointURL("/msi/token")+" and no MSI_SECRET."))
	}
	if !strings.EqualFold(r.Header.Get("Metadata"), "true") {
		return fail(resultBadRequest, badRequest("invalid_request", "Required metadata header not specified",
			"A Cloud Shell token request is a POST with the header Metadata: true and a form with resource=…; the Azure SDKs send it when MSI_ENDPOINT="+s.endpointURL("/msi/token")+" is set without MSI_SECRET."))
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/x-www-form-urlencoded" {
		return fail(resultBadRequest, &httperr.Error{
			Status:      http.StatusUnsupportedMediaType,
			Code:        "invalid_request",
			Description: "A Cloud Shell token request carries a form (Content-Type: application/x-www-form-urlencoded).",
			Hint:        "Send resource=<resource URI> as a form body.",
		})
	}
	// A form body has a query's syntax: read it as one, like the GET
	// dialects' parameters.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return fail(resultBadRequest, &httperr.Error{
				Status:      http.StatusRequestEntityTooLarge,
				Code:        "request_too_large",
				Description: "The form is larger than the broker accepts for a token request.",
				Hint:        "Send only resource=<resource URI> (and client_id=<Application (client) ID>).",
			})
		}
		return fail(resultBadRequest, badRequest("invalid_request", "The form body could not be read.",
			"Send resource=<resource URI> form-encoded (application/x-www-form-urlencoded)."))
	}
	form, _ := url.ParseQuery(string(body))
	id, err := s.selectIdentity(form)
	if err != nil {
		return fail(resultNotFound, httperr.As(err))
	}
	return s.managedIdentity(w, r, form, dialectCloudShell, id, fail)
}

// msiConfigured answers the error of /msi/token's GET dialects when
// BROKER_IDENTITY_HEADER is not set; nil when it is.
func (s *server) msiConfigured() *httperr.Error {
	if s.opts.IdentityHeader != "" {
		return nil
	}
	return &httperr.Error{
		Status:      http.StatusForbidden,
		Code:        "msi_not_configured",
		Description: "The managed-identity endpoint /msi/token is off because BROKER_IDENTITY_HEADER is not set.",
		Hint:        "Set BROKER_IDENTITY_HEADER on the broker to a random secret, and IDENTITY_HEADER (or, for older clients, MSI_SECRET) to the same value in the app's environment.",
	}
}

// checkSecret compares a request's secret (sent in the header named
// header, taken by the client from the variable env) with
// BROKER_IDENTITY_HEADER in constant time; nil when it matches.
func (s *server) checkSecret(got, header, env string) *httperr.Error {
	if got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.opts.IdentityHeader)) == 1 {
		return nil
	}
	name := header
	if header == "secret" {
		name = "secret header"
	}
	desc := "The request's " + name + " does not match BROKER_IDENTITY_HEADER."
	if got == "" {
		desc = "The request lacks the " + header + " header."
	}
	return &httperr.Error{
		Status:      http.StatusUnauthorized,
		Code:        "invalid_identity_header",
		Description: desc,
		Hint:        "Set " + env + " in the app's environment to the broker's BROKER_IDENTITY_HEADER value (the Azure SDKs send it as " + header + ").",
	}
}

// wrongDialect is the 400 of a request that looks like the dialect named
// like, sent where or mixed with what the broker does not take.
func (s *server) wrongDialect(like, desc, hint string) *httperr.Error {
	return &httperr.Error{
		Status:      http.StatusBadRequest,
		Code:        "wrong_dialect",
		Description: desc + " It looks like " + like + ".",
		Hint:        hint,
	}
}

// endpointURL is the URL at which apps reach path on the API listener, for
// hints: the configured listen address, with a wildcard host replaced by
// 127.0.0.1.
func (s *server) endpointURL(path string) string {
	addr := s.opts.ListenAddress
	switch {
	case addr == "":
		addr = "127.0.0.1:8400"
	case strings.HasPrefix(addr, "unix:"):
		// The Azure SDKs speak TCP only.
		return "http://<a TCP address of the broker; BROKER_LISTEN is a unix socket>" + path
	}
	if h, p, err := net.SplitHostPort(addr); err == nil && (h == "" || h == "0.0.0.0" || h == "::") {
		addr = net.JoinHostPort("127.0.0.1", p)
	}
	return "http://" + addr + path
}

// capabilities reads xms_cc, the client capabilities MSAL declares for the
// token ("cp1,cp2"): "cp1" when CP1 is among them (the only one Entra acts
// on), else "".
func capabilities(xmsCC string) string {
	for c := range strings.SplitSeq(xmsCC, ",") {
		if strings.EqualFold(strings.TrimSpace(c), "cp1") {
			return "cp1"
		}
	}
	return ""
}

// isSHA256Hex reports whether h is 64 hexadecimal digits.
func isSHA256Hex(h string) bool {
	if len(h) != 2*sha256.Size {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

// tokenHashIs reports whether the hex SHA-256 of token is hash (lower case).
func tokenHashIs(token, hash string) bool {
	sum := sha256.Sum256([]byte(token))
	var hx [2 * sha256.Size]byte
	hex.Encode(hx[:], sum[:])
	return subtle.ConstantTimeCompare(hx[:], []byte(hash)) == 1
}
