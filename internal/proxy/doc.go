// Package proxy owns the broker's reverse proxy: requests to
// /proxy/{route}/{path...} are sent to the route's upstream (Log Analytics,
// Application Insights, Azure Resource Manager or a configured custom
// upstream) with the caller's credentials removed and
// "Authorization: Bearer <token for the route's scope>" set in their place.
//
// The proxy never contacts a host that is not a route's upstream, never lets a
// request path leave its route, caps request bodies, streams responses
// (gzip untouched), retries once with a fresh token when an upstream answers
// 401, and answers every failure of its own as httperr JSON. Tokens come from
// a Tokens implementation (the broker's cache); this package holds none.
package proxy
