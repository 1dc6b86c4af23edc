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
package cache
