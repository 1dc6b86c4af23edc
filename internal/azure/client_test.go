package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const (
	testTenantID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	testClientID = "00001111-aaaa-2222-bbbb-3333cccc4444"
	testSecret   = "s3cr3t~Value.with+odd/chars="
	testScope    = "https://api.loganalytics.io/.default"
	testToken    = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.test-access-token.sig"
)

// fakeEntra is an httptest token endpoint that records what it received and
// answers with respond.
type fakeEntra struct {
	*httptest.Server
	respond func(w http.ResponseWriter, r *http.Request)

	mu       sync.Mutex
	forms    []url.Values
	headers  []http.Header
	paths    []string
	requests int
}

func newFakeEntra(t *testing.T, respond func(w http.ResponseWriter, r *http.Request)) *fakeEntra {
	t.Helper()
	f := &fakeEntra{respond: respond}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.forms = append(f.forms, r.PostForm)
		f.headers = append(f.headers, r.Header.Clone())
		f.paths = append(f.paths, r.URL.Path)
		f.requests++
		f.mu.Unlock()
		f.respond(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeEntra) last() (url.Values, http.Header) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.forms) == 0 {
		return nil, nil
	}
	return f.forms[len(f.forms)-1], f.headers[len(f.headers)-1]
}

func (f *fakeEntra) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// answer writes a JSON body with the headers Entra sends.
func answer(w http.ResponseWriter, r *http.Request, status int, body string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.Header().Set("client-request-id", r.Header.Get("client-request-id"))
	w.WriteHeader(status)
	fmt.Fprint(w, body)
}

func newTestClient(t *testing.T, authority string, cred Credential, log *zap.Logger) *Client {
	t.Helper()
	c, err := New(Config{
		AuthorityHost: authority,
		TenantID:      testTenantID,
		ClientID:      testClientID,
		Credential:    cred,
		Now:           func() time.Time { return t0 },
		Logger:        log,
	})
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	return c
}

func TestTokenSuccess(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want Token
	}{
		{
			name: "non-CAE",
			body: `{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"` + testToken + `"}`,
			want: Token{AccessToken: testToken, IssuedAt: t0, ExpiresOn: t0.Add(3599 * time.Second), ExtExpiresOn: t0.Add(3599 * time.Second)},
		},
		{
			name: "CAE with refresh_in",
			body: `{"token_type":"Bearer","expires_in":86399,"ext_expires_in":86399,"refresh_in":43199,"access_token":"` + testToken + `"}`,
			want: Token{AccessToken: testToken, IssuedAt: t0, ExpiresOn: t0.Add(86399 * time.Second), RefreshOn: t0.Add(43199 * time.Second), ExtExpiresOn: t0.Add(86399 * time.Second)},
		},
		{
			name: "numbers as strings",
			body: `{"token_type":"Bearer","expires_in":"86399","ext_expires_in":"86399","refresh_in":"43199","access_token":"` + testToken + `"}`,
			want: Token{AccessToken: testToken, IssuedAt: t0, ExpiresOn: t0.Add(86399 * time.Second), RefreshOn: t0.Add(43199 * time.Second), ExtExpiresOn: t0.Add(86399 * time.Second)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeEntra(t, func(w http.ResponseWriter, r *http.Request) { answer(w, r, 200, tt.body) })
			c := newTestClient(t, f.URL, SecretCredential(testSecret+"\n"), nil)
			got, err := c.Token(context.Background(), testScope+" openid offline_access profile")
			if err != nil {
				t.Fatalf("Token() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Token() mismatch (-want +got):\n%s", diff)
			}
			form, h := f.last()
			wantForm := url.Values{
				"grant_type":    {"client_credentials"},
				"client_id":     {testClientID},
				"client_secret": {testSecret},
				"scope":         {testScope},
			}
			if diff := cmp.Diff(wantForm, form); diff != "" {
				t.Errorf("request form mismatch (-want +got):\n%s", diff)
			}
			if got := f.paths[0]; got != "/"+testTenantID+"/oauth2/v2.0/token" {
				t.Errorf("request path = %q, want /%s/oauth2/v2.0/token", got, testTenantID)
			}
			if got := h.Get("Content-Type"); !strings.HasPrefix(got, "application/x-www-form-urlencoded") {
				t.Errorf("Content-Type = %q, want application/x-www-form-urlencoded", got)
			}
			if h.Get("Authorization") != "" {
				t.Errorf("Authorization = %q, want none (credentials in the body)", h.Get("Authorization"))
			}
			if id := h.Get("client-request-id"); !IsGUID(id) {
				t.Errorf("client-request-id = %q, want a GUID", id)
			}
		})
	}
}

