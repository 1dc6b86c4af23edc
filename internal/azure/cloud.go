package azure

import (
	"fmt"
	"strings"
)

// Cloud is one Azure cloud: where its Entra ID authority lives and the
// endpoints and token audiences of the APIs the broker talks to.
//
// Cloud values are plain data; copy and modify them freely (for example to
// point a service at an emulator).
type Cloud struct {
	// Name is the canonical name: "AzurePublic", "AzureUSGovernment" or
	// "AzureChina".
	Name string
	// AuthorityHost is the Entra ID host, e.g. "https://login.microsoftonline.com",
	// without a trailing slash. AZURE_AUTHORITY_HOST overrides it (see
	// Config.AuthorityHost).
	AuthorityHost string
	// LogAnalytics is the Log Analytics Query API.
	LogAnalytics Service
	// AppInsights is the Application Insights Query API.
	AppInsights Service
	// ARM is Azure Resource Manager.
	ARM Service
	// LogsIngestion is the Azure Monitor Logs Ingestion API. It has no
	// endpoint of its own: each data collection endpoint or rule has one.
	LogsIngestion Service
}

// Service is one Azure API in a cloud: where to send requests and which
// audience its tokens must carry.
type Service struct {
	// Endpoint is the API's base URL, without a trailing slash.
	Endpoint string
	// Audience is the token audience (the resource), e.g.
	// "https://api.loganalytics.io".
	Audience string
}

// Scope returns the client-credentials scope for the service:
// Audience + "/.default". An audience that ends in a slash keeps it, so ARM's
// "https://management.core.windows.net/" gives
// "https://management.core.windows.net//.default", as azcore sends it.
func (s Service) Scope() string { return s.Audience + "/.default" }

// The three clouds. Sources: reference §1.1 (authority hosts), §5.1 and §5.9
// (Log Analytics and Application Insights), azcore arm/runtime (ARM).
var (
	// AzurePublic is the global Azure cloud. Its Log Analytics endpoint is the
	// newer api.loganalytics.azure.com host, while the token audience stays
	// https://api.loganalytics.io: no source says the .azure.com name is
	// accepted as an audience (reference §5.1).
	AzurePublic = Cloud{
		Name:          "AzurePublic",
		AuthorityHost: "https://login.microsoftonline.com",
		LogAnalytics:  Service{Endpoint: "https://api.loganalytics.azure.com", Audience: "https://api.loganalytics.io"},
		AppInsights:   Service{Endpoint: "https://api.applicationinsights.io", Audience: "https://api.applicationinsights.io"},
		ARM:           Service{Endpoint: "https://management.azure.com", Audience: "https://management.core.windows.net/"},
		LogsIngestion: Service{Audience: "https://monitor.azure.com"},
	}
	// AzureUSGovernment is Azure Government (US).
	AzureUSGovernment = Cloud{
		Name:          "AzureUSGovernment",
		AuthorityHost: "https://login.microsoftonline.us",
		LogAnalytics:  Service{Endpoint: "https://api.loganalytics.us", Audience: "https://api.loganalytics.us"},
		AppInsights:   Service{Endpoint: "https://api.applicationinsights.us", Audience: "https://api.applicationinsights.us"},
		ARM:           Service{Endpoint: "https://management.usgovcloudapi.net", Audience: "https://management.core.usgovcloudapi.net/"},
		LogsIngestion: Service{Audience: "https://monitor.azure.us"},
	}
	// AzureChina is Azure operated by 21Vianet. Its authority host is the one
	// Microsoft's documentation and msal-go's preferred_network name;
	// login.chinacloudapi.cn (azcore's default) is an alias of it.
	AzureChina = Cloud{
		Name:          "AzureChina",
		AuthorityHost: "https://login.partner.microsoftonline.cn",
		LogAnalytics:  Service{Endpoint: "https://api.loganalytics.azure.cn", Audience: "https://api.loganalytics.azure.cn"},
		AppInsights:   Service{Endpoint: "https://api.applicationinsights.azure.cn", Audience: "https://api.applicationinsights.azure.cn"},
		ARM:           Service{Endpoint: "https://management.chinacloudapi.cn", Audience: "https://management.core.chinacloudapi.cn/"},
		LogsIngestion: Service{Audience: "https://monitor.azure.cn"},
	}
)

// cloudNames maps every accepted name, lower case, to its cloud. The aliases
// are the names the Azure CLI, azcore and ARM templates use.
var cloudNames = map[string]*Cloud{
	"azurepublic":            &AzurePublic,
	"azurepubliccloud":       &AzurePublic,
	"azurecloud":             &AzurePublic,
	"public":                 &AzurePublic,
	"azureusgovernment":      &AzureUSGovernment,
	"azureusgovernmentcloud": &AzureUSGovernment,
	"azuregovernment":        &AzureUSGovernment,
	"usgovernment":           &AzureUSGovernment,
	"usgov":                  &AzureUSGovernment,
	"azurechina":             &AzureChina,
	"azurechinacloud":        &AzureChina,
	"china":                  &AzureChina,
}

// CloudByName returns the cloud called name: "AzurePublic",
// "AzureUSGovernment" or "AzureChina", case-insensitive, or one of their
// common aliases ("AzureCloud", "AzureUSGovernmentCloud", "AzureChinaCloud",
// "Public", "USGov", "China"). An empty name means AzurePublic. Any other
// name is an error that lists the valid names.
func CloudByName(name string) (Cloud, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	if n == "" {
		return AzurePublic, nil
	}
	if c, ok := cloudNames[n]; ok {
		return *c, nil
	}
	return Cloud{}, fmt.Errorf("azure: unknown cloud %q: use AzurePublic, AzureUSGovernment or AzureChina (aliases: AzureCloud, AzureUSGovernmentCloud, AzureChinaCloud)", name)
}
