package main

import (
	"bytes"
	"context"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"

	"github.com/entrabroker/broker/internal/config"
)

// readmeEmulatorURL is the emulator's address in the README's commands.
const readmeEmulatorURL = "http://127.0.0.1:8500"

// shellCommand is one ./bin/broker line of a README shell block, with the
// VAR=value words before it.
type shellCommand struct {
	env  map[string]string
	args []string
}

// shellBlock is a README ```sh block: its exports and broker commands.
type shellBlock struct {
	exports  map[string]string
	commands []shellCommand
}

// readmeSection returns the README's section under heading, up to the next
// heading of the same level.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README has no section %q", heading)
	}
	section, _, _ := strings.Cut(rest, "\n## ")
	return section
}

// shellBlocks parses the ```sh blocks of a README section: `export VAR=value
// ...` lines and `[VAR=value ...] ./bin/broker ...` lines, comments dropped.
// Any other line fails the test: the README's commands are run as written.
// Paths under examples/ are made relative to this package.
func shellBlocks(t *testing.T, section string) []shellBlock {
	t.Helper()
	var blocks []shellBlock
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1) {
		b := shellBlock{exports: map[string]string{}}
		for _, line := range strings.Split(m[1], "\n") {
			line, _, _ = strings.Cut(line, " #")
			words := strings.Fields(line)
			if len(words) == 0 {
				continue
			}
			for i, w := range words {
				if strings.HasPrefix(w, "examples/") {
					words[i] = "../../" + w
				} else if k, v, ok := strings.Cut(w, "="); ok && strings.HasPrefix(v, "examples/") {
					words[i] = k + "=../../" + v
				}
			}
			if words[0] == "export" {
				for _, w := range words[1:] {
					k, v, ok := strings.Cut(w, "=")
					if !ok {
						t.Fatalf("README: export %q is not VAR=value", w)
					}
					b.exports[k] = v
				}
				continue
			}
			c := shellCommand{env: map[string]string{}}
			for len(words) > 0 && strings.Contains(words[0], "=") {
				k, v, _ := strings.Cut(words[0], "=")
				c.env[k], words = v, words[1:]
			}
			if len(words) == 0 || words[0] != "./bin/broker" {
				t.Fatalf("README: %q is neither an export nor a ./bin/broker command", line)
			}
			c.args = words[1:]
			b.commands = append(b.commands, c)
		}
		blocks = append(blocks, b)
	}
	return blocks
}

// startEmulator runs `broker emulator` with args through run, on a free
// port, and returns its URL.
func startEmulator(t *testing.T, args []string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append(slices.Clone(args), "--listen", "127.0.0.1:0"), func(string) string { return "" }, out, &syncBuffer{})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("broker emulator = %v, want nil after its context ended", err)
		}
	})
	urlRE := regexp.MustCompile(`listening on (http://127\.0\.0\.1:\d+)\n`)
	var url string
	waitFor(t, "the emulator's URL", func() bool {
		if m := urlRE.FindStringSubmatch(out.String()); m != nil {
			url = m[1]
			return true
		}
		return false
	})
	return url
}

// TestReadmeRunAgainstEmulator runs the README's "Run against the emulator"
// commands as written: the emulator in one block, and in the next the
// exports and every broker command, with the emulator on a free port.
func TestReadmeRunAgainstEmulator(t *testing.T) {
	t.Parallel()
	blocks := shellBlocks(t, readmeSection(t, "## Run against the emulator"))
	if len(blocks) != 2 || len(blocks[0].commands) != 1 || blocks[0].commands[0].args[0] != "emulator" {
		t.Fatalf("README's Run against the emulator: want a block running broker emulator, then one with the exports and commands; got %+v", blocks)
	}
	url := startEmulator(t, blocks[0].commands[0].args)
	env := map[string]string{}
	for k, v := range blocks[1].exports {
		env[k] = strings.ReplaceAll(v, readmeEmulatorURL, url)
	}
	for _, want := range []string{"AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_AUTHORITY_HOST", "BROKER_LOGANALYTICS_ENDPOINT"} {
		if env[want] == "" {
			t.Errorf("README's Run against the emulator does not export %s", want)
		}
	}
	ran := map[string]bool{}
	for _, c := range blocks[1].commands {
		name := c.args[0]
		ran[name] = true
		cenv := maps.Clone(env)
		maps.Copy(cenv, c.env)
		if name == "serve" {
			// Free ports instead of 8400 and 9400; the rest as written.
			cenv["BROKER_LISTEN"], cenv["BROKER_OPS_LISTEN"] = "127.0.0.1:0", "127.0.0.1:0"
			r := start(t, cenv, c.args...)
			code, _, body := call(t, "GET", r.api+"/token?resource=https://api.loganalytics.io", map[string]string{"Metadata": "true"}, "")
			if code != 200 || !bytes.Contains(body, []byte(`"access_token":"ey`)) {
				t.Errorf("GET /token of the README's broker serve = %d %s, want 200 with a token", code, body)
			}
			if err := r.stop(t); err != nil {
				t.Errorf("broker serve = %v after a graceful stop", err)
			}
			continue
		}
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), c.args, func(k string) string { return cenv[k] }, &stdout, &stderr); err != nil {
			t.Errorf("README's broker %s = %v\nstdout:\n%s\nstderr:\n%s", strings.Join(c.args, " "), err, stdout.String(), stderr.String())
			continue
		}
		switch name {
		case "token":
			if !strings.Contains(stdout.String(), `"access_token": "ey`) {
				t.Errorf("README's broker token printed %s, want a token", stdout.String())
			}
		case "check":
			if !strings.Contains(stdout.String(), "All 3 checks passed.") {
				t.Errorf("README's broker check printed:\n%s\nwant all of config, token and query to pass", stdout.String())
			}
		}
	}
	for _, want := range []string{"token", "check", "serve"} {
		if !ran[want] {
			t.Errorf("README's Run against the emulator does not run broker %s", want)
		}
	}
}

