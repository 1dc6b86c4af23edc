package azure

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func TestParseTokenBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		body    string
		want    Token
		wantErr bool
	}{
		{
			name: "non-CAE numbers",
			body: `{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"tok"}`,
			want: Token{AccessToken: "tok", IssuedAt: t0, ExpiresOn: t0.Add(3599 * time.Second), ExtExpiresOn: t0.Add(3599 * time.Second)},
		},
		{
			name: "CAE with refresh_in",
			body: `{"token_type":"Bearer","expires_in":86399,"ext_expires_in":86399,"refresh_in":43199,"access_token":"tok"}`,
			want: Token{AccessToken: "tok", IssuedAt: t0, ExpiresOn: t0.Add(86399 * time.Second), RefreshOn: t0.Add(43199 * time.Second), ExtExpiresOn: t0.Add(86399 * time.Second)},
		},
		{
			name: "strings as v1 sends them",
			body: `{"token_type":"Bearer","expires_in":"7200","ext_expires_in":"7200","refresh_in":" 3600 ","access_token":"tok"}`,
			want: Token{AccessToken: "tok", IssuedAt: t0, ExpiresOn: t0.Add(2 * time.Hour), RefreshOn: t0.Add(time.Hour), ExtExpiresOn: t0.Add(2 * time.Hour)},
		},
		{
			name: "no token_type, refresh_in garbage ignored",
			body: `{"expires_in":60,"refresh_in":"soon","access_token":"tok"}`,
			want: Token{AccessToken: "tok", IssuedAt: t0, ExpiresOn: t0.Add(time.Minute)},
		},
		{
			name: "refresh_in beyond lifetime ignored",
			body: `{"expires_in":60,"refresh_in":61,"access_token":"tok"}`,
			want: Token{AccessToken: "tok", IssuedAt: t0, ExpiresOn: t0.Add(time.Minute)},
		},
		{name: "missing expires_in", body: `{"token_type":"Bearer","access_token":"tok"}`, wantErr: true},
		{name: "zero expires_in", body: `{"expires_in":0,"access_token":"tok"}`, wantErr: true},
		{name: "negative expires_in", body: `{"expires_in":-5,"access_token":"tok"}`, wantErr: true},
		{name: "fractional expires_in", body: `{"expires_in":1.5,"access_token":"tok"}`, wantErr: true},
		{name: "huge expires_in", body: `{"expires_in":1e300,"access_token":"tok"}`, wantErr: true},
		{name: "expires_in object", body: `{"expires_in":{},"access_token":"tok"}`, wantErr: true},
		{name: "missing access_token", body: `{"expires_in":3599}`, wantErr: true},
		{name: "not bearer", body: `{"token_type":"pop","expires_in":3599,"access_token":"tok"}`, wantErr: true},
		{name: "not JSON", body: `Too Many Requests`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseTokenBody([]byte(tt.body), t0)
			if tt.wantErr {
				if !errors.Is(err, errMalformed) {
					t.Errorf("parseTokenBody(%s) error = %v, want errMalformed", tt.body, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseTokenBody(%s) error = %v", tt.body, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseTokenBody(%s) mismatch (-want +got):\n%s", tt.body, diff)
			}
		})
	}
}

func TestSecondsFormValues(t *testing.T) {
	t.Parallel()
	// x/oauth2's Token.Extra returns int64 or float64 for form-encoded bodies.
	for _, v := range []any{int64(3599), float64(3599), "3599", 3599} {
		if got, ok := seconds(v); !ok || got != 3599*time.Second {
			t.Errorf("seconds(%#v) = %v, %v, want 3599s", v, got, ok)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		h    http.Header
		want time.Duration
	}{
		{"none", http.Header{}, 0},
		{"seconds", http.Header{"Retry-After": {"60"}}, time.Minute},
		{"seconds spaced", http.Header{"Retry-After": {" 7 "}}, 7 * time.Second},
		{"date", http.Header{"Retry-After": {t0.Add(90 * time.Second).Format(http.TimeFormat)}}, 90 * time.Second},
		{"date in the past", http.Header{"Retry-After": {t0.Add(-time.Hour).Format(http.TimeFormat)}}, 0},
		{"milliseconds first", http.Header{"Retry-After-Ms": {"1500"}, "Retry-After": {"60"}}, 1500 * time.Millisecond},
		{"x-ms milliseconds", http.Header{"X-Ms-Retry-After-Ms": {"250"}}, 250 * time.Millisecond},
		{"bad milliseconds fall back", http.Header{"Retry-After-Ms": {"soon"}, "Retry-After": {"3"}}, 3 * time.Second},
		{"negative", http.Header{"Retry-After": {"-1"}}, 0},
		{"garbage", http.Header{"Retry-After": {"tomorrow"}}, 0},
		{"capped", http.Header{"Retry-After": {"99999999999"}}, maxRetryAfter},
		{"capped ms", http.Header{"Retry-After-Ms": {"99999999999999"}}, maxRetryAfter},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.h, t0); got != tt.want {
			t.Errorf("%s: retryAfter(%v) = %v, want %v", tt.name, tt.h, got, tt.want)
		}
	}
}

