package loganalytics

import (
	"net/http"
	"strconv"
)

// errorBody is the service's error JSON: {"error":{…}}.
type errorBody struct {
	Error apiError `json:"error"`
}

// apiError is the OneAPI error object. The field order follows the recorded
// bodies: message, code, correlationId, innererror.
type apiError struct {
	Message       string          `json:"message,omitempty"`
	Code          string          `json:"code"`
	CorrelationID *string         `json:"correlationId,omitempty"`
	InnerError    *innerError     `json:"innererror,omitempty"`
	Details       []partialDetail `json:"details,omitempty"`
}

// innerError is a nested error; a SYN0002 carries line, pos and token.
type innerError struct {
	Code       string      `json:"code"`
	Message    string      `json:"message,omitempty"`
	Details    []detail    `json:"details,omitempty"`
	InnerError *innerError `json:"innererror,omitempty"`
	Line       *int        `json:"line,omitempty"`
	Pos        *int        `json:"pos,omitempty"`
	Token      *string     `json:"token,omitempty"`
}

// detail is one entry of a validation error's details; target is sent as
// null when empty, as in the documented InvalidJsonBody body.
type detail struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Target  *string `json:"target"`
}

// partialDetail is one entry of a PartialError's details.
type partialDetail struct {
	Code       string        `json:"code"`
	Message    string        `json:"message"`
	InnerError *partialInner `json:"innererror,omitempty"`
}

// partialInner is the engine error inside a PartialError detail.
type partialInner struct {
	Code         string `json:"code"`
	Message      string `json:"message"`
	Severity     int    `json:"severity"`
	SeverityName string `json:"severityName"`
}

// failure is an error answer: status, body and extra headers.
type failure struct {
	status int
	body   errorBody
	header http.Header
}

func ptr[T any](v T) *T { return &v }

// newFailure builds a failure with a correlation ID.
func newFailure(status int, code, message, correlationID string, inner *innerError) *failure {
	return &failure{status: status, body: errorBody{Error: apiError{
		Message: message, Code: code, CorrelationID: ptr(correlationID), InnerError: inner,
	}}}
}

// Messages and codes of the real service (reference §5.5).
const (
	msgBadArgument      = "The request had some invalid properties"
	msgAuthMissing      = "Authentication failed. The 'Authorization' header is missing."
	msgInsufficient     = "The provided credentials have insufficient access to perform the requested operation"
	msgInvalidToken     = "The provided authentication is not valid for this resource"
	msgPathNotFound     = "The requested path does not exist"
	msgGatewayTimeout   = "Gateway timeout"
	msgResolveResource  = "Resource identity could not be resovled" // sic, as the service spells it
	msgQueryValidation  = "Failed parsing the query"
	msgAccessTokenBad   = "The access token is invalid."
	msgTokenExpired     = "Authentication failed. The access token has expired." // [INF]: no recorded body
	msgPartialError     = "There were some errors when processing your query."
	codeBadArgument     = "BadArgumentError"
	codeAuthFailed      = "AuthenticationFailed"
	codeInsufficient    = "InsufficientAccessError"
	codeInvalidToken    = "InvalidTokenError"
	codeInvalidAuthTok  = "InvalidAuthenticationToken"
	codePathNotFound    = "PathNotFoundError"
	codeResourceMissing = "ResourceNotFoundError"
	codeGatewayTimeout  = "GatewayTimeout"
	codeResolveResource = "FailedToResolveResource"
)

func errPathNotFound(cid string) *failure {
	return newFailure(http.StatusNotFound, codePathNotFound, msgPathNotFound, cid, nil)
}

func errAuthMissing(cid string) *failure {
	return newFailure(http.StatusUnauthorized, codeAuthFailed, msgAuthMissing, cid, nil)
}

// errTokenExpired is the answer to an expired (or revoked) token. The record
// has no 401 body for this case; a 401 AuthenticationFailed with a
// WWW-Authenticate challenge is the inference (reference §5.5, §9), and it is
// what lets a caller tell "fetch a new token" apart from "this token can never
// work" (403).
func errTokenExpired(cid string) *failure {
	f := newFailure(http.StatusUnauthorized, codeAuthFailed, msgTokenExpired, cid, nil)
	f.header = http.Header{"Www-Authenticate": {`Bearer error="invalid_token", error_description="The access token has expired"`}}
	return f
}

