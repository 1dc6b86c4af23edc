package azure

import (
	"context"
	"slices"
	"testing"

	"github.com/entrabroker/broker/internal/emulator"
)

func TestCapabilitiesClaims(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		caps []string
		want string
	}{
		{nil, ""},
		{[]string{"cp1"}, `{"access_token":{"xms_cc":{"values":["cp1"]}}}`},
		{[]string{"cp1", "cp2"}, `{"access_token":{"xms_cc":{"values":["cp1","cp2"]}}}`},
	} {
		if got := CapabilitiesClaims(tt.caps); got != tt.want {
			t.Errorf("CapabilitiesClaims(%q) = %s, want %s", tt.caps, got, tt.want)
		}
	}
}

// TestTokenWithCapabilities: CP1 reaches Entra as the claims parameter, and
// Entra's token says so (xms_cc); a plain request declares nothing.
func TestTokenWithCapabilities(t *testing.T) {
	t.Parallel()
	emu, srv := startEmulator(t, emulator.Options{})
	c := emulatorClient(t, srv, Config{})
	for _, tt := range []struct {
		caps []string
		want []string
	}{{nil, nil}, {[]string{"cp1"}, []string{"cp1"}}} {
		tok, err := c.TokenWith(context.Background(), "https://api.loganalytics.io/.default", TokenOptions{Capabilities: tt.caps})
		if err != nil {
			t.Fatalf("TokenWith(%q) error = %v", tt.caps, err)
		}
		claims, err := emu.VerifyAccessToken(tok.AccessToken)
		if err != nil {
			t.Fatalf("VerifyAccessToken = %v", err)
		}
		if !slices.Equal(claims.ClientCapabilities, tt.want) {
			t.Errorf("TokenWith(%q): xms_cc = %q, want %q", tt.caps, claims.ClientCapabilities, tt.want)
		}
	}
}
