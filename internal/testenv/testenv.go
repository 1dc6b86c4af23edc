// Package testenv lets tests that need an external tool (promtool,
// prometheus, the go command) say so in one way: they skip with a visible
// notice when the tool is missing, or fail when CI requires every tool.
//
// `make test` sets SkippedFileEnv to a file; each skip for a missing tool
// appends a line to it, and make prints those lines after the run, so a
// skipped test is never silent.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

const (
	// RequireToolsEnv names the environment variable that turns a missing
	// tool from a skipped test into a failed one: CI (.ci/run) sets it to 1.
	RequireToolsEnv = "BROKER_REQUIRE_TOOLS"
	// SkippedFileEnv names the environment variable holding the file that
	// collects one line per test skipped for a missing tool.
	SkippedFileEnv = "BROKER_SKIPPED_FILE"
	// Marker starts every such line and skip message.
	Marker = "SKIP (missing tool"
)

// LookPath returns the path of the executable name. When it is not on PATH
// the test fails if BROKER_REQUIRE_TOOLS=1, and is otherwise skipped with a
// notice that says how to install the tool (install, e.g. "apt-get install
// prometheus"). It is safe for parallel tests.
func LookPath(t testing.TB, name, install string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv(RequireToolsEnv) == "1" {
		t.Fatalf("%s is not on PATH and %s=1: install it (%s)", name, RequireToolsEnv, install)
	}
	msg := fmt.Sprintf("%s %s): %s is not on PATH; install it (%s), or set %s=1 to make this a failure", Marker, name, name, install, RequireToolsEnv)
	record(t, msg)
	t.Skip(msg)
	return ""
}

// record appends "<test>: <msg>" to the file named by SkippedFileEnv, when
// set. A write failure is reported in the test's log only: the notice is a
// courtesy, not a result.
func record(t testing.TB, msg string) {
	t.Helper()
	file := os.Getenv(SkippedFileEnv)
	if file == "" {
		return
	}
	// One short write with O_APPEND: lines from parallel test binaries do
	// not interleave.
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Logf("testenv: %v", err)
		return
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%s: %s\n", t.Name(), msg); err != nil {
		t.Logf("testenv: %v", err)
	}
}
