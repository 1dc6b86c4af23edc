package azure

import (
	"net"
	"slices"
	"strings"
)

// IsGUID reports whether s is a GUID in the 8-4-4-4-12 form the portal
// shows IDs in (tenant, client, object and workspace IDs), in either case.
func IsGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return false
			}
		} else if !isHex(s[i]) {
			return false
		}
	}
	return true
}

// IsTenantDomain reports whether s can be a tenant's verified domain, such
// as contoso.onmicrosoft.com: a DNS name of two labels or more (a trailing
// dot allowed), not an IP address.
func IsTenantDomain(s string) bool {
	return strings.Contains(s, ".") && validHost(s) && !strings.Contains(s, "_") && net.ParseIP(s) == nil
}

// docGUIDs are the example IDs of Microsoft's documentation: the
// Application (client) ID and the Directory (tenant) ID its pages show.
var docGUIDs = []string{
	"00001111-aaaa-2222-bbbb-3333cccc4444",
	"aaaabbbb-0000-cccc-1111-dddd2222eeee",
}

// IsPlaceholderGUID reports whether id is a GUID that stands for one to
// fill in, never a real tenant's or app's: its 32 hex digits are one digit
// repeated (00000000-0000-0000-0000-000000000000, the manifests'
// placeholder, or 11111111-1111-…, ffffffff-…), or it is one of the example
// IDs of Microsoft's documentation. Entra generates random (version 4)
// GUIDs, which are never of either kind. An id that is not a GUID is not a
// placeholder: IsGUID reports it.
func IsPlaceholderGUID(id string) bool {
	if !IsGUID(id) {
		return false
	}
	id = strings.ToLower(id)
	if slices.Contains(docGUIDs, id) {
		return true
	}
	digits := strings.ReplaceAll(id, "-", "")
	return strings.Count(digits, digits[:1]) == len(digits)
}
