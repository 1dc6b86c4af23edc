package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/entrabroker/broker/internal/yamlfile"
)

// fileDoc is the configuration file. Each value is kept as a node so that
// errors can name its line.
type fileDoc struct {
	Identities []identityEntry `yaml:"identities"`
	// Callers is nil when the file has no callers: key (every local caller
	// may use everything).
	Callers *[]callerEntry `yaml:"callers"`
	// LogLevel, when set, overrides BROKER_LOG_LEVEL: the file is re-read
	// at a reload, the environment is not.
	LogLevel yaml.Node `yaml:"log_level"`
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
// reported at once, as Problems whose text starts "<file>:<line>: ".
// On error c.Identities holds the identities that were valid.
func (c *Config) LoadFile() error {
	c.Identities = nil
	if c.ConfigFile == "" {
		return nil
	}
	data, err := yamlfile.Read(c.ConfigFile)
	if errors.Is(err, yamlfile.ErrTooLarge) {
		return Problem{"BROKER_CONFIG", fmt.Sprintf("BROKER_CONFIG: %s %v", c.ConfigFile, err), "is it the right file?"}
	}
	if err != nil {
		return Problem{Setting: "BROKER_CONFIG", Problem: "BROKER_CONFIG: cannot read the configuration file: " + err.Error()}
	}
	parsed, err := parseFile(c.ConfigFile, data, systemUsers)
	c.Identities, c.Callers = parsed.identities, parsed.callers
	if parsed.logLevel != "" {
		c.LogLevel = parsed.logLevel
	}
	return err
}

// ParseIdentities parses the content of a configuration file named path (see
// LoadFile) and returns its valid identities and every problem, as Problems.
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
	logLevel   string // "" when the file names none
}

// parseFile parses the content of the configuration file path, resolving
// the callers' user and group names with db.
func parseFile(path string, data []byte, db userDB) (file, error) {
	p := &fileParser{path: path, dir: filepath.Dir(path)}
	var f file
	var doc fileDoc
	problems, ok := yamlfile.Decode(data, &doc, yamlWords)
	switch {
	case !ok && len(problems) == 0:
		p.fail(0, `list the identities under "identities:"`, "the file is empty")
		return file{}, p.err()
	case !ok:
		p.fail(problems[0].Line, "fix the YAML syntax", "%s", problems[0].What)
		return file{}, p.err()
	}
	for _, pr := range problems {
		p.fail(pr.Line, "", "%s", pr.What)
	}
	if doc.Routes.Kind != 0 {
		p.fail(doc.Routes.Line, "put them in their own file and name it in BROKER_ROUTES_FILE", "routes do not belong here")
	}
	if present(&doc.LogLevel) {
		switch v := strings.TrimSpace(doc.LogLevel.Value); v {
		case "debug", "info", "warn", "error":
			f.logLevel = v
		default:
			p.fail(doc.LogLevel.Line, "use debug, info, warn or error", "log_level %q is not a level", v)
		}
	}
	if len(doc.Identities) == 0 && doc.Callers == nil && f.logLevel == "" && len(p.errs) == 0 {
		p.fail(0, `list them under "identities:"`, "the file names no identities")
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
				p.fail(at(u.node, line), "each identity needs its own", "%s: %s %q is already used on line %d", p.label, u.what, u.value, prev)
				continue
			}
			u.seen[u.value] = at(u.node, line)
		}
		if len(p.errs) == n {
			out = append(out, id)
		}
	}
	f.identities = out
	if doc.Callers != nil {
		names := []string{DefaultIdentity}
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
	errs      []lineProblem
}

// lineProblem is a problem on a line of the file (0: the whole file).
type lineProblem struct {
	line int
	p    Problem
}

// fail adds the problem of format and a on line, with fix.
func (p *fileParser) fail(line int, fix, format string, a ...any) {
	where := p.path
	if line > 0 {
		where += ":" + strconv.Itoa(line)
	}
	p.errs = append(p.errs, lineProblem{line, Problem{"BROKER_CONFIG", where + ": " + fmt.Sprintf(format, a...), fix}})
}

// err lists the problems in the order of their lines.
func (p *fileParser) err() error {
	slices.SortStableFunc(p.errs, func(a, b lineProblem) int { return a.line - b.line })
	ps := make(Problems, len(p.errs))
	for i, e := range p.errs {
		ps[i] = e.p
	}
	return ps.Err()
}

