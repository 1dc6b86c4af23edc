package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"text/template"
	"time"

	"go.uber.org/zap"

	"github.com/entrabroker/broker/internal/config"
	"github.com/entrabroker/broker/internal/emulator"
	"github.com/entrabroker/broker/internal/emulator/loganalytics"
	"github.com/entrabroker/broker/internal/emulator/logsingestion"
)

// demoIdentityHeader is the /msi/token secret in demo mode when
// BROKER_IDENTITY_HEADER is not set. It is public on purpose: the demo
// serves tokens of an emulator only.
const demoIdentityHeader = "demo-identity-header"

// demoEnv is the emulator that `broker demo` runs beside the broker.
type demoEnv struct {
	srv *http.Server
	url string
}

// startDemo starts the emulated Entra ID and Log Analytics on a free
// loopback port, with the demo registration, and points cfg at them: the
// demo app's credentials, the emulator as authority and Log Analytics
// endpoint, the Log Analytics scope prefetched, and an /msi/token secret.
func startDemo(ctx context.Context, cfg *config.Config, log *zap.Logger) (*demoEnv, error) {
	az := emulator.NewAzure(emulator.Options{Logger: log})
	if err := az.AddDemo(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo: open the emulator's listener: %w", err)
	}
	d := &demoEnv{
		srv: &http.Server{
			Handler:           az,
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			ErrorLog:          zap.NewStdLog(log),
			BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		},
		url: "http://" + ln.Addr().String(),
	}
	go func() {
		if err := d.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("emulator stopped", zap.Error(err))
		}
	}()

	cfg.TenantID = emulator.DemoTenantID
	cfg.ClientID = emulator.DemoClientID
	cfg.ClientSecret = emulator.DemoClientSecret
	cfg.ClientSecretFile = ""
	// The demo app has a secret only: drop any other credential from the
	// environment, and the identities file (its apps are not in the demo).
	// `broker demo -h` says so.
	cfg.ClientCertificatePath, cfg.ClientCertificatePassword, cfg.SendCertificateChain = "", "", false
	cfg.FederatedTokenFile, cfg.SecretExpiresOn = "", time.Time{}
	cfg.ConfigFile, cfg.Identities = "", nil
	// The emulator stands in for the public cloud's endpoints and audiences.
	cfg.Cloud = "AzurePublic"
	cfg.AuthorityHost = d.url
	cfg.LogAnalyticsEndpoint = d.url
	cfg.IngestionEndpoint = d.url
	if len(cfg.PrefetchScopes) == 0 {
		cfg.PrefetchScopes = []string{"https://api.loganalytics.io/.default"}
	}
	if cfg.IdentityHeader == "" {
		cfg.IdentityHeader = demoIdentityHeader
	}
	return d, nil
}

func (d *demoEnv) close() { _ = d.srv.Close() }

var welcome = template.Must(template.New("welcome").Parse(`
broker demo: an emulated Entra ID, Log Analytics and Logs Ingestion run at {{.Emulator}},
and the broker serves them. Nothing here reaches Azure.

  API  {{.API}}
  ops  {{.Ops}}

Try:
  # a token for the Log Analytics API
  curl -s {{.Curl}}-H 'Metadata: true' '{{.API}}/token?resource=https://api.loganalytics.io'

  # a Log Analytics query through the proxy (the broker adds the bearer token)
  curl -s {{.Curl}}'{{.API}}/proxy/loganalytics/v1/workspaces/{{.Workspace}}/query?query=Heartbeat%20%7C%20take%203'

  # send logs through the Logs Ingestion route (any size: the broker splits
  # them into calls under 1 MB), then query what you sent
  curl -s {{.Curl}}-X POST -H 'Content-Type: application/json' '{{.API}}/proxy/ingestion/dataCollectionRules/{{.DCR}}/streams/{{.Stream}}?api-version=2023-01-01' -d '[{"Computer":"demo","Message":"hello from the broker"}]' -w '%{http_code}\n'
  curl -s {{.Curl}}'{{.API}}/proxy/loganalytics/v1/workspaces/{{.Workspace}}/query?query={{.Table}}%20%7C%20take%2010'

  # the managed-identity endpoint the Azure SDKs use (and its 2017 dialect)
  curl -s {{.Curl}}-H 'X-IDENTITY-HEADER: {{.Header}}' '{{.API}}/msi/token?api-version=2019-08-01&resource=https://vault.azure.net'
  curl -s {{.Curl}}-H 'secret: {{.Header}}' '{{.API}}/msi/token?api-version=2017-09-01&resource=https://vault.azure.net'

  # fetch fresh tokens now (e.g. after a role assignment changed)
  BROKER_OPS_LISTEN={{.OpsAddr}} broker refresh

  # readiness and metrics
  curl -s {{.Ops}}/readyz
  curl -s {{.Ops}}/metrics | grep ^broker_

An app using an Azure SDK's DefaultAzureCredential needs only:
  IDENTITY_ENDPOINT={{.API}}/msi/token IDENTITY_HEADER={{.Header}}
Older clients (the Azure CLI, App Service 2017-09-01) read these instead;
current SDKs prefer the two above when both pairs are set:
  MSI_ENDPOINT={{.API}}/msi/token MSI_SECRET={{.Header}}

Press Ctrl-C to stop.
`))

// printWelcome tells a person what runs and what to try.
func (d *demoEnv) printWelcome(w io.Writer, api, ops net.Listener, cfg config.Config) {
	data := struct{ Emulator, API, Ops, OpsAddr, Curl, Workspace, Header, DCR, Stream, Table string }{
		DCR:       logsingestion.DemoDCR,
		Stream:    logsingestion.DemoStream,
		Table:     logsingestion.DemoTable,
		Emulator:  d.url,
		API:       "http://" + api.Addr().String(),
		Ops:       "http://" + ops.Addr().String(),
		OpsAddr:   ops.Addr().String(),
		Workspace: loganalytics.DemoWorkspaceID,
		Header:    cfg.IdentityHeader,
	}
	if api.Addr().Network() == "unix" {
		data.API = "http://localhost"
		data.Curl = "--unix-socket " + api.Addr().String() + " "
	}
	_ = welcome.Execute(w, data)
}

// newEmulator builds the emulated cloud for `broker emulator`: the
// registrations of configFile, or the demo registration when there is none.
// The demo workspace is served to the demo app whenever the demo
// registration is present.
func newEmulator(configFile string, lifetime time.Duration, log *zap.Logger) (*emulator.Azure, error) {
	cfg := emulator.Config{Demo: true}
	if configFile != "" {
		var err error
		if cfg, err = emulator.LoadConfig(configFile); err != nil {
			return nil, err
		}
	}
	if lifetime == 0 {
		lifetime = cfg.TokenLifetime
	}
	az := emulator.NewAzure(emulator.Options{TokenLifetime: lifetime, Logger: log})
	if err := az.Entra.Register(cfg); err != nil {
		return nil, err
	}
	if cfg.Demo {
		if err := az.AddDemoData(); err != nil {
			return nil, err
		}
	}
	return az, nil
}

// runEmulator runs the emulated Entra ID and Log Analytics alone, for any
// client (an Azure SDK, curl, another broker) to point at.
func runEmulator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		listenAddr, configFile string
		useTLS                 bool
		lifetime               time.Duration
	)
	c, _ := commandNamed("emulator")
	if err := parseFlags(c, args, stdout, nil, func(fs *flag.FlagSet) {
		fs.StringVar(&listenAddr, "listen", "127.0.0.1:8500", "`address` to listen on, host:port")
		fs.BoolVar(&useTLS, "tls", false, "serve HTTPS with a self-signed certificate, and print its PEM to trust (the Azure SDKs require https for the authority)")
		fs.DurationVar(&lifetime, "token-lifetime", 0, "`lifetime` of the access tokens issued (default: the config file's token_lifetime, else 3599s)")
		fs.StringVar(&configFile, "config", "", "YAML registration `file`: tenants, apps, secrets, resources (demo: true adds the demo registration); without it, the demo registration")
	}); err != nil {
		return err
	}
	log, err := newLogger(config.Default(), stderr)
	if err != nil {
		return err
	}
	az, err := newEmulator(configFile, lifetime, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return listenError("the emulator", "--listen", listenAddr, err)
	}
	srv := &http.Server{
		Handler:           az,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          zap.NewStdLog(log),
	}
	scheme := "http"
	if useTLS {
		host, _, _ := net.SplitHostPort(ln.Addr().String())
		tc, certPEM, err := emulator.SelfSignedTLS(host, "localhost")
		if err != nil {
			ln.Close()
			return err
		}
		srv.TLSConfig = tc
		scheme = "https"
		fmt.Fprintf(stdout, "The emulator's certificate (trust it, e.g. SSL_CERT_FILE=emulator.pem):\n%s\n", certPEM)
	}
	base := scheme + "://" + ln.Addr().String()
	_ = az.Entra.Describe(stdout, base)
	fmt.Fprintf(stdout, "\nLog Analytics: %s/v1/workspaces/%s/query (the demo app is a Reader)\n", base, loganalytics.DemoWorkspaceID)
	fmt.Fprintf(stdout, "Logs Ingestion: %s/dataCollectionRules/%s/streams/%s?api-version=2023-01-01 (the demo app is a Monitoring Metrics Publisher; rows land in %s)\n",
		base, logsingestion.DemoDCR, logsingestion.DemoStream, logsingestion.DemoTable)

	errc := make(chan error, 1)
	go func() {
		var err error
		if useTLS {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
