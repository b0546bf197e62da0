package ingress

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// testCert is a throwaway certificate for 127.0.0.1, made at test time.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) { return testCertTB(t) }

func testCertTB(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mux test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// muxServers is a mux with a real gRPC server (the health service) and an
// HTTP server behind it.
type muxServers struct {
	mux  *Mux
	grpc *grpc.Server
	http *http.Server
	stop func()
}

func startMux(t testing.TB, tlsConf *tls.Config) *muxServers {
	t.Helper()
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-TLS", map[bool]string{true: "yes", false: "no"}[r.TLS != nil])
		io.WriteString(w, r.Proto+" "+r.URL.Path)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux, err := NewMux(ln, tlsConf, hs, MuxOptions{HandshakeTimeout: 5 * time.Second, FirstRequestTimeout: time.Minute}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 3)
	var stop func()
	go func() { _ = mux.Serve(ctx); done <- struct{}{} }()
	go func() { _ = gs.Serve(mux.GRPC()); done <- struct{}{} }()
	go func() { _ = hs.Serve(mux.HTTP()); done <- struct{}{} }()
	m := &muxServers{mux: mux, grpc: gs, http: hs}
	var once sync.Once
	m.stop = func() { once.Do(stop) }
	stop = func() {
		cancel()
		gs.GracefulStop()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = hs.Shutdown(sctx)
		mux.Shutdown(sctx)
		for range 3 {
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("a server did not stop")
			}
		}
	}
	t.Cleanup(m.stop)
	return m
}

func checkGRPC(t *testing.T, addr string, creds credentials.TransportCredentials) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC through the mux: %v %v", resp, err)
	}
}

func checkHTTP(t *testing.T, client *http.Client, url, wantProto, wantTLS string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if got := string(body); got != wantProto+" /hello" || resp.Header.Get("X-TLS") != wantTLS {
		t.Fatalf("GET %s: %q, TLS %q; want %q, TLS %q", url, got, resp.Header.Get("X-TLS"), wantProto+" /hello", wantTLS)
	}
}

// One TLS port: gRPC, HTTP/2 and HTTP/1.1 all work, each reaching its server.
func TestMuxTLSServesGRPCAndHTTP(t *testing.T) {
	cert, pool := testCert(t)
	m := startMux(t, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}})
	addr := m.mux.Addr().String()
	client := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}

	checkGRPC(t, addr, credentials.NewTLS(client))
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: client.Clone(), ForceAttemptHTTP2: true}}
	checkHTTP(t, h2, "https://"+addr+"/hello", "HTTP/2.0", "yes")
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: client.Clone(), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	checkHTTP(t, h1, "https://"+addr+"/hello", "HTTP/1.1", "yes")
	// And gRPC again on a fresh connection after HTTP used the port.
	checkGRPC(t, addr, credentials.NewTLS(client))
}

// Plaintext (tls.mode = "off" on loopback): gRPC over h2c and HTTP/1.1.
func TestMuxPlaintext(t *testing.T) {
	m := startMux(t, nil)
	addr := m.mux.Addr().String()
	checkGRPC(t, addr, insecure.NewCredentials())
	checkHTTP(t, http.DefaultClient, "http://"+addr+"/hello", "HTTP/1.1", "no")
}

// A connection that never finishes its handshake is dropped, and shutdown
// does not wait for it beyond its deadline.
func TestMuxShutdownWithIdleClients(t *testing.T) {
	cert, _ := testCert(t)
	m := startMux(t, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}})
	c, err := net.Dial("tcp", m.mux.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	m.stop()
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("shutdown took %v with a silent client", d)
	}
}

// pipeConn reads from a fixed input and discards writes.
type pipeConn struct {
	net.Conn
	r io.Reader
}

func (c *pipeConn) Read(p []byte) (int, error)         { return c.r.Read(p) }
func (c *pipeConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c *pipeConn) SetReadDeadline(time.Time) error    { return nil }
func (c *pipeConn) SetDeadline(time.Time) error        { return nil }
func (c *pipeConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *pipeConn) Close() error                       { return nil }
func (c *pipeConn) SetWriteDeadline(t time.Time) error { return nil }

