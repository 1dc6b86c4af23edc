package azure

// aadHints holds a plain-words hint for every AADSTS code a client-credentials
// app meets (reference §2.3). The hint says what to do, not what went wrong:
// Description already carries Entra's sentence.
var aadHints = map[int]string{
	7000215: "The client secret is wrong. Copy the secret's Value (shown once, when the secret is created) and not its Secret ID; " +
		"if the Value was lost, create a new secret. Check the variable or file for a trailing newline or spaces.",
	7000222: "The client secret has expired. Create a new secret for the app registration (Certificates & secrets), " +
		"give the broker the new Value, then delete the old secret.",
	7000218: "No client secret reached Entra ID. Set AZURE_CLIENT_SECRET or AZURE_CLIENT_SECRET_FILE (and make sure the file is not empty).",
	7000216: "No client secret or assertion reached Entra ID. Set AZURE_CLIENT_SECRET or AZURE_CLIENT_SECRET_FILE.",
	700016: "Entra ID does not know this client ID in this tenant. Use the app registration's Application (client) ID, not its Object ID, " +
		"and check AZURE_TENANT_ID; a multi-tenant app needs admin consent in the target tenant.",
	7000112: "The application is disabled in this tenant. An admin must enable its service principal again " +
		"(Enterprise applications → Properties → Enabled for users to sign in, or az ad sp update --id <client-id> --set accountEnabled=true).",
	90002: "The tenant was not found. Check AZURE_TENANT_ID (the Directory (tenant) ID or a verified domain) " +
		"and the cloud: a US Government or China tenant needs its own authority host.",
	900023: "The tenant ID is malformed. Use the Directory (tenant) ID GUID or a verified domain such as contoso.onmicrosoft.com.",
	500011: "The resource in the scope does not exist in this tenant. Check the scope: for Log Analytics use https://api.loganalytics.io/.default " +
		"(no path such as /v1, and the audience of the right cloud).",
	500014: "The resource's service principal is disabled in this tenant (often a lapsed subscription). A tenant admin must fix it.",
	70011:  "The scope is not valid. Ask for exactly one resource as <resource>/.default, e.g. https://api.loganalytics.io/.default.",
	1002012: "Client credentials need a scope of the form <resource>/.default, e.g. https://api.loganalytics.io/.default; " +
		"permission names such as Data.Read or …/user_impersonation are granted in the portal, not requested.",
	700022: "The scope names more than one resource. Ask for one resource per token (the broker caches tokens per resource).",
	901002: "The v2 token endpoint does not accept resource=. Send scope=<resource>/.default instead.",
	90014:  "The token request is missing a required field (for example scope). This is a client bug; check the scope the broker was asked for.",
	900144: "The token request is missing a required field (for example scope). This is a client bug; check the scope the broker was asked for.",
	700024: "The client assertion is outside its valid time range. Sync the clock (NTP); for a federated token, make sure the token file is fresh.",
	700027: "The certificate that signed the client assertion is not registered on the app. Upload its public part (.cer/.pem) to the app registration " +
		"and check that the private key matches it.",
	700023: "The client assertion's audience is not this tenant's token endpoint. Check AZURE_TENANT_ID and AZURE_AUTHORITY_HOST (the cloud); " +
		"a hand-built assertion must use https://<authority>/<tenant>/oauth2/v2.0/token as aud.",
	700021: "The client assertion's issuer or subject is not the client ID. Check AZURE_CLIENT_ID: a certificate assertion names the app it authenticates.",
	7002138: "The federated token's subject matches the federated credential only when case is ignored. Entra ID compares it case-sensitively: " +
		"fix the federated credential's subject (or the service account's namespace and name) so that they match exactly.",
	50013: "The client assertion's signature could not be verified. Check the federated credential's issuer (its OIDC discovery and keys must be reachable by Entra ID) " +
		"or, for a certificate, that the private key matches the registered certificate.",
	50012: "The client assertion was rejected. Check the certificate (registered on the app, matching private key, not expired) and the clock.",
	50027: "The client assertion's JWT header has no certificate thumbprint. Add x5t or x5t#S256 to it.",
	70021: "No federated identity credential matches the presented token. Check the federated credential's issuer, subject and audience; " +
		"they are compared case-sensitively.",
	700211:  "No federated identity credential matches the token's issuer. Check the federated credential's issuer (exact, case-sensitive).",
	700212:  "No federated identity credential matches the token's audience. Check the federated credential's audience (usually api://AzureADTokenExchange).",
	700213:  "No federated identity credential matches the token's subject. Check the federated credential's subject (exact, case-sensitive).",
	53003:   "A Conditional Access policy for workload identities blocks this app (for example by location). An admin must change the policy.",
	50126:   "Entra ID saw a user name and password flow. The broker only uses client credentials; this is a bug, please report it.",
	9001023: "Client credentials need a tenant-specific authority. Set AZURE_TENANT_ID to the tenant's ID or domain, not common, consumers or organizations.",
	50196:   "Entra ID saw too many identical requests in a short time. The broker backs off; make sure apps reuse tokens.",
	90055:   "The tenant is being throttled by Entra ID. The broker backs off and retries.",
	90033:   "Entra ID had a transient failure. The broker retries.",
}

