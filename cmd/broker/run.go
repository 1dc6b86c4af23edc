package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/entrabroker/broker/internal/config"
	"github.com/entrabroker/broker/internal/proxy"
	"github.com/entrabroker/broker/internal/version"
)

// usageError is a mistake in the command line; main exits 2 for it.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usage = `broker — a token broker for Microsoft Entra ID

Usage:
  broker [serve] [flags]      run the broker (configuration from the environment; flags win)
  broker demo [flags]         run the built-in Entra ID and Log Analytics emulator and the broker: no Azure account needed
  broker emulator [flags]     run the emulator alone, for any client to point at
  broker token --scope S      print one token as JSON (or --resource R; --identity NAME)
  broker check [--workspace ID] [--json]
                              check the configuration, each identity's token and, with a workspace, a Log Analytics query
  broker refresh [--identity NAME] [--scope S]
                              make the running broker fetch fresh tokens now (its ops listener: BROKER_OPS_LISTEN)
  broker version              print the version

Run "broker <command> -h" for the flags of a command.
`

// run is the whole program: main only calls it, so an end-to-end test can run
// the real thing on port 0 with its own environment and output.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return runServe(ctx, args, getenv, stdout, stderr, config.Serve)
	case "demo":
		return runServe(ctx, args, getenv, stdout, stderr, config.Demo)
	case "emulator":
		return runEmulator(ctx, args, stdout, stderr)
	case "token":
		return runToken(ctx, args, getenv, stdout, stderr)
	case "check":
		return runCheck(ctx, args, getenv, stdout, stderr)
	case "refresh":
		return runRefresh(ctx, args, getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "broker", version.String())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
}

// loadConfig applies the defaults, the environment and the flags, in that
// order, and validates the result for mode. extra registers the command's
// own flags.
func loadConfig(name string, args []string, getenv func(string) string, stderr io.Writer, mode config.Mode, extra func(*flag.FlagSet)) (config.Config, error) {
	cfg := config.Default()
	envErr := cfg.FromEnv(getenv)
	fs := flag.NewFlagSet("broker "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.RegisterFlags(fs)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return cfg, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	fileErr := cfg.LoadFile()
	var routesErr error
	if cfg.RoutesFile != "" {
		if _, err := proxy.LoadRoutes(cfg.RoutesFile); err != nil {
			routesErr = fmt.Errorf("BROKER_ROUTES_FILE: %w", err)
		}
	}
	if err := errors.Join(envErr, fileErr, routesErr, cfg.Validate(mode)); err != nil {
		return cfg, configError{err}
	}
	return cfg, nil
}

// configError lists every configuration problem, one per line.
type configError struct{ err error }

func (e configError) Error() string {
	return "the configuration has problems:\n  - " + strings.ReplaceAll(e.err.Error(), "\n", "\n  - ")
}

func (e configError) Unwrap() error { return e.err }
