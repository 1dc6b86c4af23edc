// Command loadtest measures the broker under load, beside baselines measured
// in the same run, and drives it through expiry and Entra outages.
//
// Usage:
//
//	loadtest compare -broker bin/broker   wrk against a constant /token handler, a minimal Go
//	                                      reverse proxy, nginx and the broker; ratios and targets
//	loadtest expiry  -broker bin/broker   5 minutes of /token load across 2-minute token refreshes
//	loadtest faults  -broker bin/broker   /token load through a scripted Entra outage
//	loadtest fleet   -broker bin/broker   20 brokers sharing one Redis beside 20 alone: Entra requests per scope
//	loadtest ingest  -broker bin/broker   Logs Ingestion throughput through the broker vs direct
//
// The subcommands upstream, constant and goproxy are the baseline servers
// that compare starts as separate processes (so that their CPU time and
// memory can be read from /proc); they are not meant to be run by hand.
//
// Everything listens on 127.0.0.1 only, and every run is bounded in time.
// See bench/README.md for what each run does and how to read its output.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errMissed):
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(3)
	default:
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// errMissed is returned when a run completed but a target or an assertion
// failed; main exits 3 for it, so scripts can tell it from a broken run.
var errMissed = errors.New("one or more targets missed")

const usage = `usage: loadtest compare|expiry|faults|fleet|ingest [flags]   (loadtest <command> -h for flags)
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "compare":
		return runCompare(ctx, args, stdout, stderr)
	case "expiry":
		return runExpiry(ctx, args, stdout, stderr)
	case "faults":
		return runFaults(ctx, args, stdout, stderr)
	case "fleet":
		return runFleet(ctx, args, stdout, stderr)
	case "ingest":
		return runIngest(ctx, args, stdout, stderr)
	case "upstream":
		return serveUpstream(ctx, args, stdout)
	case "constant":
		return serveConstant(ctx, args, stdout)
	case "goproxy":
		return serveGoProxy(ctx, args, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
