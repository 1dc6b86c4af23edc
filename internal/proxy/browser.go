package proxy

import (
	"net/http"
	"strings"

	"github.com/entrabroker/broker/internal/httperr"
)

// The proxy's own defences against web pages. A page on any site can make a
// browser send requests to the broker's loopback address; these checks hold
// whether or not the API listener also refuses requests with browser markers:
//
//   - OPTIONS is answered here, so a CORS preflight never reaches the
//     upstream with the broker's token and never gets the upstream's
//     permission back;
//   - a body a page may send without a preflight (a CORS-safelisted content
//     type, or none) is refused before any token is fetched;
//   - upstream headers that grant a page access (Access-Control-*), set
//     cookies, or weaken the listener's own CORP and nosniff are removed.

// allowedMethods is the Allow header of the proxy's answers to OPTIONS and
// to methods it does not forward.
const allowedMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

// hintRationed explains a 401 the broker passes on without a retry because
// it refreshed the scope's token recently.
const hintRationed = "The upstream refused the token. The broker refreshed this scope's token recently and will not force another refresh yet, so it did not retry. " +
	"If the upstream keeps refusing fresh tokens, check that the route's scope is the API's audience and that the app registration has the API's permission."

// Header values shared by every answer; their slices are full (len == cap),
// so an Add elsewhere copies instead of writing into them.
var (
	nosniff    = []string{"nosniff"}
	sameOrigin = []string{"same-origin"}
	allow      = []string{allowedMethods}
)

// secureHeaders sets exactly one X-Content-Type-Options: nosniff and one
// Cross-Origin-Resource-Policy: same-origin, replacing any set before (the
// API listener's middleware sets the same), so that a page cannot load a
// proxied answer as a script, style or image from another origin.
func secureHeaders(h http.Header) {
	h["X-Content-Type-Options"] = nosniff
	h["Cross-Origin-Resource-Policy"] = sameOrigin
}

// stripUpstreamHeaders removes from an upstream answer the headers that
// would let a web page read it or plant state in the browser: every
// Access-Control-* and Timing-Allow-Origin (cross-origin read permissions),
// Set-Cookie and Set-Cookie2, and the upstream's own
// Cross-Origin-Resource-Policy and X-Content-Type-Options, which the proxy
// sets itself (ReverseProxy adds header values, so two of each would go out).
func stripUpstreamHeaders(h http.Header) {
	delete(h, "Set-Cookie")
	delete(h, "Set-Cookie2")
	delete(h, "Cross-Origin-Resource-Policy")
	delete(h, "X-Content-Type-Options")
	delete(h, "Timing-Allow-Origin")
	for k := range h {
		if len(k) >= len("Access-Control-") && strings.EqualFold(k[:len("Access-Control-")], "Access-Control-") {
			delete(h, k)
		}
	}
}

// options answers an OPTIONS request locally: 204 with Allow and no
// Access-Control-* header, so a browser's CORS preflight fails.
func (h *handler) options(w http.ResponseWriter) {
	hdr := w.Header()
	secureHeaders(hdr)
	hdr["Allow"] = allow
	w.WriteHeader(http.StatusNoContent)
}

// checkMethod refuses what the proxy does not forward: methods other than
// allowedMethods (405; TRACE would echo the broker's token back), and a body
// of a type a web page can send without a CORS preflight (415).
func (h *handler) checkMethod(w http.ResponseWriter, r *http.Request) *httperr.Error {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		w.Header()["Allow"] = allow
		return errMethod
	}
	cts := r.Header.Values("Content-Type")
	if len(cts) == 0 {
		if r.ContentLength != 0 {
			return errNoContentType
		}
		return nil
	}
	for _, ct := range cts {
		if safelisted(ct) {
			return errSafelistedType
		}
	}
	return nil
}

// safelisted reports whether ct is a content type a web page may send
// across origins without a preflight: application/x-www-form-urlencoded,
// multipart/form-data or text/plain, in any case, parameters ignored.
// A value browsers cannot parse (and so would preflight) is not safelisted.
func safelisted(ct string) bool {
	essence, _, _ := strings.Cut(ct, ";")
	essence = strings.TrimSpace(essence)
	return strings.EqualFold(essence, "application/x-www-form-urlencoded") ||
		strings.EqualFold(essence, "multipart/form-data") ||
		strings.EqualFold(essence, "text/plain")
}

// The proxy's answers to requests it does not forward.
var (
	errMethod = &httperr.Error{
		Status:      http.StatusMethodNotAllowed,
		Code:        "method_not_allowed",
		Description: "The proxy forwards only " + allowedMethods + ".",
		Hint:        "Use one of the methods in the Allow header.",
	}
	errSafelistedType = &httperr.Error{
		Status:      http.StatusUnsupportedMediaType,
		Code:        "unsupported_content_type",
		Description: "The proxy does not forward form, multipart or text/plain bodies: a web page could send them through the browser without asking first.",
		Hint:        "Send the body with its real type, e.g. -H 'Content-Type: application/json' (curl -d sends application/x-www-form-urlencoded unless told otherwise).",
	}
	errNoContentType = &httperr.Error{
		Status:      http.StatusUnsupportedMediaType,
		Code:        "unsupported_content_type",
		Description: "The request has a body but no Content-Type; the proxy forwards only bodies that name their type.",
		Hint:        "Add the body's type, e.g. -H 'Content-Type: application/json'.",
	}
)