func TestTokenClientRequestIDPerRequest(t *testing.T) {
	t.Parallel()
	f := newFakeEntra(t, func(w http.ResponseWriter, r *http.Request) {
		answer(w, r, 200, `{"token_type":"Bearer","expires_in":3599,"access_token":"x"}`)
	})
	c := newTestClient(t, f.URL, SecretCredential(testSecret), nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Token(context.Background(), testScope); err != nil {
				t.Errorf("Token() error = %v", err)
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, h := range f.headers {
		seen[h.Get("client-request-id")] = true
	}
	if len(seen) != 8 || f.count() != 8 {
		t.Errorf("%d requests with %d distinct client-request-ids, want 8 and 8", f.count(), len(seen))
	}
}

// entraBody builds an error body in Entra's exact shape (reference §2.1).
func entraBody(oauthCode string, code int, msg, correlationID string) string {
	const traceID = "a6492f90-f464-4879-b7e5-96825faf1f01"
	b, _ := json.Marshal(map[string]any{
		"error":             oauthCode,
		"error_description": fmt.Sprintf("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: 2022-11-09 21:22:03Z", code, msg, traceID, correlationID),
		"error_codes":       []int{code},
		"timestamp":         "2022-11-09 21:22:03Z",
		"trace_id":          traceID,
		"correlation_id":    correlationID,
		"error_uri":         fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", code),
	})
	return string(b)
}

// entraErrors are the failures of reference §2.3, with their status, OAuth
// error and message.
var entraErrors = []struct {
	code   int
	status int
	oauth  string
	msg    string
}{
	{7000215, 401, "invalid_client", "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '00001111-aaaa-2222-bbbb-3333cccc4444'."},
	{7000222, 401, "invalid_client", "The provided client secret keys for app '00001111-aaaa-2222-bbbb-3333cccc4444' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."},
	{7000218, 401, "invalid_client", "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."},
	{700016, 400, "unauthorized_client", "Application with identifier '00001111-aaaa-2222-bbbb-3333cccc4444' was not found in the directory 'Contoso'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."},
	{7000112, 400, "unauthorized_client", "Application '00001111-aaaa-2222-bbbb-3333cccc4444'(demo) is disabled."},
	{90002, 400, "invalid_tenant", "Tenant '72f988bf-86f1-41af-91ab-2d7cd011db47' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."},
	{900023, 400, "invalid_request", "Specified tenant identifier 'not a tenant' is neither a valid DNS name, nor a valid external domain."},
	{500011, 400, "invalid_resource", "The resource principal named https://api.loganalytics.io was not found in the tenant named Contoso. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."},
	{500014, 400, "invalid_resource", "The service principal for resource 'https://api.loganalytics.io' is disabled."},
	{70011, 400, "invalid_scope", "The provided value for the input parameter 'scope' is not valid. The scope https://foo.microsoft.com/.default is not valid."},
	{1002012, 400, "invalid_scope", "The provided value for scope Data.Read is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."},
	{700022, 400, "invalid_scope", "The provided value for the input parameter scope is not valid because it contains more than one resource."},
	{901002, 400, "invalid_request", "The 'resource' request parameter is not supported."},
	{90014, 400, "invalid_request", "The required field 'scope' is missing from the credential."},
	{900144, 400, "invalid_request", "The request body must contain the following parameter: 'scope'."},
	{700024, 401, "invalid_client", "Client assertion is not within its valid time range. Current time: 2025-08-29T05:47:32.1501147Z, assertion valid from 1970-01-01T00:00:00.0000000Z, expiry time of assertion 2025-08-29T00:30:05.0000000Z."},
	{700027, 401, "invalid_client", "Client assertion failed signature validation."},
	{50012, 401, "invalid_client", "Client assertion contains an invalid signature."},
	{50027, 400, "invalid_request", "Invalid JWT token. No certificate thumbprint specified in token header."},
	{70021, 400, "invalid_request", "No matching federated identity record found for presented assertion. Assertion Issuer: 'https://kubernetes.default.svc.cluster.local'. Assertion Subject: 'system:serviceaccount:default:workload-identity-sa'. Assertion Audience: 'api://AzureADTokenExchange'."},
	{700211, 400, "invalid_client", "No matching federated identity record found for presented assertion issuer 'https://example'."},
	{700212, 400, "invalid_client", "No matching federated identity record found for presented assertion audience 'api://x'."},
	{700213, 400, "invalid_client", "No matching federated identity record found for presented assertion subject 'system:serviceaccount:x:y'."},
	{53003, 400, "interaction_required", "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance."},
	{9001023, 400, "invalid_request", "The grant type isn't supported over the /common or /consumers endpoints. Please use the /organizations or tenant-specific endpoint."},
	{50126, 400, "invalid_grant", "Error validating credentials due to invalid username or password."},
}

func TestTokenEntraErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range entraErrors {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			t.Parallel()
			f := newFakeEntra(t, func(w http.ResponseWriter, r *http.Request) {
				answer(w, r, tt.status, entraBody(tt.oauth, tt.code, tt.msg, r.Header.Get("client-request-id")))
			})
			c := newTestClient(t, f.URL, SecretCredential(testSecret), nil)
			_, err := c.Token(context.Background(), testScope)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Token() error = %v, want *Error", err)
			}
			_, h := f.last()
			want := &Error{
				Op:            "token",
				StatusCode:    tt.status,
				Code:          tt.oauth,
				Description:   fmt.Sprintf("AADSTS%d: %s", tt.code, tt.msg),
				AADCodes:      []int{tt.code},
				CorrelationID: h.Get("client-request-id"),
				TraceID:       "a6492f90-f464-4879-b7e5-96825faf1f01",
				Hint:          aadHints[tt.code],
			}
			if diff := cmp.Diff(want, e); diff != "" {
				t.Errorf("Token() error mismatch (-want +got):\n%s", diff)
			}
			if e.Hint == "" {
				t.Errorf("AADSTS%d has no hint", tt.code)
			}
			if s := e.Error(); strings.ContainsAny(s, "\r\n") || strings.Contains(s, "Trace ID") || strings.Contains(s, testSecret) {
				t.Errorf("Error() = %q, want one line without trace lines or the secret", s)
			}
		})
	}
}

