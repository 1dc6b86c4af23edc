package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/yamlfile"
)

// Identity is an app registration named in the configuration file
// (BROKER_CONFIG), served beside the identity from the environment.
type Identity struct {
	// Name labels the identity in logs, metrics and /readyz: lower-case
	// letters, digits, '-', '_' and '.', at most 63 characters. "default" is
	// the identity from the environment's.
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

	// Exactly one of ClientSecretFile, ClientCertificatePath and
	// FederatedTokenFile is set. Relative paths in the file are resolved
	// against the file's directory.

	// ClientSecretFile holds the client secret's Value.
	ClientSecretFile string
	// ClientCertificatePath is a PEM or PKCS#12 file with the certificate and
	// its private key.
	ClientCertificatePath string
	// ClientCertificatePasswordFile, optional, holds the PKCS#12 password.
	ClientCertificatePasswordFile string
	// SendCertificateChain sends the certificate chain (x5c) with each
	// assertion.
	SendCertificateChain bool
	// FederatedTokenFile holds a federated token (workload identity).
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

	// Source is where the identity is defined, "<file>:<line>", for messages.
	Source string
}

// fileDoc is the configuration file. Each value is kept as a node so that
// errors can name its line.
type fileDoc struct {
	Identities []identityEntry `yaml:"identities"`
	// Callers is nil when the file has no callers: key (every local caller
	// may use everything).
	Callers *[]callerEntry `yaml:"callers"`
	// Routes is recognised only to say where routes belong.
	Routes yaml.Node `yaml:"routes"`
}

type identityEntry struct {
	Name                          yaml.Node `yaml:"name"`
	TenantID                      yaml.Node `yaml:"tenant_id"`
	ClientID                      yaml.Node `yaml:"client_id"`
	ObjectID                      yaml.Node `yaml:"object_id"`
	ResourceID                    yaml.Node `yaml:"resource_id"`
	ClientSecret                  yaml.Node `yaml:"client_secret"`
	ClientSecretFile              yaml.Node `yaml:"client_secret_file"`
	ClientCertificatePath         yaml.Node `yaml:"client_certificate_path"`
	ClientCertificatePasswordFile yaml.Node `yaml:"client_certificate_password_file"`
	SendCertificateChain          yaml.Node `yaml:"send_certificate_chain"`
	FederatedTokenFile            yaml.Node `yaml:"federated_token_file"`
	SecretExpiresOn               yaml.Node `yaml:"secret_expires_on"`
	AllowedScopes                 yaml.Node `yaml:"allowed_scopes"`
	PrefetchScopes                yaml.Node `yaml:"prefetch_scopes"`
}

// identityKeys are the keys of an identity, in the order of the
// documentation.
const identityKeys = "name, tenant_id, client_id, object_id, resource_id, client_secret_file, client_certificate_path, client_certificate_password_file, send_certificate_chain, federated_token_file, secret_expires_on, allowed_scopes, prefetch_scopes"

// maxConfigFile bounds the configuration file.
const maxConfigFile = 1 << 20

