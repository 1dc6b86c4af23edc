package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/entrabroker/broker/internal/config"
)

// runArgs runs the program with an empty environment and returns its
// output, what it returned and the exit status main would give.
func runArgs(t *testing.T, args ...string) (stdout, stderr string, code int, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, func(string) string { return "" }, &out, &errOut)
	code = exitCode(err, &errOut)
	return out.String(), errOut.String(), code, err
}

// helpGolden compares got with testdata/help/name, or rewrites it with -update.
func helpGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "help", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to write it)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("help differs from %s (-want +got; -update rewrites it):\n%s", path, diff)
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args   []string
		golden string
	}{
		{nil, "usage.txt"},
		{[]string{"-h"}, "usage.txt"},
		{[]string{"--help"}, "usage.txt"},
		{[]string{"help"}, "usage.txt"},
		{[]string{"help", "-h"}, "usage.txt"},
		{[]string{"serve", "-h"}, "serve.txt"},
		{[]string{"help", "serve"}, "serve.txt"},
		{[]string{"demo", "-h"}, "demo.txt"},
		{[]string{"demo", "--help"}, "demo.txt"},
		{[]string{"emulator", "-h"}, "emulator.txt"},
		{[]string{"token", "-h"}, "token.txt"},
		{[]string{"help", "token"}, "token.txt"},
		{[]string{"check", "-h"}, "check.txt"},
		{[]string{"help", "config"}, "config.txt"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(append([]string{"broker"}, tt.args...), " "), func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code, err := runArgs(t, tt.args...)
			if code != 0 || stderr != "" {
				t.Errorf("exit status %d (%v), stderr %q; want 0 and nothing on stderr", code, err, stderr)
			}
			helpGolden(t, tt.golden, stdout)
		})
	}
}

// flagLine is a flag's line in PrintDefaults: the name and at most one
// word naming its value, such as "-workspace ID".
var flagLine = regexp.MustCompile(`^  -[a-z0-9-]+( [A-Za-z]+)?$`)

func TestCommandHelpShape(t *testing.T) {
	t.Parallel()
	for _, c := range commands {
		if c.name == "version" || c.name == "help" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			help, _, _, _ := runArgs(t, c.name, "-h")
			for _, l := range strings.Split(help, "\n") {
				if strings.HasPrefix(l, "  -") && !flagLine.MatchString(l) {
					t.Errorf("flag line %q: a flag is followed by one value name at most (back quotes in a usage string name the value)", l)
				}
			}
			own, shared, hasShared := strings.Cut(help, "\nConfiguration:")
			if hasShared != (c.groups != 0) {
				t.Errorf("help has a Configuration heading: %v, want %v", hasShared, c.groups != 0)
			}
			if strings.Contains(own, "(env ") {
				t.Errorf("a configuration flag is listed among the command's own flags:\n%s", own)
			}
			// Every configuration flag the command accepts is listed under
			// its group's heading, and no other.
			for _, s := range config.Settings() {
				listed := strings.Contains(shared, "  -"+s.Flag+" ") || strings.Contains(shared, "  -"+s.Flag+"\n") || strings.Contains(shared, ": "+s.Env) || strings.Contains(shared, ", "+s.Env)
				if uses := c.groups&s.Group != 0; uses != listed {
					t.Errorf("%s listed: %v, want %v (the command's groups)", s.Env, listed, uses)
				}
			}
		})
	}
}

func TestDemoHelpShowsOnlyWhatDemoUses(t *testing.T) {
	t.Parallel()
	help, _, _, _ := runArgs(t, "demo", "-h")
	for _, unused := range []string{"-tenant-id", "-client-id", "AZURE_CLIENT_SECRET", "-client-certificate-path", "-federated-token-file", "-authority-host", "-config", "-cloud", "-loganalytics-endpoint"} {
		if strings.Contains(help, unused) {
			t.Errorf("broker demo -h lists %s, which demo ignores", unused)
		}
	}
	// Demo ignores them, so it refuses them as flags rather than pretend.
	_, _, code, err := runArgs(t, "demo", "--tenant-id", "x")
	if code != 2 || !strings.Contains(fmt.Sprint(err), "demo -h") {
		t.Errorf("broker demo --tenant-id x = %v (exit %d), want a usage error pointing at demo -h (exit 2)", err, code)
	}
}

func TestCheckHelpNamesTheWorkspaceValue(t *testing.T) {
	t.Parallel()
	help, _, _, _ := runArgs(t, "check", "-h")
	if !strings.Contains(help, "\n  -workspace ID\n") || strings.Contains(help, "-workspace print") {
		t.Errorf("broker check -h does not show -workspace ID:\n%s", help)
	}
}

