// Package loganalytics is a local stand-in for the Azure Monitor Log Analytics
// Query API (https://api.loganalytics.io/v1): the workspace and
// resource-centric query routes, $batch and a minimal metadata route, with the
// real success and error bodies, bearer-token checks (the signature and expiry
// check is delegated to a Verifier; the audience is checked here), per-workspace
// role assignments with an optional propagation delay, a small deterministic
// KQL evaluator over canned tables, Prefer handling (wait, include-statistics,
// include-render), gzip, fault injection and request counters. It keeps the
// service's per-user query limits (5 running, a queue of 200, 200 queries per
// 30 s; see Limits), and custom tables (…_CL) take rows from the Logs
// Ingestion emulator (AppendRows).
//
// It exists for `broker demo`, `broker emulator` and tests; the Entra part of
// the emulator mounts a *Service and supplies the Verifier. Every method of a
// *Service is safe for concurrent use.
//
// Where the public record says nothing (for example the 401 body for an expired
// token), the behaviour is an inference and the doc comment of the name that
// implements it says so.
package loganalytics