// yamlWords describe the decoder's findings in the configuration file's
// terms.
var yamlWords = yamlfile.Words{
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
		return fmt.Sprintf("unknown key %q (known keys: identities, callers, log_level)", key)
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

// str is the value of n, the key of an entry at line, trimmed: "" when it
// is missing or not a single value (a problem).
func (p *fileParser) str(n *yaml.Node, key string, line int) string {
	if !present(n) {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		p.fail(at(n, line), "", "%s: %s must be a single value, not a list or a mapping", p.label, key)
		return ""
	}
	return strings.TrimSpace(n.Value)
}

// present reports whether the key of n was written.
func present(n *yaml.Node) bool { return n.Kind != 0 && n.Tag != "!!null" }

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// identity parses the i-th identity (0-based) at line and checks it with
// the rules of every identity (Identity.problems), naming the line of each
// setting at fault.
func (p *fileParser) identity(i, line int, e *identityEntry) Identity {
	id := Identity{Source: p.path + ":" + strconv.Itoa(line)}
	p.label = "identity " + strconv.Itoa(i+1)
	str := func(n *yaml.Node, key string) string { return p.str(n, key, line) }

	id.Name = str(&e.Name, "name")
	switch {
	case id.Name == "" && present(&e.Name):
	case id.Name == "":
		p.fail(line, "give each identity a short name for logs and metrics, such as reports", "%s: name is missing", p.label)
	case id.Name == DefaultIdentity:
		p.fail(at(&e.Name, line), "choose another", "%s: the name \"default\" belongs to the identity from the environment (AZURE_CLIENT_ID)", p.label)
	case !nameRE.MatchString(id.Name):
		p.fail(at(&e.Name, line), "", "%s: name %q must be lower-case letters, digits, '-', '_' or '.' (at most 63), such as reports", p.label, id.Name)
	default:
		p.label = "identity " + strconv.Quote(id.Name)
	}
	id.TenantID = str(&e.TenantID, "tenant_id")
	id.ClientID = str(&e.ClientID, "client_id")
	id.ObjectID = str(&e.ObjectID, "object_id")
	id.ResourceID = str(&e.ResourceID, "resource_id")
	if present(&e.ClientSecret) {
		p.fail(at(&e.ClientSecret, line), "secrets live in files; put the secret's Value in a file (e.g. a Kubernetes secret volume) and name it in client_secret_file", "%s: an inline client_secret is refused", p.label)
		// The credential rules count it as the identity's credential;
		// the identity is refused, so the value goes nowhere.
		id.ClientSecret = "inline"
	}
	file := func(n *yaml.Node, key string) string {
		v := str(n, key)
		if v == "" && present(n) {
			p.fail(at(n, line), "name a file", "%s: %s is empty", p.label, key)
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
			p.fail(at(&e.SendCertificateChain, line), "", "%s: send_certificate_chain must be true or false", p.label)
		}
	}
	if v := str(&e.SecretExpiresOn, "secret_expires_on"); v != "" {
		t, err := ParseDate(v)
		if err != nil {
			p.fail(at(&e.SecretExpiresOn, line), dateFix, "%s: secret_expires_on %q is not a date", p.label, v)
		}
		id.SecretExpiresOn = t
	}
	id.AllowedScopes = p.scopes(&e.AllowedScopes, "allowed_scopes", line)
	id.PrefetchScopes = p.scopes(&e.PrefetchScopes, "prefetch_scopes", line)

	nodes := map[string]*yaml.Node{
		"tenant_id": &e.TenantID, "client_id": &e.ClientID, "object_id": &e.ObjectID, "resource_id": &e.ResourceID,
		"client_secret": &e.ClientSecret, "client_certificate_password_file": &e.ClientCertificatePasswordFile,
		"send_certificate_chain": &e.SendCertificateChain, "secret_expires_on": &e.SecretExpiresOn,
		"allowed_scopes": &e.AllowedScopes, "prefetch_scopes": &e.PrefetchScopes,
	}
	for _, pr := range append(id.problems(), id.scopeProblems()...) {
		l := line
		if n, ok := nodes[pr.Setting]; ok {
			l = at(n, line)
		}
		p.fail(l, pr.Fix, "%s: %s", p.label, pr.Problem)
		// A bad ID is no one's: it is not compared with the others'.
		switch pr.Setting {
		case "client_id":
			id.ClientID = ""
		case "object_id":
			id.ObjectID = ""
		case "resource_id":
			id.ResourceID = ""
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
				p.fail(at(c, line), "", "%s: %s items must be scopes such as https://api.loganalytics.io/.default", p.label, key)
				continue
			}
			if v := strings.TrimSpace(c.Value); v != "" {
				items = append(items, v)
			}
		}
	default:
		p.fail(at(n, line), "", "%s: %s must be a list of scopes, such as [https://api.loganalytics.io/.default]", p.label, key)
		return nil
	}
	return items
}