func TestHintForEveryReferenceCode(t *testing.T) {
	t.Parallel()
	// Every code of reference §2.3.
	for _, code := range []int{7000215, 7000222, 7000218, 7000216, 700016, 7000112, 90002, 900023, 500011, 500014,
		70011, 1002012, 700022, 901002, 90014, 900144, 700024, 700027, 50012, 50027, 70021, 700211, 700212, 700213,
		53003, 50126, 9001023, 50196, 90055} {
		if aadHints[code] == "" {
			t.Errorf("aadHints[%d] is empty, want a hint", code)
		}
	}
	if h := aadHints[7000215]; !strings.Contains(h, "Value") || !strings.Contains(h, "Secret ID") || !strings.Contains(h, "newline") {
		t.Errorf("aadHints[7000215] = %q, want it to mention Value, Secret ID and a trailing newline", h)
	}
}

func TestTokenTransient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		respond   func(w http.ResponseWriter, r *http.Request)
		status    int
		transient bool
		retry     time.Duration
		hint      string
		code      []int
	}{
		{
			name: "429 plain text, Retry-After seconds",
			respond: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "60")
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(429)
				fmt.Fprint(w, "Too Many Requests")
			},
			status: 429, transient: true, retry: time.Minute, hint: hintThrottled,
		},
		{
			name: "429 Retry-After date",
			respond: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", t0.Add(90*time.Second).Format(http.TimeFormat))
				w.WriteHeader(429)
			},
			status: 429, transient: true, retry: 90 * time.Second, hint: hintThrottled,
		},
		{
			name: "429 retry-after-ms",
			respond: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("retry-after-ms", "2500")
				w.WriteHeader(429)
			},
			status: 429, transient: true, retry: 2500 * time.Millisecond, hint: hintThrottled,
		},
		{
			name:    "500 HTML",
			respond: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "<html>oops</html>", 500) },
			status:  500, transient: true, hint: hintServerError,
		},
		{
			name: "503 with Retry-After",
			respond: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "5")
				w.WriteHeader(503)
			},
			status: 503, transient: true, retry: 5 * time.Second, hint: hintServerError,
		},
		{
			name: "500 with an AADSTS body",
			respond: func(w http.ResponseWriter, r *http.Request) {
				answer(w, r, 500, entraBody("server_error", 50000, "There was an error issuing a token.", r.Header.Get("client-request-id")))
			},
			status: 500, transient: true, hint: hintServerError, code: []int{50000},
		},
		{
			name: "400 temporarily_unavailable",
			respond: func(w http.ResponseWriter, r *http.Request) {
				answer(w, r, 400, entraBody("temporarily_unavailable", 90033, "A transient error has occurred. Please try again.", r.Header.Get("client-request-id")))
			},
			status: 400, transient: true, hint: aadHints[90033], code: []int{90033},
		},
		{
			name: "200 not JSON",
			respond: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, "{not json")
			},
			status: 200, transient: true, hint: hintMalformed,
		},
		{
			name: "200 without expires_in",
			respond: func(w http.ResponseWriter, r *http.Request) {
				answer(w, r, 200, `{"token_type":"Bearer","access_token":"x"}`)
			},
			status: 200, transient: true, hint: hintMalformed,
		},
		{
			name: "200 too large",
			respond: func(w http.ResponseWriter, r *http.Request) {
				answer(w, r, 200, `{"token_type":"Bearer","expires_in":3599,"access_token":"`+strings.Repeat("a", maxResponseBody)+`"}`)
			},
			status: 200, transient: true, hint: hintTooLarge,
		},
		{
			name: "dropped connection",
			respond: func(w http.ResponseWriter, r *http.Request) {
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
			},
			transient: true, hint: hintNetwork,
		},
		{
			name: "connection dropped mid-body",
			respond: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "1000")
				w.WriteHeader(200)
				fmt.Fprint(w, `{"token_type":"Bearer",`)
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			},
			status: 200, transient: true, hint: hintNetwork,
		},
		{
			name: "redirect is not followed",
			respond: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "https://elsewhere.example/token", http.StatusTemporaryRedirect)
			},
			status: 307, transient: false, hint: hintRedirect,
		},
		{
			name:    "404 plain",
			respond: func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) },
			status:  404, transient: false, hint: hintHTTP,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeEntra(t, tt.respond)
			c := newTestClient(t, f.URL, SecretCredential(testSecret), nil)
			_, err := c.Token(context.Background(), testScope)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Token() error = %v, want *Error", err)
			}
			if e.StatusCode != tt.status || e.Transient != tt.transient || e.RetryAfter != tt.retry || e.Hint != tt.hint || !cmp.Equal(e.AADCodes, tt.code) {
				t.Errorf("Token() error = {Status %d, Transient %v, RetryAfter %v, Hint %q, AADCodes %v}, want {%d, %v, %v, %q, %v}",
					e.StatusCode, e.Transient, e.RetryAfter, e.Hint, e.AADCodes, tt.status, tt.transient, tt.retry, tt.hint, tt.code)
			}
			if e.Temporary() != e.Transient {
				t.Errorf("Temporary() = %v, want %v", e.Temporary(), e.Transient)
			}
			if e.Description == "" || strings.ContainsAny(e.Description, "\r\n") || strings.Contains(e.Description, "<html>") {
				t.Errorf("Description = %q, want one sentence", e.Description)
			}
			if !IsGUID(e.CorrelationID) {
				t.Errorf("CorrelationID = %q, want the client-request-id sent", e.CorrelationID)
			}
		})
	}
}

