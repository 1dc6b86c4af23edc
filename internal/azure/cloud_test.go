package azure

import (
	"strings"
	"testing"
)

func TestCloudByName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		want string
	}{
		{"", "AzurePublic"},
		{"AzurePublic", "AzurePublic"},
		{"azurepublic", "AzurePublic"},
		{"AzureCloud", "AzurePublic"},
		{" AZURECLOUD ", "AzurePublic"},
		{"AzureUSGovernment", "AzureUSGovernment"},
		{"AzureUSGovernmentCloud", "AzureUSGovernment"},
		{"usgov", "AzureUSGovernment"},
		{"AzureChina", "AzureChina"},
		{"AzureChinaCloud", "AzureChina"},
	}
	for _, tt := range tests {
		got, err := CloudByName(tt.name)
		if err != nil || got.Name != tt.want {
			t.Errorf("CloudByName(%q) = %q, %v, want %q", tt.name, got.Name, err, tt.want)
		}
	}
	for _, bad := range []string{"AzureGermany", "azure", "public-cloud"} {
		_, err := CloudByName(bad)
		if err == nil {
			t.Errorf("CloudByName(%q) error = nil, want an error", bad)
			continue
		}
		for _, valid := range []string{"AzurePublic", "AzureUSGovernment", "AzureChina"} {
			if !strings.Contains(err.Error(), valid) {
				t.Errorf("CloudByName(%q) error = %q, want it to list %s", bad, err, valid)
			}
		}
	}
}

func TestCloudValues(t *testing.T) {
	t.Parallel()
	if got, want := AzurePublic.LogAnalytics.Endpoint, "https://api.loganalytics.azure.com"; got != want {
		t.Errorf("AzurePublic.LogAnalytics.Endpoint = %q, want %q", got, want)
	}
	if got, want := AzurePublic.LogAnalytics.Audience, "https://api.loganalytics.io"; got != want {
		t.Errorf("AzurePublic.LogAnalytics.Audience = %q, want %q", got, want)
	}
	for _, c := range []Cloud{AzurePublic, AzureUSGovernment, AzureChina} {
		for _, u := range []string{c.AuthorityHost, c.LogAnalytics.Endpoint, c.AppInsights.Endpoint, c.ARM.Endpoint} {
			if !strings.HasPrefix(u, "https://") || strings.HasSuffix(u, "/") {
				t.Errorf("%s: %q, want https and no trailing slash", c.Name, u)
			}
		}
		if _, err := parseAuthority(c.AuthorityHost); err != nil {
			t.Errorf("%s: parseAuthority(%q) error = %v", c.Name, c.AuthorityHost, err)
		}
	}
}
