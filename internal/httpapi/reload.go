package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/entrabroker/broker/internal/httperr"
)

// ConfigVersion names the configuration in force: a hash of what it was
// read from, and when it was loaded.
type ConfigVersion struct {
	Hash     string    `json:"hash"`
	LoadedAt time.Time `json:"loaded_at"`
}

// ErrReloadUnavailable is what Options.Reload returns when the broker cannot
// reload (broker demo): answered 409.
var ErrReloadUnavailable = errors.New("httpapi: this broker cannot reload its configuration")

// ReloadError is a configuration that was refused on reload: every problem,
// each in words a user can act on. The configuration in force stays.
type ReloadError struct {
	Problems []string
}

func (e *ReloadError) Error() string { return "the new configuration was refused" }

// configReload serves POST /config/reload: it re-reads the configuration
// and answers the version now in force, or 422 with every problem of a
// refused one. Callers on this host only, like /cache/refresh.
func (s *server) configReload(w http.ResponseWriter, r *http.Request) error {
	if !fromLoopback(r) {
		return httperr.New(http.StatusForbidden, "loopback_only",
			"Only callers on the broker's own host may reload its configuration.",
			"Run `kill -HUP <pid>` or POST /config/reload on the broker's host, or in its pod.")
	}
	unavailable := httperr.New(http.StatusConflict, "reload_unavailable",
		"This broker cannot reload its configuration (broker demo has no files to re-read).",
		"Restart it to change its configuration.")
	if s.opts.Reload == nil {
		return unavailable
	}
	// The reload does not belong to this request: a caller that hangs up
	// must not leave half a configuration behind.
	v, err := s.opts.Reload(context.WithoutCancel(r.Context()))
	if errors.Is(err, ErrReloadUnavailable) {
		return unavailable
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	var re *ReloadError
	switch {
	case errors.As(err, &re):
		w.WriteHeader(http.StatusUnprocessableEntity)
		return json.NewEncoder(w).Encode(struct {
			Error       string   `json:"error"`
			Description string   `json:"error_description"`
			Hint        string   `json:"hint"`
			Problems    []string `json:"problems"`
		}{"config_refused", "The new configuration has problems; the one in force keeps serving.",
			"Fix every problem listed and reload again.", re.Problems})
	case err != nil:
		return err
	}
	return json.NewEncoder(w).Encode(struct {
		Reloaded bool          `json:"reloaded"`
		Config   ConfigVersion `json:"config"`
	}{true, v})
}
