package azure

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNormalizeScope(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string
		code int // AADSTS code of the local error; 0 for success
	}{
		{in: "https://api.loganalytics.io/.default", want: "https://api.loganalytics.io/.default"},
		{in: "  https://api.loganalytics.io/.default  ", want: "https://api.loganalytics.io/.default"},
		{in: "https://api.loganalytics.io//.default", want: "https://api.loganalytics.io/.default"},
		// The Logs Ingestion client (azlogs) asks for the double-slash form.
		{in: "https://monitor.azure.com//.default", want: "https://monitor.azure.com/.default"},
		{in: "HTTPS://API.LogAnalytics.IO/.DEFAULT", want: "https://api.loganalytics.io/.default"},
		{in: "https://api.loganalytics.io/.default openid offline_access profile", want: "https://api.loganalytics.io/.default"},
		{in: "openid https://api.loganalytics.io/.default PROFILE", want: "https://api.loganalytics.io/.default"},
		{in: "https://api.loganalytics.io/.default https://api.loganalytics.io//.default", want: "https://api.loganalytics.io/.default"},
		{in: "https://database.windows.net//.default", want: "https://database.windows.net//.default"},
		{in: "https://database.windows.net/.default", want: "https://database.windows.net/.default"},
		{in: "https://management.core.windows.net//.default", want: "https://management.core.windows.net//.default"},
		{in: "https://myapi.contoso.com/api//.default", want: "https://myapi.contoso.com/api//.default"},
		{in: "https://api.loganalytics.io/v1/.default", want: "https://api.loganalytics.io/v1/.default"}, // Entra decides (500011).
		{in: "api://00001111-aaaa-2222-bbbb-3333cccc4444/.default", want: "api://00001111-aaaa-2222-bbbb-3333cccc4444/.default"},
		{in: "00000003-0000-0000-C000-000000000000/.default", want: "00000003-0000-0000-c000-000000000000/.default"},
		{in: "https://localhost:8443/.default", want: "https://localhost:8443/.default"},
		{in: "urn:example:api/.default", want: "urn:example:api/.default"},

		{in: "", code: 900144},
		{in: "   ", code: 900144},
		{in: "openid profile", code: 1002012},
		{in: "Data.Read", code: 1002012},
		{in: "https://api.loganalytics.io", code: 1002012},
		{in: "https://api.loganalytics.io/Data.Read", code: 1002012},
		{in: "https://management.azure.com/user_impersonation", code: 1002012},
		{in: "/.default", code: 1002012},
		{in: "https://api.loganalytics.io/.default https://management.azure.com/.default", code: 700022},
		{in: "https://api.loganalytics.io/.default Data.Read", code: 1002012},
		{in: "api.loganalytics.io/.default", code: 70011},
		{in: "loganalytics/.default", code: 70011},
		{in: "https:///.default", code: 70011},
		{in: "https://user:pass@api.loganalytics.io/.default", code: 70011},
		{in: "https://api.loganalytics.io/x?a=b/.default", code: 70011},
		{in: "https://api.loganalytics.io/#frag/.default", code: 70011},
		{in: "https://bad host/.default", code: 1002012}, // two entries: "https://bad" has no /.default.
		{in: "https://bad!host/.default", code: 70011},
		{in: "https://-bad.example/.default", code: 70011},
		{in: "https://api.loganalytics.io/.default\n", code: 70011},
		{in: "https://api.loganalytics.io/.default\tx", code: 70011},
		{in: "https://api.loganalytics.io/\x00/.default", code: 70011},
		{in: "https://api.loganalytics.io/\xff/.default", code: 70011},
		{in: "https://" + strings.Repeat("a", maxScopeLen) + ".io/.default", code: 70011},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := NormalizeScope(tt.in)
			if tt.code == 0 {
				if err != nil {
					t.Fatalf("NormalizeScope(%q) error = %v, want %q", tt.in, err, tt.want)
				}
				if got != tt.want {
					t.Errorf("NormalizeScope(%q) = %q, want %q", tt.in, got, tt.want)
				}
				if again, err := NormalizeScope(got); err != nil || again != got {
					t.Errorf("NormalizeScope(%q) = %q, %v, want it unchanged (idempotent)", got, again, err)
				}
				return
			}
			checkScopeError(t, "NormalizeScope", tt.in, err, tt.code)
		})
	}
}

