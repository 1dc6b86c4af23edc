package emulator

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// The built-in demo registration (AddDemo): one tenant, one app with one
// secret that never expires, and the usual Azure resources. These values are
// public on purpose; they work only against an emulator.
const (
	// DemoTenantID is the demo tenant's ID.
	DemoTenantID = "decade00-0000-4000-a000-000000000001"
	// DemoTenantDomain is the demo tenant's domain.
	DemoTenantDomain = "broker-demo.onmicrosoft.com"
	// DemoClientID is the demo app's client ID.
	DemoClientID = "c0ffee00-0000-4000-a000-000000000002"
	// DemoClientSecret is the demo app's secret.
	DemoClientSecret = "demo-secret-for-the-broker-emulator"
	// DemoAppName is the demo app's display name.
	DemoAppName = "broker-demo"
)

// DemoResources are the resources AddDemo registers, each addressable with
// or without a trailing slash, and the app roles the demo app holds on them.
// Aliases are more identifier URIs of the same resource, as Entra knows
// them: Azure Resource Manager is also https://management.core.windows.net,
// the resource the Azure CLI asks for.
var DemoResources = []struct {
	URI, Name string
	Roles     []string
	Aliases   []string
}{
	{"https://api.loganalytics.io", "Log Analytics API", []string{"Data.Read"}, nil},
	{"https://api.applicationinsights.io", "Application Insights API", []string{"Data.Read"}, nil},
	{"https://management.azure.com", "Azure Resource Manager", nil, []string{"https://management.core.windows.net"}},
	{"https://monitor.azure.com", "Azure Monitor (Logs Ingestion)", nil, nil},
	{"https://vault.azure.net", "Azure Key Vault", nil, nil},
	{"https://storage.azure.com", "Azure Storage", nil, nil},
	{"https://graph.microsoft.com", "Microsoft Graph", nil, nil},
}

// AddDemo registers the demo tenant, app and resources. Calling it again
// does nothing. It fails when something it registers clashes with an
// existing registration.
func (e *Emulator) AddDemo() error {
	e.demoMu.Lock()
	defer e.demoMu.Unlock()
	if e.demo {
		return nil
	}
	if err := e.AddTenant(Tenant{ID: DemoTenantID, Name: "Broker Demo", Domains: []string{DemoTenantDomain}}); err != nil {
		return fmt.Errorf("add demo: %w", err)
	}
	if err := e.AddApp(App{
		TenantID: DemoTenantID, ClientID: DemoClientID, DisplayName: DemoAppName,
		Secrets: []Secret{{Value: DemoClientSecret}},
	}); err != nil {
		return fmt.Errorf("add demo: %w", err)
	}
	for _, d := range DemoResources {
		r := Resource{URIs: []string{d.URI, d.URI + "/"}, DisplayName: d.Name}
		for _, a := range d.Aliases {
			r.URIs = append(r.URIs, a, a+"/")
		}
		if len(d.Roles) > 0 {
			r.Roles = map[string][]string{DemoClientID: d.Roles}
		}
		if err := e.AddResource(r); err != nil {
			return fmt.Errorf("add demo: %w", err)
		}
	}
	e.demo = true
	return nil
}

// Describe writes, for a person, where the emulator listens and how to point
// a client at it: the authority, the demo registration with its secret (when
// AddDemo was called) and every registered app and resource. baseURL is the
// emulator's URL, e.g. "https://127.0.0.1:8443". Secrets of apps other than
// the demo app are not printed.
func (e *Emulator) Describe(w io.Writer, baseURL string) error {
	baseURL = strings.TrimSuffix(baseURL, "/")
	e.demoMu.Lock()
	demo := e.demo
	e.demoMu.Unlock()
	e.regMu.RLock()
	var apps []App
	for _, a := range e.apps {
		apps = append(apps, *a)
	}
	var resources []string
	seen := map[*Resource]bool{}
	for _, r := range e.resources {
		if !seen[r] {
			seen[r] = true
			resources = append(resources, r.URIs[0])
		}
	}
	e.regMu.RUnlock()
	slices.SortFunc(apps, func(a, b App) int { return strings.Compare(a.ClientID, b.ClientID) })
	slices.Sort(resources)

	var b strings.Builder
	fmt.Fprintf(&b, "Entra ID emulator listening on %s\n", baseURL)
	fmt.Fprintf(&b, "  authority host (AZURE_AUTHORITY_HOST): %s/\n", baseURL)
	fmt.Fprintf(&b, "  token endpoint: %s/{tenant}/oauth2/v2.0/token\n", baseURL)
	if demo {
		fmt.Fprintf(&b, "\nDemo registration:\n")
		fmt.Fprintf(&b, "  AZURE_TENANT_ID=%s   (or %s)\n", DemoTenantID, DemoTenantDomain)
		fmt.Fprintf(&b, "  AZURE_CLIENT_ID=%s\n", DemoClientID)
		fmt.Fprintf(&b, "  AZURE_CLIENT_SECRET=%s\n", DemoClientSecret)
		fmt.Fprintf(&b, "  try: curl -s %s/%s/oauth2/v2.0/token -d grant_type=client_credentials -d client_id=%s -d client_secret=%s -d scope=https://api.loganalytics.io/.default\n",
			baseURL, DemoTenantID, DemoClientID, DemoClientSecret)
		if strings.HasPrefix(baseURL, "https://") {
			fmt.Fprintf(&b, "  (a self-signed certificate needs curl --cacert <its PEM file>, and SSL_CERT_FILE for Go clients)\n")
		}
	}
	if len(apps) > 0 {
		fmt.Fprintf(&b, "\nApps:\n")
		for _, a := range apps {
			state := ""
			if a.Disabled {
				state = ", disabled"
			}
			fmt.Fprintf(&b, "  %s  %s (tenant %s, %d secret(s)%s)\n", a.ClientID, a.DisplayName, a.TenantID, len(a.Secrets), state)
		}
	}
	if len(resources) > 0 {
		fmt.Fprintf(&b, "\nResources (scope = <resource>/.default):\n")
		for _, r := range resources {
			fmt.Fprintf(&b, "  %s\n", r)
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("describe: %w", err)
	}
	return nil
}
