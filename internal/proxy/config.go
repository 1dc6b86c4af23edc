package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// routesFile is the YAML file LoadRoutes reads:
//
//	routes:
//	  - name: kusto
//	    upstream: https://help.kusto.windows.net
//	    scope: https://help.kusto.windows.net/.default
type routesFile struct {
	Routes []routeEntry `yaml:"routes"`
}

// routeEntry keeps each value as a node so that errors can name its line.
type routeEntry struct {
	Name     yaml.Node `yaml:"name"`
	Upstream yaml.Node `yaml:"upstream"`
	Scope    yaml.Node `yaml:"scope"`
	Kind     yaml.Node `yaml:"kind"`
}

// LoadRoutes reads custom routes from the YAML file at path, a top-level
// "routes" list of name, upstream, scope and, for a Logs Ingestion endpoint,
// kind: ingestion:
//
//	routes:
//	  - name: kusto
//	    upstream: https://help.kusto.windows.net
//	    scope: https://help.kusto.windows.net/.default
//	  - name: ingestion-eu
//	    upstream: https://my-dce-abcd.westeurope-1.ingest.monitor.azure.com
//	    scope: https://monitor.azure.com/.default
//	    kind: ingestion
//
// Unknown keys, missing or bad values, duplicate names and a file
// without routes are errors; every problem is reported at once, each as
// "load routes: <path>:<line>: <what is wrong>". The routes are checked as
// New checks them; duplicates against the built-in routes are found by New.
func LoadRoutes(path string) ([]Route, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load routes: %w", err)
	}
	return parseRoutes(path, data)
}

func parseRoutes(path string, data []byte) ([]Route, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f routesFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("load routes: %s: no routes defined", path)
		}
		return nil, yamlError(path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("load routes: %s: holds more than one YAML document", path)
	}
	if len(f.Routes) == 0 {
		return nil, fmt.Errorf("load routes: %s: no routes defined", path)
	}
	lines := entryLines(data)

	var errs []error
	fail := func(line int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("load routes: %s:%d: %s", path, line, fmt.Sprintf(format, args...)))
	}
	seen := make(map[string]int, len(f.Routes))
	routes := make([]Route, 0, len(f.Routes))
	for i, e := range f.Routes {
		line := 0
		if i < len(lines) {
			line = lines[i]
		}
		at := func(n *yaml.Node) int {
			if n.Line > 0 {
				return n.Line
			}
			return line
		}
		var r Route
		name, ok := scalar(&e.Name)
		label := "route " + strconv.Itoa(i+1)
		switch {
		case !ok:
			fail(at(&e.Name), "%s: name must be a string", label)
		default:
			if err := validName(name); err != nil {
				fail(at(&e.Name), "%s: %v", label, err)
				break
			}
			label = "route " + strconv.Quote(name)
			if prev, dup := seen[name]; dup {
				fail(at(&e.Name), "%s: name is already used on line %d", label, prev)
				break
			}
			seen[name] = at(&e.Name)
			r.Name = name
		}
		if up, ok := scalar(&e.Upstream); !ok {
			fail(at(&e.Upstream), "%s: upstream must be a string", label)
		} else if up == "" {
			fail(at(&e.Upstream), "%s: upstream is required", label)
		} else if u, err := url.Parse(up); err != nil {
			fail(at(&e.Upstream), "%s: upstream is not a valid URL", label)
		} else if err := validUpstream(u); err != nil {
			fail(at(&e.Upstream), "%s: %v", label, err)
		} else {
			r.Upstream = u
		}
		if sc, ok := scalar(&e.Scope); !ok {
			fail(at(&e.Scope), "%s: scope must be a string", label)
		} else if err := validScope(sc); err != nil {
			fail(at(&e.Scope), "%s: %v", label, err)
		} else {
			r.Scope = sc
		}
		if k, ok := scalar(&e.Kind); !ok || k != "" && k != KindIngestion {
			fail(at(&e.Kind), "%s: kind must be %q (a Logs Ingestion endpoint) or left out", label, KindIngestion)
		} else {
			r.Kind = k
		}
		routes = append(routes, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return routes, nil
}

// scalar returns a node's string value; a missing or null node is "", and
// ok is false only for a node that is not a scalar (a list or a mapping).
func scalar(n *yaml.Node) (string, bool) {
	switch {
	case n.Kind == 0 || n.Tag == "!!null":
		return "", true
	case n.Kind == yaml.ScalarNode:
		return n.Value, true
	default:
		return "", false
	}
}

// entryLines returns the line of each item of the top-level "routes" list.
func entryLines(data []byte) []int {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return nil
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != "routes" {
			continue
		}
		var lines []int
		for _, item := range m.Content[i+1].Content {
			lines = append(lines, item.Line)
		}
		return lines
	}
	return nil
}

var (
	yamlLineRe     = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	typeErrLineRe  = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownFieldRe = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
)

// yamlError rewrites a YAML decoding error as "load routes: <path>:<line>:
// <what>", one line per problem.
func yamlError(path string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		errs := make([]error, 0, len(te.Errors))
		for _, msg := range te.Errors {
			line, what := "", msg
			if m := typeErrLineRe.FindStringSubmatch(msg); m != nil {
				line, what = m[1], m[2]
			}
			if m := unknownFieldRe.FindStringSubmatch(what); m != nil {
				what = "unknown key " + strconv.Quote(m[1]) + " (known keys: routes; name, upstream, scope, kind)"
			} else {
				what = strings.ReplaceAll(what, "proxy.routesFile", "the routes file")
				what = strings.ReplaceAll(what, "proxy.routeEntry", "a route")
			}
			if line == "" {
				errs = append(errs, fmt.Errorf("load routes: %s: %s", path, what))
			} else {
				errs = append(errs, fmt.Errorf("load routes: %s:%s: %s", path, line, what))
			}
		}
		return errors.Join(errs...)
	}
	if m := yamlLineRe.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("load routes: %s:%s: %s", path, m[1], m[2])
	}
	return fmt.Errorf("load routes: %s: %w", path, err)
}
