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

// run is the whole program: main only calls it, so an end-to-end test can run
// the real thing on port 0 with its own environment and output.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	switch {
	case len(args) == 0:
		writeUsage(stdout)
		return nil
	case args[0] == "-h", args[0] == "-help", args[0] == "--help":
		writeUsage(stdout)
		return nil
	case args[0] == "-version", args[0] == "--version":
		cmd, args = "version", args[1:]
	case !strings.HasPrefix(args[0], "-"):
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
		if len(args) > 0 {
			return usageError{fmt.Sprintf("broker version takes no arguments, got %q", args[0])}
		}
		fmt.Fprintln(stdout, "broker", version.String())
		return nil
	case "help":
		return runHelp(args, stdout, func(a ...string) error { return run(ctx, a, getenv, stdout, stderr) })
	default:
		writeUsage(stderr)
		return usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
}

// loadConfig applies the defaults, the environment and the flags (command
// name's own, registered by own, and the configuration flags of its
// groups), in that order, reads the configuration and routes files, and
// validates the result for mode. It returns the routes file's routes.
func loadConfig(name string, args []string, getenv func(string) string, stdout io.Writer, mode config.Mode, own func(*flag.FlagSet)) (config.Config, []proxy.Route, error) {
	c, ok := commandNamed(name)
	if !ok {
		return config.Config{}, nil, fmt.Errorf("loadConfig: no command %q", name)
	}
	cfg := config.Default()
	envErr := cfg.FromEnv(getenv)
	if err := parseFlags(c, args, stdout, &cfg, own); err != nil {
		return cfg, nil, err
	}
	fileErr := cfg.LoadFile()
	var routes []proxy.Route
	var routesErr error
	if cfg.RoutesFile != "" {
		routes, routesErr = proxy.LoadRoutes(cfg.RoutesFile)
	}
	ps := config.AsProblems(errors.Join(envErr, fileErr))
	for _, p := range config.AsProblems(routesErr) {
		ps = append(ps, config.Problem{Setting: "BROKER_ROUTES_FILE", Problem: "BROKER_ROUTES_FILE: " + p.Problem, Fix: p.Fix})
	}
	if ps = append(ps, config.AsProblems(cfg.Validate(mode))...); len(ps) > 0 {
		return cfg, nil, configError{ps}
	}
	return cfg, routes, nil
}

// configError lists every configuration problem, one per line.
type configError struct{ problems config.Problems }

func (e configError) Error() string {
	return "the configuration has problems:\n  - " + strings.ReplaceAll(e.problems.Error(), "\n", "\n  - ")
}

func (e configError) Unwrap() error { return e.problems }
