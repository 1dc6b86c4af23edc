package proxy

import (
	"net/url"
	"strings"
)

// pathError is why a request path is refused, in words for the client.
type pathError string

func (e pathError) Error() string { return "proxy: bad path: " + string(e) }

// Reasons a request path is refused.
const (
	errDotSegment     pathError = `the path holds a "." or ".." segment (plain or percent-encoded)`
	errEncodedSep     pathError = `the path holds an encoded "/" or "\" (%2F or %5C)`
	errBackslash      pathError = `the path holds a backslash`
	errDoubleEncoding pathError = `the path holds an encoded "%" (%25), which could be decoded twice`
	errControl        pathError = `the path holds a control character`
	errBadEscape      pathError = `the path holds a malformed percent-encoding`
)

// cleanPath checks and cleans escaped, the percent-encoded path a request
// asks for inside its route, and returns it decoded (for url.URL.Path) and
// encoded (for url.URL.RawPath; the client's own encoding is kept).
//
// Empty segments are collapsed ("a//b" → "/a/b"), a trailing slash is kept,
// and the result starts with "/" unless escaped is empty. A path that could
// leave its route or be read differently upstream is refused: any segment
// that decodes to "." or "..", an encoded "/" or "\", a backslash, an encoded
// "%" (double encoding), control characters and malformed escapes. The
// common case (nothing to collapse, nothing encoded) allocates nothing.
func cleanPath(escaped string) (path, raw string, err error) {
	collapse := len(escaped) > 0 && escaped[0] != '/'
	encoded := false
	segStart := 0
	for i := 0; i <= len(escaped); i++ {
		if i == len(escaped) || escaped[i] == '/' {
			seg := escaped[segStart:i]
			if seg == "" && i > 0 && i < len(escaped) {
				collapse = true // "//" inside, or a leading "//"
			}
			if isDotSegment(seg) {
				return "", "", errDotSegment
			}
			segStart = i + 1
			continue
		}
		switch c := escaped[i]; {
		case c == '\\':
			return "", "", errBackslash
		case c < 0x20 || c == 0x7f:
			return "", "", errControl
		case c == '%':
			if i+2 >= len(escaped) || !isHex(escaped[i+1]) || !isHex(escaped[i+2]) {
				return "", "", errBadEscape
			}
			b := unhex(escaped[i+1])<<4 | unhex(escaped[i+2])
			switch {
			case b == '/' || b == '\\':
				return "", "", errEncodedSep
			case b == '%':
				return "", "", errDoubleEncoding
			case b < 0x20 || b == 0x7f:
				return "", "", errControl
			}
			encoded = true
			i += 2
		}
	}
	raw = escaped
	if collapse {
		raw = collapseSlashes(escaped)
	}
	if !encoded {
		return raw, raw, nil
	}
	path, err = url.PathUnescape(raw)
	if err != nil {
		return "", "", errBadEscape
	}
	return path, raw, nil
}

// collapseSlashes returns p with a leading "/", no empty segments, and a
// trailing slash when p has one.
func collapseSlashes(p string) string {
	var b strings.Builder
	b.Grow(len(p) + 1)
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" {
			continue
		}
		b.WriteByte('/')
		b.WriteString(seg)
	}
	if strings.HasSuffix(p, "/") || b.Len() == 0 {
		b.WriteByte('/')
	}
	return b.String()
}

// isDotSegment reports whether the encoded segment decodes to "." or "..".
func isDotSegment(seg string) bool {
	dots := 0
	for i := 0; i < len(seg); {
		switch {
		case seg[i] == '.':
			i++
		case seg[i] == '%' && i+2 < len(seg) && seg[i+1] == '2' && (seg[i+2] == 'e' || seg[i+2] == 'E'):
			i += 3
		default:
			return false
		}
		dots++
		if dots > 2 {
			return false
		}
	}
	return dots == 1 || dots == 2
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
