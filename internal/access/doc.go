// Package access owns the pieces of the broker's trust boundary: the checks
// that every way a token leaves the process (the token routes, the
// managed-identity routes and the proxy's routes) passes before the cache is
// asked. Today that is the refusal of requests made by web pages (Browser);
// internal/httpapi applies it to every route of both listeners, and applies
// the identities' allowed scopes in its one gate (authorize) that the token
// routes and the proxy's tokens share.
package access
