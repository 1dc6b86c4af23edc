package httpapi

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/entrabroker/broker/internal/httperr"
)

// apiRoutes is the API listener. Middleware, outermost first:
//   - requestID: every request gets an ID (X-Request-Id), echoed and logged;
//   - recoverer: a panic becomes a 500 JSON answer and an error log line;
//   - observe: access log and HTTP metrics, by route pattern (never the raw
//     path or query, which may carry secrets);
//   - guard: refuses forwarded requests and Host names other than loopback
//     or the listen host (DNS rebinding);
//   - refuseBrowsers: refuses requests made by web pages, and marks every
//     answer nosniff and same-origin only.
//
// Every way a token leaves then passes authorize (gate.go).
func (s *server) apiRoutes(proxy http.Handler) http.Handler {
	r := chi.NewRouter()
	r.Use(s.requestID, s.recoverer, s.observe("api"), s.guard, s.refuseBrowsers)
	r.NotFound(s.notFound)
	r.MethodNotAllowed(s.methodNotAllowed)

	r.Get("/token", s.handle(s.token))
	r.Get("/msi/token", s.handle(s.msiToken))
	r.Get("/msi/token/", s.handle(s.msiToken))
	r.Post("/msi/token", s.handle(s.cloudShellToken))
	r.Post("/msi/token/", s.handle(s.cloudShellToken))
	r.Get("/metadata/identity/oauth2/token", s.handle(s.imdsToken))
	r.Get("/metadata/identity/oauth2/token/", s.handle(s.imdsToken))
	if proxy != nil {
		r.Handle("/proxy/*", proxy)
	}
	return r
}

// opsRoutes is the ops listener: metrics, health, cache control and
// reload (POST /cache/refresh and /config/reload, for callers on this host
// only). Its Host guard takes IP
// literals too (Prometheus and the kubelet reach it by pod IP) but no DNS
// name other than localhost and the listen host, so a page that rebinds a
// name cannot read it; web pages are refused as on the API listener.
func (s *server) opsRoutes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.requestID, s.recoverer, s.observe("ops"), s.opsGuard, s.refuseBrowsers)
	r.NotFound(s.notFound)
	r.MethodNotAllowed(s.methodNotAllowed)

	if s.opts.Gatherer != nil {
		r.Handle("/metrics", promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{
			ErrorLog:          zapErrorLog{s.log},
			EnableOpenMetrics: true,
		}))
	}
	r.Get("/healthz", s.healthz)
	r.Get("/readyz", s.readyz)
	r.Post("/cache/refresh", s.handle(s.cacheRefresh))
	r.Post("/config/reload", s.handle(s.configReload))
	return r
}

// handle adapts a handler that returns an error: the error is logged with its
// cause and answered as JSON by httperr.
func (s *server) handle(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	}
}

func (s *server) notFound(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, httperr.New(http.StatusNotFound, "not_found",
		"There is no such endpoint.",
		"The broker serves GET /token, GET and POST /msi/token, GET /metadata/identity/oauth2/token and /proxy/{route}/…; metrics, health and POST /cache/refresh are on the ops listener."))
}

func (s *server) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, httperr.New(http.StatusMethodNotAllowed, "method_not_allowed",
		"This endpoint does not accept that HTTP method.",
		"Token endpoints take GET requests (and /msi/token the POST of Cloud Shell); the ops listener's /cache/refresh takes POST."))
}
