package azure

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// maxLifetime bounds expires_in and friends. CAE tokens live up to 28 hours
// (reference §1.4); anything beyond a few days is garbage, and the bound keeps
// time arithmetic far from overflow.
const maxLifetime = 7 * 24 * time.Hour

// maxRetryAfter bounds a Retry-After so a broken header cannot park the
// broker for years.
const maxRetryAfter = 24 * time.Hour

// maxDescription bounds the Description taken from an error body.
const maxDescription = 1024

// errMalformed marks a 2xx answer that is not a usable token response.
var errMalformed = errors.New("malformed token response")

// tokenFromResponse builds a Token from the fields of a successful token
// response. extra returns a field's decoded value: float64, json.Number,
// int64 or string, as x/oauth2's Token.Extra does for JSON and form bodies.
// now is when the response arrived.
func tokenFromResponse(accessToken string, extra func(string) any, now time.Time) (Token, error) {
	if accessToken == "" {
		return Token{}, fmt.Errorf("%w: no access_token", errMalformed)
	}
	if tt, ok := extra("token_type").(string); ok && tt != "" && !strings.EqualFold(tt, "bearer") {
		return Token{}, fmt.Errorf("%w: token_type is not Bearer", errMalformed)
	}
	expiresIn, ok := seconds(extra("expires_in"))
	if !ok || expiresIn <= 0 {
		return Token{}, fmt.Errorf("%w: expires_in missing or not a positive number of seconds", errMalformed)
	}
	t := Token{AccessToken: accessToken, IssuedAt: now, ExpiresOn: now.Add(expiresIn)}
	if ext, ok := seconds(extra("ext_expires_in")); ok && ext >= expiresIn {
		t.ExtExpiresOn = now.Add(ext)
	}
	// refresh_in is optional; a value that is not a number of seconds inside
	// the lifetime is ignored rather than failing a usable token.
	if r, ok := seconds(extra("refresh_in")); ok && r > 0 && r < expiresIn {
		t.RefreshOn = now.Add(r)
	}
	return t, nil
}

// seconds reads a whole number of seconds from a decoded JSON or form value:
// a number or a string holding one (msal-go and MSAL.NET accept both; the v1
// endpoint sends strings). It reports false for anything else, for negative
// values and for values beyond maxLifetime.
func seconds(v any) (time.Duration, bool) {
	var n int64
	switch x := v.(type) {
	case float64:
		if x != math.Trunc(x) || x < 0 || x > maxLifetime.Seconds() {
			return 0, false
		}
		n = int64(x)
	case int64:
		n = x
	case int:
		n = int64(x)
	case json.Number:
		i, err := strconv.ParseInt(string(x), 10, 64)
		if err != nil {
			return 0, false
		}
		n = i
	case string:
		i, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		if err != nil {
			return 0, false
		}
		n = i
	default:
		return 0, false
	}
	if n < 0 || n > int64(maxLifetime/time.Second) {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// parseTokenBody parses a raw JSON token response the way the client does
// through x/oauth2 (which decodes the body into a map and exposes it through
// Token.Extra). It exists for tests and fuzzing of the parser.
func parseTokenBody(body []byte, now time.Time) (Token, error) {
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		return Token{}, fmt.Errorf("%w: not a JSON object", errMalformed)
	}
	at, _ := raw["access_token"].(string)
	return tokenFromResponse(at, func(k string) any { return raw[k] }, now)
}

// entraError is what an Entra error body says (reference §2.1).
type entraError struct {
	Code          string
	Description   string
	Codes         []int
	TraceID       string
	CorrelationID string
}

// parseErrorBody reads an Entra error body. It accepts any JSON object and
// takes the fields it recognizes with the types it expects; anything else
// (a plain "Too Many Requests", HTML from a proxy) gives ok false.
func parseErrorBody(body []byte) (e entraError, ok bool) {
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		return entraError{}, false
	}
	str := func(k string) string {
		s, _ := raw[k].(string)
		return s
	}
	e.Code = cleanLine(str("error"), 128)
	e.Description = firstLine(str("error_description"))
	e.TraceID = cleanLine(str("trace_id"), 64)
	e.CorrelationID = cleanLine(str("correlation_id"), 64)
	if list, isList := raw["error_codes"].([]any); isList {
		for _, v := range list {
			if f, isNum := v.(float64); isNum && f == math.Trunc(f) && f > 0 && f < 1e9 {
				e.Codes = append(e.Codes, int(f))
			}
			if len(e.Codes) == 8 {
				break
			}
		}
	}
	if len(e.Codes) == 0 {
		if c, found := aadCodeIn(e.Description); found {
			e.Codes = []int{c}
		}
	}
	return e, e.Code != "" || e.Description != "" || len(e.Codes) > 0
}

// firstLine returns the first line of an error_description, the AADSTS
// sentence, without the "\r\nTrace ID: …" lines that follow it, cleaned of
// control characters and bounded in length.
func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return cleanLine(s, maxDescription)
}

// cleanLine drops control characters and invalid UTF-8 from s, trims it and
// cuts it to at most max bytes on a rune boundary.
func cleanLine(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		if r == utf8.RuneError || r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			continue
		}
		if b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// aadCodeIn finds "AADSTSnnnn" at the start of a description.
func aadCodeIn(desc string) (int, bool) {
	rest, found := strings.CutPrefix(desc, "AADSTS")
	if !found {
		return 0, false
	}
	n := 0
	for n < len(rest) && n < 9 && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n == 0 {
		return 0, false
	}
	c, err := strconv.Atoi(rest[:n])
	return c, err == nil && c > 0
}

// retryAfter reads how long the server asked the client to wait:
// retry-after-ms, then x-ms-retry-after-ms (milliseconds), then Retry-After
// (seconds or an HTTP date, relative to now), as azcore does. It returns 0
// when none is present or usable.
func retryAfter(h http.Header, now time.Time) time.Duration {
	if h == nil {
		return 0
	}
	for _, k := range []string{"retry-after-ms", "x-ms-retry-after-ms"} {
		if v := strings.TrimSpace(h.Get(k)); v != "" {
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms > 0 {
				if ms > int64(maxRetryAfter/time.Millisecond) {
					return maxRetryAfter
				}
				return time.Duration(ms) * time.Millisecond
			}
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		if s > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d <= 0 {
			return 0
		}
		return min(d, maxRetryAfter)
	}
	return 0
}
