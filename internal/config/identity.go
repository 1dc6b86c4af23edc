package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/entrabroker/broker/internal/azure"
)

// DefaultIdentity is the name of the identity from the environment
// (AZURE_CLIENT_ID, …).
const DefaultIdentity = "default"

// Identity is one app registration the broker serves: the environment's,
// named DefaultIdentity, or one of the configuration file's (BROKER_CONFIG).
// Served returns them all; one set of rules checks each.
type Identity struct {
	// Name labels the identity in logs, metrics, /readyz and caller rules:
	// lower-case letters, digits, '-', '_' and '.', at most 63 characters.
	Name string
	// TenantID is the Directory (tenant) ID or a verified domain.
	TenantID string
	// ClientID is the Application (client) ID; /token?client_id= and the
	// managed-identity selector client_id choose the identity by it.
	ClientID string
	// ObjectID, optional, is the service principal's object ID; the
	// managed-identity selectors object_id and principal_id match it.
	ObjectID string
	// ResourceID, optional, is an Azure resource ID the managed-identity
	// selectors mi_res_id and msi_res_id match.
	ResourceID string

	// Exactly one of ClientSecret, ClientSecretFile, ClientCertificatePath
	// and FederatedTokenFile is set. Relative paths in the file are resolved
	// against the file's directory.

	// ClientSecret is the client secret's Value (AZURE_CLIENT_SECRET): the
	// environment's identity only, as a file names secrets by file. Secret.
	ClientSecret string
	// ClientSecretFile holds the client secret's Value, re-read when it
	// changes.
	ClientSecretFile string
	// ClientCertificatePath is a PEM or PKCS#12 file with the certificate and
	// its private key, re-read when it changes.
	ClientCertificatePath string
	// ClientCertificatePassword decrypts a PKCS#12 certificate
	// (AZURE_CLIENT_CERTIFICATE_PASSWORD): the environment's identity only.
	// Secret.
	ClientCertificatePassword string
	// ClientCertificatePasswordFile, optional, holds the PKCS#12 password:
	// the file's identities only.
	ClientCertificatePasswordFile string
	// SendCertificateChain sends the certificate chain (x5c) with each
	// assertion.
	SendCertificateChain bool
	// FederatedTokenFile holds a federated token (workload identity),
	// re-read when it changes.
	FederatedTokenFile string
	// SecretExpiresOn, optional, is when the client secret expires, for the
	// credential-expiry metric and warning; zero means unknown.
	SecretExpiresOn time.Time

	// AllowedScopes, when not empty, are the only scopes served for the
	// identity, as written (scopes or resource URIs).
	AllowedScopes []string
	// PrefetchScopes are fetched at start and kept warm; /readyz waits for
	// them.
	PrefetchScopes []string

	// Source is where the identity is defined, "<file>:<line>", for
	// messages; empty for the environment's.
	Source string
}

// Served returns the identities the broker serves, the default one (used
// when a request names none) first: the environment's, named
// DefaultIdentity, when AZURE_CLIENT_ID is set or the file names none, then
// the file's in order.
func (c Config) Served() []Identity {
	var out []Identity
	if c.ClientID != "" || len(c.Identities) == 0 {
		out = append(out, c.envIdentity())
	}
	return append(out, c.Identities...)
}

// envIdentity is the identity of the environment's settings.
func (c Config) envIdentity() Identity {
	id := c.Identity
	id.Name, id.Source = DefaultIdentity, ""
	return id
}

// vocabulary is how a source of identities names an identity's settings in
// messages: the environment by its variables, the file by its keys. The
// rules are the same; only the words differ.
type vocabulary struct {
	tenant, client, object, resource        string
	secret, secretFile, cert, password      string
	chain, federated, expires               string
	allowed, prefetch                       string
	missing                                 string // says that a required setting is absent
	noCredential, manyCredentials, manyFix  string
	prefetchList                            string
	passwordAlone, chainAlone, expiresAlone Problem
}

