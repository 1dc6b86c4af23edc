package azure

import (
	"fmt"
	"net/url"
	"strings"
)

// Scope normalization (design "Token lifecycle: Normalize", reference §1.6).
//
// The rules, in order:
//
//   - The MSAL OIDC extras "openid", "offline_access" and "profile" are
//     dropped: Entra ignores them for client credentials, and they must not
//     split the cache.
//   - What is left must be exactly one resource, as "<resource>/.default".
//     Several resources are AADSTS700022; an entry without "/.default" (a
//     permission such as "Data.Read" or ".../user_impersonation", or a bare
//     resource) is AADSTS1002012; a resource that is neither an absolute URI
//     (https://host, api://id) nor an application ID GUID is AADSTS70011; an
//     empty scope is AADSTS900144. All of these are refused locally, before
//     any network call, as an *Error shaped like Entra's.
//   - The suffix is written "/.default"; the scheme and the host of a
//     hierarchical URI are written in lower case.
//   - One trailing slash before "/.default" is trimmed only where the
//     audience has no path ("https://api.loganalytics.io//.default" and the
//     resource "https://api.loganalytics.io/" both give
//     "https://api.loganalytics.io/.default"), because for those audiences the
//     two spellings name the same resource and must share a cache entry.
//     Audiences registered with the slash as part of their identifier keep it
//     (see slashAudiences): Entra takes "everything before the last slash" as
//     the audience, Microsoft documents "https://database.windows.net//.default"
//     for SQL, and azcore asks ARM for "https://management.core.windows.net//.default",
//     so trimming there would change the token's aud claim. An audience with a
//     path ("api://app/api/") is never trimmed: the slash is part of it.
//
// Normalization is idempotent: NormalizeScope of a normalized scope returns
// it unchanged.

// defaultSuffix is the client-credentials scope suffix.
const defaultSuffix = "/.default"

// maxScopeLen bounds a scope string. Entra publishes no limit; real resource
// URIs are far shorter, and a bound keeps garbage out of logs and cache keys.
const maxScopeLen = 1024

// oidcScopes are the scopes MSAL adds to every request; Entra ignores them
// next to a /.default scope.
var oidcScopes = map[string]bool{"openid": true, "offline_access": true, "profile": true}

// slashAudiences are host-only audiences whose identifier includes the
// trailing slash, so "<audience>/.default" keeps its double slash. The keys
// are scheme://host, lower case.
var slashAudiences = map[string]bool{
	"https://database.windows.net":              true, // Azure SQL, public (reference §1.6).
	"https://database.usgovcloudapi.net":        true, // Azure SQL, US Government.
	"https://database.chinacloudapi.cn":         true, // Azure SQL, China.
	"https://management.core.windows.net":       true, // ARM, public (azcore arm/runtime).
	"https://management.core.usgovcloudapi.net": true, // ARM, US Government.
	"https://management.core.chinacloudapi.cn":  true, // ARM, China.
}

// NormalizeScope checks a client-credentials scope and returns its normalized
// form (see the rules above), e.g. "https://api.loganalytics.io/.default".
// Any problem is an *Error with Transient false, a Hint, and the AADSTS code
// Entra would have answered, so callers treat it as they would Entra's.
func NormalizeScope(scope string) (string, error) {
	if err := checkScopeText(scope, "scope"); err != nil {
		return "", err
	}
	var out string
	sawOIDC := false
	for _, s := range strings.Fields(scope) {
		if oidcScopes[strings.ToLower(s)] {
			sawOIDC = true
			continue
		}
		if len(s) <= len(defaultSuffix) || !strings.EqualFold(s[len(s)-len(defaultSuffix):], defaultSuffix) {
			return "", scopeError(1002012, "invalid_scope",
				fmt.Sprintf("AADSTS1002012: The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", s))
		}
		n, err := normalizeResource(s[:len(s)-len(defaultSuffix)], s)
		if err != nil {
			return "", err
		}
		switch {
		case out == "":
			out = n
		case out != n:
			return "", scopeError(700022, "invalid_scope",
				fmt.Sprintf("AADSTS700022: The provided value for the input parameter scope is not valid because it contains more than one resource. Scope %s is not valid.", strings.Join(strings.Fields(scope), " ")))
		}
	}
	if out == "" {
		if sawOIDC {
			return "", scopeError(1002012, "invalid_scope",
				"AADSTS1002012: The provided value for scope "+strings.Join(strings.Fields(scope), " ")+" is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")
		}
		return "", scopeError(900144, "invalid_request", "AADSTS900144: The request body must contain the following parameter: 'scope'.")
	}
	return out, nil
}

