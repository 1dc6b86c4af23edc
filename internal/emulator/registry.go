package emulator

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Tenant is a directory: the {tenant} of the token URL, by ID or by one of
// its domains.
type Tenant struct {
	// ID is the tenant GUID, the tid of the tokens it issues.
	ID string `yaml:"id"`
	// Name is the directory's display name, used where Entra names the
	// directory in an error (700016, 500011). Empty means the ID.
	Name string `yaml:"name"`
	// Domains are the verified domains that also address the tenant, e.g.
	// "contoso.onmicrosoft.com".
	Domains []string `yaml:"domains"`
}

// Secret is one client secret of an app.
type Secret struct {
	// Value is what the client sends as client_secret.
	Value string `yaml:"value"`
	// ExpiresOn is when the secret stops working (AADSTS7000222 afterwards).
	// The zero time means never.
	ExpiresOn time.Time `yaml:"expires_on"`
}

// App is an app registration with its service principal in one tenant.
type App struct {
	// TenantID is the tenant where the app's service principal lives; the app
	// can get tokens from that tenant only (elsewhere: AADSTS700016).
	TenantID string `yaml:"tenant"`
	// ClientID is the application (client) ID.
	ClientID string `yaml:"client_id"`
	// ObjectID is the service principal's object ID, the oid and sub of its
	// tokens. Empty means one derived from the client ID.
	ObjectID string `yaml:"object_id"`
	// DisplayName names the app in errors (AADSTS7000112). Empty means
	// "app-" plus the client ID.
	DisplayName string `yaml:"display_name"`
	// Disabled turns the service principal off (AADSTS7000112). It is the
	// enabled flag inverted, so that the zero App is enabled.
	Disabled bool `yaml:"disabled"`
	// Secrets are the app's client secrets; any unexpired one is accepted.
	Secrets []Secret `yaml:"secrets"`
	// Certificates are the app's certificate credentials (the public parts
	// uploaded to the registration): a client assertion whose x5t#S256 or
	// x5t names one of them and is signed with its key is accepted while the
	// certificate is valid. In the file, a list of PEM texts.
	Certificates PEMCertificates `yaml:"certificates"`
	// FederatedCredentials are the app's federated identity credentials: a
	// client assertion issued by another identity provider (a Kubernetes
	// service account token) is accepted when one of them matches its
	// issuer, subject and audience.
	FederatedCredentials []FederatedCredential `yaml:"federated_credentials"`
	// TokenLifetime overrides the emulator's token lifetime for this app;
	// zero means the emulator's.
	TokenLifetime time.Duration `yaml:"token_lifetime"`
}

// DefaultFederatedAudience is the audience of a federated identity
// credential that names none: the one the Azure portal proposes and the AKS
// workload identity webhook requests.
const DefaultFederatedAudience = "api://AzureADTokenExchange"

// FederatedCredential is a federated identity credential of an app: it
// trusts tokens of one issuer for one subject. Issuer, subject and audience
// are compared case-sensitively, as Entra does.
type FederatedCredential struct {
	// Name names the credential, for people; it is not checked.
	Name string `yaml:"name"`
	// Issuer is the identity provider's issuer URL, the token's iss, e.g. an
	// AKS cluster's OIDC issuer URL.
	Issuer string `yaml:"issuer"`
	// Subject is the token's sub, e.g.
	// "system:serviceaccount:default:workload-identity-sa".
	Subject string `yaml:"subject"`
	// Audiences lists the accepted aud values; empty means
	// DefaultFederatedAudience.
	Audiences []string `yaml:"audiences"`
	// Keys are the issuer's signing keys. When set, a token's signature must
	// verify with one of them (RS256, PS256 or ES256); when empty, only the
	// claims are checked, since the emulator cannot fetch a cluster's keys as
	// Entra does. In the file, a PEM text of PUBLIC KEY or CERTIFICATE
	// blocks.
	Keys PEMPublicKeys `yaml:"keys"`
}

// audiences returns the accepted audiences.
func (f FederatedCredential) audiences() []string {
	if len(f.Audiences) == 0 {
		return []string{DefaultFederatedAudience}
	}
	return f.Audiences
}

