package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/cache"
)

// keyCache is a Cache that answers every Get with a token naming the key's
// client and scope, and reports the keys in ready as servable.
type keyCache struct {
	now   time.Time
	mu    sync.Mutex
	ready map[cache.Key]bool
	got   []cache.Key
}

func (c *keyCache) Get(_ context.Context, k cache.Key) (cache.Result, error) {
	c.mu.Lock()
	c.got = append(c.got, k)
	c.mu.Unlock()
	return cache.Result{Token: azure.Token{AccessToken: "tok|" + k.ClientID + "|" + k.Scope, IssuedAt: c.now, ExpiresOn: c.now.Add(time.Hour)}}, nil
}

func (c *keyCache) Status(k cache.Key) cache.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ready[k] {
		return cache.Status{Servable: true, ExpiresOn: c.now.Add(time.Hour)}
	}
	return cache.Status{}
}

func (c *keyCache) Invalidate(cache.Key, string) bool { return false }
func (c *keyCache) Keys() []cache.Key                 { return nil }
func (c *keyCache) Refresh(_ context.Context, keys ...cache.Key) []error {
	return make([]error, len(keys))
}

const (
	reportsClient = "11111111-aaaa-4222-bbbb-3333cccc4444"
	reportsObject = "22222222-aaaa-4222-bbbb-3333cccc4444"
	reportsRes    = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/reports"
	billingClient = "33333333-aaaa-4222-bbbb-3333cccc4444"
	defaultClient = "44444444-aaaa-4222-bbbb-3333cccc4444"
)

// threeIdentities are a default identity and two from a configuration file:
// reports (object and resource IDs, Log Analytics only) and billing (no
// object or resource ID).
func threeIdentities() []Identity {
	const authority, tenant = "https://login.example", "72f988bf-86f1-41af-91ab-2d7cd011db47"
	return []Identity{
		{Name: "default", Authority: authority, TenantID: tenant, ClientID: defaultClient, PrefetchScopes: []string{"https://vault.azure.net/.default"}},
		{Name: "reports", Authority: authority, TenantID: tenant, ClientID: reportsClient, ObjectID: reportsObject, ResourceID: reportsRes,
			AllowedScopes: []string{laScope}, PrefetchScopes: []string{laScope}},
		{Name: "billing", Authority: authority, TenantID: tenant, ClientID: billingClient},
	}
}