// LoadFile reads the identities of c.ConfigFile (BROKER_CONFIG) into
// c.Identities; nothing when ConfigFile is empty. The file is YAML:
//
//	identities:
//	  - name: reports
//	    tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
//	    client_id: 4f6b1c2e-93a7-4d58-b1e0-7c2d9a3f5e81
//	    client_secret_file: /run/secrets/reports
//	    secret_expires_on: 2027-05-01
//	    allowed_scopes: [https://api.loganalytics.io/.default]
//	    prefetch_scopes: [https://api.loganalytics.io/.default]
//
// Unknown keys, values of the wrong type, missing or bad values, duplicate
// names or IDs and an inline client_secret are errors; every problem is
// reported at once, each as "<file>:<line>: <what is wrong and what to do>".
// On error c.Identities holds the identities that were valid.
func (c *Config) LoadFile() error {
	c.Identities = nil
	if c.ConfigFile == "" {
		return nil
	}
	f, err := os.Open(c.ConfigFile)
	if err != nil {
		return fmt.Errorf("BROKER_CONFIG: cannot read the configuration file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return fmt.Errorf("BROKER_CONFIG: cannot read the configuration file: %w", err)
	}
	if len(data) > maxConfigFile {
		return fmt.Errorf("BROKER_CONFIG: %s is larger than %d bytes: is it the right file?", c.ConfigFile, maxConfigFile)
	}
	parsed, err := parseFile(c.ConfigFile, data, systemUsers)
	c.Identities, c.Callers = parsed.identities, parsed.callers
	return err
}

// ParseIdentities parses the content of a configuration file named path (see
// LoadFile) and returns its valid identities and every problem, joined.
// Relative paths in it are resolved against path's directory.
func ParseIdentities(path string, data []byte) ([]Identity, error) {
	f, err := parseFile(path, data, systemUsers)
	return f.identities, err
}

// file is what a configuration file gives: its valid identities and caller
// rules (nil: no callers: key).
type file struct {
	identities []Identity
	callers    []CallerRule
}

// parseFile parses the content of the configuration file path, resolving
// the callers' user and group names with db.
func parseFile(path string, data []byte, db userDB) (file, error) {
	p := &fileParser{path: path, dir: filepath.Dir(path)}
	var doc fileDoc
	problems, err := yamlfile.Decode(data, &doc, fileWords)
	var se *yamlfile.SyntaxError
	switch {
	case errors.Is(err, io.EOF):
		return file{}, fmt.Errorf("%s: the file is empty: list the identities under \"identities:\"", path)
	case errors.As(err, &se):
		p.fail(se.Line, "%s: fix the YAML syntax", se.What)
		return file{}, p.err()
	}
	for _, pr := range problems {
		p.fail(pr.Line, "%s", pr.What)
	}
	if doc.Routes.Kind != 0 {
		p.fail(doc.Routes.Line, "routes do not belong here: put them in their own file and name it in BROKER_ROUTES_FILE")
	}
	if len(doc.Identities) == 0 && doc.Callers == nil && len(p.errs) == 0 {
		p.fail(0, "the file names no identities: list them under \"identities:\"")
	}
	lines := yamlfile.ItemLines(data, "identities")
	var out []Identity
	names, clients, objects, resources := map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}
	for i, e := range doc.Identities {
		line := 0
		if i < len(lines) {
			line = lines[i]
		}
		n := len(p.errs)
		id := p.identity(i, line, &e)
		for _, u := range []struct {
			seen  map[string]int
			what  string
			value string
			node  *yaml.Node
		}{
			{names, "name", id.Name, &e.Name},
			{clients, "client_id", strings.ToLower(id.ClientID), &e.ClientID},
			{objects, "object_id", strings.ToLower(id.ObjectID), &e.ObjectID},
			{resources, "resource_id", strings.ToLower(id.ResourceID), &e.ResourceID},
		} {
			if u.value == "" {
				continue
			}
			if prev, dup := u.seen[u.value]; dup {
				p.fail(at(u.node, line), "%s: %s %q is already used on line %d: each identity needs its own", p.label, u.what, u.value, prev)
				continue
			}
			u.seen[u.value] = at(u.node, line)
		}
		if len(p.errs) == n {
			out = append(out, id)
		}
	}
	f := file{identities: out}
	if doc.Callers != nil {
		names := []string{"default"}
		for _, id := range out {
			names = append(names, id.Name)
		}
		f.callers = p.callers(*doc.Callers, yamlfile.ItemLines(data, "callers"), names, db)
		if f.callers == nil {
			f.callers = []CallerRule{}
		}
	}
	return f, p.err()
}

// fileParser collects the problems of one file.
type fileParser struct {
	path, dir string
	label     string // the identity being parsed, for messages
	errs      []lineError
}

// lineError is a problem on a line of the file (0: the whole file).
type lineError struct {
	line int
	err  error
}

