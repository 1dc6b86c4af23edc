// Command broker is a token broker for Microsoft Entra ID: it holds an app
// registration's credentials, fetches and caches tokens with the
// client-credentials grant, serves them on localhost (a /token endpoint and
// the managed-identity protocols of the Azure SDKs) and reverse-proxies Azure
// APIs such as Log Analytics with the bearer header added.
//
// Usage:
//
//	broker [serve]          run the broker (the default)
//	broker demo             run the built-in emulator and the broker, no configuration needed
//	broker emulator         run the Entra ID and Log Analytics emulator alone
//	broker token --scope S  print one token as JSON
//	broker check            check the configuration, the tokens and (--workspace ID) a Log Analytics query
//	broker version          print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "broker:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "broker:", err)
		os.Exit(1)
	}
}
