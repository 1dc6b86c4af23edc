package emulator

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the emulator's registration file, for the binary. Example:
//
//	token_lifetime: 1h          # optional; the emulator's default lifetime
//	demo: true                  # also register the demo tenant, app and resources
//	tenants:
//	  - id: 6f1c2a9e-0000-4000-8000-000000000001
//	    name: Contoso
//	    domains: [contoso.onmicrosoft.com]
//	apps:
//	  - tenant: 6f1c2a9e-0000-4000-8000-000000000001
//	    client_id: 6f1c2a9e-0000-4000-8000-000000000002
//	    display_name: reporting
//	    secrets:
//	      - value: s3cr3t
//	        expires_on: 2030-01-01T00:00:00Z
//	    certificates:           # public parts, PEM
//	      - |
//	        -----BEGIN CERTIFICATE-----
//	        MIIC…
//	        -----END CERTIFICATE-----
//	    federated_credentials:
//	      - name: aks
//	        issuer: https://oidc.example/6f1c2a9e/
//	        subject: system:serviceaccount:default:reporting
//	        audiences: [api://AzureADTokenExchange]   # the default
//	        keys: |             # optional: verify signatures (PUBLIC KEY or CERTIFICATE PEM)
//	          -----BEGIN PUBLIC KEY-----
//	          …
//	resources:
//	  - uris: [https://api.loganalytics.io]
//	    roles:
//	      6f1c2a9e-0000-4000-8000-000000000002: [Data.Read]
//
// Keys are those of Tenant, App (with disabled and token_lifetime) and
// Resource. Unknown keys are errors.
type Config struct {
	// TokenLifetime is for Options.TokenLifetime; zero means the default.
	TokenLifetime time.Duration `yaml:"token_lifetime"`
	// Demo asks Register to add the demo registration too.
	Demo      bool       `yaml:"demo"`
	Tenants   []Tenant   `yaml:"tenants"`
	Apps      []App      `yaml:"apps"`
	Resources []Resource `yaml:"resources"`
}

// LoadConfig reads and checks a registration file (see Config).
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("load emulator config: %w", err)
	}
	return ParseConfig(data, path)
}

// yamlLineRE finds the "line N: " yaml puts in front of each decoding error.
var yamlLineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// ParseConfig decodes and checks a registration file's content; name (the
// file's path) prefixes every message. Each problem becomes one line of the
// error, "name:line: where: what", and all of them are reported at once.
func ParseConfig(data []byte, name string) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return Config{}, fmt.Errorf("%s: %w", name, err)
		}
		errs := make([]error, len(te.Errors))
		for i, m := range te.Errors {
			if g := yamlLineRE.FindStringSubmatch(m); g != nil {
				errs[i] = fmt.Errorf("%s:%s: %s", name, g[1], g[2])
			} else {
				errs[i] = fmt.Errorf("%s: %s", name, m)
			}
		}
		return Config{}, errors.Join(errs...)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root) // it decoded above, so it parses
	ps := c.problems()
	lines := make([]int, len(ps))
	for i, p := range ps {
		lines[i] = lineOf(&root, p.path)
	}
	order := make([]int, len(ps))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return lines[a] - lines[b] })
	var errs []error
	for _, i := range order {
		errs = append(errs, fmt.Errorf("%s:%d: %s", name, lines[i], ps[i]))
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

// problems checks every registration and how they refer to each other.
func (c Config) problems() []problem {
	var ps []problem
	add := func(prefix []any, p problem) {
		ps = append(ps, problem{append(slices.Clone(prefix), p.path...), p.msg})
	}
	if c.TokenLifetime < 0 {
		add(nil, problem{[]any{"token_lifetime"}, fmt.Sprintf("%s is negative", c.TokenLifetime)})
	}
	// Where each ID, domain and URI was first registered, by lower case.
	tenants, domains, apps, uris := map[string]string{}, map[string]string{}, map[string]string{}, map[string]string{}
	if c.Demo {
		const demo = "demo: true"
		tenants[DemoTenantID], domains[DemoTenantDomain], apps[DemoClientID] = demo, demo, demo
		for _, d := range DemoResources {
			for _, u := range append([]string{d.URI}, d.Aliases...) {
				uris[strings.ToLower(u)], uris[strings.ToLower(u)+"/"] = demo, demo
			}
		}
	}
	// once records key in seen, or reports that it is there already.
	once := func(seen map[string]string, prefix []any, path []any, key string) {
		at := pathString(append(slices.Clone(prefix), path...))
		if first, ok := seen[strings.ToLower(key)]; ok {
			add(prefix, problem{path, fmt.Sprintf("%s is registered twice (first by %s)", key, first)})
			return
		}
		seen[strings.ToLower(key)] = at
	}
	for i, t := range c.Tenants {
		prefix := []any{"tenants", i}
		for _, p := range t.problems() {
			add(prefix, p)
		}
		once(tenants, prefix, []any{"id"}, t.ID)
		for j, d := range t.Domains {
			once(domains, prefix, []any{"domains", j}, d)
		}
	}
	for i, a := range c.Apps {
		prefix := []any{"apps", i}
		for _, p := range a.problems() {
			add(prefix, p)
		}
		if _, ok := tenants[strings.ToLower(a.TenantID)]; isGUID(a.TenantID) && !ok {
			add(prefix, problem{[]any{"tenant"}, fmt.Sprintf("%s is not a tenant of this file", a.TenantID)})
		}
		once(apps, prefix, []any{"client_id"}, a.ClientID)
	}
	for i, r := range c.Resources {
		prefix := []any{"resources", i}
		for _, p := range r.problems() {
			add(prefix, p)
		}
		for j, u := range r.URIs {
			once(uris, prefix, []any{"uris", j}, u)
		}
		for _, id := range slices.Sorted(maps.Keys(r.Roles)) {
			if _, ok := apps[strings.ToLower(id)]; isGUID(id) && !ok {
				add(prefix, problem{[]any{"roles", id}, "no app of this file has this client ID"})
			}
		}
	}
	return ps
}

// lineOf returns the line of the entry at path (string keys, int indexes) in
// a YAML document: the key's line for a key, the item's for an index. When
// the path goes further than the document (a missing key), it returns the
// line of the deepest entry on the way.
func lineOf(root *yaml.Node, path []any) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, k := range path {
		found := false
		switch k := k.(type) {
		case int:
			if n.Kind == yaml.SequenceNode && k < len(n.Content) {
				n, line, found = n.Content[k], n.Content[k].Line, true
			}
		case string:
			for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					n, line, found = n.Content[i+1], n.Content[i].Line, true
					break
				}
			}
		}
		if !found {
			break
		}
	}
	return line
}

// Register adds everything c names: the demo registration when c.Demo, then
// tenants, apps and resources. It stops at the first failure.
func (e *Emulator) Register(c Config) error {
	if c.Demo {
		if err := e.AddDemo(); err != nil {
			return fmt.Errorf("register: %w", err)
		}
	}
	for _, t := range c.Tenants {
		if err := e.AddTenant(t); err != nil {
			return fmt.Errorf("register: %w", err)
		}
	}
	for _, a := range c.Apps {
		if err := e.AddApp(a); err != nil {
			return fmt.Errorf("register: %w", err)
		}
	}
	for _, r := range c.Resources {
		if err := e.AddResource(r); err != nil {
			return fmt.Errorf("register: %w", err)
		}
	}
	return nil
}
