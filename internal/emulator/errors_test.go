package emulator

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeJWT builds an unsigned compact JWT with the given header and claims.
func fakeJWT(header, claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(claims)) + ".c2ln"
}

func assertionForm(assertion string) url.Values {
	return with(credentialForm(), map[string][]string{
		"client_secret":         nil,
		"client_assertion_type": {clientAssertionType},
		"client_assertion":      {assertion},
	})
}

func TestTokenErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		method     string // default POST
		tenant     string // default testTenant
		form       url.Values
		basic      [2]string // user, password for HTTP Basic
		noReqID    bool      // send no client-request-id
		wantStatus int
		wantCode   string
		wantAADSTS int
	}{
		{name: "900561-get", method: http.MethodGet, form: url.Values{}, wantStatus: 400, wantCode: "invalid_request", wantAADSTS: 900561},
		{name: "900144-grant-type", form: with(credentialForm(), map[string][]string{"grant_type": nil}), wantStatus: 400, wantCode: "invalid_request", wantAADSTS: 900144},
		{name: "900144-client-id", form: with(credentialForm(), map[string][]string{"client_id": nil}), wantStatus: 400, wantCode: "invalid_request", wantAADSTS: 900144},
		{name: "900144-scope", form: with(credentialForm(), map[string][]string{"scope": nil}), wantStatus: 400, wantCode: "invalid_request", wantAADSTS: 900144},
		{name: "900144-empty-body", form: url.Values{}, wantStatus: 400, wantCode: "invalid_request", wantAADSTS: 900144},
		{name: "70003-grant-type", form: with(credentialForm(), map[string][]string{"grant_type": {"password"}}), wantStatus: 400, wantCode: "unsupported_grant_type", wantAADSTS: 70003},
		{name: "901002-resource", form: with(credentialForm(), map[string][]string{"resource": {"https://api.loganalytics.io"}}), wantStatus: 400, wantCode: "invalid_request", wantAADSTS: 901002},
		{name: "900023-malformed-tenant", tenant: "contoso", form: credentialForm(), wantStatus: 400, wantCode: "invalid_request", wantAADSTS: 900023},
		{name: "90002-unknown-tenant", tenant: "6f1c2a9e-1111-4000-8000-0000000000aa", form: credentialForm(), wantStatus: 400, wantCode: "invalid_request", wantAADSTS: 90002},
		{name: "90002-unknown-domain", tenant: "fabrikam.onmicrosoft.com", form: credentialForm(), wantStatus: 400, wantCode: "invalid_request", wantAADSTS: 90002},
		{name: "9001023-common", tenant: "common", form: credentialForm(), wantStatus: 400, wantCode: "invalid_request", wantAADSTS: 9001023},
		{name: "9001023-consumers", tenant: "consumers", form: credentialForm(), wantStatus: 400, wantCode: "invalid_request", wantAADSTS: 9001023},
		{name: "50059-organizations", tenant: "organizations", form: credentialForm(), wantStatus: 400, wantCode: "invalid_request", wantAADSTS: 50059},
		{name: "1002012-not-default", form: with(credentialForm(), map[string][]string{"scope": {"https://api.loganalytics.io/Data.Read"}}), wantStatus: 400, wantCode: "invalid_scope", wantAADSTS: 1002012},
		{name: "1002012-only-oidc", form: with(credentialForm(), map[string][]string{"scope": {"openid profile"}}), wantStatus: 400, wantCode: "invalid_scope", wantAADSTS: 1002012},
		{name: "70011-invalid-scope", form: with(credentialForm(), map[string][]string{"scope": {"loganalytics/.default"}}), wantStatus: 400, wantCode: "invalid_scope", wantAADSTS: 70011},
		{name: "700022-several-resources", form: with(credentialForm(), map[string][]string{"scope": {laScope + " https://management.azure.com/.default"}}), wantStatus: 400, wantCode: "invalid_scope", wantAADSTS: 700022},
		{name: "700016-unknown-app", form: with(credentialForm(), map[string][]string{"client_id": {unknownClient}}), wantStatus: 400, wantCode: "unauthorized_client", wantAADSTS: 700016},
		{name: "700016-app-of-other-tenant", form: with(credentialForm(), map[string][]string{"client_id": {otherClient}}), wantStatus: 400, wantCode: "unauthorized_client", wantAADSTS: 700016},
		{name: "7000112-disabled", form: with(credentialForm(), map[string][]string{"client_id": {disabledClient}}), wantStatus: 400, wantCode: "unauthorized_client", wantAADSTS: 7000112},
		{name: "7000218-missing-secret", form: with(credentialForm(), map[string][]string{"client_secret": nil}), wantStatus: 401, wantCode: "invalid_client", wantAADSTS: 7000218},
		{name: "7000215-wrong-secret", form: with(credentialForm(), map[string][]string{"client_secret": {"Zm9v~not-the-secret"}}), wantStatus: 401, wantCode: "invalid_client", wantAADSTS: 7000215},
		{name: "7000215-secret-id-instead-of-value", form: with(credentialForm(), map[string][]string{"client_secret": {"3f2b1c9e-5555-4000-8000-000000000009"}}), wantStatus: 401, wantCode: "invalid_client", wantAADSTS: 7000215},
		{name: "7000215-wrong-basic", form: with(credentialForm(), map[string][]string{"client_id": nil, "client_secret": nil}), basic: [2]string{testClient, "nope"}, wantStatus: 401, wantCode: "invalid_client", wantAADSTS: 7000215},
		{name: "7000222-expired-secret", form: with(credentialForm(), map[string][]string{"client_secret": {oldSecret}}), wantStatus: 401, wantCode: "invalid_client", wantAADSTS: 7000222},
		{name: "500011-unknown-resource", form: with(credentialForm(), map[string][]string{"scope": {"https://api.loganalytics.io/v1/.default"}}), wantStatus: 400, wantCode: "invalid_resource", wantAADSTS: 500011},
		{name: "500011-wrong-cloud", form: with(credentialForm(), map[string][]string{"scope": {"https://api.loganalytics.azure.cn/.default"}}), wantStatus: 400, wantCode: "invalid_resource", wantAADSTS: 500011},
		{name: "no-client-request-id", noReqID: true, form: with(credentialForm(), map[string][]string{"client_secret": {"wrong"}}), wantStatus: 401, wantCode: "invalid_client", wantAADSTS: 7000215},
		{name: "900144-assertion-type", form: with(assertionForm("a.b.c"), map[string][]string{"client_assertion_type": nil}), wantStatus: 400, wantCode: "invalid_request", wantAADSTS: 900144},
		{name: "50027-malformed-assertion", form: assertionForm("not-a-jwt"), wantStatus: 401, wantCode: "invalid_client", wantAADSTS: 50027},
		{name: "700027-certificate-assertion", form: assertionForm(fakeJWT(
			`{"alg":"PS256","typ":"JWT","x5t#S256":"y7tncX0t+ADBYhfKhL7XmkynTVvxcj3HP85g56C76JI="}`,
			`{"aud":"https://login.example.test/`+testTenant+`/oauth2/v2.0/token","exp":1767330545,"iss":"`+testClient+`","jti":"0a3cbdee-2e99-464d-9265-0412a6613e91","nbf":1767329945,"sub":"`+testClient+`"}`)),
			wantStatus: 401, wantCode: "invalid_client", wantAADSTS: 700027},
		{name: "70021-federated-assertion", form: assertionForm(fakeJWT(
			`{"alg":"RS256","kid":"k1"}`,
			`{"aud":["api://AzureADTokenExchange"],"exp":1767330545,"iss":"https://kubernetes.default.svc.cluster.local","sub":"system:serviceaccount:default:workload-identity-sa"}`)),
			wantStatus: 400, wantCode: "invalid_request", wantAADSTS: 70021},
		{name: "50027-no-thumbprint", form: assertionForm(fakeJWT(`{"alg":"RS256","typ":"JWT"}`, `{"iss":"`+testClient+`","sub":"`+testClient+`"}`)),
			wantStatus: 401, wantCode: "invalid_client", wantAADSTS: 50027},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			method, tenant := tt.method, tt.tenant
			if method == "" {
				method = http.MethodPost
			}
			if tenant == "" {
				tenant = testTenant
			}
			r := newTokenRequest(method, tenant, tt.form)
			if !tt.noReqID {
				r.Header.Set("client-request-id", requestID)
			}
			if tt.basic[0] != "" {
				r.SetBasicAuth(tt.basic[0], tt.basic[1])
			}
			res, body := serve(t, f.e, r)
			checkEntraError(t, res, body, tt.wantStatus, tt.wantCode, tt.wantAADSTS, !tt.noReqID)
			checkGolden(t, "errors/"+tt.name+".golden", goldenExchange(res, body))
		})
	}
}