func (p *fileParser) fail(line int, format string, a ...any) {
	where := p.path
	if line > 0 {
		where += ":" + strconv.Itoa(line)
	}
	p.errs = append(p.errs, lineError{line, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, a...))})
}

// err joins the problems in the order of their lines.
func (p *fileParser) err() error {
	slices.SortStableFunc(p.errs, func(a, b lineError) int { return a.line - b.line })
	errs := make([]error, len(p.errs))
	for i, e := range p.errs {
		errs[i] = e.err
	}
	return errors.Join(errs...)
}

// fileWords describe the decoder's findings in the configuration file's
// terms.
var fileWords = yamlfile.Words{
	Unknown: func(key, typ string) string {
		switch {
		case typ == "identityEntry" && (key == "tenant" || key == "client"):
			return fmt.Sprintf("unknown key %q of an identity: did you mean %s_id? (known keys: %s)", key, key, identityKeys)
		case typ == "identityEntry":
			return fmt.Sprintf("unknown key %q of an identity (known keys: %s)", key, identityKeys)
		case typ == "callerEntry":
			return fmt.Sprintf("unknown key %q of a caller rule (known keys: %s)", key, callerKeys)
		case typ == "matchEntry":
			return fmt.Sprintf("unknown key %q of a caller rule's match (known keys: %s)", key, matchKeys)
		case typ == "rateEntry":
			return fmt.Sprintf("unknown key %q of a caller rule's rate (known keys: %s)", key, rateKeys)
		}
		return fmt.Sprintf("unknown key %q (known keys: identities, callers)", key)
	},
	Types: strings.NewReplacer(
		"[]config.identityEntry", "a list of identities",
		"config.identityEntry", "an identity (a mapping of keys to values)",
		"[]config.callerEntry", "a list of caller rules",
		"config.callerEntry", "a caller rule (a mapping of keys to values)",
		"config.matchEntry", "a match (a mapping such as {user: svc-reports})",
		"config.rateEntry", "a rate (a mapping such as {per_second: 10, burst: 20})",
		"config.fileDoc", "the configuration (a mapping with the keys identities and callers)",
	),
}

// at is the line of n, or line when n is missing.
func at(n *yaml.Node, line int) int {
	if n.Line > 0 {
		return n.Line
	}
	return line
}

