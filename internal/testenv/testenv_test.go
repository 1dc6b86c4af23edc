package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLookPathFound(t *testing.T) {
	if got := LookPath(t, "sh", "apt-get install dash"); got == "" {
		t.Error(`LookPath("sh") = "", want its path`)
	}
}

func TestLookPathMissingRecordsTheSkip(t *testing.T) {
	file := filepath.Join(t.TempDir(), "skipped.txt")
	t.Setenv(SkippedFileEnv, file)
	t.Setenv(RequireToolsEnv, "")
	ran := false
	t.Run("needs-tool", func(t *testing.T) {
		LookPath(t, "no-such-tool-for-the-broker-tests", "apt-get install it")
		ran = true
	})
	if ran {
		t.Fatal("LookPath of a missing tool returned instead of skipping")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	want := "TestLookPathMissingRecordsTheSkip/needs-tool: " + Marker + " no-such-tool-for-the-broker-tests): "
	if !strings.HasPrefix(string(b), want) || strings.Count(string(b), "\n") != 1 {
		t.Errorf("skipped file = %q, want one line starting %q", b, want)
	}
}
