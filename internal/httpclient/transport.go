package httpclient

import (
	"context"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"
)

// Counts are a Transport's totals since it was built.
type Counts struct {
	// Requests is every request sent, failed ones included.
	Requests uint64
	// Reused is the requests that went out on a connection used before: a
	// pooled HTTP/1.1 connection or a shared HTTP/2 one. No handshake.
	Reused uint64
	// Dials is the connections opened (TCP, then TLS for https).
	Dials uint64
}

// Transport is the one HTTP transport the LLM and speech providers share:
// its idle pool is sized for the server's concurrency, so a turn's model
// and speech calls find a warm connection instead of paying a TCP and TLS
// handshake before the first token and the first audio. It counts requests,
// reused connections and dials for /metrics. Safe for concurrent use.
type Transport struct {
	base  *http.Transport
	trace *httptrace.ClientTrace // shared: its hooks only touch atomics

	requests, reused, dials atomic.Uint64
}

// Pool settings. Providers close idle connections after 60–120 s; 90 s (as
// http.DefaultTransport) keeps a connection across the pauses of a
// conversation without holding ones the far end has dropped.
const (
	idleConnTimeout     = 90 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
	dialTimeout         = 30 * time.Second
	// An HTTP/2 connection that has been silent this long is pinged, and
	// closed when no answer comes within h2PingTimeout: every stream
	// multiplexed on a dead connection would otherwise hang with it.
	h2SendPingTimeout = 30 * time.Second
	h2PingTimeout     = 15 * time.Second
)

// NewTransport returns a transport whose idle pool keeps up to maxInFlight
// connections per provider host, plus headroom (retries, memory analyses,
// a fallback taking over). maxInFlight is the most requests the server may
// have open to one host at once; values below 1 count as 1.
//
// Everything else is http.DefaultTransport's behaviour: proxies from the
// environment (HTTPS_PROXY, NO_PROXY), HTTP/2 when the provider offers it
// over TLS, transparent gzip. No response-header timeout: a model may think
// for a while before its first byte, and every call has its own deadline.
func NewTransport(maxInFlight int) *Transport {
	n := max(maxInFlight, 1)
	perHost := n + max(n/4, 4)
	t := &Transport{}
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	t.base = &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           t.countDials(d.DialContext),
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   perHost,
		MaxIdleConns:          4 * perHost, // LLM, speech and a fallback of each
		IdleConnTimeout:       idleConnTimeout,
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		ExpectContinueTimeout: time.Second,
		HTTP2:                 &http.HTTP2Config{SendPingTimeout: h2SendPingTimeout, PingTimeout: h2PingTimeout},
	}
	t.trace = newTrace(t)
	return t
}

// countDials wraps dial to count the connections it opens.
func (t *Transport) countDials(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err == nil {
			t.dials.Add(1)
		}
		return c, err
	}
}

// newTrace is t's one trace: a reused connection counts, a new one was
// counted by the dialer.
func newTrace(t *Transport) *httptrace.ClientTrace {
	return &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if info.Reused {
			t.reused.Add(1)
		}
	}}
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.requests.Add(1)
	ctx := req.Context()
	trace := t.trace
	if httptrace.ContextClientTrace(ctx) != nil {
		// WithClientTrace composes the caller's hooks into the trace it
		// is given, so the shared one must not be handed over then.
		cp := *t.trace
		trace = &cp
	}
	return t.base.RoundTrip(req.WithContext(httptrace.WithClientTrace(ctx, trace)))
}

// Client returns a client over t that refuses redirects (see NoRedirects).
func (t *Transport) Client() *http.Client {
	return NoRedirects(&http.Client{Transport: t})
}

// Counts returns the totals so far.
func (t *Transport) Counts() Counts {
	return Counts{Requests: t.requests.Load(), Reused: t.reused.Load(), Dials: t.dials.Load()}
}

// CloseIdleConnections closes the pooled connections not in use; an
// http.Client over t forwards its own CloseIdleConnections here.
func (t *Transport) CloseIdleConnections() { t.base.CloseIdleConnections() }

// Close closes the idle connections, at shutdown once no call is running.
// The transport stays usable (a late call dials again).
func (t *Transport) Close() { t.base.CloseIdleConnections() }
