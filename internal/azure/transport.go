package azure

import (
	"net"
	"net/http"
	"time"
)

// NewTransport returns the transport settings every connection of the
// broker to Azure shares, token requests and proxied API calls alike:
// bounded connection set-up, kept-alive connections probed, and the egress
// proxy of the environment. It sets no bound on waiting for an answer: that
// depends on the use, so each user sets ResponseHeaderTimeout (and its pool
// sizes) on the copy it gets.
func NewTransport() *http.Transport {
	return &http.Transport{
		// Proxy honours HTTPS_PROXY and NO_PROXY like every Go client:
		// clusters often reach the internet only through an egress proxy.
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			// Timeout bounds a TCP connect. Azure's front doors answer in
			// milliseconds; a connect slower than 10 s is a broken route,
			// not a busy server, and failing lets the caller back off and
			// retry.
			Timeout: 10 * time.Second,
			// KeepAlive probes idle connections so that a dead NAT entry or
			// a silently dropped connection is noticed before the next
			// request uses it.
			KeepAlive: 30 * time.Second,
		}).DialContext,
		// TLSHandshakeTimeout bounds the handshake; it takes a few round
		// trips, so 10 s means the path is broken, not slow.
		TLSHandshakeTimeout: 10 * time.Second,
		// ExpectContinueTimeout is how long a request with
		// "Expect: 100-continue" waits before sending its body anyway, so no
		// wait is unbounded.
		ExpectContinueTimeout: time.Second,
		// IdleConnTimeout closes pooled connections the far end has likely
		// forgotten (Azure front doors and NATs drop idle ones after a few
		// minutes).
		IdleConnTimeout: 90 * time.Second,
		// ForceAttemptHTTP2 negotiates HTTP/2 with TLS upstreams although a
		// custom dialer is set.
		ForceAttemptHTTP2: true,
	}
}
