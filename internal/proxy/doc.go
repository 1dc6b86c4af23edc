// Package proxy owns the broker's reverse proxy: requests to
// /proxy/{route}/{path...} are sent to the route's upstream (Log Analytics,
// Application Insights, Azure Resource Manager or a configured custom
// upstream) with the caller's credentials removed and
// "Authorization: Bearer <token for the route's scope>" set in their place.
//
// The proxy never contacts a host that is not a route's upstream, never lets a
// request path leave its route, streams responses (gzip untouched), retries
// once with a fresh token when an upstream answers 401 and Tokens allows a
// forced refresh, and answers every failure of its own as httperr JSON.
// Tokens come from a Tokens implementation (the broker's cache); this package
// holds none.
//
// It defends itself against web pages (see browser.go: OPTIONS answered
// locally, bodies a page can send without a preflight refused, cross-origin
// and cookie headers stripped from upstream answers) and against slow or
// large bodies (see body.go: a cap, a read timeout without progress, and a
// process-wide budget of buffered bytes).
//
// The loganalytics route keeps Log Analytics' per-user query limits itself
// (see queue.go): at most a few queries per identity upstream, the rest in a
// bounded FIFO queue, so that a burst waits instead of coming back as 429s.
//
// A route of Kind ingestion serves the Logs Ingestion API (see ingest.go and
// split.go): an upload of any size is read record by record and sent in calls
// under the service's 1 MB limit, with retries, and the answer names the
// records that were not accepted. It lives here rather than in a package of
// its own because it is one more way a token leaves through a proxy route:
// it shares the route table, the Tokens gate, the browser defences, the body
// budget and read deadline, and the answers of every other route.
package proxy