func errMalformedToken(cid string) *failure {
	return newFailure(http.StatusForbidden, codeInvalidAuthTok, msgAccessTokenBad, cid, nil)
}

func errInvalidToken(cid string) *failure {
	return newFailure(http.StatusForbidden, codeInvalidToken, msgInvalidToken, cid,
		&innerError{Code: "SignatureVerificationFailed", Message: "Could not validate the request"})
}

func errInsufficientAccess(cid string, inner *innerError) *failure {
	return newFailure(http.StatusForbidden, codeInsufficient, msgInsufficient, cid, inner)
}

func errResourceNotFound(cid, resourceID string) *failure {
	return newFailure(http.StatusNotFound, codeResourceMissing, "The resource "+resourceID+" was not found", cid, nil)
}

func errResolveResource(cid string) *failure {
	return newFailure(http.StatusBadRequest, codeResolveResource, msgResolveResource, cid, nil)
}

// errValidation is a 400 BadArgumentError / QueryValidationError with one
// detail, the shape the service uses for an invalid JSON body.
func errValidation(cid, detailCode, detailMessage string) *failure {
	return newFailure(http.StatusBadRequest, codeBadArgument, msgBadArgument, cid, &innerError{
		Code: "QueryValidationError", Message: msgQueryValidation,
		Details: []detail{{Code: detailCode, Message: detailMessage}},
	})
}

// errQuery turns an evaluator error into the 400 body: SemanticError/SEM0100
// or SyntaxError/SYN0002.
func errQuery(cid string, qe *queryError) *failure {
	if qe.syntax {
		return newFailure(http.StatusBadRequest, codeBadArgument, msgBadArgument, cid, &innerError{
			Code: "SyntaxError", Message: "A recognition error occurred in the query.",
			InnerError: &innerError{
				Code: "SYN0002", Message: qe.message,
				Line: ptr(qe.line), Pos: ptr(qe.pos), Token: ptr(qe.token),
			},
		})
	}
	return newFailure(http.StatusBadRequest, codeBadArgument, msgBadArgument, cid, &innerError{
		Code: "SemanticError", Message: "A semantic error occurred.",
		InnerError: &innerError{Code: "SEM0100", Message: qe.message},
	})
}

func errGatewayTimeout(cid string, wait int) *failure {
	f := newFailure(http.StatusGatewayTimeout, codeGatewayTimeout, msgGatewayTimeout, cid,
		&innerError{Code: codeGatewayTimeout, Message: "ADX query timed out"})
	f.header = http.Header{"Preference-Applied": {"wait=" + strconv.Itoa(wait)}}
	return f
}

// errStatus is the body of an injected status fault. The record has no 429
// or 5xx body; these follow the OneAPI shape with plausible codes [INF].
func errStatus(cid string, status int) *failure {
	code, msg := "ServiceError", http.StatusText(status)
	switch status {
	case http.StatusTooManyRequests:
		code, msg = "ThrottledError", "Your request was throttled. Too many requests"
	case http.StatusInternalServerError:
		code, msg = "InternalServerError", "An internal server error occurred"
	case http.StatusBadGateway:
		code, msg = "BadGateway", "Bad gateway"
	case http.StatusServiceUnavailable:
		code, msg = "ServiceUnavailable", "The service is temporarily unavailable"
	case http.StatusGatewayTimeout:
		return errGatewayTimeout(cid, defaultWait)
	}
	return newFailure(status, code, msg, cid, nil)
}

// partialErrorObject is the error object of a 200 PartialError answer, as
// recorded.
func partialErrorObject() *apiError {
	return &apiError{
		Message: msgPartialError, Code: "PartialError",
		Details: []partialDetail{{
			Code: "EngineError", Message: "Something went wrong processing your query on the server.",
			InnerError: &partialInner{
				Code:         "-2133196788",
				Message:      "The emulator was asked to report a partial failure; results may be incomplete.",
				Severity:     2,
				SeverityName: "Error",
			},
		}},
	}
}
