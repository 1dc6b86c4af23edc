package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/config"
)

// tokenTimeout bounds `broker token`: one token request, retried by nobody.
const tokenTimeout = 30 * time.Second

// runToken prints one token for --scope or --resource as JSON, fetched with
// the broker's configuration. On failure it prints the explanation and the
// hint on stderr and returns an error (exit status 1).
func runToken(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var scope, resource, identity string
	cfg, _, err := loadConfig("token", args, getenv, stdout, config.Serve, func(fs *flag.FlagSet) {
		fs.StringVar(&identity, "identity", "", "the identity to use, by `name` or client ID (default: the environment's, else the identities file's first)")
		fs.StringVar(&scope, "scope", "", "the `scope` to get a token for, e.g. https://api.loganalytics.io/.default")
		fs.StringVar(&resource, "resource", "", "the resource `URI` to get a token for, e.g. https://api.loganalytics.io")
	})
	if err != nil {
		return err
	}
	switch {
	case scope != "" && resource != "":
		return usageError{"give --scope or --resource, not both"}
	case scope != "":
		scope, err = azure.NormalizeScope(scope)
	case resource != "":
		scope, err = azure.ScopeForResource(resource)
	default:
		return usageError{"give --scope S or --resource R, e.g. --resource https://api.loganalytics.io"}
	}
	if err != nil {
		return explain(stderr, err)
	}
	id, err := pickIdentity(cfg, identity)
	if err != nil {
		return err
	}
	cloud, err := cfg.AzureCloud()
	if err != nil {
		return err
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	client, _, err := newClient(id, cfg, cloud, log.Named("azure").WithOptions(zap.IncreaseLevel(zap.WarnLevel)))
	if err != nil {
		return explain(stderr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, tokenTimeout)
	defer cancel()
	tok, err := client.Token(ctx, scope)
	if err != nil {
		return explain(stderr, err)
	}
	now := time.Now()
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
		ExpiresOn   int64  `json:"expires_on"`
		Scope       string `json:"scope"`
	}{tok.AccessToken, "Bearer", int64(tok.ExpiresOn.Sub(now) / time.Second), tok.ExpiresOn.Unix(), scope})
}

// explain prints an Entra failure for a person: what happened, the AADSTS
// codes and what to do. It returns an error that says the same in one line.
func explain(w io.Writer, err error) error {
	var ae *azure.Error
	if !errors.As(err, &ae) {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "error: %s\n", ae.Error())
	if ae.CorrelationID != "" {
		fmt.Fprintf(&b, "correlation ID: %s\n", ae.CorrelationID)
	}
	if ae.Hint != "" {
		fmt.Fprintf(&b, "hint: %s\n", ae.Hint)
	}
	_, _ = io.WriteString(w, b.String())
	return silentError{err}
}

// silentError has already been explained on stderr; main prints only its
// one-line form.
type silentError struct{ error }

func (e silentError) Unwrap() error { return e.error }
