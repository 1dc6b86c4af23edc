package emulator

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// aadError is one Entra error answer: the HTTP status, the OAuth error code,
// the AADSTS number and its sentence (without the "AADSTSnnnn: " prefix and
// the trace lines, which writeError adds).
type aadError struct {
	status  int
	code    string
	aadsts  int
	message string
}

// The texts below are Entra's, from recordings, the error-code reference and
// issue reports quoted in ../shared/reference/entra-and-loganalytics.md §2.

func errMethodNotPost(method string) aadError {
	return aadError{http.StatusBadRequest, "invalid_request", 900561,
		fmt.Sprintf("The endpoint only accepts POST, OPTIONS requests. Received a %s request.", method)}
}

func errMissingParameter(name string) aadError {
	return aadError{http.StatusBadRequest, "invalid_request", 900144,
		fmt.Sprintf("The request body must contain the following parameter: '%s'.", name)}
}

func errMalformedTenant(tenant string) aadError {
	return aadError{http.StatusBadRequest, "invalid_request", 900023,
		fmt.Sprintf("Specified tenant identifier '%s' is neither a valid DNS name, nor a valid external domain.", tenant)}
}

// errUnknownTenant is AADSTS90002. The token endpoint calls it
// invalid_request, the discovery endpoints invalid_tenant.
func errUnknownTenant(code, tenant string) aadError {
	return aadError{http.StatusBadRequest, code, 90002,
		fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.", tenant)}
}

func errCommonEndpoint() aadError {
	return aadError{http.StatusBadRequest, "invalid_request", 9001023,
		"The grant type is not supported over the /common or /consumers endpoints. Please use the /organizations or tenant-specific endpoint."}
}

func errNoTenantInformation() aadError {
	return aadError{http.StatusBadRequest, "invalid_request", 50059,
		"No tenant-identifying information found in either the request or implied by any provided credentials."}
}

func errResourceParameter() aadError {
	return aadError{http.StatusBadRequest, "invalid_request", 901002,
		"The 'resource' request parameter is not supported."}
}

func errUnsupportedGrantType(grantType string) aadError {
	return aadError{http.StatusBadRequest, "unsupported_grant_type", 70003,
		fmt.Sprintf("The app requested an unsupported grant type '%s'.", grantType)}
}

func errScopeNotDefault(scope string) aadError {
	return aadError{http.StatusBadRequest, "invalid_scope", 1002012,
		fmt.Sprintf("The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", scope)}
}

func errInvalidScope(scope string) aadError {
	return aadError{http.StatusBadRequest, "invalid_scope", 70011,
		fmt.Sprintf("The provided value for the input parameter 'scope' is not valid. The scope %s is not valid.", scope)}
}

func errMultipleResources(scope string) aadError {
	return aadError{http.StatusBadRequest, "invalid_scope", 700022,
		fmt.Sprintf("Provided value for the input parameter scope is not valid because it contains more than one resource. Scope %s is not valid.", scope)}
}

func errUnknownApp(clientID string, t Tenant) aadError {
	return aadError{http.StatusBadRequest, "unauthorized_client", 700016,
		fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", clientID, t.displayName())}
}

func errDisabledApp(a App) aadError {
	return aadError{http.StatusBadRequest, "unauthorized_client", 7000112,
		fmt.Sprintf("Application '%s'(%s) is disabled.", a.ClientID, a.DisplayName)}
}

func errMissingCredential() aadError {
	return aadError{http.StatusUnauthorized, "invalid_client", 7000218,
		"The request body must contain the following parameter: 'client_assertion' or 'client_secret'."}
}

func errWrongSecret(clientID string) aadError {
	return aadError{http.StatusUnauthorized, "invalid_client", 7000215,
		fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", clientID)}
}

func errExpiredSecret(clientID string) aadError {
	return aadError{http.StatusUnauthorized, "invalid_client", 7000222,
		fmt.Sprintf("The provided client secret keys for app '%s' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.", clientID)}
}

func errUnknownResource(resource string, t Tenant) aadError {
	return aadError{http.StatusBadRequest, "invalid_resource", 500011,
		fmt.Sprintf("The resource principal named %s was not found in the tenant named %s. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.", resource, t.displayName())}
}

func errMalformedAssertion() aadError {
	return aadError{http.StatusUnauthorized, "invalid_client", 50027,
		"JWT token is invalid or malformed."}
}

func errNoThumbprint() aadError {
	return aadError{http.StatusUnauthorized, "invalid_client", 50027,
		"Invalid JWT token. No certificate thumbprint specified in token header."}
}

func errCertificateNotRegistered(thumbprintHex, clientID string) aadError {
	return aadError{http.StatusUnauthorized, "invalid_client", 700027,
		fmt.Sprintf("The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '%s', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '%s'. Review the documentation at https://docs.microsoft.com/en-us/graph/deployments if not using Global endpoint.]", thumbprintHex, clientID)}
}

// foundKey renders a registered certificate's validity as Entra prints it in
// 700027 answers: "Start=01/28/2018 16:00:00, End=01/28/2019 16:00:00".
func foundKey(c *x509.Certificate) string {
	const layout = "01/02/2006 15:04:05"
	return fmt.Sprintf("Start=%s, End=%s", c.NotBefore.UTC().Format(layout), c.NotAfter.UTC().Format(layout))
}

// keysAdvice ends Entra's 700027 reasons.
func keysAdvice(clientID string) string {
	return fmt.Sprintf("Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '%s'. Review the documentation at https://docs.microsoft.com/en-us/graph/deployments if not using Global endpoint.", clientID)
}

// errSignatureInvalid is a registered certificate's assertion whose
// signature does not verify. The reason's wording is Entra's for 50013
// [ISS azure-sdk-for-java#25109], which uses the same shape.
func errSignatureInvalid(thumbprintHex string, c *x509.Certificate, clientID string) aadError {
	return aadError{http.StatusUnauthorized, "invalid_client", 700027,
		fmt.Sprintf("Client assertion failed signature validation. [Reason - The provided signature value did not match the expected signature value., Thumbprint of key used by client: '%s', Found key '%s', %s]", thumbprintHex, foundKey(c), keysAdvice(clientID))}
}

// errCertificateExpired is an assertion signed by a registered certificate
// outside its validity [ISS microsoft/azure-tools-for-java#2785].
func errCertificateExpired(thumbprintHex string, c *x509.Certificate, clientID string) aadError {
	return aadError{http.StatusUnauthorized, "invalid_client", 700027,
		fmt.Sprintf("Client assertion contains an invalid signature. [Reason - The key used is expired., Thumbprint of key used by client: '%s', Found key '%s', %s]", thumbprintHex, foundKey(c), keysAdvice(clientID))}
}

// errAssertionAudience is a certificate assertion whose aud is not this
// token endpoint [ISS AzureAD/microsoft-authentication-library-for-dotnet#2746].
func errAssertionAudience() aadError {
	return aadError{http.StatusUnauthorized, "invalid_client", 700023,
		"Client assertion audience claim does not match Realm issuer. Review the documentation at https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials ."}
}

// errAssertionIssuer is a certificate assertion whose iss or sub is not the
// client ID [INF: wording as Entra's error-code reference words it].
func errAssertionIssuer() aadError {
	return aadError{http.StatusUnauthorized, "invalid_client", 700021,
		"Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials ."}
}

// assertionTimeLayout is how 700024 prints times: seven fractional digits.
const assertionTimeLayout = "2006-01-02T15:04:05.0000000Z"

// errAssertionTime is an assertion used outside nbf … exp [ISS AzureAD/msal-java#984].
func errAssertionTime(now, nbf, exp time.Time) aadError {
	return aadError{http.StatusUnauthorized, "invalid_client", 700024,
		fmt.Sprintf("Client assertion is not within its valid time range. Current time: %s, assertion valid from %s, expiry time of assertion %s. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
			now.UTC().Format(assertionTimeLayout), nbf.UTC().Format(assertionTimeLayout), exp.UTC().Format(assertionTimeLayout))}
}

// federatedAdvice ends Entra's 7002xx messages.
const federatedAdvice = "Check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation"

// errFederatedIssuer, errFederatedAudience and errFederatedSubject are the
// current per-claim answers for a federated token no credential matches
// [ISS Azure/azure-workload-identity#1200, dotnet/maui#31978].
func errFederatedIssuer(iss string) aadError {
	return aadError{http.StatusUnauthorized, "invalid_client", 700211,
		fmt.Sprintf("No matching federated identity record found for presented assertion issuer '%s'. %s", iss, federatedAdvice)}
}

func errFederatedAudience(aud string) aadError {
	return aadError{http.StatusUnauthorized, "invalid_client", 700212,
		fmt.Sprintf("No matching federated identity record found for presented assertion audience '%s'. %s", aud, federatedAdvice)}
}

func errFederatedSubject(sub string) aadError {
	return aadError{http.StatusUnauthorized, "invalid_client", 700213,
		fmt.Sprintf("No matching federated identity record found for presented assertion subject '%s'. %s", sub, federatedAdvice)}
}

// errFederatedSubjectCase is a subject that matches only ignoring case
// [ISS Azure/login#515].
func errFederatedSubjectCase(sub string) aadError {
	return aadError{http.StatusUnauthorized, "invalid_client", 7002138,
		fmt.Sprintf("No matching federated identity record found for presented assertion subject '%s'. The subject matches with case-insensitive comparison, but not with case-sensitive comparison. Check your federated identity credential Subject, Audience and Issuer against the presented assertion. See documentation at: https://learn.microsoft.com/entra/workload-id/workload-identity-federation. See breaking change notification and remediation at: https://learn.microsoft.com/en-us/entra/identity-platform/reference-breaking-changes#august-2024.", sub)}
}

// errFederatedSignature is a federated token whose signature verifies with
// none of the issuer's keys [INF: 50013's wording, the key named by kid].
func errFederatedSignature(kid string) aadError {
	return aadError{http.StatusUnauthorized, "invalid_client", 50013,
		fmt.Sprintf("Assertion failed signature validation. [Reason - The key was not found., Thumbprint of key used by client: '%s']", kid)}
}

func errNoFederatedMatch(iss, sub, aud string) aadError {
	return aadError{http.StatusBadRequest, "invalid_request", 70021,
		fmt.Sprintf("No matching federated identity record found for presented assertion. Assertion Issuer: '%s'. Assertion Subject: '%s'. Assertion Audience: '%s'. https://docs.microsoft.com/en-us/azure/active-directory/develop/workload-identity-federation", iss, sub, aud)}
}

func errServerError() aadError {
	return aadError{http.StatusInternalServerError, "server_error", 50000,
		"There was an error issuing a token or an issue with our sign-in service."}
}

func errTemporarilyUnavailable() aadError {
	return aadError{http.StatusServiceUnavailable, "temporarily_unavailable", 90033,
		"A transient error has occurred. Please try again."}
}

// exchange is what one request's answer needs to name it: the IDs and the
// time Entra prints in every error.
type exchange struct {
	// clientRequestID is the client-request-id header, echoed when sent.
	clientRequestID string
	// correlationID is clientRequestID, or a new GUID when absent.
	correlationID string
	traceID       string
	at            time.Time
}

func (e *Emulator) begin(r *http.Request) exchange {
	x := exchange{
		clientRequestID: r.Header.Get("client-request-id"),
		traceID:         e.newID(),
		at:              e.now().UTC(),
	}
	x.correlationID = x.clientRequestID
	if x.correlationID == "" {
		x.correlationID = e.newID()
	}
	return x
}

// entraTimestamp is Entra's timestamp layout, "yyyy-MM-dd HH:mm:ssZ".
const entraTimestamp = "2006-01-02 15:04:05Z"

// errorBody is the error JSON, fields in Entra's order.
type errorBody struct {
	Error         string `json:"error"`
	Description   string `json:"error_description"`
	ErrorCodes    []int  `json:"error_codes"`
	Timestamp     string `json:"timestamp"`
	TraceID       string `json:"trace_id"`
	CorrelationID string `json:"correlation_id"`
	ErrorURI      string `json:"error_uri"`
}

// setCommonHeaders sets what Entra sends on every token-endpoint answer.
func (x exchange) setCommonHeaders(h http.Header, telemetryCode int) {
	h.Set("Cache-Control", "no-store, no-cache")
	h.Set("Pragma", "no-cache")
	h.Set("Expires", "-1")
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("x-ms-request-id", x.traceID)
	h.Set("x-ms-ests-server", "2.1.0 - broker emulator")
	h.Set("x-ms-clitelem", "1,"+strconv.Itoa(telemetryCode)+",0,,")
	if x.clientRequestID != "" {
		h.Set("client-request-id", x.clientRequestID)
	}
}

// writeError answers ae in Entra's shape.
func (e *Emulator) writeError(w http.ResponseWriter, x exchange, ae aadError) {
	ts := x.at.Format(entraTimestamp)
	body := errorBody{
		Error: ae.code,
		Description: fmt.Sprintf("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s",
			ae.aadsts, ae.message, x.traceID, x.correlationID, ts),
		ErrorCodes:    []int{ae.aadsts},
		Timestamp:     ts,
		TraceID:       x.traceID,
		CorrelationID: x.correlationID,
		ErrorURI:      "https://login.microsoftonline.com/error?code=" + strconv.Itoa(ae.aadsts),
	}
	x.setCommonHeaders(w.Header(), ae.aadsts)
	w.WriteHeader(ae.status)
	_, _ = w.Write(marshal(body))
}

// marshal encodes v as compact JSON without HTML escaping, as Entra sends it.
func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("emulator: marshal %T: %v", v, err)) // only fixed types are marshalled
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