// transientAADCodes are AADSTS codes that say "try again later" even though
// they come with a 4xx status.
var transientAADCodes = map[int]bool{
	50196: true, // LoopDetected: throttling.
	90055: true, // TenantThrottlingError.
	90033: true, // A transient error has occurred.
}

// Hints for failures that carry no AADSTS code.
const (
	hintThrottled = "Entra ID is throttling token requests for this app (HTTP 429). The broker waits for Retry-After before it tries again. " +
		"Throttling usually means tokens are not reused: let apps take tokens from the broker instead of calling Entra ID themselves."
	hintServerError = "Entra ID failed on its side (HTTP 5xx). The broker retries with backoff; if it lasts, check Azure status or Service Health."
	hintTimeout     = "The request to the authority host timed out. Check that the broker can reach it over HTTPS " +
		"(egress rules, firewall, HTTPS_PROXY/NO_PROXY)."
	hintDNS     = "The authority host's name could not be resolved. Check AZURE_AUTHORITY_HOST and the DNS of the machine or pod."
	hintNetwork = "The broker could not talk to the authority host (connection refused, reset or closed). " +
		"Check egress rules, firewalls and proxy settings (HTTPS_PROXY/NO_PROXY)."
	hintTLS = "The authority host's TLS certificate is not trusted. If a proxy inspects TLS, add its CA with SSL_CERT_FILE or SSL_CERT_DIR; " +
		"otherwise check AZURE_AUTHORITY_HOST."
	hintNoTLS = "The authority host does not speak TLS on that port. Check AZURE_AUTHORITY_HOST (its scheme and port); " +
		"plain http is allowed for localhost only."
	hintMalformed = "The answer was not an Entra ID token response. Something else (a proxy, a captive portal, a wrong AZURE_AUTHORITY_HOST) " +
		"may have answered; the broker retries."
	hintTooLarge = "The answer was larger than any token response. Something else (a proxy, a wrong AZURE_AUTHORITY_HOST) may have answered."
	hintRedirect = "The authority host answered with a redirect, which a token endpoint never does; the broker does not follow it " +
		"(it would resend the secret). Check AZURE_AUTHORITY_HOST."
	hintCanceled = "The caller gave up before Entra ID answered."
	hintHTTP     = "Entra ID refused the request. Check the tenant ID, client ID, secret and scope."
)

// hintFor returns the hint for the first AADSTS code that has one, or "".
func hintFor(codes []int) string {
	for _, c := range codes {
		if h, ok := aadHints[c]; ok {
			return h
		}
	}
	return ""
}