// FuzzSniffH2: any bytes after the preface end in a verdict or an error,
// never a panic, and everything read is kept for the replay.
func FuzzSniffH2(f *testing.F) {
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 3, 1, 4, 0, 0, 0, 1, 0x82, 0x84, 0x86})
	f.Fuzz(func(t *testing.T, frames []byte) {
		in := append([]byte(http2ClientPreface()), frames...)
		var buf bytes.Buffer
		_, _ = sniffH2(&pipeConn{r: bytes.NewReader(in)}, &buf, time.Minute)
		if !bytes.HasPrefix(in, buf.Bytes()) {
			t.Fatalf("kept bytes are not what was read")
		}
	})
}

// FuzzDropFirstSettingsAck: the output is the input minus at most one
// frame, and the preface passes untouched.
func FuzzDropFirstSettingsAck(f *testing.F) {
	f.Add([]byte{0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7})
	f.Add([]byte{0, 0, 5, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 0, 0, 0, 4, 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, frames []byte) {
		in := append([]byte(http2ClientPreface()), frames...)
		out, _ := io.ReadAll(&dropFirstSettingsAck{r: bytes.NewReader(in), preface: len(http2ClientPreface())})
		if !bytes.HasPrefix(out, []byte(http2ClientPreface())) && len(out) >= len(http2ClientPreface()) {
			t.Fatalf("preface changed")
		}
		if len(out) > len(in) {
			t.Fatalf("output longer than input")
		}
	})
}

func TestDropFirstSettingsAck(t *testing.T) {
	ack := []byte{0, 0, 0, 4, 1, 0, 0, 0, 0}
	data := []byte{0, 0, 2, 0, 0, 0, 0, 0, 1, 'h', 'i'}
	in := append(append(append([]byte(http2ClientPreface()), data...), ack...), append(ack, data...)...)
	out, err := io.ReadAll(&dropFirstSettingsAck{r: bytes.NewReader(in), preface: len(http2ClientPreface())})
	want := append(append(append([]byte(http2ClientPreface()), data...), ack...), data...)
	if err != nil || !bytes.Equal(out, want) {
		t.Fatalf("got %x, want %x (%v)", out, want, err)
	}
}

func http2ClientPreface() string { return http2.ClientPreface }

// A frame header that claims 16 MiB costs the filter nothing up front: the
// payload streams through as it arrives.
func TestDropFirstSettingsAckStreamsPayloads(t *testing.T) {
	huge := []byte{0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1}
	in := append([]byte(http2ClientPreface()), huge...)
	d := &dropFirstSettingsAck{r: io.MultiReader(bytes.NewReader(in), strings.NewReader("abc")), preface: len(http2ClientPreface())}
	out, _ := io.ReadAll(d)
	if want := append(in, "abc"...); !bytes.Equal(out, want) {
		t.Fatalf("got %d bytes, want %d", len(out), len(want))
	}
	if cap(d.pending) > 64 {
		t.Fatalf("the filter buffered %d bytes", cap(d.pending))
	}
}

func TestIsGRPC(t *testing.T) {
	enc := func(ct string) []byte {
		var b bytes.Buffer
		e := hpack.NewEncoder(&b)
		_ = e.WriteField(hpack.HeaderField{Name: ":method", Value: "POST"})
		_ = e.WriteField(hpack.HeaderField{Name: "content-type", Value: ct})
		return b.Bytes()
	}
	for ct, want := range map[string]bool{"application/grpc": true, "application/grpc+proto": true, "application/grpc;charset=utf-8": true,
		"application/grpc-web": false, "application/json": false, "text/html": false} {
		if got := isGRPC(enc(ct)); got != want {
			t.Errorf("%s: %v, want %v", ct, got, want)
		}
	}
}

// A TLS client without ALPN is sorted by what it sends: HTTP/1.1 reaches the
// HTTP server (with Request.TLS), HTTP/2 with prior knowledge (gRPC) too.
func TestMuxTLSWithoutALPN(t *testing.T) {
	cert, pool := testCert(t)
	m := startMux(t, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}})
	addr := m.mux.Addr().String()
	noALPN := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: nil}
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: noALPN, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	checkHTTP(t, h1, "https://"+addr+"/hello", "HTTP/1.1", "yes")
	conn, err := tls.Dial("tcp", addr, noALPN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if conn.ConnectionState().NegotiatedProtocol != "" {
		t.Fatal("ALPN was negotiated")
	}
	// Prior-knowledge HTTP/2 on the raw TLS connection: the mux answers
	// its SETTINGS right after the preface.
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := fr.ReadFrame()
	if err != nil || f.Header().Type != http2.FrameSettings {
		t.Fatalf("no SETTINGS after the preface: %v %v", f, err)
	}
}