func TestHelpConfigListsEverySetting(t *testing.T) {
	t.Parallel()
	help, _, _, _ := runArgs(t, "help", "config")
	for _, s := range config.Settings() {
		head := "\n  " + s.Env
		if s.Flag != "" {
			head += ", --" + s.Flag
		}
		i := strings.Index(help, head)
		if i < 0 {
			t.Errorf("broker help config lacks %q", head)
			continue
		}
		entry, _, _ := strings.Cut(help[i+1:], "\n\n")
		if s.Default != "" && !strings.Contains(entry, "(default "+s.Default+")") {
			t.Errorf("broker help config: %s does not give its default %s:\n%s", s.Env, s.Default, entry)
		}
		if s.Usage == "" || !strings.Contains(entry, s.Usage) {
			t.Errorf("broker help config: %s does not say what it means (usage %q):\n%s", s.Env, s.Usage, entry)
		}
	}
}

func TestVersionForms(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		stdout, _, code, err := runArgs(t, args...)
		if code != 0 || !strings.HasPrefix(stdout, "broker ") || strings.Count(stdout, "\n") != 1 {
			t.Errorf("broker %s = %q, %v (exit %d); want one line broker <version>, exit 0", strings.Join(args, " "), stdout, err, code)
		}
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string // in the message
	}{
		{[]string{"fly"}, `unknown command "fly"`},
		{[]string{"help", "fly"}, `unknown command "fly"`},
		{[]string{"help", "token", "check"}, "one command"},
		{[]string{"version", "now"}, "takes no arguments"},
		{[]string{"token", "--bogus"}, "-bogus"},
		{[]string{"check", "extra"}, `unexpected argument "extra"`},
		{[]string{"serve", "--cache-size"}, "needs an argument"},
		{[]string{"emulator", "--listen"}, "needs an argument"},
		{[]string{"--bogus"}, "serve -h"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code, err := runArgs(t, tt.args...)
			if code != 2 || !errors.As(err, new(usageError)) {
				t.Errorf("exit status %d (%v), want 2 for a usage error", code, err)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr = %q, want it to say %q", stderr, tt.want)
			}
			// The mistake is said in a few lines, not buried in every flag.
			if strings.Contains(stdout+stderr, "\n  -") {
				t.Errorf("a usage error printed the help:\nstdout %q\nstderr %q", stdout, stderr)
			}
		})
	}
}

func TestListenErrorNamesTheSetting(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	addr := busy.Addr().String()

	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"api", map[string]string{"BROKER_OPS_LISTEN": "127.0.0.1:0"}, []string{"demo", "--listen", addr},
			"open the API listener on " + addr + ": listen tcp " + addr + ": bind: address already in use: another process (another broker?) holds " + addr + ": stop it, or set BROKER_LISTEN (--listen) to a free address"},
		{"ops", map[string]string{"BROKER_LISTEN": "127.0.0.1:0", "BROKER_OPS_LISTEN": addr}, []string{"demo"},
			"set BROKER_OPS_LISTEN (--ops-listen) to a free address"},
		{"emulator", nil, []string{"emulator", "--listen", addr}, "set --listen to a free address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			err := run(context.Background(), tt.args, func(k string) string { return tt.env[k] }, io.Discard, &stderr)
			if code := exitCode(err, &stderr); code != 1 || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run = %v (exit %d), want exit 1 and %q", err, code, tt.want)
			}
		})
	}
}

func TestListenErrorFixes(t *testing.T) {
	t.Parallel()
	opErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", errno)}
	}
	tests := []struct {
		err  error
		want string
	}{
		{opErr(syscall.EADDRINUSE), "stop it, or set BROKER_LISTEN (--listen) to a free address"},
		{opErr(syscall.EACCES), "permission denied: ports below 1024 need privileges"},
		{&os.PathError{Op: "mkdir", Path: "/run/x", Err: os.ErrPermission}, "set BROKER_LISTEN (--listen) to a port above 1024 or another path"},
		{opErr(syscall.EADDRNOTAVAIL), "no network interface of this machine has that address"},
		{errors.New("something else"), "set BROKER_LISTEN (--listen) to an address this machine can listen on"},
	}
	for _, tt := range tests {
		got := listenError("the API listener", "BROKER_LISTEN (--listen)", "127.0.0.1:80", tt.err)
		if !strings.Contains(got.Error(), tt.want) || !errors.Is(got, tt.err) {
			t.Errorf("listenError(%v) = %q, want it to wrap the error and say %q", tt.err, got, tt.want)
		}
	}
}