// checkEntraError checks an error answer's shape apart from the golden file,
// so that a wrong -update cannot hide a broken shape.
func checkEntraError(t *testing.T, res *http.Response, body []byte, status int, code string, aadsts int, echo bool) {
	t.Helper()
	if res.StatusCode != status {
		t.Errorf("status = %d, want %d", res.StatusCode, status)
	}
	var got struct {
		Error         string `json:"error"`
		Description   string `json:"error_description"`
		ErrorCodes    []int  `json:"error_codes"`
		Timestamp     string `json:"timestamp"`
		TraceID       string `json:"trace_id"`
		CorrelationID string `json:"correlation_id"`
		ErrorURI      string `json:"error_uri"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, body)
	}
	if got.Error != code {
		t.Errorf("error = %q, want %q", got.Error, code)
	}
	if diff := cmp.Diff([]int{aadsts}, got.ErrorCodes); diff != "" {
		t.Errorf("error_codes (-want +got):\n%s", diff)
	}
	prefix := "AADSTS" + strconv.Itoa(aadsts) + ": "
	if !strings.HasPrefix(got.Description, prefix) {
		t.Errorf("error_description = %q, want prefix %q", got.Description, prefix)
	}
	wantTail := "\r\nTrace ID: " + got.TraceID + "\r\nCorrelation ID: " + got.CorrelationID + "\r\nTimestamp: " + got.Timestamp
	if !strings.HasSuffix(got.Description, wantTail) {
		t.Errorf("error_description = %q, want suffix %q", got.Description, wantTail)
	}
	if got.Timestamp != testNow.Format("2006-01-02 15:04:05Z") {
		t.Errorf("timestamp = %q, want the clock's time", got.Timestamp)
	}
	if want := "https://login.microsoftonline.com/error?code=" + strconv.Itoa(aadsts); got.ErrorURI != want {
		t.Errorf("error_uri = %q, want %q", got.ErrorURI, want)
	}
	if echo {
		if got.CorrelationID != requestID || res.Header.Get("client-request-id") != requestID {
			t.Errorf("correlation_id = %q, client-request-id header = %q, want both %q",
				got.CorrelationID, res.Header.Get("client-request-id"), requestID)
		}
	} else if !isGUID(got.CorrelationID) || res.Header.Get("client-request-id") != "" {
		t.Errorf("without client-request-id: correlation_id = %q (want a new GUID), header = %q (want none)",
			got.CorrelationID, res.Header.Get("client-request-id"))
	}
	if want := "1," + strconv.Itoa(aadsts) + ",0,,"; res.Header.Get("x-ms-clitelem") != want {
		t.Errorf("x-ms-clitelem = %q, want %q", res.Header.Get("x-ms-clitelem"), want)
	}
	for h, want := range map[string]string{"Cache-Control": "no-store, no-cache", "Pragma": "no-cache", "Expires": "-1",
		"Content-Type": "application/json; charset=utf-8"} {
		if got := res.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
}

func TestDiscoveryErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, path string
		wantCode   string
		wantAADSTS int
	}{
		{"90002-openid-configuration", "/6f1c2a9e-1111-4000-8000-0000000000aa/v2.0/.well-known/openid-configuration", "invalid_tenant", 90002},
		{"900023-openid-configuration", "/contoso/v2.0/.well-known/openid-configuration", "invalid_request", 900023},
		{"90002-keys", "/fabrikam.onmicrosoft.com/discovery/v2.0/keys", "invalid_tenant", 90002},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			r := httptest.NewRequest(http.MethodGet, "https://login.example.test"+tt.path+"?", nil)
			r.Header.Set("client-request-id", requestID)
			res, body := serve(t, f.e, r)
			checkEntraError(t, res, body, http.StatusBadRequest, tt.wantCode, tt.wantAADSTS, true)
			checkGolden(t, "errors/"+tt.name+".golden", goldenExchange(res, body))
		})
	}
}
