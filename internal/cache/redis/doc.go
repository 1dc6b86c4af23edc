// Package redis is the broker's optional second cache level: a
// cache.Source that shares the tokens of a fleet of brokers through Redis,
// so that one Entra request per scope and refresh serves every replica,
// and a broker that starts during an Entra outage serves the fleet's
// tokens at once.
//
// It sits where the in-memory cache.Cache calls its Source: the in-memory
// level still decides when to fetch (misses, jittered refreshes, backoff);
// this level decides how. On a fetch it reads Redis first and answers a
// usable token from there (one the cache would serve, and on a refresh one
// newer than the token held, see cache.Held). Otherwise it takes the key's
// lease (SET NX PX with a random fencing token, released by a Lua
// compare-and-delete so that a lease that expired and passed to another
// broker is never deleted by the old holder), fetches from Entra and
// stores the token; a broker that loses the lease polls Redis for the
// winner's token for a bounded time (Options.Wait), then fetches itself.
//
// Never worse than alone. Every Redis call has a short deadline
// (Options.OpTimeout) and goes through a circuit breaker; any failure,
// timeout or refusal of the open breaker makes that fetch go on as if
// there were no Redis. A flushed or empty Redis is a miss. Nothing here is
// on the path of a cache hit, and readiness never asks Redis.
//
// Encryption. Redis holds no token, secret or identity name in the clear.
// An entry is AES-256-GCM under a key of the key file (see ParseKeys),
// with the key's ID in the clear beside it and the cache key as additional
// data, so an entry moved to another name does not open. Entry names are
// an HMAC of the cache key. A key file may hold several keys: the first
// encrypts, all decrypt, so keys roll over without a flag day. An entry
// that does not decrypt is a miss, logged once per key ID.
//
// Client. It uses github.com/redis/go-redis/v9, Redis's own maintained Go
// client: a plain API with a context on every call, URL parsing for
// redis://, rediss:// and unix:// (user and password included), TLS, and
// Lua scripts with EVALSHA. github.com/redis/rueidis is faster through
// auto-pipelining and client-side caching, but the broker makes a handful
// of Redis calls per token refresh, not per request, so speed buys nothing
// here and the simpler API wins.
//
// Metrics, registered on Options.Registerer:
//
//	broker_redis_lookups_total{result}  counter; result is hit, miss or undecryptable
//	broker_redis_errors_total{op}       counter; op is get, set, lease or release
//	broker_redis_leases_total{result}   counter; result is won, lost, waited or timeout
//	broker_redis_breaker_state          gauge: 0 closed, 1 open, 2 half-open
package redis