// present reports whether the key of n was written.
func present(n *yaml.Node) bool { return n.Kind != 0 && n.Tag != "!!null" }

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// identity parses and checks the i-th identity (0-based) at line.
func (p *fileParser) identity(i, line int, e *identityEntry) Identity {
	id := Identity{Source: p.path + ":" + strconv.Itoa(line)}
	p.label = "identity " + strconv.Itoa(i+1)
	str := func(n *yaml.Node, key string) string {
		if !present(n) {
			return ""
		}
		if n.Kind != yaml.ScalarNode {
			p.fail(at(n, line), "%s: %s must be a single value, not a list or a mapping", p.label, key)
			return ""
		}
		return strings.TrimSpace(n.Value)
	}

	id.Name = str(&e.Name, "name")
	switch {
	case id.Name == "" && present(&e.Name):
	case id.Name == "":
		p.fail(line, "%s: name is missing: give each identity a short name for logs and metrics, such as reports", p.label)
	case id.Name == "default":
		p.fail(at(&e.Name, line), "%s: the name \"default\" belongs to the identity from the environment (AZURE_CLIENT_ID): choose another", p.label)
	case !nameRE.MatchString(id.Name):
		p.fail(at(&e.Name, line), "%s: name %q must be lower-case letters, digits, '-', '_' or '.' (at most 63), such as reports", p.label, id.Name)
	default:
		p.label = "identity " + strconv.Quote(id.Name)
	}

	id.TenantID = str(&e.TenantID, "tenant_id")
	switch t := id.TenantID; {
	case t == "" && !present(&e.TenantID):
		p.fail(line, "%s: tenant_id is missing: use the Directory (tenant) ID from the app registration's Overview page", p.label)
	case t == "common" || t == "organizations" || t == "consumers":
		p.fail(at(&e.TenantID, line), "%s: tenant_id is %q: the client-credentials grant needs your own tenant; use the Directory (tenant) ID from the app's Overview page", p.label, t)
	case t != "" && !azure.IsGUID(t) && !domainRE.MatchString(t):
		p.fail(at(&e.TenantID, line), "%s: tenant_id %q is neither a GUID nor a domain name: use the Directory (tenant) ID from the app registration's Overview page", p.label, t)
	case azure.IsPlaceholderGUID(t):
		p.fail(at(&e.TenantID, line), "%s: tenant_id %q is a placeholder: %s", p.label, t, replaceTenant)
	}

	id.ClientID = str(&e.ClientID, "client_id")
	switch {
	case id.ClientID == "" && !present(&e.ClientID):
		p.fail(line, "%s: client_id is missing: use the Application (client) ID from the app registration's Overview page", p.label)
	case id.ClientID != "" && !azure.IsGUID(id.ClientID):
		p.fail(at(&e.ClientID, line), "%s: client_id %q is not a GUID: use the Application (client) ID from the app registration's Overview page (not its display name)", p.label, id.ClientID)
		id.ClientID = ""
	case azure.IsPlaceholderGUID(id.ClientID):
		p.fail(at(&e.ClientID, line), "%s: client_id %q is a placeholder: %s", p.label, id.ClientID, replaceClient)
	}

	id.ObjectID = str(&e.ObjectID, "object_id")
	if id.ObjectID != "" && !azure.IsGUID(id.ObjectID) {
		p.fail(at(&e.ObjectID, line), "%s: object_id %q is not a GUID: use the Object ID of the app's service principal (Enterprise applications → the app → Overview)", p.label, id.ObjectID)
		id.ObjectID = ""
	}
	id.ResourceID = str(&e.ResourceID, "resource_id")
	if id.ResourceID != "" && (!strings.HasPrefix(strings.ToLower(id.ResourceID), "/subscriptions/") || strings.ContainsAny(id.ResourceID, " \t")) {
		p.fail(at(&e.ResourceID, line), "%s: resource_id %q is not an Azure resource ID: write it like /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>", p.label, id.ResourceID)
		id.ResourceID = ""
	}

	if present(&e.ClientSecret) {
		p.fail(at(&e.ClientSecret, line), "%s: an inline client_secret is refused: secrets live in files; put the secret's Value in a file (e.g. a Kubernetes secret volume) and name it in client_secret_file", p.label)
	}
	file := func(n *yaml.Node, key string) string {
		v := str(n, key)
		if v == "" && present(n) {
			p.fail(at(n, line), "%s: %s is empty: name a file", p.label, key)
		}
		if v != "" && !filepath.IsAbs(v) {
			v = filepath.Join(p.dir, v)
		}
		return v
	}
	id.ClientSecretFile = file(&e.ClientSecretFile, "client_secret_file")
	id.ClientCertificatePath = file(&e.ClientCertificatePath, "client_certificate_path")
	id.ClientCertificatePasswordFile = file(&e.ClientCertificatePasswordFile, "client_certificate_password_file")
	id.FederatedTokenFile = file(&e.FederatedTokenFile, "federated_token_file")
	if present(&e.SendCertificateChain) {
		if err := e.SendCertificateChain.Decode(&id.SendCertificateChain); err != nil || e.SendCertificateChain.Kind != yaml.ScalarNode {
			p.fail(at(&e.SendCertificateChain, line), "%s: send_certificate_chain must be true or false", p.label)
		}
	}
	if v := str(&e.SecretExpiresOn, "secret_expires_on"); v != "" {
		t, err := ParseDate(v)
		if err != nil {
			p.fail(at(&e.SecretExpiresOn, line), "%s: secret_expires_on %q %v", p.label, v, err)
		}
		id.SecretExpiresOn = t
	}

	var creds []string
	for _, c := range []struct{ key, v string }{
		{"client_secret_file", id.ClientSecretFile},
		{"client_certificate_path", id.ClientCertificatePath},
		{"federated_token_file", id.FederatedTokenFile},
	} {
		if c.v != "" {
			creds = append(creds, c.key)
		}
	}
	switch {
	case len(creds) == 0 && !present(&e.ClientSecret):
		p.fail(line, "%s: no credential: set one of client_secret_file, client_certificate_path or federated_token_file", p.label)
	case len(creds) > 1:
		p.fail(line, "%s: %s, but an identity uses exactly one credential: keep one", p.label, areSet(creds))
	}
	if id.ClientCertificatePath == "" {
		if id.ClientCertificatePasswordFile != "" {
			p.fail(at(&e.ClientCertificatePasswordFile, line), "%s: client_certificate_password_file is set without client_certificate_path: drop it, or name the PKCS#12 file", p.label)
		}
		if id.SendCertificateChain {
			p.fail(at(&e.SendCertificateChain, line), "%s: send_certificate_chain is set without client_certificate_path: the chain is sent only with a certificate", p.label)
		}
	}
	if !id.SecretExpiresOn.IsZero() && id.ClientSecretFile == "" {
		p.fail(at(&e.SecretExpiresOn, line), "%s: secret_expires_on describes a client secret, but the identity has none (a certificate's expiry is read from the certificate): drop it", p.label)
	}

	id.AllowedScopes = p.scopes(&e.AllowedScopes, "allowed_scopes", line)
	id.PrefetchScopes = p.scopes(&e.PrefetchScopes, "prefetch_scopes", line)
	if len(id.AllowedScopes) > 0 {
		for _, s := range id.PrefetchScopes {
			if !slices.Contains(id.AllowedScopes, s) && !slices.Contains(id.AllowedScopes, strings.TrimSuffix(s, "/.default")) {
				p.fail(at(&e.PrefetchScopes, line), "%s: prefetch_scopes item %q is not in allowed_scopes: add it there, or drop it from prefetch_scopes", p.label, s)
			}
		}
	}
	return id
}

