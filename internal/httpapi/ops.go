package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/cache"
)

// healthz answers 200 while the process serves HTTP.
func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}

// readiness is the /readyz body. Scopes and Missing name identities,
// scopes and Entra's words (with the client ID in them): they go to callers
// on this host only; others get the counts and Detail.
type readiness struct {
	Ready      bool          `json:"ready"`
	ScopesOK   int           `json:"scopes_ready"`
	ScopesWant int           `json:"scopes_required"`
	Scopes     []scopeStatus `json:"scopes,omitempty"`
	Missing    []string      `json:"missing,omitempty"`
	Detail     string        `json:"detail,omitempty"`
	// Config is the configuration in force, when known.
	Config *ConfigVersion `json:"config,omitempty"`
}

type scopeStatus struct {
	Identity    string `json:"identity"`
	Scope       string `json:"scope"`
	Ready       bool   `json:"ready"`
	ExpiresOn   int64  `json:"expires_on,omitempty"`
	Error       string `json:"error,omitempty"`
	Description string `json:"error_description,omitempty"`
	Hint        string `json:"hint,omitempty"`
	AADCodes    []int  `json:"aad_error_codes,omitempty"`
	NextAttempt string `json:"next_attempt,omitempty"`
}

// readyz answers 200 only when every prefetch scope of every identity holds
// a servable token. To a caller on this host the body says, per identity and
// scope, whether it is ready and why not; to others (Prometheus, the kubelet
// by pod IP) only how many scopes are ready.
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	body := readiness{Ready: true, Scopes: []scopeStatus{}, ScopesWant: len(s.prefetch)}
	if s.opts.Config.Hash != "" {
		body.Config = &s.opts.Config
	}
	for _, p := range s.prefetch {
		id, scope := p.id, p.scope
		st := s.opts.Cache.Status(id.Key(scope))
		ss := scopeStatus{Identity: id.Name, Scope: scope, Ready: st.Servable}
		if st.Servable {
			body.ScopesOK++
			ss.ExpiresOn = st.ExpiresOn.Unix()
		} else {
			body.Ready = false
			body.Missing = append(body.Missing, missingName(id, scope))
			var ae *azure.Error
			switch {
			case errors.As(st.Err, &ae):
				ss.Error = orDefault(ae.Code, "entra_error")
				ss.Description = ae.Description
				ss.Hint = ae.Hint
				ss.AADCodes = ae.AADCodes
			case st.Err != nil:
				ss.Error = "token_unavailable"
				ss.Description = "The token could not be fetched yet."
			default:
				ss.Error = "pending"
				ss.Description = "The first fetch has not finished yet."
			}
			if !st.NextAttempt.IsZero() {
				ss.NextAttempt = st.NextAttempt.UTC().Format(time.RFC3339)
			}
		}
		body.Scopes = append(body.Scopes, ss)
	}
	if !fromLoopback(r) {
		body.Scopes, body.Missing = nil, nil
		body.Detail = "Ask from the broker's own host (loopback) for each scope's state and the reason it is not ready; the broker's log has them too."
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !body.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(body)
}

// prefetched is one scope /readyz waits for.
type prefetched struct {
	id    *Identity
	scope string
}

// prefetchList is what /readyz checks: Options.PrefetchScopes for the
// default identity, then every identity's own, without repeats.
func prefetchList(opts Options) []prefetched {
	var out []prefetched
	seen := map[cache.Key]bool{}
	add := func(id *Identity, scope string) {
		if k := id.Key(scope); !seen[k] {
			seen[k] = true
			out = append(out, prefetched{id, scope})
		}
	}
	for _, scope := range opts.PrefetchScopes {
		add(&opts.Identities[0], scope)
	}
	for i := range opts.Identities {
		for _, scope := range opts.Identities[i].PrefetchScopes {
			add(&opts.Identities[i], scope)
		}
	}
	return out
}

// missingName is how /readyz lists a missing scope: the scope alone for the
// default identity (as before there were several), "name: scope" for others.
func missingName(id *Identity, scope string) string {
	if id.Name == "" || id.Name == "default" {
		return scope
	}
	return id.Name + ": " + scope
}
