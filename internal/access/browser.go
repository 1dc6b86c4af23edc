package access

import (
	"net/http"

	"github.com/entrabroker/broker/internal/httperr"
)

// Browser reports whether a request was made by a web browser on behalf of
// a page, from the headers every current browser adds and no other client
// sends, and returns the answer to refuse it with; nil when the request
// carries no such marker.
//
// The markers, each enough on its own:
//   - Origin, on any value (including "null"): browsers send it with every
//     CORS request and every request that is not a GET or HEAD, cross-site
//     form posts and sendBeacon included;
//   - Sec-Fetch-Site with any value but "none": "cross-site", "same-site"
//     (another port on loopback is the same site: any local dev server) and
//     "same-origin" (the broker serves no pages, so a page on its origin is
//     a rebound name or worse) all mean a page asked. "none" is a person
//     typing the URL or opening a bookmark: the answer goes to that person
//     only;
//   - Referer: a page's subresource or navigation in a browser too old to
//     send Sec-Fetch-Site. curl, the Azure SDKs and other programs do not
//     send it.
//
// This is the first of the trust boundary's checks: a page must never make
// the broker spend or reveal a token, even one whose answer it cannot read
// (a proxied query or a forced refresh is a side effect).
func Browser(h http.Header) *httperr.Error {
	marker := ""
	switch {
	case has(h, "Origin"):
		marker = "Origin"
	case has(h, "Sec-Fetch-Site") && h.Get("Sec-Fetch-Site") != "none":
		marker = "Sec-Fetch-Site: " + clip(h.Get("Sec-Fetch-Site"))
	case has(h, "Referer"):
		marker = "Referer"
	default:
		return nil
	}
	return &httperr.Error{
		Status:      http.StatusForbidden,
		Code:        "browser_request",
		Description: "The broker does not answer requests made by web pages (this one carries " + marker + ").",
		Hint:        "Call the broker from a program on this host (curl, an Azure SDK), which sends no Origin, Sec-Fetch-Site or Referer header. A web page must never get or use a token.",
	}
}

// has reports whether the header is present, even empty: an empty Origin is
// still a browser's.
func has(h http.Header, key string) bool {
	_, ok := h[key]
	return ok
}

// clip bounds a header value quoted back in an answer.
func clip(v string) string {
	if len(v) > 32 {
		return v[:32] + "…"
	}
	return v
}
