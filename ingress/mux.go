// Package ingress is the public side of the server: the certificates of the
// public port (tls.mode) and the one listener that carries gRPC and HTTP
// together, sorting each connection to the server that speaks it.
package ingress

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// maxSniff bounds the bytes read to find the first request's headers.
const maxSniff = 64 << 10

// Mux is the public port. It accepts TCP connections, terminates TLS (when
// it has a tls.Config), and sorts them: HTTP/2 connections whose first
// request is gRPC go to GRPC() for the gRPC server, which keeps its own
// transport (flow control, limits, keepalive policy); other HTTP/2
// connections are served with the HTTP server's handler; HTTP/1.1 goes to
// HTTP() for the HTTP server. One port, one certificate, every protocol.
type Mux struct {
	opts    MuxOptions
	base    context.Context // ends at Shutdown: handshakes waiting for a certificate stop
	stop    context.CancelFunc
	ln      net.Listener
	tlsConf *tls.Config // nil: plaintext (tls.mode = "off")
	log     *slog.Logger
	srv     *http.Server
	grpc    *connListener
	http    *connListener
	h2      *http2.Server

	mu       sync.Mutex
	conns    map[net.Conn]struct{} // connections being sorted or served here, for the forced close
	closing  bool                  // Shutdown has begun: no new HTTP/2 connection is served here
	wg       sync.WaitGroup        // routing and serving goroutines
	handlers sync.WaitGroup        // HTTP/2 requests being handled here
}

// MuxOptions are the public port's time limits (listen.* settings).
type MuxOptions struct {
	// HandshakeTimeout bounds the TLS handshake and the client's HTTP/2
	// preface: a client that connects and says nothing is dropped after it.
	HandshakeTimeout time.Duration
	// FirstRequestTimeout bounds the wait for an HTTP/2 connection's first
	// request. gRPC clients connect ahead and may stay idle until the user
	// speaks, so it is long.
	FirstRequestTimeout time.Duration
}

// NewMux serves the public port on ln, already bound (certmagic must find
// the port taken before it answers a TLS-ALPN challenge, so the caller binds
// it before NewCerts). tlsConf nil serves plaintext (h2c for gRPC). srv is
// the HTTP server: HTTP/2 connections that are not gRPC are served with its
// handler, and its Shutdown tells them to finish (GOAWAY); NewMux prepares it
// for that, so call NewMux before srv serves.
func NewMux(ln net.Listener, tlsConf *tls.Config, srv *http.Server, opts MuxOptions, log *slog.Logger) (*Mux, error) {
	h2 := &http2.Server{}
	if err := http2.ConfigureServer(srv, h2); err != nil {
		return nil, fmt.Errorf("ingress: %w", err)
	}
	base, stop := context.WithCancel(context.Background())
	return &Mux{opts: opts, base: base, stop: stop, ln: ln, tlsConf: tlsConf, log: log, srv: srv, grpc: newConnListener(ln.Addr()), http: newConnListener(ln.Addr()),
		h2: h2, conns: map[net.Conn]struct{}{}}, nil
}

// Addr is the bound address.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// GRPC yields the connections for grpc.Server.Serve.
func (m *Mux) GRPC() net.Listener { return m.grpc }

// HTTP yields the HTTP/1.1 connections for http.Server.Serve.
func (m *Mux) HTTP() net.Listener { return m.http }

// Serve accepts connections until ctx ends or the listener fails.
func (m *Mux) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { m.ln.Close() })
	defer stop()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond) // out of file descriptors: do not spin
				continue
			}
			return fmt.Errorf("ingress: accept: %w", err)
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(c)
		}()
	}
}

// Shutdown stops accepting and waits for the connections served here (and
// their requests) until ctx ends, then closes them. The gRPC and HTTP
// servers drain their own; HTTP/2 connections served here were told to
// finish by the HTTP server's Shutdown. Call it after Serve has returned.
func (m *Mux) Shutdown(ctx context.Context) {
	m.ln.Close()
	m.grpc.Close()
	m.http.Close()
	m.mu.Lock()
	m.closing = true
	m.mu.Unlock()
	m.stop()
	done := make(chan struct{})
	go func() { m.wg.Wait(); m.handlers.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		m.mu.Lock()
		for c := range m.conns {
			c.Close()
		}
		m.mu.Unlock()
		<-done
	}
}