// PEMCertificates are certificates, written in a registration file as a
// list of PEM texts (each with one or more CERTIFICATE blocks).
type PEMCertificates []*x509.Certificate

// UnmarshalYAML decodes a list of PEM texts. A malformed one is an error
// naming its line.
func (c *PEMCertificates) UnmarshalYAML(n *yaml.Node) error {
	var texts []string
	if err := n.Decode(&texts); err != nil {
		return err
	}
	var certs PEMCertificates
	var errs []string
	for i, t := range texts {
		line := n.Line
		if i < len(n.Content) {
			line = n.Content[i].Line
		}
		blocks, err := pemBlocks(t, "CERTIFICATE")
		if err != nil {
			errs = append(errs, fmt.Sprintf("line %d: certificates[%d]: %v", line, i, err))
			continue
		}
		for _, b := range blocks {
			cert, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				errs = append(errs, fmt.Sprintf("line %d: certificates[%d]: a CERTIFICATE block is not an X.509 certificate", line, i))
				continue
			}
			certs = append(certs, cert)
		}
	}
	if len(errs) > 0 {
		return &yaml.TypeError{Errors: errs}
	}
	*c = certs
	return nil
}

// PEMPublicKeys are public keys, written in a registration file as one PEM
// text of PUBLIC KEY blocks (PKIX) or CERTIFICATE blocks (whose keys are
// taken).
type PEMPublicKeys []crypto.PublicKey

// UnmarshalYAML decodes a PEM text. A malformed one is an error naming its
// line.
func (k *PEMPublicKeys) UnmarshalYAML(n *yaml.Node) error {
	var text string
	if err := n.Decode(&text); err != nil {
		return err
	}
	fail := func(err error) error {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: keys: %v", n.Line, err)}}
	}
	blocks, err := pemBlocks(text, "PUBLIC KEY", "CERTIFICATE")
	if err != nil {
		return fail(err)
	}
	var keys PEMPublicKeys
	for _, b := range blocks {
		if b.Type == "CERTIFICATE" {
			cert, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return fail(errors.New("a CERTIFICATE block is not an X.509 certificate"))
			}
			keys = append(keys, cert.PublicKey)
			continue
		}
		pub, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return fail(errors.New("a PUBLIC KEY block is not a PKIX public key"))
		}
		keys = append(keys, pub)
	}
	*k = keys
	return nil
}

// pemBlocks returns the PEM blocks of text, which must all be of the given
// types, and at least one.
func pemBlocks(text string, types ...string) ([]*pem.Block, error) {
	var blocks []*pem.Block
	rest := []byte(text)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if !slices.Contains(types, b.Type) {
			return nil, fmt.Errorf("a %s block is not allowed here (want %s)", b.Type, strings.Join(types, " or "))
		}
		blocks = append(blocks, b)
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("no PEM %s block", strings.Join(types, " or "))
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("text after the last PEM block")
	}
	return blocks, nil
}

// Resource is an API that tokens can be issued for: a resource service
// principal with its app ID URIs and the app roles granted to client apps.
// Resources exist in every tenant, as Microsoft's first-party APIs do.
type Resource struct {
	// URIs are the identifiers a scope may name before "/.default", e.g.
	// "https://api.loganalytics.io". They match case-insensitively; the aud
	// claim is the registered spelling of the one requested.
	URIs []string `yaml:"uris"`
	// DisplayName names the resource, for Describe.
	DisplayName string `yaml:"display_name"`
	// Roles maps a client ID to the app roles granted to that app on this
	// resource: the roles claim of its tokens.
	Roles map[string][]string `yaml:"roles"`
}

var (
	guidRE  = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	labelRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// isGUID reports whether s is a GUID in its 8-4-4-4-12 form.
func isGUID(s string) bool { return guidRE.MatchString(s) }

// isDomain reports whether s is a DNS name with at least two labels, which
// is what Entra accepts as a tenant domain.
func isDomain(s string) bool {
	if len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if !labelRE.MatchString(l) {
			return false
		}
	}
	return true
}

