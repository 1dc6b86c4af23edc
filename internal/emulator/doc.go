// Package emulator is a faithful local stand-in for the Microsoft Entra ID v2
// token endpoint, for tests, for `broker demo` and for people who develop
// against the broker offline (as Azurite is for Storage).
//
// An *Emulator is an http.Handler. It serves the client-credentials grant at
// POST /{tenant}/oauth2/v2.0/token (client secret in the form or in HTTP
// Basic, or a client assertion: a certificate's private_key_jwt verified
// against the app's registered certificates, or a federated token such as a
// Kubernetes service-account token matched against the app's federated
// identity credentials), the OpenID Connect discovery document at
// /{tenant}/v2.0/.well-known/openid-configuration, instance discovery at
// /common/discovery/instance and the signing keys at
// /{tenant}/discovery/v2.0/keys. Success and error bodies, statuses and
// headers follow what the real service sends, byte for byte where the
// reference has recordings (../shared/reference/entra-and-loganalytics.md).
//
// Access tokens are RS256 JWTs in the v1 form that Azure resource APIs such
// as Log Analytics receive. VerifyAccessToken checks them for the other parts
// of the emulator, and RevokeTokens makes earlier tokens fail, for 401-retry
// tests.
//
// Tenants, apps (client ID, secrets with expiry dates, certificates,
// federated identity credentials, enabled flag) and
// resources (audiences and the app roles granted on them) are registered from
// Go or from a YAML file (LoadConfig). Tests can inject faults per app
// (429, 500, 503, delays, malformed bodies, dropped connections) and read
// request counters.
//
// Every method of *Emulator is safe for concurrent use.
package emulator
