package emulator

import (
	"encoding/base64"
	"math/big"
	"net/http"
	"net/url"
	"strings"
)

// openIDConfiguration is the v2 discovery document, fields in the order of
// the recorded real one.
type openIDConfiguration struct {
	TokenEndpoint                     string   `json:"token_endpoint"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	JWKSURI                           string   `json:"jwks_uri"`
	ResponseModesSupported            []string `json:"response_modes_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	Issuer                            string   `json:"issuer"`
	RequestURIParameterSupported      bool     `json:"request_uri_parameter_supported"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	DeviceAuthorizationEndpoint       string   `json:"device_authorization_endpoint"`
	HTTPLogoutSupported               bool     `json:"http_logout_supported"`
	FrontchannelLogoutSupported       bool     `json:"frontchannel_logout_supported"`
	EndSessionEndpoint                string   `json:"end_session_endpoint"`
	ClaimsSupported                   []string `json:"claims_supported"`
	KerberosEndpoint                  string   `json:"kerberos_endpoint"`
	TenantRegionScope                 string   `json:"tenant_region_scope"`
	CloudInstanceName                 string   `json:"cloud_instance_name"`
	CloudGraphHostName                string   `json:"cloud_graph_host_name"`
	MSGraphHost                       string   `json:"msgraph_host"`
	RBACURL                           string   `json:"rbac_url"`
}

// resolveDiscoveryTenant maps the {tenant} of a discovery URL to the path
// segment the documents use: the tenant GUID, or common/organizations/
// consumers as they are. It answers the error itself when there is none.
func (e *Emulator) resolveDiscoveryTenant(w http.ResponseWriter, r *http.Request) (string, bool) {
	t := r.PathValue("tenant")
	switch strings.ToLower(t) {
	case "common", "organizations", "consumers":
		return strings.ToLower(t), true
	}
	var ae aadError
	if !isGUID(t) && !isDomain(t) {
		ae = errMalformedTenant(t)
	} else if tenant, ok := e.lookupTenant(t); ok {
		return strings.ToLower(tenant.ID), true
	} else {
		ae = errUnknownTenant("invalid_tenant", t)
	}
	e.writeError(w, e.begin(r), ae)
	return "", false
}

// handleOpenIDConfiguration serves GET /{tenant}/v2.0/.well-known/openid-configuration.
// Every URL in it starts with the scheme and host the client used, so that
// msal-go's issuer check accepts it.
func (e *Emulator) handleOpenIDConfiguration(w http.ResponseWriter, r *http.Request) {
	seg, ok := e.resolveDiscoveryTenant(w, r)
	if !ok {
		return
	}
	base := baseURL(r) + "/" + seg
	iss := base + "/v2.0"
	if seg == "common" || seg == "organizations" || seg == "consumers" {
		iss = baseURL(r) + "/{tenantid}/v2.0" // as Entra writes it for multi-tenant authorities
	}
	doc := openIDConfiguration{
		TokenEndpoint:                     base + "/oauth2/v2.0/token",
		TokenEndpointAuthMethodsSupported: []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		JWKSURI:                           base + "/discovery/v2.0/keys",
		ResponseModesSupported:            []string{"query", "fragment", "form_post"},
		SubjectTypesSupported:             []string{"pairwise"},
		IDTokenSigningAlgValuesSupported:  []string{"RS256"},
		ResponseTypesSupported:            []string{"code", "id_token", "code id_token", "id_token token"},
		ScopesSupported:                   []string{"openid", "profile", "email", "offline_access"},
		Issuer:                            iss,
		UserinfoEndpoint:                  "https://graph.microsoft.com/oidc/userinfo",
		AuthorizationEndpoint:             base + "/oauth2/v2.0/authorize",
		DeviceAuthorizationEndpoint:       base + "/oauth2/v2.0/devicecode",
		HTTPLogoutSupported:               true,
		FrontchannelLogoutSupported:       true,
		EndSessionEndpoint:                base + "/oauth2/v2.0/logout",
		ClaimsSupported: []string{"sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
			"msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver",
			"at_hash", "c_hash", "email"},
		KerberosEndpoint:   base + "/kerberos",
		TenantRegionScope:  "WW",
		CloudInstanceName:  "microsoftonline.com",
		CloudGraphHostName: "graph.windows.net",
		MSGraphHost:        "graph.microsoft.com",
		RBACURL:            "https://pas.windows.net",
	}
	writeDiscovery(w, doc)
}

// instanceMetadata is one cloud's entry in instance discovery.
type instanceMetadata struct {
	PreferredNetwork string   `json:"preferred_network"`
	PreferredCache   string   `json:"preferred_cache"`
	Aliases          []string `json:"aliases"`
}

type instanceDiscovery struct {
	TenantDiscoveryEndpoint string             `json:"tenant_discovery_endpoint"`
	APIVersion              string             `json:"api-version"`
	Metadata                []instanceMetadata `json:"metadata"`
}

// knownClouds is the metadata Entra's instance discovery returns (recorded).
var knownClouds = []instanceMetadata{
	{"login.microsoftonline.com", "login.windows.net", []string{"login.microsoftonline.com", "login.windows.net", "login.microsoft.com", "sts.windows.net"}},
	{"login.partner.microsoftonline.cn", "login.partner.microsoftonline.cn", []string{"login.partner.microsoftonline.cn", "login.chinacloudapi.cn"}},
	{"login.microsoftonline.de", "login.microsoftonline.de", []string{"login.microsoftonline.de"}},
	{"login.microsoftonline.us", "login.microsoftonline.us", []string{"login.microsoftonline.us", "login.usgovcloudapi.net"}},
	{"login-us.microsoftonline.com", "login-us.microsoftonline.com", []string{"login-us.microsoftonline.com"}},
}

// handleInstanceDiscovery serves GET /common/discovery/instance: the known
// clouds plus the emulator's own host, and the discovery document of the
// tenant named in authorization_endpoint.
func (e *Emulator) handleInstanceDiscovery(w http.ResponseWriter, r *http.Request) {
	endpoint := baseURL(r) + "/common/.well-known/openid-configuration"
	if u, err := url.Parse(r.URL.Query().Get("authorization_endpoint")); err == nil && u.Host != "" {
		if seg, _, ok := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/"); ok && seg != "" {
			endpoint = u.Scheme + "://" + u.Host + "/" + seg + "/v2.0/.well-known/openid-configuration"
		}
	}
	doc := instanceDiscovery{
		TenantDiscoveryEndpoint: endpoint,
		APIVersion:              "1.1",
		Metadata:                append([]instanceMetadata{{r.Host, r.Host, []string{r.Host}}}, knownClouds...),
	}
	writeDiscovery(w, doc)
}

// jwk is one signing key as Entra publishes it.
type jwk struct {
	Kty    string   `json:"kty"`
	Use    string   `json:"use"`
	Kid    string   `json:"kid"`
	X5t    string   `json:"x5t"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	X5c    []string `json:"x5c"`
	Issuer string   `json:"issuer"`
}

// handleKeys serves GET /{tenant}/discovery/v2.0/keys, the JWKS.
func (e *Emulator) handleKeys(w http.ResponseWriter, r *http.Request) {
	seg, ok := e.resolveDiscoveryTenant(w, r)
	if !ok {
		return
	}
	if seg == "common" || seg == "organizations" || seg == "consumers" {
		seg = "{tenantid}"
	}
	pub := e.key.priv.PublicKey
	k := jwk{
		Kty: "RSA", Use: "sig", Kid: e.key.kid, X5t: e.key.kid,
		N:      base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		E:      base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		X5c:    []string{base64.StdEncoding.EncodeToString(e.key.cert)},
		Issuer: baseURL(r) + "/" + seg + "/v2.0",
	}
	writeDiscovery(w, struct {
		Keys []jwk `json:"keys"`
	}{[]jwk{k}})
}

// writeDiscovery answers a discovery document with Entra's caching headers.
func writeDiscovery(w http.ResponseWriter, v any) {
	h := w.Header()
	h.Set("Cache-Control", "max-age=86400, private")
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(marshal(v))
}