// ScopeForResource turns a resource (a v1 "resource" or managed-identity
// "resource" parameter, e.g. "https://api.loganalytics.io") into its
// normalized client-credentials scope ("https://api.loganalytics.io/.default").
// A resource that already ends in "/.default" is treated as a scope. Errors are
// as for NormalizeScope.
func ScopeForResource(resource string) (string, error) {
	if err := checkScopeText(resource, "resource"); err != nil {
		return "", err
	}
	r := strings.TrimSpace(resource)
	if r == "" {
		return "", scopeError(900144, "invalid_request", "AADSTS900144: The request body must contain the following parameter: 'resource'.")
	}
	if f := strings.Fields(r); len(f) > 1 {
		return "", scopeError(700022, "invalid_scope",
			"AADSTS700022: The provided value for the input parameter scope is not valid because it contains more than one resource. Resource "+strings.Join(f, " ")+" is not valid.")
	}
	if len(r) > len(defaultSuffix) && strings.EqualFold(r[len(r)-len(defaultSuffix):], defaultSuffix) {
		return NormalizeScope(r)
	}
	return normalizeResource(r, r+defaultSuffix)
}

// checkScopeText refuses control characters and over-long input before any
// parsing, so neither reaches an error string unquoted.
func checkScopeText(s, what string) error {
	if len(s) > maxScopeLen {
		return scopeError(70011, "invalid_scope",
			fmt.Sprintf("AADSTS70011: The provided value for the input parameter '%s' is not valid. It is longer than %d bytes.", what, maxScopeLen))
	}
	for _, r := range s {
		if r == ' ' {
			continue
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\uFFFD' {
			return scopeError(70011, "invalid_scope",
				fmt.Sprintf("AADSTS70011: The provided value for the input parameter '%s' is not valid. It contains control characters or invalid UTF-8.", what))
		}
	}
	return nil
}

// normalizeResource checks resource r (the part before "/.default") and
// returns "<normalized r>/.default". shown is the scope as the caller wrote
// it, for the error text.
func normalizeResource(r, shown string) (string, error) {
	invalid := func() error {
		return scopeError(70011, "invalid_scope",
			fmt.Sprintf("AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope %s is not valid.", shown))
	}
	if IsGUID(r) {
		return strings.ToLower(r) + defaultSuffix, nil
	}
	u, err := url.Parse(r)
	if err != nil || u.Scheme == "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(r, "#?\\") {
		return "", invalid()
	}
	scheme := strings.ToLower(u.Scheme)
	if u.Opaque != "" {
		// An opaque URI such as urn:example:api: keep it as written.
		return scheme + ":" + u.Opaque + defaultSuffix, nil
	}
	if u.Host == "" || strings.HasPrefix(u.Host, ":") {
		return "", invalid()
	}
	if !validHost(u.Hostname()) || !validPort(u.Port()) || strings.Contains(u.Host, "%") {
		return "", invalid()
	}
	base := scheme + "://" + strings.ToLower(u.Host)
	path := u.EscapedPath()
	if path == "/" && !slashAudiences[base] {
		path = ""
	}
	return base + path + defaultSuffix, nil
}

// scopeError is a local refusal of a scope, shaped like Entra's answer.
func scopeError(code int, oauthCode, desc string) *Error {
	return &Error{
		Op:          "scope",
		Code:        oauthCode,
		Description: desc,
		AADCodes:    []int{code},
		Hint:        aadHints[code],
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// validPort reports whether p is empty or a decimal port number.
func validPort(p string) bool {
	if len(p) > 5 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

// validHost reports whether h is a DNS name or an IP literal as url.Hostname
// returns it (brackets removed).
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if strings.Contains(h, ":") { // IPv6 literal.
		for i := 0; i < len(h); i++ {
			c := h[i]
			if !isHex(c) && c != ':' && c != '.' {
				return false
			}
		}
		return true
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
