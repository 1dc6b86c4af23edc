package emulator

import (
	"errors"
	"net/http"
	"strings"

	"github.com/entrabroker/broker/internal/emulator/loganalytics"
	"github.com/entrabroker/broker/internal/emulator/logsingestion"
)

// Azure is the whole emulated cloud on one handler: Entra ID at
// /{tenant}/… and /common/…, and the Log Analytics Query API at /v1/…, with
// Log Analytics accepting exactly the tokens this Entra issued, and the
// Logs Ingestion API at /dataCollectionRules/…, whose stored rows land in
// Log Analytics' custom tables.
type Azure struct {
	// Entra is the Entra ID v2 emulator.
	Entra *Emulator
	// LogAnalytics is the Log Analytics Query API emulator.
	LogAnalytics *loganalytics.Service
	// Ingestion is the Logs Ingestion API emulator.
	Ingestion *logsingestion.Service
}

// NewAzure returns an emulated cloud with nothing registered. opts configure
// the Entra emulator; Log Analytics shares its clock and logger.
func NewAzure(opts Options) *Azure {
	e := New(opts)
	la := loganalytics.New(loganalytics.Options{
		Verify: e.verifyForLogAnalytics,
		Now:    opts.Now,
		Logger: opts.Logger,
	})
	in := logsingestion.New(logsingestion.Options{
		Verify: e.verifyForLogAnalytics,
		Now:    opts.Now,
		Logger: opts.Logger,
		Sink:   la.AppendRows,
	})
	return &Azure{Entra: e, LogAnalytics: la, Ingestion: in}
}

// AddDemo registers the demo tenant, app and resources in Entra, the demo
// workspace in Log Analytics with the demo app as its Reader, and the demo
// DCR with the demo app as its Monitoring Metrics Publisher.
func (a *Azure) AddDemo() error {
	if err := a.Entra.AddDemo(); err != nil {
		return err
	}
	return a.AddDemoData()
}

// AddDemoData registers the demo workspace and DCR for the demo app, without
// the Entra registration.
func (a *Azure) AddDemoData() error {
	if err := a.LogAnalytics.AddDemo(DemoClientID); err != nil {
		return err
	}
	return a.Ingestion.AddDemo(loganalytics.DemoWorkspaceID, DemoClientID)
}

// ServeHTTP sends /v1/… to Log Analytics, /dataCollectionRules/… to Logs
// Ingestion and everything else to Entra.
func (a *Azure) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/v1/") {
		a.LogAnalytics.ServeHTTP(w, r)
		return
	}
	if len(r.URL.Path) > len("/dataCollectionRules/") && strings.EqualFold(r.URL.Path[:len("/dataCollectionRules/")], "/dataCollectionRules/") {
		a.Ingestion.ServeHTTP(w, r)
		return
	}
	a.Entra.ServeHTTP(w, r)
}

// verifyForLogAnalytics checks a bearer token as Log Analytics would: an
// expired or revoked token is answered 401 (the client should fetch a new
// one), anything else that fails is an invalid token.
func (e *Emulator) verifyForLogAnalytics(raw string) (loganalytics.Principal, error) {
	if strings.Count(raw, ".") != 2 {
		return loganalytics.Principal{}, loganalytics.ErrTokenMalformed
	}
	c, err := e.VerifyAccessToken(raw)
	switch {
	case errors.Is(err, ErrTokenExpired), errors.Is(err, ErrTokenRevoked):
		return loganalytics.Principal{}, errors.Join(loganalytics.ErrTokenExpired, err)
	case err != nil:
		return loganalytics.Principal{}, err
	}
	return loganalytics.Principal{
		TenantID: c.TenantID,
		AppID:    c.AppID,
		ObjectID: c.ObjectID,
		Audience: c.Audience,
		Roles:    c.Roles,
	}, nil
}