func TestTokenNetworkFailures(t *testing.T) {
	t.Parallel()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	tlsServer := httptest.NewUnstartedServer(http.NotFoundHandler())
	tlsServer.Config.ErrorLog = log.New(io.Discard, "", 0) // The failed handshake is the point.
	tlsServer.StartTLS()
	t.Cleanup(tlsServer.Close)
	plainServer := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plainServer.Close)

	expired, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
	t.Cleanup(cancel)
	canceled, cancel2 := context.WithCancel(context.Background())
	cancel2()

	tests := []struct {
		name      string
		authority string
		ctx       context.Context
		transient bool
		hint      string
		is        error
	}{
		{name: "closed server", authority: closedURL, ctx: context.Background(), transient: true, hint: hintNetwork},
		{name: "deadline passed", authority: plainServer.URL, ctx: expired, transient: true, hint: hintTimeout, is: context.DeadlineExceeded},
		{name: "canceled", authority: plainServer.URL, ctx: canceled, transient: true, hint: hintCanceled, is: context.Canceled},
		{name: "untrusted certificate", authority: tlsServer.URL, ctx: context.Background(), transient: false, hint: hintTLS},
		{name: "https to a plain server", authority: strings.Replace(plainServer.URL, "http:", "https:", 1), ctx: context.Background(), transient: false, hint: hintNoTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newTestClient(t, tt.authority, SecretCredential(testSecret), nil)
			_, err := c.Token(tt.ctx, testScope)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Token() error = %v, want *Error", err)
			}
			if e.StatusCode != 0 || e.Transient != tt.transient || e.Err == nil || e.Hint == "" || (tt.hint != "" && e.Hint != tt.hint) {
				t.Errorf("Token() error = %+v, want status 0, transient %v, a cause and hint %q", e, tt.transient, tt.hint)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false, want true", err, tt.is)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("Error() = %q, contains the secret", err)
			}
		})
	}
}

