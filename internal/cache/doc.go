// Package cache keeps Entra ID access tokens in memory and decides when to
// fetch them: it serves a token while it has more than a safety margin of
// life left, shares one upstream fetch among concurrent callers of a key,
// refreshes used tokens in the background before they leave service, backs
// off calmly when Entra fails, and bounds what any caller can make it ask
// of Entra (concurrent fetches, new scopes and forced refreshes per
// identity). How a token is fetched belongs to the Source it wraps
// (internal/azure); this package only decides when.
//
// The keys live in an LRU list (simplelru) under one mutex; a hit holds it
// for a map lookup and allocates nothing. Each entry holds an atomic
// pointer to an immutable snapshot of its state; everything that changes
// state (fetch completions, timers, eviction) runs under the mutex and
// publishes a new snapshot.
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
//	broker_token_invalidations_total{result}          counter; result is dropped, rationed or not_held
//	broker_token_fetches_in_flight                    gauge: fetches calling the Source
//	broker_token_fetches_queued                       gauge: fetches waiting for a slot (per-identity cap)
//	broker_token_fetches_abandoned_total              counter: queued fetches dropped when every caller gave up
//	broker_token_new_scope_refusals_total             counter: Gets refused by the new-key budget
//	broker_token_fetch_warnings_suppressed_total      counter: fetch failures not logged at Warn (one a minute per key)
//
// A token value never reaches a metric, a log line or an error.
package cache