// TestReadmeCheckSample runs the README's broker check sample — the
// environment of "Run against the emulator" and examples/identities.yaml —
// and compares the output with the README's, expiry times aside.
func TestReadmeCheckSample(t *testing.T) {
	t.Parallel()
	section := readmeSection(t, "## broker check")
	m := regexp.MustCompile("(?s)```text\n\\$ (.*?)\n(.*?)```").FindStringSubmatch(section)
	if m == nil {
		t.Fatal("README has no broker check sample")
	}
	cmds := shellBlocks(t, "```sh\n"+m[1]+"\n```")[0].commands
	want := m[2]
	emuBlocks := shellBlocks(t, readmeSection(t, "## Run against the emulator"))
	if len(emuBlocks) != 2 {
		t.Fatalf("README's Run against the emulator has %d shell blocks, want 2", len(emuBlocks))
	}
	// The emulator as in the README, served by httptest on a free port.
	emuArgs := emuBlocks[0].commands[0].args
	if len(emuArgs) != 3 || emuArgs[1] != "--config" {
		t.Fatalf("README's emulator command is %q, want broker emulator --config <file>", emuArgs)
	}
	az, err := newEmulator(emuArgs[2], 0, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	emu := httptest.NewServer(az)
	t.Cleanup(emu.Close)

	env := map[string]string{}
	for k, v := range emuBlocks[1].exports {
		env[k] = strings.ReplaceAll(v, readmeEmulatorURL, emu.URL)
	}
	maps.Copy(env, cmds[0].env)
	if env["BROKER_CONFIG"] != "../../examples/identities.yaml" {
		t.Errorf("README's broker check sample uses BROKER_CONFIG=%q, want examples/identities.yaml", env["BROKER_CONFIG"])
	}
	// As the README says to: git checks the secret out world-readable.
	if err := os.Chmod("../../examples/reporting.secret", 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	err = run(context.Background(), cmds[0].args, func(k string) string { return env[k] }, &stdout, &bytes.Buffer{})
	if err == nil {
		t.Error("broker check = nil, want a failure as in the README")
	}
	exp := regexp.MustCompile(`exp=\S+ \(in \d+m\)`)
	norm := func(s string) string { return exp.ReplaceAllString(s, "exp=…") }
	got := strings.ReplaceAll(stdout.String(), emu.URL, readmeEmulatorURL)
	if diff := cmp.Diff(norm(want), norm(got)); diff != "" {
		t.Errorf("README's broker check sample differs from a real run (-README +run):\n%s", diff)
	}
}

// TestExampleIdentities loads examples/identities.yaml as the broker does:
// every identity valid, each secret file present.
func TestExampleIdentities(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.ConfigFile = filepath.Join("..", "..", "examples", "identities.yaml")
	if err := cfg.LoadFile(); err != nil {
		t.Fatalf("examples/identities.yaml: %v", err)
	}
	if err := cfg.Validate(config.Serve); err != nil {
		t.Errorf("examples/identities.yaml alone: %v", err)
	}
	if len(cfg.Identities) == 0 {
		t.Error("examples/identities.yaml names no identity")
	}
}