func TestParseErrorBody(t *testing.T) {
	t.Parallel()
	// TV-3, the recorded 401 for a wrong secret (reference §7).
	body := `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '00000000-0000-0000-0000-000000000000'.\r\nTrace ID: a6492f90-f464-4879-b7e5-96825faf1f01\r\nCorrelation ID: a3915172-6053-4721-be3d-f0666f993ab8\r\nTimestamp: 2022-11-09 21:22:03Z","error_codes":[7000215],"timestamp":"2022-11-09 21:22:03Z","trace_id":"a6492f90-f464-4879-b7e5-96825faf1f01","correlation_id":"a3915172-6053-4721-be3d-f0666f993ab8","error_uri":"https://login.microsoftonline.com/error?code=7000215"}`
	got, ok := parseErrorBody([]byte(body))
	want := entraError{
		Code:          "invalid_client",
		Description:   "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '00000000-0000-0000-0000-000000000000'.",
		Codes:         []int{7000215},
		TraceID:       "a6492f90-f464-4879-b7e5-96825faf1f01",
		CorrelationID: "a3915172-6053-4721-be3d-f0666f993ab8",
	}
	if !ok {
		t.Fatalf("parseErrorBody(TV-3) ok = false, want true")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseErrorBody(TV-3) mismatch (-want +got):\n%s", diff)
	}

	// Codes are taken from the description when error_codes is missing.
	got, ok = parseErrorBody([]byte(`{"error":"invalid_scope","error_description":"AADSTS70011: bad\nTrace ID: x"}`))
	if !ok || got.Description != "AADSTS70011: bad" || !cmp.Equal(got.Codes, []int{70011}) {
		t.Errorf("parseErrorBody(no error_codes) = %+v, %v, want description %q and codes [70011]", got, ok, "AADSTS70011: bad")
	}
	for _, b := range []string{"Too Many Requests", "<html>502</html>", `[]`, `{}`, `{"error":7}`, ``} {
		if got, ok := parseErrorBody([]byte(b)); ok {
			t.Errorf("parseErrorBody(%q) = %+v, true, want false", b, got)
		}
	}
}

func FuzzParseTokenBody(f *testing.F) {
	for _, s := range []string{
		`{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"tok"}`,
		`{"token_type":"Bearer","expires_in":86399,"ext_expires_in":86399,"refresh_in":43199,"access_token":"tok"}`,
		`{"token_type":"Bearer","expires_in":"86399","ext_expires_in":"86399","expires_on":"1672826207","access_token":"tok"}`,
		`{"expires_in":1e308,"refresh_in":-1,"access_token":""}`,
		`Too Many Requests`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := parseTokenBody(body, t0)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("parseTokenBody(%q) error = %v, want errMalformed", body, err)
			}
			return
		}
		if tok.AccessToken == "" || !tok.IssuedAt.Equal(t0) || !tok.ExpiresOn.After(t0) || tok.ExpiresOn.Sub(t0) > maxLifetime {
			t.Fatalf("parseTokenBody(%q) = %v, want a token expiring after it was issued", body, tok)
		}
		if !tok.RefreshOn.IsZero() && (!tok.RefreshOn.After(t0) || !tok.RefreshOn.Before(tok.ExpiresOn)) {
			t.Fatalf("parseTokenBody(%q) RefreshOn = %v, want between issue and expiry", body, tok.RefreshOn)
		}
		if strings.Contains(tok.String(), tok.AccessToken) && len(tok.AccessToken) > 12 {
			t.Fatalf("Token.String() = %q, contains the access token", tok.String())
		}
	})
}

func FuzzParseErrorBody(f *testing.F) {
	f.Add([]byte(`{"error":"invalid_client","error_description":"AADSTS7000215: x\r\nTrace ID: y","error_codes":[7000215],"trace_id":"t","correlation_id":"c"}`))
	f.Add([]byte(`{"error_description":"AADSTS99999999999: overflow"}`))
	f.Add([]byte(`{"error_codes":[1.5,-3,"x",7e20]}`))
	f.Add([]byte("Too Many Requests"))
	f.Fuzz(func(t *testing.T, body []byte) {
		e, ok := parseErrorBody(body)
		if !ok {
			return
		}
		for _, s := range []string{e.Code, e.Description, e.TraceID, e.CorrelationID} {
			if strings.ContainsAny(s, "\r\n\x00") {
				t.Fatalf("parseErrorBody(%q) field %q has a control character", body, s)
			}
		}
		if len(e.Description) > maxDescription || len(e.Codes) > 8 {
			t.Fatalf("parseErrorBody(%q) = %+v, want bounded fields", body, e)
		}
		for _, c := range e.Codes {
			if c <= 0 {
				t.Fatalf("parseErrorBody(%q) code %d, want positive", body, c)
			}
		}
	})
}
