package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/entrabroker/broker/internal/azure"
)

// expiryWarning is how far ahead of a credential's expiry the broker warns
// in its log, daily: the time a person needs to create a new credential.
const expiryWarning = 14 * 24 * time.Hour

// expiryCheckInterval is how often the broker looks at the expiry dates.
const expiryCheckInterval = 24 * time.Hour

// expiringIdentity is an identity's credential, as far as its expiry goes.
type expiringIdentity struct {
	name            string
	cred            azure.Credential
	secretExpiresOn time.Time
}

// expiry returns when the credential stops working: a certificate's
// NotAfter, or the configured expiry of a client secret; false when the
// broker does not know.
func (e expiringIdentity) expiry() (time.Time, bool) {
	if ec, ok := e.cred.(azure.ExpiringCredential); ok {
		return ec.CredentialExpiry()
	}
	if !e.secretExpiresOn.IsZero() {
		return e.secretExpiresOn, true
	}
	return time.Time{}, false
}

// expiryCollector is broker_credential_expiry_timestamp_seconds: one series
// per identity whose credential's expiry is known, read at each scrape (a
// renewed certificate file shows at once).
type expiryCollector struct {
	desc *prometheus.Desc
	ids  []expiringIdentity
}

// registerCredentialExpiry registers the credential-expiry gauge for ids on
// reg; a nil reg registers nothing.
func registerCredentialExpiry(reg prometheus.Registerer, ids []expiringIdentity) error {
	if reg == nil {
		return nil
	}
	return reg.Register(&expiryCollector{
		desc: prometheus.NewDesc("broker_credential_expiry_timestamp_seconds",
			"When the credential the broker presents to Entra ID for the identity expires (unix seconds): a certificate's NotAfter, or a client secret's configured expiry.",
			[]string{"identity"}, nil),
		ids: ids,
	})
}

// Describe sends the one descriptor.
func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect sends one series per identity with a known expiry.
func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	for _, id := range c.ids {
		if t, ok := id.expiry(); ok {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(t.Unix()), id.name)
		}
	}
}

// watchExpiry logs a warning for each credential that expires within
// expiryWarning (an error once it has expired): at now(), then at the time
// of every tick, until ctx ends. ticks is a daily ticker's channel in
// production and a test's channel in tests.
func watchExpiry(ctx context.Context, log *zap.Logger, ids func() []expiringIdentity, now func() time.Time, ticks <-chan time.Time) {
	checkExpiry(log, ids(), now())
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-ticks:
			checkExpiry(log, ids(), t)
		}
	}
}

// checkExpiry logs what watchExpiry says at time now.
func checkExpiry(log *zap.Logger, ids []expiringIdentity, now time.Time) {
	for _, id := range ids {
		t, ok := id.expiry()
		if !ok {
			continue
		}
		left := t.Sub(now)
		fields := []zap.Field{
			zap.String("identity", id.name),
			zap.Time("expires_on", t),
			zap.Int("days_left", int(left/(24*time.Hour))),
			zap.String("hint", "Create a new credential on the app registration (Certificates & secrets), give it to the broker (replace the mounted file: no restart needed), check that tokens still refresh, then delete the old one."),
		}
		switch {
		case left <= 0:
			log.Error("the credential has expired: Entra ID refuses it", fields...)
		case left < expiryWarning:
			log.Warn("the credential expires soon", fields...)
		}
	}
}
