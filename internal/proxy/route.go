package proxy

import (
	"errors"
	"net/url"
	"slices"
	"strings"

	"github.com/entrabroker/broker/internal/azure"
)

// Route is one upstream the proxy serves under /proxy/{Name}/.
type Route struct {
	// Name is the first path segment after /proxy/; lower-case letters,
	// digits and '-', at most 63 characters.
	Name string
	// Upstream is the base URL requests are sent to: absolute https (http only
	// for a loopback host), without user info, query or fragment. A path in
	// it is kept as a prefix of every proxied path.
	Upstream *url.URL
	// Scope is the Entra ID scope whose token is sent upstream, e.g.
	// "https://api.loganalytics.io/.default".
	Scope string
	// Kind is "" for a plain proxied API, or KindIngestion for a Logs
	// Ingestion endpoint (a DCE or a DCR's own endpoint), whose uploads the
	// proxy splits into calls under the service's 1 MB limit.
	Kind string
}

// KindIngestion is the Route.Kind of a Logs Ingestion endpoint.
const KindIngestion = "ingestion"

// Built-in route names.
const (
	RouteLogAnalytics = "loganalytics"
	RouteAppInsights  = "appinsights"
	RouteARM          = "arm"
	// RouteIngestion is the Logs Ingestion API, served when an endpoint is
	// configured (BROKER_INGESTION_ENDPOINT): a data collection endpoint or
	// a DCR's own logs-ingestion endpoint.
	RouteIngestion = "ingestion"
)

// Routes returns the proxy's routes: the built-in ones with cloud's
// endpoints and audiences (RouteLogAnalytics, RouteAppInsights, RouteARM,
// in that order), then custom (such as a routes file's). A custom route
// named like a built-in one replaces it in place, so a built-in route can
// be pointed at a private endpoint or an emulator. Each call returns fresh
// values the caller may change.
func Routes(cloud azure.Cloud, custom []Route) []Route {
	builtin := []struct {
		name string
		s    azure.Service
	}{
		{RouteLogAnalytics, cloud.LogAnalytics},
		{RouteAppInsights, cloud.AppInsights},
		{RouteARM, cloud.ARM},
	}
	out := make([]Route, 0, len(builtin)+len(custom))
	for _, b := range builtin {
		r := Route{Name: b.name, Scope: b.s.Scope()}
		if u, err := url.Parse(b.s.Endpoint); err == nil {
			r.Upstream = u
		}
		out = append(out, r)
	}
	// Logs Ingestion has no endpoint of its own (each data collection
	// endpoint is the user's): the route exists when one is configured.
	if cloud.LogsIngestion.Endpoint != "" {
		r := Route{Name: RouteIngestion, Scope: cloud.LogsIngestion.Scope(), Kind: KindIngestion}
		if u, err := url.Parse(cloud.LogsIngestion.Endpoint); err == nil {
			r.Upstream = u
		}
		builtin = append(builtin, struct {
			name string
			s    azure.Service
		}{RouteIngestion, cloud.LogsIngestion})
		out = append(out, r)
	}
	for _, c := range custom {
		if i := slices.IndexFunc(out[:len(builtin)], func(r Route) bool { return r.Name == c.Name }); i >= 0 {
			if out[i].Kind != "" && c.Kind == "" {
				c.Kind = out[i].Kind // a re-pointed ingestion route stays one
			}
			out[i] = c
			continue
		}
		out = append(out, c)
	}
	return out
}

// maxNameLen bounds a route name (a DNS label's length; it is a metric label).
const maxNameLen = 63

// validName reports whether name is a valid route name.
func validName(name string) error {
	if name == "" {
		return errors.New("name is required")
	}
	if len(name) > maxNameLen {
		return errors.New("name is longer than 63 characters")
	}
	for i := 0; i < len(name); i++ {
		if !isNameByte(name[i]) {
			return errors.New(`name may hold only lower-case letters, digits and "-"`)
		}
	}
	return nil
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
}

// validUpstream checks an upstream URL.
func validUpstream(u *url.URL) error {
	if u == nil {
		return errors.New("upstream is required")
	}
	if !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return errors.New("upstream must be an absolute URL such as https://host")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !azure.IsLoopbackHost(u.Hostname()) {
			return errors.New("upstream must use https (http is allowed only for a loopback host)")
		}
	default:
		return errors.New("upstream must use https (http is allowed only for a loopback host)")
	}
	if u.User != nil {
		return errors.New("upstream must not hold user info")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return errors.New("upstream must not hold a query or fragment")
	}
	if _, _, err := cleanPath(u.EscapedPath()); err != nil {
		return errors.New("upstream path must not hold dot segments or encoded separators")
	}
	return nil
}

// validScope checks a route's scope: one scope ending in "/.default".
func validScope(s string) error {
	if s == "" {
		return errors.New("scope is required")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return errors.New("scope must be one scope without spaces")
	}
	if !strings.HasSuffix(s, "/.default") || len(s) == len("/.default") {
		return errors.New(`scope must be "<resource>/.default", e.g. https://api.loganalytics.io/.default`)
	}
	return nil
}

// validateRoute checks one route.
func validateRoute(r Route) error {
	if err := validName(r.Name); err != nil {
		return err
	}
	if err := validUpstream(r.Upstream); err != nil {
		return err
	}
	if r.Kind != "" && r.Kind != KindIngestion {
		return errors.New(`kind must be empty or "ingestion"`)
	}
	return validScope(r.Scope)
}
