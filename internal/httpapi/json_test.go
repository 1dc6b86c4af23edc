package httpapi

import (
	"encoding/json"
	"testing"
)

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
