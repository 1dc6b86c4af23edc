package httpapi

import (
	"encoding/json"
	"net/url"
	"testing"
)

// parseQueryForTest is url.ParseQuery reduced to first values.
func parseQueryForTest(raw string) (map[string]string, error) {
	v, err := url.ParseQuery(raw)
	m := map[string]string{}
	for k, vs := range v {
		m[k] = vs[0]
	}
	return m, err
}

func TestQueryGetFollowsParseQuery(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"resource=https://api.loganalytics.io",
		"resource=https%3A%2F%2Fvault.azure.net&client_id=abc",
		"a=1&a=2", "a", "a=", "=b", "a;b=c&a=d", "a=%zz&a=ok", "%61=x", "a=b+c", "&&a=1&&", "a=1;", "",
	} {
		want, _ := parseQueryForTest(raw)
		for _, k := range []string{"a", "resource", "client_id", ""} {
			if got := query(raw).Get(k); got != want[k] {
				t.Errorf("query(%q).Get(%q) = %q, want %q (url.ParseQuery)", raw, k, got, want[k])
			}
		}
	}
}

func TestAppendJSONStringToken(t *testing.T) {
	t.Parallel()
	for _, tok := range []string{"eyJhbGciOi.eyJhdWQiOi.c2lnbmF0dXJl", `we"ird<token>`} {
		b := appendJSONString(nil, tok)
		var got string
		if err := json.Unmarshal(b, &got); err != nil || got != tok {
			t.Errorf("appendJSONString(%q) = %s (%v), want the token as a JSON string", tok, b, err)
		}
	}
}
