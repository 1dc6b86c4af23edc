package proxy

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/entrabroker/broker/internal/yamlfile"
)

// routesFile is the YAML file LoadRoutes reads.
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
// New checks them. An entry named like a built-in route replaces it (see
// Routes).
func LoadRoutes(path string) ([]Route, error) {
	data, err := yamlfile.Read(path)
	if errors.Is(err, yamlfile.ErrTooLarge) {
		return nil, fmt.Errorf("load routes: %s %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("load routes: %w", err)
	}
	return parseRoutes(path, data)
}

func parseRoutes(path string, data []byte) ([]Route, error) {
	var errs []error
	fail := func(line int, format string, args ...any) {
		where := path
		if line > 0 {
			where += ":" + strconv.Itoa(line)
		}
		errs = append(errs, fmt.Errorf("load routes: %s: %s", where, fmt.Sprintf(format, args...)))
	}
	var f routesFile
	problems, _ := yamlfile.Decode(data, &f, routeWords)
	for _, p := range problems {
		fail(p.Line, "%s", p.What)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(f.Routes) == 0 {
		return nil, fmt.Errorf("load routes: %s: no routes defined", path)
	}
	lines := yamlfile.ItemLines(data, "routes")
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

// routeWords describe the decoder's findings in the routes file's terms.
var routeWords = yamlfile.Words{
	Unknown: func(key, _ string) string {
		return "unknown key " + strconv.Quote(key) + " (known keys: routes; name, upstream, scope, kind)"
	},
	Types: strings.NewReplacer("proxy.routesFile", "the routes file", "proxy.routeEntry", "a route"),
}
