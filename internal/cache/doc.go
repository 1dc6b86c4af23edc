// Package cache keeps Entra ID access tokens in memory and decides when to
// fetch them: it serves a token while it has more than a safety margin of
// life left, shares one upstream fetch among concurrent callers of a key,
// refreshes used tokens in the background before they leave service, and
// backs off calmly when Entra fails. How a token is fetched belongs to the
// Source it wraps (internal/azure); this package only decides when.
//
// The hit path of Cache.Get takes no lock and allocates nothing: the keys
// live in a copy-on-write map behind an atomic pointer, and each entry holds
// an atomic pointer to an immutable snapshot of its state. Everything that
// changes state (fetch completions, timers, eviction) runs under one mutex
// and publishes a new snapshot.
//
// Metrics, registered on Options.Registerer (labels carry the scope only;
// the per-scope series of a scope are deleted when its last key leaves):
//
//	broker_token_fetches_total{scope,result}          counter; result is success, transient_error or permanent_error
//	broker_token_fetch_duration_seconds               histogram of upstream fetches
//	broker_token_expiry_timestamp_seconds{scope}      gauge, unix seconds
//	broker_token_refresh_failures_consecutive{scope}  gauge, 0 after a success
//	broker_token_cache_hits_total                     counter: Gets answered from memory
//	broker_token_cache_misses_total                   counter: Gets that were not
//	broker_token_cache_shared_waits_total             counter: Gets that waited on a fetch started elsewhere
//	broker_token_stale_served_total                   counter: tokens served while their refresh failed
//	broker_token_cache_entries                        gauge: keys held
//
// A token value never reaches a metric, a log line or an error.
package cache
