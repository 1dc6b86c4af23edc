// Command broker is a token broker for Microsoft Entra ID: it holds an app
// registration's credentials, fetches and caches tokens with the
// client-credentials grant, serves them on localhost (a /token endpoint and
// the managed-identity protocols of the Azure SDKs) and reverse-proxies Azure
// APIs such as Log Analytics with the bearer header added.
//
// Usage:
//
//	broker serve            run the broker (flags without a command mean serve)
//	broker demo             run the built-in emulator and the broker, no configuration needed
//	broker emulator         run the Entra ID and Log Analytics emulator alone
//	broker token --scope S  print one token as JSON
//	broker check            check the configuration, the tokens and (--workspace ID) a Log Analytics query
//	broker version          print the version
//	broker help [command]   list the commands, or a command's flags; help config lists every setting
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
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode is the exit status for what run returned, whose message it
// prints on stderr: 0 for success and for help asked for, 2 for a mistake
// in the command line, 1 for anything else.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintln(stderr, "broker:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "broker:", err)
		return 1
	}
}