func TestScopeForResource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string
		code int
	}{
		{in: "https://api.loganalytics.io", want: "https://api.loganalytics.io/.default"},
		{in: "https://api.loganalytics.io/", want: "https://api.loganalytics.io/.default"},
		{in: "https://API.loganalytics.io/", want: "https://api.loganalytics.io/.default"},
		{in: "https://database.windows.net/", want: "https://database.windows.net//.default"},
		{in: "https://database.windows.net", want: "https://database.windows.net/.default"},
		{in: "https://management.core.windows.net/", want: "https://management.core.windows.net//.default"},
		{in: "https://myapi.contoso.com/api/", want: "https://myapi.contoso.com/api//.default"},
		{in: "api://00001111-aaaa-2222-bbbb-3333cccc4444", want: "api://00001111-aaaa-2222-bbbb-3333cccc4444/.default"},
		{in: "00000003-0000-0000-c000-000000000000", want: "00000003-0000-0000-c000-000000000000/.default"},
		{in: "https://api.loganalytics.io/.default", want: "https://api.loganalytics.io/.default"},

		{in: "", code: 900144},
		{in: "https://api.loganalytics.io https://management.azure.com", code: 700022},
		{in: "Data.Read", code: 70011},
		{in: "api.loganalytics.io", code: 70011},
		{in: "https://api.loganalytics.io\r\n", code: 70011},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ScopeForResource(tt.in)
			if tt.code == 0 {
				if err != nil || got != tt.want {
					t.Errorf("ScopeForResource(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
				}
				if n, err := NormalizeScope(got); err != nil || n != got {
					t.Errorf("NormalizeScope(ScopeForResource(%q)) = %q, %v, want %q", tt.in, n, err, got)
				}
				return
			}
			checkScopeError(t, "ScopeForResource", tt.in, err, tt.code)
		})
	}
}

// checkScopeError checks a local scope refusal: an *Error shaped like
// Entra's, permanent, with the hint of its code.
func checkScopeError(t *testing.T, fn, in string, err error, code int) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%s(%q) error = %v, want *Error", fn, in, err)
	}
	if diff := cmp.Diff([]int{code}, e.AADCodes); diff != "" {
		t.Errorf("%s(%q) AADCodes mismatch (-want +got):\n%s", fn, in, diff)
	}
	if e.Transient || e.Hint == "" || e.Hint != aadHints[code] || e.StatusCode != 0 {
		t.Errorf("%s(%q) = {Transient %v, Hint %q, Status %d}, want permanent, hint of %d, status 0", fn, in, e.Transient, e.Hint, e.StatusCode, code)
	}
	if !strings.Contains(e.Error(), "AADSTS") || strings.ContainsAny(e.Error(), "\r\n\x00") {
		t.Errorf("%s(%q) error text = %q, want one AADSTS line", fn, in, e.Error())
	}
}

func TestCloudScopesAreNormalized(t *testing.T) {
	t.Parallel()
	for _, c := range []Cloud{AzurePublic, AzureUSGovernment, AzureChina} {
		for _, s := range []Service{c.LogAnalytics, c.AppInsights, c.ARM} {
			if got, err := NormalizeScope(s.Scope()); err != nil || got != s.Scope() {
				t.Errorf("%s: NormalizeScope(%q) = %q, %v, want it unchanged", c.Name, s.Scope(), got, err)
			}
			if got, err := ScopeForResource(s.Audience); err != nil || got != s.Scope() {
				t.Errorf("%s: ScopeForResource(%q) = %q, %v, want %q", c.Name, s.Audience, got, err, s.Scope())
			}
		}
	}
	if got, want := AzurePublic.LogAnalytics.Scope(), "https://api.loganalytics.io/.default"; got != want {
		t.Errorf("AzurePublic.LogAnalytics.Scope() = %q, want %q", got, want)
	}
}

func FuzzNormalizeScope(f *testing.F) {
	for _, s := range []string{
		"https://api.loganalytics.io/.default",
		"https://api.loganalytics.io//.default openid offline_access profile",
		"https://database.windows.net//.default",
		"api://x/y//.default",
		"00000003-0000-0000-c000-000000000000/.default",
		"Data.Read",
		"a/.default b/.default",
		"urn:x:y/.default",
		"https://[::1]:8443/.default",
		"https://h/%2F/.default",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := NormalizeScope(in)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Transient || len(e.AADCodes) != 1 || e.Hint == "" {
				t.Fatalf("NormalizeScope(%q) error = %#v, want a permanent *Error with one code and a hint", in, err)
			}
			if strings.ContainsAny(e.Error(), "\r\n\x00") {
				t.Fatalf("NormalizeScope(%q) error text = %q, want no control characters", in, e.Error())
			}
			return
		}
		if !strings.HasSuffix(got, "/.default") || strings.ContainsAny(got, " \t\r\n") || len(got) > maxScopeLen+len(defaultSuffix) {
			t.Fatalf("NormalizeScope(%q) = %q, want one <resource>/.default", in, got)
		}
		again, err := NormalizeScope(got)
		if err != nil || again != got {
			t.Fatalf("NormalizeScope(%q) = %q, %v; not idempotent on %q", got, again, err, in)
		}
	})
}