// route terminates TLS, finds out what the connection speaks and hands it
// over. Until it is handed to the gRPC or HTTP server, Shutdown may close it.
func (m *Mux) route(raw net.Conn) {
	m.track(raw, true)
	defer m.track(raw, false)
	_ = raw.SetDeadline(time.Now().Add(m.opts.HandshakeTimeout))
	conn, proto, err := m.handshake(raw)
	if err != nil {
		m.log.Debug("Connection refused at handshake", "scope", "ingress", "decision", "handshake_failed", "remote", raw.RemoteAddr().String(), "error", err.Error())
		raw.Close()
		return
	}
	switch proto {
	case "acme-tls/1":
		conn.Close() // a TLS-ALPN-01 challenge: the handshake was the answer
		return
	case "h2":
		m.routeH2(conn, raw)
		return
	}
	_ = conn.SetDeadline(time.Time{})
	if !m.http.put(conn) {
		conn.Close()
	}
}

// handshake returns the connection to read requests from and its protocol:
// the ALPN protocol over TLS, or for plaintext "h2" when the client starts
// with the HTTP/2 preface (gRPC without TLS) and "http/1.1" otherwise.
func (m *Mux) handshake(raw net.Conn) (net.Conn, string, error) {
	if m.tlsConf != nil {
		tc := tls.Server(raw, m.tlsConf)
		// The context reaches GetCertificate, which may wait for an ACME
		// certificate being obtained: bounded like the handshake itself.
		ctx, cancel := context.WithTimeout(m.base, m.opts.HandshakeTimeout)
		defer cancel()
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, "", err
		}
		if proto := tc.ConnectionState().NegotiatedProtocol; proto != "" {
			return tc, proto, nil
		}
		// No ALPN: HTTP/2 with prior knowledge is told apart by its preface.
		return m.byPreface(tc)
	}
	return m.byPreface(raw)
}

// byPreface is "h2" when the client starts with the HTTP/2 preface (gRPC
// without ALPN or without TLS) and "http/1.1" otherwise; the bytes read are
// replayed.
func (m *Mux) byPreface(raw net.Conn) (net.Conn, string, error) {
	head, err := readPrefacePrefix(raw)
	if err != nil {
		return nil, "", err
	}
	var c net.Conn = &replayConn{Conn: raw, r: io.MultiReader(bytes.NewReader(head), raw)}
	if tc, ok := raw.(*tls.Conn); ok {
		c = &tlsReplayConn{replayConn: c.(*replayConn), tls: tc}
	}
	if string(head) == http2.ClientPreface {
		return c, "h2", nil
	}
	return c, "http/1.1", nil
}