// validResourceID reports whether id (a scope without "/.default") is a
// well-formed resource identifier: a GUID or an absolute URI.
func validResourceID(id string) bool {
	if isGUID(id) {
		return true
	}
	u, err := url.Parse(id)
	return err == nil && u.Scheme != "" && (u.Host != "" || u.Opaque != "")
}

// problem is one thing wrong with a registration: where (a path of keys and
// indexes, as in the config file) and what.
type problem struct {
	path []any // string keys and int indexes
	msg  string
}

func (p problem) String() string { return pathString(p.path) + ": " + p.msg }

func pathString(path []any) string {
	var b strings.Builder
	for _, k := range path {
		switch k := k.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", k)
		default:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			fmt.Fprint(&b, k)
		}
	}
	return b.String()
}

func guidProblem(field, v string) []problem {
	if isGUID(v) {
		return nil
	}
	return []problem{{[]any{field}, fmt.Sprintf("%q is not a GUID", v)}}
}

// problems returns what is wrong with t on its own.
func (t Tenant) problems() []problem {
	p := guidProblem("id", t.ID)
	for i, d := range t.Domains {
		if !isDomain(d) {
			p = append(p, problem{[]any{"domains", i}, fmt.Sprintf("%q is not a DNS name", d)})
		}
	}
	return p
}

// problems returns what is wrong with a on its own, without looking at other
// registrations.
func (a App) problems() []problem {
	p := guidProblem("tenant", a.TenantID)
	p = append(p, guidProblem("client_id", a.ClientID)...)
	if a.ObjectID != "" {
		p = append(p, guidProblem("object_id", a.ObjectID)...)
	}
	for i, s := range a.Secrets {
		if s.Value == "" {
			p = append(p, problem{[]any{"secrets", i, "value"}, "is empty"})
		}
	}
	if a.TokenLifetime < 0 {
		p = append(p, problem{[]any{"token_lifetime"}, fmt.Sprintf("%s is negative", a.TokenLifetime)})
	}
	p = append(p, certificateProblems(a.Certificates)...)
	for i, f := range a.FederatedCredentials {
		for _, fp := range f.problems() {
			p = append(p, problem{append([]any{"federated_credentials", i}, fp.path...), fp.msg})
		}
	}
	return p
}

// certificateProblems returns what is wrong with an app's certificates:
// Entra's certificate credentials are RSA.
func certificateProblems(certs []*x509.Certificate) []problem {
	var p []problem
	for i, c := range certs {
		switch {
		case c == nil:
			p = append(p, problem{[]any{"certificates", i}, "is nil"})
		case c.PublicKeyAlgorithm != x509.RSA:
			p = append(p, problem{[]any{"certificates", i}, fmt.Sprintf("its key is %s; certificate credentials need RSA", c.PublicKeyAlgorithm)})
		}
	}
	return p
}

// problems returns what is wrong with f on its own.
func (f FederatedCredential) problems() []problem {
	var p []problem
	if u, err := url.Parse(f.Issuer); f.Issuer == "" || err != nil || u.Scheme == "" || u.Host == "" {
		p = append(p, problem{[]any{"issuer"}, fmt.Sprintf("%q is not an absolute URL", f.Issuer)})
	}
	if f.Subject == "" {
		p = append(p, problem{[]any{"subject"}, "is empty"})
	}
	for i, a := range f.Audiences {
		if a == "" {
			p = append(p, problem{[]any{"audiences", i}, "is empty"})
		}
	}
	for i, k := range f.Keys {
		switch k.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey:
		default:
			p = append(p, problem{[]any{"keys", i}, fmt.Sprintf("a %T is not an RSA or ECDSA public key", k)})
		}
	}
	return p
}