var envWords = vocabulary{
	tenant: "AZURE_TENANT_ID", client: "AZURE_CLIENT_ID",
	secret: "AZURE_CLIENT_SECRET", secretFile: "AZURE_CLIENT_SECRET_FILE", cert: "AZURE_CLIENT_CERTIFICATE_PATH",
	password: "AZURE_CLIENT_CERTIFICATE_PASSWORD", chain: "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN",
	federated: "AZURE_FEDERATED_TOKEN_FILE", expires: "BROKER_CLIENT_SECRET_EXPIRES_ON",
	allowed: "BROKER_ALLOWED_SCOPES", prefetch: "BROKER_PREFETCH_SCOPES",
	missing:         "is not set",
	noCredential:    "set one of AZURE_CLIENT_SECRET (the client secret's Value, shown once when the secret is created under Certificates & secrets), AZURE_CLIENT_SECRET_FILE (a file holding it), AZURE_CLIENT_CERTIFICATE_PATH (a certificate and its key) or AZURE_FEDERATED_TOKEN_FILE (workload identity)",
	manyCredentials: "the broker uses exactly one credential",
	manyFix:         "keep one (a certificate or workload identity is better than a secret)",
	prefetchList:    "the prefetch list",
	passwordAlone: Problem{"AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_CLIENT_CERTIFICATE_PASSWORD is set but AZURE_CLIENT_CERTIFICATE_PATH is not",
		"set the path of the PKCS#12 file, or drop the password"},
	chainAlone: Problem{"AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN is set but AZURE_CLIENT_CERTIFICATE_PATH is not",
		"the chain is sent only with a certificate credential"},
	expiresAlone: Problem{"BROKER_CLIENT_SECRET_EXPIRES_ON", "BROKER_CLIENT_SECRET_EXPIRES_ON is set but no client secret is",
		"it describes AZURE_CLIENT_SECRET or AZURE_CLIENT_SECRET_FILE (a certificate's expiry is read from the certificate)"},
}

var fileWords = vocabulary{
	tenant: "tenant_id", client: "client_id", object: "object_id", resource: "resource_id",
	secret: "client_secret", secretFile: "client_secret_file", cert: "client_certificate_path",
	password: "client_certificate_password_file", chain: "send_certificate_chain",
	federated: "federated_token_file", expires: "secret_expires_on",
	allowed: "allowed_scopes", prefetch: "prefetch_scopes",
	missing:         "is missing",
	noCredential:    "set one of client_secret_file, client_certificate_path or federated_token_file",
	manyCredentials: "an identity uses exactly one credential",
	manyFix:         "keep one",
	prefetchList:    "prefetch_scopes",
	passwordAlone: Problem{"client_certificate_password_file", "client_certificate_password_file is set without client_certificate_path",
		"drop it, or name the PKCS#12 file"},
	chainAlone: Problem{"send_certificate_chain", "send_certificate_chain is set without client_certificate_path",
		"the chain is sent only with a certificate"},
	expiresAlone: Problem{"secret_expires_on", "secret_expires_on describes a client secret, but the identity has none (a certificate's expiry is read from the certificate)",
		"drop it"},
}

// words is the vocabulary of the identity's source.
func (id Identity) words() *vocabulary {
	if id.Source == "" {
		return &envWords
	}
	return &fileWords
}

// The fixes for a placeholder tenant or client ID.
const (
	replaceTenant = "replace the placeholder with your app's Directory (tenant) ID from the portal (the app registration's Overview page)"
	replaceClient = "replace the placeholder with your app's Application (client) ID from the portal (the app registration's Overview page)"
)

// problems checks the identity's app registration and credential. Each
// Problem's Setting is the setting's name in the identity's source (empty
// for the identity as a whole) and its text names no file or line: the
// caller adds them (see at).
func (id Identity) problems() []Problem {
	w := id.words()
	var ps []Problem
	add := func(setting, fix, format string, a ...any) {
		ps = append(ps, Problem{Setting: setting, Problem: fmt.Sprintf(format, a...), Fix: fix})
	}
	const useTenant = "use the Directory (tenant) ID from the app registration's Overview page"
	switch t := id.TenantID; {
	case t == "":
		add(w.tenant, useTenant, "%s %s", w.tenant, w.missing)
	case t == "common" || t == "organizations" || t == "consumers":
		add(w.tenant, "the client-credentials grant needs your own tenant; use the Directory (tenant) ID from the app's Overview page", "%s is %q", w.tenant, t)
	case !azure.IsGUID(t) && !azure.IsTenantDomain(t):
		add(w.tenant, useTenant, "%s %q is neither a GUID nor a domain name", w.tenant, t)
	case azure.IsPlaceholderGUID(t):
		add(w.tenant, replaceTenant, "%s %q is a placeholder", w.tenant, t)
	}
	switch c := id.ClientID; {
	case c == "":
		add(w.client, "use the Application (client) ID from the app registration's Overview page", "%s %s", w.client, w.missing)
	case !azure.IsGUID(c):
		add(w.client, "use the Application (client) ID from the app registration's Overview page (not its display name)", "%s %q is not a GUID", w.client, c)
	case azure.IsPlaceholderGUID(c):
		add(w.client, replaceClient, "%s %q is a placeholder", w.client, c)
	}
	if id.ObjectID != "" && !azure.IsGUID(id.ObjectID) {
		add(w.object, "use the Object ID of the app's service principal (Enterprise applications → the app → Overview)", "%s %q is not a GUID", w.object, id.ObjectID)
	}
	if r := id.ResourceID; r != "" && (!strings.HasPrefix(strings.ToLower(r), "/subscriptions/") || strings.ContainsAny(r, " \t")) {
		add(w.resource, "write it like /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>", "%s %q is not an Azure resource ID", w.resource, r)
	}

	var creds []string
	for _, c := range []struct {
		name string
		on   bool
	}{
		{w.secret, id.ClientSecret != ""},
		{w.secretFile, id.ClientSecretFile != ""},
		{w.cert, id.ClientCertificatePath != ""},
		{w.federated, id.FederatedTokenFile != ""},
	} {
		if c.on {
			creds = append(creds, c.name)
		}
	}
	switch {
	case len(creds) == 0:
		add("", w.noCredential, "no credential")
	case len(creds) == 2 && id.ClientSecret != "" && id.ClientSecretFile != "":
		add(w.secret, "keep one (the file is better: it can be rotated without a restart)", "both %s and %s are set", w.secret, w.secretFile)
	case len(creds) > 1:
		add("", w.manyFix, "%s, but %s", areSet(creds), w.manyCredentials)
	case azure.IsGUID(id.ClientSecret):
		add(w.secret, "copy the Value column (shown once at creation), or create a new secret", "%s looks like a GUID, which is the secret's ID, not its Value", w.secret)
	}
	if id.ClientCertificatePath == "" {
		if id.ClientCertificatePassword != "" || id.ClientCertificatePasswordFile != "" {
			ps = append(ps, w.passwordAlone)
		}
		if id.SendCertificateChain {
			ps = append(ps, w.chainAlone)
		}
	}
	if !id.SecretExpiresOn.IsZero() && id.ClientSecret == "" && id.ClientSecretFile == "" {
		ps = append(ps, w.expiresAlone)
	}
	return ps
}