// scopes parses a list of scopes: a YAML list, or one comma-separated value.
func (p *fileParser) scopes(n *yaml.Node, key string, line int) []string {
	var items []string
	switch {
	case !present(n):
		return nil
	case n.Kind == yaml.ScalarNode:
		items = SplitList(n.Value)
	case n.Kind == yaml.SequenceNode:
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				p.fail(at(c, line), "%s: %s items must be scopes such as https://api.loganalytics.io/.default", p.label, key)
				continue
			}
			if v := strings.TrimSpace(c.Value); v != "" {
				items = append(items, v)
			}
		}
	default:
		p.fail(at(n, line), "%s: %s must be a list of scopes, such as [https://api.loganalytics.io/.default]", p.label, key)
		return nil
	}
	for _, s := range items {
		if !scopeLike(s) {
			p.fail(at(n, line), "%s: %s item %q is not a scope or resource URI: write items like https://api.loganalytics.io/.default", p.label, key, s)
		}
	}
	return items
}

// scopeLike is the shallow check of a configured scope; the broker
// normalizes it when it starts.
func scopeLike(s string) bool {
	return !strings.ContainsAny(s, " \t") && strings.Contains(s, "://")
}

// identitiesProblems checks the identities of the file against the
// environment's and, when files is set, that their credential files can be
// read.
func (c Config) identitiesProblems(files bool) []error {
	var errs []error
	for _, id := range c.Identities {
		if c.ClientID != "" && strings.EqualFold(id.ClientID, c.ClientID) {
			errs = append(errs, fmt.Errorf("%s: identity %q has the client_id of AZURE_CLIENT_ID: each app registration is served once; drop one of them", id.Source, id.Name))
		}
		if !files {
			continue
		}
		for _, f := range id.files() {
			if err := checkReadable(f); err != nil {
				errs = append(errs, fmt.Errorf("%s: identity %q: %s %q %w", id.Source, id.Name, f.setting, f.path, err))
			}
		}
	}
	return errs
}
