// Package version holds the broker's version, stamped at build time with
// -ldflags "-X github.com/entrabroker/broker/internal/version.Version=v1.2.3".
package version

import "runtime/debug"

// Version is the release version; "dev" when not stamped.
var Version = "dev"

// String returns Version, or the module version recorded by the Go toolchain
// when Version was not stamped and the binary was built with `go install`.
func String() string {
	if Version != "dev" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return Version
}