// problems returns what is wrong with r on its own.
func (r Resource) problems() []problem {
	var p []problem
	if len(r.URIs) == 0 {
		p = append(p, problem{[]any{"uris"}, "is empty"})
	}
	for i, u := range r.URIs {
		if !validResourceID(u) {
			p = append(p, problem{[]any{"uris", i}, fmt.Sprintf("%q is not an absolute URI or a GUID", u)})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(r.Roles)) {
		if !isGUID(id) {
			p = append(p, problem{[]any{"roles", id}, "the key is not a client ID (GUID)"})
		}
	}
	return p
}

func problemsError(op string, ps []problem) error {
	if len(ps) == 0 {
		return nil
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return fmt.Errorf("%s: %s", op, strings.Join(s, "; "))
}

// AddTenant registers a tenant. It fails when the ID is not a GUID, a domain
// is not a DNS name, or the ID or a domain is already registered.
func (e *Emulator) AddTenant(t Tenant) error {
	if err := problemsError("add tenant", t.problems()); err != nil {
		return err
	}
	t.Domains = slices.Clone(t.Domains)
	e.regMu.Lock()
	defer e.regMu.Unlock()
	id := strings.ToLower(t.ID)
	if _, ok := e.tenants[id]; ok {
		return fmt.Errorf("add tenant: %s is already registered", t.ID)
	}
	for _, d := range t.Domains {
		if _, ok := e.domains[strings.ToLower(d)]; ok {
			return fmt.Errorf("add tenant: domain %s is already registered", d)
		}
	}
	e.tenants[id] = &t
	for _, d := range t.Domains {
		e.domains[strings.ToLower(d)] = &t
	}
	return nil
}

// AddApp registers an app. It fails when an ID is not a GUID, a secret is
// empty, the tenant is not registered or the client ID already is.
func (e *Emulator) AddApp(a App) error {
	if err := problemsError("add app", a.problems()); err != nil {
		return err
	}
	a.Secrets = slices.Clone(a.Secrets)
	a.Certificates = slices.Clone(a.Certificates)
	a.FederatedCredentials = cloneFederated(a.FederatedCredentials)
	if a.ObjectID == "" {
		a.ObjectID = derivedObjectID(a.ClientID)
	}
	if a.DisplayName == "" {
		a.DisplayName = "app-" + a.ClientID
	}
	e.regMu.Lock()
	defer e.regMu.Unlock()
	if _, ok := e.tenants[strings.ToLower(a.TenantID)]; !ok {
		return fmt.Errorf("add app %s: tenant %s is not registered", a.ClientID, a.TenantID)
	}
	id := strings.ToLower(a.ClientID)
	if _, ok := e.apps[id]; ok {
		return fmt.Errorf("add app: %s is already registered", a.ClientID)
	}
	e.apps[id] = &a
	return nil
}

// AddResource registers a resource. It fails when a URI is malformed or
// already registered, or a client ID in Roles is not a GUID. Roles may name
// apps that are registered later.
func (e *Emulator) AddResource(r Resource) error {
	if err := problemsError("add resource", r.problems()); err != nil {
		return err
	}
	r.URIs = slices.Clone(r.URIs)
	roles := make(map[string][]string, len(r.Roles))
	for id, rs := range r.Roles {
		roles[strings.ToLower(id)] = slices.Clone(rs)
	}
	r.Roles = roles
	e.regMu.Lock()
	defer e.regMu.Unlock()
	for _, u := range r.URIs {
		if _, ok := e.resources[strings.ToLower(u)]; ok {
			return fmt.Errorf("add resource: %s is already registered", u)
		}
	}
	for _, u := range r.URIs {
		e.resources[strings.ToLower(u)] = &r
	}
	return nil
}

// ErrNotRegistered is returned (wrapped) by the methods that change a
// registration that does not exist.
var ErrNotRegistered = errors.New("not registered")

// SetSecrets replaces the secrets of a registered app, e.g. to rotate one.
func (e *Emulator) SetSecrets(clientID string, secrets ...Secret) error {
	return e.updateApp("set secrets", clientID, func(a *App) { a.Secrets = slices.Clone(secrets) })
}

// SetCertificates replaces the certificates registered on an app (their
// public parts), e.g. to add a renewed certificate beside the old one. It
// fails when a certificate is nil or has no RSA key.
func (e *Emulator) SetCertificates(clientID string, certs ...*x509.Certificate) error {
	if err := problemsError("set certificates", certificateProblems(certs)); err != nil {
		return err
	}
	return e.updateApp("set certificates", clientID, func(a *App) { a.Certificates = slices.Clone(certs) })
}

// SetFederatedCredentials replaces the federated identity credentials of an
// app. It fails when one has no issuer URL or no subject.
func (e *Emulator) SetFederatedCredentials(clientID string, creds ...FederatedCredential) error {
	var ps []problem
	for i, f := range creds {
		for _, p := range f.problems() {
			ps = append(ps, problem{append([]any{i}, p.path...), p.msg})
		}
	}
	if err := problemsError("set federated credentials", ps); err != nil {
		return err
	}
	return e.updateApp("set federated credentials", clientID, func(a *App) { a.FederatedCredentials = cloneFederated(creds) })
}

// cloneFederated copies federated credentials deeply enough that the caller
// may change its slices afterwards.
func cloneFederated(creds []FederatedCredential) []FederatedCredential {
	out := slices.Clone(creds)
	for i := range out {
		out[i].Audiences = slices.Clone(out[i].Audiences)
		out[i].Keys = slices.Clone(out[i].Keys)
	}
	return out
}

// SetEnabled turns a registered app's service principal on or off.
func (e *Emulator) SetEnabled(clientID string, enabled bool) error {
	return e.updateApp("set enabled", clientID, func(a *App) { a.Disabled = !enabled })
}

// Grant sets the app roles that clientID holds on the resource named by uri
// (any of its URIs), replacing earlier grants; no roles removes them.
func (e *Emulator) Grant(clientID, uri string, roles ...string) error {
	e.regMu.Lock()
	defer e.regMu.Unlock()
	r, ok := e.resources[strings.ToLower(uri)]
	if !ok {
		return fmt.Errorf("grant: resource %s: %w", uri, ErrNotRegistered)
	}
	// Copy on write: token requests read r.Roles under the read lock.
	m := make(map[string][]string, len(r.Roles)+1)
	for k, v := range r.Roles {
		m[k] = v
	}
	if len(roles) == 0 {
		delete(m, strings.ToLower(clientID))
	} else {
		m[strings.ToLower(clientID)] = slices.Clone(roles)
	}
	r.Roles = m
	return nil
}

func (e *Emulator) updateApp(op, clientID string, f func(*App)) error {
	e.regMu.Lock()
	defer e.regMu.Unlock()
	a, ok := e.apps[strings.ToLower(clientID)]
	if !ok {
		return fmt.Errorf("%s: app %s: %w", op, clientID, ErrNotRegistered)
	}
	c := *a // copy on write, see lookupApp
	f(&c)
	e.apps[strings.ToLower(clientID)] = &c
	return nil
}

// lookupTenant finds a tenant by ID or domain.
func (e *Emulator) lookupTenant(s string) (Tenant, bool) {
	e.regMu.RLock()
	defer e.regMu.RUnlock()
	k := strings.ToLower(s)
	if t, ok := e.tenants[k]; ok {
		return *t, true
	}
	if t, ok := e.domains[k]; ok {
		return *t, true
	}
	return Tenant{}, false
}

// lookupApp returns a copy of the app; registered *App values are never
// changed in place, so the copy is consistent.
func (e *Emulator) lookupApp(clientID string) (App, bool) {
	e.regMu.RLock()
	defer e.regMu.RUnlock()
	a, ok := e.apps[strings.ToLower(clientID)]
	if !ok {
		return App{}, false
	}
	return *a, true
}

// lookupResource returns the registered spelling of id and the roles
// clientID holds on it.
func (e *Emulator) lookupResource(id, clientID string) (aud string, roles []string, ok bool) {
	e.regMu.RLock()
	defer e.regMu.RUnlock()
	r, ok := e.resources[strings.ToLower(id)]
	if !ok {
		return "", nil, false
	}
	for _, u := range r.URIs {
		if strings.EqualFold(u, id) {
			aud = u
			break
		}
	}
	return aud, slices.Clone(r.Roles[strings.ToLower(clientID)]), true
}

// derivedObjectID makes a stable GUID for an app's service principal from its
// client ID (a name-based, version-5 style GUID).
func derivedObjectID(clientID string) string {
	sum := sha1.Sum([]byte("service-principal:" + strings.ToLower(clientID)))
	var b [16]byte
	copy(b[:], sum[:16])
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return formatGUID(b)
}

func (t Tenant) displayName() string {
	if t.Name != "" {
		return t.Name
	}
	return t.ID
}
