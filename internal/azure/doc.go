// Package azure owns everything the broker knows about Microsoft Entra ID and
// the Azure APIs behind it: the client-credentials token source, the
// credentials it presents (secret, secret file, certificate and federated
// token), the clouds and their endpoints and audiences, scope
// normalization, and the typed error that explains an Entra failure.
package azure
