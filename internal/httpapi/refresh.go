package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/cache"
	"github.com/entrabroker/broker/internal/httperr"
)

// refreshWait bounds how long POST /cache/refresh waits for its fetches:
// less than the ops listener's 30 s write timeout, so that the answer
// always gets out. Fetches still running then go on in the background and
// are reported as pending.
const refreshWait = 25 * time.Second

// refreshAnswer is the body of POST /cache/refresh.
type refreshAnswer struct {
	Refreshed int          `json:"refreshed"`
	Failed    int          `json:"failed"`
	Pending   int          `json:"pending"`
	Keys      []refreshKey `json:"keys"`
}

// refreshKey is the outcome of one key's refresh. It never holds the token.
type refreshKey struct {
	Identity     string `json:"identity"`
	Scope        string `json:"scope"`
	Capabilities string `json:"capabilities,omitempty"`
	// Result is "refreshed", "failed" or "pending".
	Result      string `json:"result"`
	ExpiresOn   int64  `json:"expires_on,omitempty"`
	Error       string `json:"error,omitempty"`
	Description string `json:"error_description,omitempty"`
	Hint        string `json:"hint,omitempty"`
	AADCodes    []int  `json:"aad_error_codes,omitempty"`
}

// cacheRefresh serves POST /cache/refresh on the ops listener: it fetches
// a fresh token for every key the cache holds (or those of ?identity=, a
// name or client ID, and ?scope=, a scope or resource), while the tokens
// held stay in service, and answers when every fetch has finished (or
// after refreshWait): 200 when all succeeded, 502 when one failed, with the
// outcome per key. Only callers on this host may ask: the ops listener is
// also reached by pod IP (Prometheus, the kubelet), and a refresh costs
// Entra requests.
func (s *server) cacheRefresh(w http.ResponseWriter, r *http.Request) error {
	if !fromLoopback(r) {
		return httperr.New(http.StatusForbidden, "loopback_only",
			"Only callers on the broker's own host may refresh the cache.",
			"Run `broker refresh` (or POST /cache/refresh) on the broker's host, or in its pod.")
	}
	q := r.URL.Query()
	var id *Identity
	if name := q.Get("identity"); name != "" {
		if id = s.identityByName(name); id == nil {
			return httperr.New(http.StatusNotFound, "identity_not_found",
				"The broker holds no identity named or with the client ID "+quoteShort(name)+".",
				"Name an identity of the broker's configuration (the environment's is \"default\"), or leave identity out to refresh every identity.")
		}
	}
	scope := ""
	if v := q.Get("scope"); v != "" {
		var err error
		if scope, err = normalize(s.scopes.normalize(v, !strings.HasSuffix(v, "/.default"))); err != nil {
			return err
		}
	}
	var keys []cache.Key
	for _, k := range s.opts.Cache.Keys() {
		if id != nil && (k.Authority != id.Authority || k.Tenant != id.TenantID || k.ClientID != id.ClientID) {
			continue
		}
		if scope != "" && k.Scope != scope {
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return httperr.New(http.StatusNotFound, "nothing_cached",
			"The cache holds no token that matches the request.",
			"The broker fetches a token when it is first asked for one; there is nothing to refresh before that. GET /readyz (or the metrics) shows what is held.")
	}
	ctx, cancel := context.WithTimeout(r.Context(), refreshWait)
	defer cancel()
	errs := s.opts.Cache.Refresh(ctx, keys...)
	ans := refreshAnswer{Keys: make([]refreshKey, len(keys))}
	for i, k := range keys {
		rk := refreshKey{Scope: k.Scope, Capabilities: k.Capabilities}
		if kid := s.identityOfKey(k); kid != nil {
			rk.Identity = kid.Name
		}
		err := errs[i]
		switch {
		case err == nil:
			rk.Result = "refreshed"
			rk.ExpiresOn = s.opts.Cache.Status(k).ExpiresOn.Unix()
			ans.Refreshed++
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			rk.Result = "pending"
			rk.Description = "The fetch had not finished when the broker answered; it goes on in the background."
			ans.Pending++
		default:
			rk.Result = "failed"
			rk.Error, rk.Description, rk.Hint = "token_unavailable", "The fetch failed; the token held before stays in service while it is valid.", "The broker's log has the cause."
			if errors.Is(err, cache.ErrNotHeld) {
				rk.Error, rk.Description, rk.Hint = "not_held", "The key left the cache before it could be refreshed.", ""
			}
			var ae *azure.Error
			if errors.As(err, &ae) {
				rk.Error = orDefault(ae.Code, "entra_error")
				rk.Description, rk.Hint, rk.AADCodes = ae.Description, ae.Hint, ae.AADCodes
			}
			ans.Failed++
		}
		ans.Keys[i] = rk
	}
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	if ans.Failed > 0 || ans.Pending > 0 {
		w.WriteHeader(http.StatusBadGateway)
	}
	return json.NewEncoder(w).Encode(ans)
}

// identityByName returns the identity named name, or whose client ID is
// name (case-insensitively); nil when none is.
func (s *server) identityByName(name string) *Identity {
	for i := range s.opts.Identities {
		if s.opts.Identities[i].Name == name {
			return &s.opts.Identities[i]
		}
	}
	return s.find(func(id *Identity) string { return id.ClientID }, name)
}

// identityOfKey returns the identity whose tokens key is for; nil when
// none is.
func (s *server) identityOfKey(k cache.Key) *Identity {
	for i := range s.opts.Identities {
		id := &s.opts.Identities[i]
		if k.Authority == id.Authority && k.Tenant == id.TenantID && k.ClientID == id.ClientID {
			return id
		}
	}
	return nil
}

// quoteShort quotes s, cut to 128 bytes, for an error description.
func quoteShort(s string) string {
	if len(s) > 128 {
		s = s[:128]
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}