// scopeProblems checks the identity's prefetch and allowed scopes: each
// looks like a scope, and every prefetched scope is allowed.
func (id Identity) scopeProblems() []Problem {
	w := id.words()
	var ps []Problem
	for _, l := range []struct {
		key   string
		items []string
	}{{w.prefetch, id.PrefetchScopes}, {w.allowed, id.AllowedScopes}} {
		for _, s := range l.items {
			if !scopeLike(s) {
				ps = append(ps, Problem{l.key, fmt.Sprintf("%s item %q is not a scope or resource URI", l.key, s), "write items like https://api.loganalytics.io/.default"})
			}
		}
	}
	if len(id.AllowedScopes) > 0 {
		for _, s := range id.PrefetchScopes {
			if !slices.Contains(id.AllowedScopes, s) && !slices.Contains(id.AllowedScopes, strings.TrimSuffix(s, "/.default")) {
				ps = append(ps, Problem{w.prefetch, fmt.Sprintf("%s item %q is not in %s", w.prefetch, s, w.allowed), "add it there, or drop it from " + w.prefetchList})
			}
		}
	}
	return ps
}

// scopeLike is the shallow check of a configured scope; the broker
// normalizes it when it starts.
func scopeLike(s string) bool {
	return !strings.ContainsAny(s, " \t") && strings.Contains(s, "://")
}

// prefix is what the identity's problems start with: nothing for the
// environment's, its place and name for the file's.
func (id Identity) prefix() string {
	if id.Source == "" {
		return ""
	}
	return id.Source + ": identity " + strconv.Quote(id.Name) + ": "
}

// credentialFile is a file named by a credential setting.
type credentialFile struct {
	// setting names it: AZURE_CLIENT_SECRET_FILE, or an identity's key
	// such as client_secret_file.
	setting string
	path    string
	// secret reports that the file holds a secret, a private key or a
	// password, which no other user may read. A federated token is not one:
	// it is short-lived, and its mode is the kubelet's.
	secret bool
}

// files are the credential files the identity names.
func (id Identity) files() []credentialFile {
	w := id.words()
	var out []credentialFile
	for _, f := range []credentialFile{
		{w.secretFile, id.ClientSecretFile, true},
		{w.cert, id.ClientCertificatePath, true},
		{w.password, id.ClientCertificatePasswordFile, true},
		{w.federated, id.FederatedTokenFile, false},
	} {
		if f.path != "" {
			out = append(out, f)
		}
	}
	return out
}

// fileProblems checks that each of the identity's credential files can be
// read now.
func (id Identity) fileProblems() []Problem {
	var ps []Problem
	for _, f := range id.files() {
		if what, fix := checkReadable(f.path); what != "" {
			ps = append(ps, Problem{f.setting, fmt.Sprintf("%s%s %q %s", id.prefix(), f.setting, f.path, what), fix})
		}
	}
	return ps
}