func newIdentitiesServer(t *testing.T, c *keyCache, extraPrefetch ...string) (api, ops *httptest.Server) {
	t.Helper()
	a, o, err := New(Options{
		Cache:          c,
		Identities:     threeIdentities(),
		IdentityHeader: msiHeader,
		PrefetchScopes: extraPrefetch,
		Now:            func() time.Time { return c.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	api, ops = httptest.NewServer(a), httptest.NewServer(o)
	t.Cleanup(api.Close)
	t.Cleanup(ops.Close)
	return api, ops
}

func TestIdentitySelection(t *testing.T) {
	t.Parallel()
	c := &keyCache{now: time.Unix(1_800_000_000, 0)}
	api, _ := newIdentitiesServer(t, c)
	const kv = "https://vault.azure.net"
	msi := "/msi/token?api-version=2019-08-01&resource="
	imds := "/metadata/identity/oauth2/token?api-version=2018-02-01&resource="
	tests := []struct {
		name, target string
		header       map[string]string
		wantStatus   int
		wantClient   string // the identity whose token is served
		wantError    string
	}{
		{"token default", "/token?resource=" + kv, metadata, 200, defaultClient, ""},
		{"token by client_id", "/token?resource=" + laResource + "&client_id=" + reportsClient, metadata, 200, reportsClient, ""},
		{"token by client_id, upper case", "/token?resource=" + kv + "&client_id=" + strings.ToUpper(billingClient), metadata, 200, billingClient, ""},
		{"token scope not allowed for reports", "/token?resource=" + kv + "&client_id=" + reportsClient, metadata, 403, "", "scope_not_allowed"},
		{"msi by client_id", msi + kv + "&client_id=" + billingClient, msiHdr, 200, billingClient, ""},
		{"msi by object_id", msi + laResource + "&object_id=" + reportsObject, msiHdr, 200, reportsClient, ""},
		{"msi by principal_id", msi + laResource + "&principal_id=" + strings.ToUpper(reportsObject), msiHdr, 200, reportsClient, ""},
		{"msi by mi_res_id", msi + laResource + "&mi_res_id=" + strings.ToLower(reportsRes), msiHdr, 200, reportsClient, ""},
		{"msi by msi_res_id", msi + laResource + "&msi_res_id=" + reportsRes, msiHdr, 200, reportsClient, ""},
		{"msi object_id is not a client_id", msi + kv + "&object_id=" + billingClient, msiHdr, 400, "", "identity_not_found"},
		{"msi client_id is not an object_id", msi + kv + "&client_id=" + reportsObject, msiHdr, 400, "", "identity_not_found"},
		{"msi scope not allowed for reports", msi + kv + "&object_id=" + reportsObject, msiHdr, 403, "", "scope_not_allowed"},
		{"imds by object_id", imds + laResource + "&object_id=" + reportsObject, metadata, 200, reportsClient, ""},
		{"imds by msi_res_id", imds + laResource + "&msi_res_id=" + reportsRes, metadata, 200, reportsClient, ""},
		{"imds unknown resource id", imds + laResource + "&msi_res_id=/subscriptions/0000/other", metadata, 400, "", "identity_not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest("GET", api.URL+tt.target, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := api.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("GET %s = %d %v, want %d", tt.target, resp.StatusCode, b, tt.wantStatus)
			}
			if tt.wantError != "" {
				if b["error"] != tt.wantError {
					t.Errorf("GET %s error = %v, want %s", tt.target, b["error"], tt.wantError)
				}
				return
			}
			tok, _ := b["access_token"].(string)
			if got := strings.Split(tok, "|")[1]; got != tt.wantClient {
				t.Errorf("GET %s served the token of %s, want %s's", tt.target, got, tt.wantClient)
			}
			if cid, ok := b["client_id"]; ok && cid != tt.wantClient {
				t.Errorf("GET %s client_id = %v, want %s", tt.target, cid, tt.wantClient)
			}
		})
	}
}

func TestScopeNotAllowedHintNamesTheSetting(t *testing.T) {
	t.Parallel()
	c := &keyCache{now: time.Unix(1_800_000_000, 0)}
	api, _ := newIdentitiesServer(t, c)
	req, _ := http.NewRequest("GET", api.URL+"/token?resource=https://vault.azure.net&client_id="+reportsClient, nil)
	req.Header.Set("Metadata", "true")
	resp, err := api.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b struct{ Hint string }
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.Hint, `the allowed_scopes of identity "reports" in BROKER_CONFIG`) {
		t.Errorf("hint = %q, want it to name the identity's allowed_scopes", b.Hint)
	}
}

func TestReadyzCoversEveryIdentity(t *testing.T) {
	t.Parallel()
	ids := threeIdentities()
	c := &keyCache{now: time.Unix(1_800_000_000, 0), ready: map[cache.Key]bool{}}
	_, ops := newIdentitiesServer(t, c, "https://vault.azure.net/.default", "https://storage.azure.com/.default")

	type status struct {
		Identity string `json:"identity"`
		Scope    string `json:"scope"`
		Ready    bool   `json:"ready"`
	}
	get := func() (int, []status, []string) {
		t.Helper()
		resp, err := ops.Client().Get(ops.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b struct {
			Scopes  []status `json:"scopes"`
			Missing []string `json:"missing"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b.Scopes, b.Missing
	}

	code, scopes, missing := get()
	want := []status{
		{"default", "https://vault.azure.net/.default", false},
		{"default", "https://storage.azure.com/.default", false},
		{"reports", laScope, false},
	}
	if code != 503 {
		t.Errorf("GET /readyz with nothing fetched = %d, want 503", code)
	}
	if diff := cmp.Diff(want, scopes); diff != "" {
		t.Errorf("/readyz scopes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"https://vault.azure.net/.default", "https://storage.azure.com/.default", "reports: " + laScope}, missing); diff != "" {
		t.Errorf("/readyz missing (-want +got):\n%s", diff)
	}

	c.mu.Lock()
	c.ready[ids[0].Key("https://vault.azure.net/.default")] = true
	c.ready[ids[0].Key("https://storage.azure.com/.default")] = true
	c.mu.Unlock()
	if code, _, missing = get(); code != 503 || len(missing) != 1 {
		t.Errorf("GET /readyz with reports missing = %d %v, want 503 naming reports", code, missing)
	}

	c.mu.Lock()
	c.ready[ids[1].Key(laScope)] = true
	c.mu.Unlock()
	if code, _, missing = get(); code != 200 || len(missing) != 0 {
		t.Errorf("GET /readyz with every scope ready = %d %v, want 200", code, missing)
	}
}