func TestTokenDNSFailure(t *testing.T) {
	t.Parallel()
	// A transport that fails like a resolver does, so the test needs no DNS.
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: r.URL.Hostname(), IsNotFound: true}}
	})
	c, err := New(Config{TenantID: testTenantID, ClientID: testClientID, Credential: SecretCredential(testSecret), HTTPClient: &http.Client{Transport: rt}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Token(context.Background(), testScope)
	var e *Error
	if !errors.As(err, &e) || !e.Transient || e.Hint != hintDNS {
		t.Errorf("Token() error = %+v, want transient with the DNS hint", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestTokenRefusesBadScopeLocally(t *testing.T) {
	t.Parallel()
	f := newFakeEntra(t, func(w http.ResponseWriter, r *http.Request) { answer(w, r, 200, `{}`) })
	c := newTestClient(t, f.URL, SecretCredential(testSecret), nil)
	for scope, code := range map[string]int{
		"":          900144,
		"Data.Read": 1002012,
		"https://api.loganalytics.io/user_impersonation":                        1002012,
		"https://api.loganalytics.io/.default https://vault.azure.net/.default": 700022,
		"not a url/.default": 1002012,
		"garbage/.default":   70011,
	} {
		_, err := c.Token(context.Background(), scope)
		checkScopeError(t, "Token", scope, err, code)
	}
	if n := f.count(); n != 0 {
		t.Errorf("fake Entra got %d requests, want 0", n)
	}
}

func TestTokenSecretFileRotation(t *testing.T) {
	t.Parallel()
	f := newFakeEntra(t, func(w http.ResponseWriter, r *http.Request) {
		answer(w, r, 200, `{"token_type":"Bearer","expires_in":3599,"access_token":"x"}`)
	})
	path := filepath.Join(t.TempDir(), "client-secret")
	writeFile(t, path, "old-secret-value\n")
	c := newTestClient(t, f.URL, SecretFileCredential(path, func() time.Time { return t0 }), nil)
	if _, err := c.Token(context.Background(), testScope); err != nil {
		t.Fatalf("Token() error = %v", err)
	}
	form, _ := f.last()
	if got := form.Get("client_secret"); got != "old-secret-value" {
		t.Errorf("first request client_secret = %q, want %q", got, "old-secret-value")
	}
	writeFileAtomic(t, path, "new-secret-value-rotated\n")
	if _, err := c.Token(context.Background(), testScope); err != nil {
		t.Fatalf("Token() after rotation error = %v", err)
	}
	form, _ = f.last()
	if got := form.Get("client_secret"); got != "new-secret-value-rotated" {
		t.Errorf("request after rotation client_secret = %q, want %q", got, "new-secret-value-rotated")
	}

	// An emptied file fails before any request.
	writeFileAtomic(t, path, "")
	n := f.count()
	_, err := c.Token(context.Background(), testScope)
	checkCredentialError(t, err, "new-secret-value-rotated")
	if f.count() != n {
		t.Errorf("a request was sent with an empty secret file")
	}
}

// TestNoSecretOrTokenInErrorsOrLogs drives every path, including an Entra
// that echoes the request body into its error, and checks no error text and
// no log field carries the secret or the token.
func TestNoSecretOrTokenInErrorsOrLogs(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	responders := []func(w http.ResponseWriter, r *http.Request){
		func(w http.ResponseWriter, r *http.Request) {
			answer(w, r, 200, `{"token_type":"Bearer","expires_in":3599,"refresh_in":1800,"access_token":"`+testToken+`"}`)
		},
		func(w http.ResponseWriter, r *http.Request) {
			// A hostile or buggy server that echoes the secret, raw and encoded.
			msg := "Invalid client secret provided: " + r.PostForm.Get("client_secret") + " / " + url.QueryEscape(r.PostForm.Get("client_secret"))
			answer(w, r, 401, entraBody("invalid_client", 7000215, msg, "c"))
		},
		func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(500)
			fmt.Fprint(w, r.PostForm.Encode())
		},
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, "{"+r.PostForm.Get("client_secret"))
		},
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, r.PostForm.Encode())
		},
		func(w http.ResponseWriter, r *http.Request) {
			// A 200 with the token but no lifetime: the token must not leak
			// into the malformed-response error.
			answer(w, r, 200, `{"access_token":"`+testToken+`"}`)
		},
	}
	for i, respond := range responders {
		f := newFakeEntra(t, respond)
		c := newTestClient(t, f.URL, SecretCredential(testSecret), log)
		_, err := c.Token(context.Background(), testScope)
		if err != nil {
			var e *Error
			errors.As(err, &e)
			for _, s := range []string{err.Error(), fmt.Sprintf("%+v", e), e.Description, e.Hint} {
				for _, secret := range []string{testSecret, url.QueryEscape(testSecret), testToken} {
					if strings.Contains(s, secret) {
						t.Errorf("responder %d: error text %q contains %q", i, s, secret)
					}
				}
			}
		}
	}
	// Local failures too.
	c := newTestClient(t, "http://127.0.0.1:1", SecretFileCredential(filepath.Join(t.TempDir(), "missing"), nil), log)
	c.Token(context.Background(), testScope)

	if logs.Len() == 0 {
		t.Fatal("no log lines, want one per request")
	}
	for _, entry := range logs.All() {
		b, _ := json.Marshal(entry.ContextMap())
		line := entry.Message + " " + string(b)
		for _, secret := range []string{testSecret, url.QueryEscape(testSecret), testToken} {
			if strings.Contains(line, secret) {
				t.Errorf("log line %q contains %q", line, secret)
			}
		}
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	good := Config{TenantID: testTenantID, ClientID: testClientID, Credential: SecretCredential("x")}
	tests := []struct {
		name      string
		edit      func(*Config)
		wantErr   []string // substrings; nil means success
		authority string
		tenant    string
	}{
		{name: "defaults", edit: func(*Config) {}, authority: "https://login.microsoftonline.com", tenant: testTenantID},
		{name: "cloud", edit: func(c *Config) { c.Cloud = AzureUSGovernment }, authority: "https://login.microsoftonline.us", tenant: testTenantID},
		{name: "override wins", edit: func(c *Config) { c.Cloud = AzureChina; c.AuthorityHost = "https://Login.Example.com/" }, authority: "https://login.example.com", tenant: testTenantID},
		{name: "emulator over http on loopback", edit: func(c *Config) { c.AuthorityHost = "http://127.0.0.1:8400" }, authority: "http://127.0.0.1:8400", tenant: testTenantID},
		{name: "localhost", edit: func(c *Config) { c.AuthorityHost = "http://localhost:8400/" }, authority: "http://localhost:8400", tenant: testTenantID},
		{name: "ipv6 loopback", edit: func(c *Config) { c.AuthorityHost = "http://[::1]:8400" }, authority: "http://[::1]:8400", tenant: testTenantID},
		{name: "domain tenant", edit: func(c *Config) { c.TenantID = "Contoso.onmicrosoft.com" }, authority: "https://login.microsoftonline.com", tenant: "contoso.onmicrosoft.com"},
		{name: "upper-case GUIDs", edit: func(c *Config) {
			c.TenantID = strings.ToUpper(testTenantID)
			c.ClientID = strings.ToUpper(testClientID)
		}, authority: "https://login.microsoftonline.com", tenant: testTenantID},

		{name: "http elsewhere", edit: func(c *Config) { c.AuthorityHost = "http://login.example.com" }, wantErr: []string{"https"}},
		{name: "relative authority", edit: func(c *Config) { c.AuthorityHost = "login.microsoftonline.com" }, wantErr: []string{"absolute"}},
		{name: "authority with query", edit: func(c *Config) { c.AuthorityHost = "https://login.example.com/?x=1" }, wantErr: []string{"query"}},
		{name: "ftp", edit: func(c *Config) { c.AuthorityHost = "ftp://login.example.com" }, wantErr: []string{"https"}},
		{name: "common tenant", edit: func(c *Config) { c.TenantID = "common" }, wantErr: []string{"common", "client credentials"}},
		{name: "bad tenant", edit: func(c *Config) { c.TenantID = "not a tenant" }, wantErr: []string{"neither a GUID nor a domain"}},
		{name: "no tenant", edit: func(c *Config) { c.TenantID = "" }, wantErr: []string{"no tenant ID"}},
		{name: "bad client ID", edit: func(c *Config) { c.ClientID = "my-app" }, wantErr: []string{"not a GUID"}},
		{name: "no credential", edit: func(c *Config) { c.Credential = nil }, wantErr: []string{"no credential"}},
		{name: "everything at once", edit: func(c *Config) { *c = Config{AuthorityHost: "http://x.example"} }, wantErr: []string{"https", "no tenant ID", "not a GUID", "no credential"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := good
			tt.edit(&cfg)
			c, err := New(cfg)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("New() error = %v", err)
				}
				if c.Authority() != tt.authority || c.TenantID() != tt.tenant || c.ClientID() != testClientID {
					t.Errorf("New() = {%q, %q, %q}, want {%q, %q, %q}", c.Authority(), c.TenantID(), c.ClientID(), tt.authority, tt.tenant, testClientID)
				}
				if want := tt.authority + "/" + tt.tenant + "/oauth2/v2.0/token"; c.TokenURL() != want {
					t.Errorf("TokenURL() = %q, want %q", c.TokenURL(), want)
				}
				return
			}
			if err == nil {
				t.Fatalf("New() error = nil, want one mentioning %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New() error = %q, want it to mention %q", err, w)
				}
			}
			var e *Error
			if !errors.As(err, &e) || e.Hint == "" || e.Op != "config" {
				t.Errorf("New() error = %v, want an *Error with a hint", err)
			}
		})
	}
}

func TestNewDoesNotModifyHTTPClient(t *testing.T) {
	t.Parallel()
	hc := &http.Client{Timeout: time.Second}
	if _, err := New(Config{TenantID: testTenantID, ClientID: testClientID, Credential: SecretCredential("x"), HTTPClient: hc}); err != nil {
		t.Fatal(err)
	}
	if hc.Transport != nil || hc.CheckRedirect != nil {
		t.Errorf("New() modified the given http.Client")
	}
}

func TestTokenStringRedacts(t *testing.T) {
	t.Parallel()
	tok := Token{AccessToken: testToken, ExpiresOn: t0}
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%+v", tok), fmt.Sprintf("%#v", tok)} {
		if strings.Contains(s, testToken) {
			t.Errorf("formatting a Token = %q, contains the access token", s)
		}
	}
}
