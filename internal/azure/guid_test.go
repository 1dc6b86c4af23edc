package azure

import "testing"

func TestIsPlaceholderGUID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		"00000000-0000-0000-0000-000000000000": true,
		"11111111-1111-1111-1111-111111111111": true,
		"FFFFFFFF-ffff-FFFF-ffff-FFFFFFFFFFFF": true,
		"00001111-aaaa-2222-bbbb-3333cccc4444": true,
		"aaaabbbb-0000-cccc-1111-dddd2222eeee": true,
		"00000000-0000-0000-0000-000000000001": false, // regular, but not a placeholder: some tests use such IDs
		"decade00-0000-4000-a000-000000000001": false, // the emulator's demo tenant
		"72f988bf-86f1-41af-91ab-2d7cd011db47": false,
		"00003333-aaaa-2222-bbbb-3333cccc4444": false,
		"contoso.onmicrosoft.com":              false,
		"":                                     false,
	} {
		if got := IsPlaceholderGUID(id); got != want {
			t.Errorf("IsPlaceholderGUID(%q) = %v, want %v", id, got, want)
		}
	}
}