// readPrefacePrefix reads until the bytes either are the HTTP/2 preface or
// stop matching it (an HTTP/1.1 request line).
func readPrefacePrefix(c net.Conn) ([]byte, error) {
	buf := make([]byte, 0, len(http2.ClientPreface))
	for len(buf) < len(http2.ClientPreface) && strings.HasPrefix(http2.ClientPreface, string(buf)) {
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// routeH2 reads the HTTP/2 connection up to its first request's headers,
// then replays what it read to the server that speaks that request.
func (m *Mux) routeH2(conn, raw net.Conn) {
	rc := &replayConn{Conn: conn}
	grpc, err := sniffH2(conn, &rc.buf, m.opts.FirstRequestTimeout)
	if err != nil {
		m.log.Debug("HTTP/2 connection closed before its first request", "scope", "ingress", "decision", "sniff_failed", "remote", conn.RemoteAddr().String(), "error", err.Error())
		conn.Close()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	// The client acknowledges the SETTINGS the mux sent; the real server
	// never sent them, so that one ACK must not reach it.
	rc.r = &dropFirstSettingsAck{r: io.MultiReader(&rc.buf, conn), preface: len(http2.ClientPreface)}
	if grpc {
		if !m.grpc.put(rc) {
			rc.Close()
		}
		return
	}
	var served net.Conn = rc
	if tc := tlsOf(conn); tc != nil {
		served = &tlsReplayConn{replayConn: rc, tls: tc}
	}
	m.mu.Lock()
	closing := m.closing
	m.mu.Unlock()
	if closing { // too late for the HTTP server's GOAWAY: do not start it
		rc.Close()
		return
	}
	m.h2.ServeConn(served, &http2.ServeConnOpts{BaseConfig: m.srv, Handler: http.HandlerFunc(m.serveHTTP)})
}

// serveHTTP runs one request of an HTTP/2 connection served here, counted
// so Shutdown can wait for it before the stores close.
func (m *Mux) serveHTTP(w http.ResponseWriter, r *http.Request) {
	m.handlers.Add(1)
	defer m.handlers.Done()
	m.srv.Handler.ServeHTTP(w, r)
}

func (m *Mux) track(c net.Conn, add bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if add {
		m.conns[c] = struct{}{}
	} else {
		delete(m.conns, c)
	}
}

// sniffH2 reads the client preface and frames until the first HEADERS
// block, keeping every byte in buf, and reports whether the request is gRPC
// (content-type application/grpc…). Right after the preface it sends an
// empty SETTINGS frame (the protocol's defaults): gRPC clients send no
// request before the server's SETTINGS arrive. A second SETTINGS frame from
// the real server later is allowed by HTTP/2.
func sniffH2(c net.Conn, buf *bytes.Buffer, firstRequest time.Duration) (grpc bool, err error) {
	tee := io.TeeReader(io.LimitReader(c, maxSniff), buf)
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(tee, preface); err != nil {
		return false, err
	}
	if string(preface) != http2.ClientPreface {
		return false, errors.New("not an HTTP/2 client preface")
	}
	if _, err := c.Write([]byte{0, 0, 0, byte(http2.FrameSettings), 0, 0, 0, 0, 0}); err != nil {
		return false, err
	}
	fr := http2.NewFramer(io.Discard, tee)
	fr.SetMaxReadFrameSize(maxSniff)
	var block []byte
	for first := true; ; first = false {
		f, err := fr.ReadFrame()
		if err != nil {
			return false, err
		}
		if first && firstRequest > 0 {
			// The preface and SETTINGS came in time: now the client may
			// wait for its user before the first request.
			_ = c.SetReadDeadline(time.Now().Add(firstRequest))
		}
		switch f := f.(type) {
		case *http2.HeadersFrame:
			block = append(block, f.HeaderBlockFragment()...)
			if f.HeadersEnded() {
				return isGRPC(block), nil
			}
		case *http2.ContinuationFrame:
			block = append(block, f.HeaderBlockFragment()...)
			if f.HeadersEnded() {
				return isGRPC(block), nil
			}
		}
	}
}

func isGRPC(block []byte) bool {
	grpc := false
	dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		// As grpc-go accepts it: application/grpc, +codec or ;params (not grpc-web).
		if v, ok := strings.CutPrefix(f.Name+"="+f.Value, "content-type=application/grpc"); ok && (v == "" || v[0] == '+' || v[0] == ';') {
			grpc = true
		}
	})
	dec.SetMaxStringLength(maxSniff)
	if _, err := dec.Write(block); err != nil {
		return false
	}
	return grpc
}

// replayConn reads first what the mux already read, then the connection.
type replayConn struct {
	net.Conn
	buf bytes.Buffer
	r   io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// tlsReplayConn is a replayConn over TLS: its ConnectionState lets the
// HTTP/2 server fill in Request.TLS (a plaintext one must not have it).
type tlsReplayConn struct {
	*replayConn
	tls *tls.Conn
}

func (c *tlsReplayConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

// tlsOf is the TLS connection under c, nil for plaintext.
func tlsOf(c net.Conn) *tls.Conn {
	switch c := c.(type) {
	case *tls.Conn:
		return c
	case *tlsReplayConn:
		return c.tls
	}
	return nil
}

// dropFirstSettingsAck passes the client preface and frames through,
// except the first SETTINGS frame with the ACK flag. It parses frame
// headers only until then, and streams payloads through: a header that
// claims a huge frame costs nothing but its 9 bytes.
type dropFirstSettingsAck struct {
	r         io.Reader
	preface   int    // bytes of the client preface still to pass on unparsed
	pending   []byte // header bytes of the current frame still to pass on
	remaining int    // payload bytes of the current frame still to pass on
	done      bool
	hdr       [9]byte
}

func (d *dropFirstSettingsAck) Read(p []byte) (int, error) {
	switch {
	case len(d.pending) > 0:
		n := copy(p, d.pending)
		d.pending = d.pending[n:]
		return n, nil
	case d.preface > 0:
		n, err := d.r.Read(p[:min(len(p), d.preface)])
		d.preface -= n
		return n, err
	case d.remaining > 0:
		n, err := d.r.Read(p[:min(len(p), d.remaining)])
		d.remaining -= n
		return n, err
	case d.done:
		return d.r.Read(p)
	}
	return d.nextFrame(p)
}

// nextFrame reads one frame header and either drops the frame (the ACK) or
// passes the header on, its payload to follow.
func (d *dropFirstSettingsAck) nextFrame(p []byte) (int, error) {
	if _, err := io.ReadFull(d.r, d.hdr[:]); err != nil {
		return 0, err
	}
	length := int(d.hdr[0])<<16 | int(d.hdr[1])<<8 | int(d.hdr[2])
	if http2.FrameType(d.hdr[3]) == http2.FrameSettings && http2.Flags(d.hdr[4]).Has(http2.FlagSettingsAck) {
		d.done = true
		if _, err := io.CopyN(io.Discard, d.r, int64(length)); err != nil {
			return 0, err
		}
		return d.Read(p)
	}
	d.pending = append(d.pending[:0], d.hdr[:]...)
	d.remaining = length
	return d.Read(p)
}

// connListener is a net.Listener fed by the mux.
type connListener struct {
	addr   net.Addr
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

// put hands a connection to the server; false when the listener is closed.
func (l *connListener) put(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }
