package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// upstreamBody is the fake Log Analytics answer: a fixed ~2 KB query result,
// the same body as the proxy package's benchmarks.
var upstreamBody = []byte(`{"tables":[{"name":"PrimaryResult","columns":[{"name":"TimeGenerated","type":"datetime"},{"name":"Computer","type":"string"},{"name":"Category","type":"string"}],"rows":[` +
	strings.TrimSuffix(strings.Repeat(`["2024-05-01T12:00:00Z","vm-0001.contoso.internal","Direct Agent"],`, 29), ",") + `]}]}`)

// serveBaseline serves h on -listen until ctx ends, printing "listening
// ADDR" on stdout once the listener is open.
func serveBaseline(ctx context.Context, name string, fs *flag.FlagSet, args []string, stdout io.Writer, h func() (http.Handler, error)) error {
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	handler, err := h()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("%s: listen: %w", name, err)
	}
	// The same server settings as the broker's API listener, so that the
	// comparison is of the handlers, not of the server configuration.
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	fmt.Fprintf(stdout, "listening %s\n", ln.Addr())
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serveUpstream is the fake Log Analytics: every request gets upstreamBody.
func serveUpstream(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("loadtest upstream", flag.ContinueOnError)
	return serveBaseline(ctx, "upstream", fs, args, stdout, func() (http.Handler, error) {
		length := []string{strconv.Itoa(len(upstreamBody))}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			h := w.Header()
			h["Content-Type"] = []string{"application/json; charset=utf-8"}
			h["Content-Length"] = length
			_, _ = w.Write(upstreamBody)
		}), nil
	})
}

// serveConstant is the floor for /token: it answers every request with the
// bytes of -body, a token answer the broker gave, with the broker's headers
// (-header, as the broker sent them; an X-Request-Id is sent as it came).
func serveConstant(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("loadtest constant", flag.ContinueOnError)
	bodyFile := fs.String("body", "", "file holding the JSON answer")
	var headers paths
	fs.Var(&headers, "header", "a header of the answer, `Key: value` (may be repeated)")
	return serveBaseline(ctx, "constant", fs, args, stdout, func() (http.Handler, error) {
		body, err := os.ReadFile(*bodyFile)
		if err != nil {
			return nil, fmt.Errorf("constant: %w", err)
		}
		answer := http.Header{}
		for _, h := range headers {
			k, v, ok := strings.Cut(h, ": ")
			if !ok {
				return nil, fmt.Errorf("constant: header %q is not Key: value", h)
			}
			answer.Add(k, v)
		}
		if len(answer) == 0 {
			answer.Set("Content-Type", "application/json; charset=utf-8")
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			for k, vs := range answer {
				h[k] = vs
			}
			_, _ = w.Write(body)
		}), nil
	})
}

// serveGoProxy is the Go floor for proxying: a plain httputil.ReverseProxy
// whose Rewrite sets the upstream and a fixed bearer header, over Go's
// default transport.
func serveGoProxy(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("loadtest goproxy", flag.ContinueOnError)
	upstream := fs.String("upstream", "", "upstream URL")
	tokenFile := fs.String("token", "", "file holding the bearer token")
	return serveBaseline(ctx, "goproxy", fs, args, stdout, func() (http.Handler, error) {
		u, err := url.Parse(*upstream)
		if err != nil {
			return nil, fmt.Errorf("goproxy: %w", err)
		}
		tok, err := os.ReadFile(*tokenFile)
		if err != nil {
			return nil, fmt.Errorf("goproxy: %w", err)
		}
		bearer := "Bearer " + strings.TrimSpace(string(tok))
		return &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Header.Set("Authorization", bearer)
		}}, nil
	})
}
