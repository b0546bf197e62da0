package ingress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexy-server/nexy/config"
)

// certTestConfig is a config for mode with a fresh data directory.
func certTestConfig(t *testing.T, mode string) *config.Config {
	t.Helper()
	cfg := config.Default("dev")
	cfg.Server.DataDir = t.TempDir()
	cfg.TLS.Mode = mode
	cfg.Listen.Address = "127.0.0.1:8443"
	return &cfg
}

// certTestLog collects the package's log lines; they are printed only when
// the test fails, and writing after the test ends is harmless.
type certTestLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *certTestLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *certTestLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func certTestLogger(t *testing.T) (*slog.Logger, *certTestLog) {
	t.Helper()
	l := &certTestLog{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", l.String())
		}
	})
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})), l
}

// certTestCA is a throwaway CA that signs the pairs of mode "files".
type certTestCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCertTestCA(t *testing.T) *certTestCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "nexy test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &certTestCA{cert: cert, key: key, pool: pool}
}

// pair issues a leaf for names with serial, valid until notAfter, as PEM.
func (ca *certTestCA) pair(t *testing.T, serial int64, notAfter time.Time, names ...string) (crtPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     notAfter,
		DNSNames:     names,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// certTestWrite replaces path the way deploy tools do: a new file renamed
// over the old one.
func certTestWrite(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// certTestServe serves tc on a loopback listener with an echo of each
// line, so a test can tell an established connection still works.
func certTestServe(t *testing.T, tc *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(30 * time.Second))
				r := bufio.NewReader(conn)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := io.WriteString(conn, line); err != nil {
						return
					}
				}
			}()
		}
	})
	return ln.Addr().String()
}

// certTestDial completes a handshake and returns the connection and the
// server's leaf.
func certTestDial(t *testing.T, addr string, cc *tls.Config) (*tls.Conn, *x509.Certificate) {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: cc}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("handshake with %s: %v", addr, err)
	}
	conn := c.(*tls.Conn)
	t.Cleanup(func() { conn.Close() })
	return conn, conn.ConnectionState().PeerCertificates[0]
}

func certTestEcho(t *testing.T, conn *tls.Conn, msg string) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, msg+"\n"); err != nil {
		t.Fatalf("write on the open connection: %v", err)
	}
	got, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || got != msg+"\n" {
		t.Fatalf("echo on the open connection = %q, %v", got, err)
	}
}

func TestCertsOff(t *testing.T) {
	c, err := NewCerts(context.Background(), certTestConfig(t, "off"), nil)
	if c != nil || err != nil {
		t.Fatalf("NewCerts(off) = %v, %v; want nil, nil", c, err)
	}
	// The nil *Certs of mode off is safe to use.
	c.Close()
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := c.Describe(); !slices.Equal(got, []any{"tls_mode", "off"}) {
		t.Fatalf("Describe = %v", got)
	}
}

func TestCertsTLSConfig(t *testing.T) {
	c, err := NewCerts(context.Background(), certTestConfig(t, "self-signed"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := c.TLSConfig()
	if !slices.Equal(tc.NextProtos, []string{"h2", "http/1.1"}) || tc.MinVersion != tls.VersionTLS12 || tc.GetCertificate == nil {
		t.Fatalf("TLSConfig = NextProtos %v, MinVersion %x, GetCertificate set %v", tc.NextProtos, tc.MinVersion, tc.GetCertificate != nil)
	}
	// A client stuck on TLS 1.1 is refused.
	addr := certTestServe(t, tc)
	_, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11})
	if err == nil {
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
}

func TestSelfSigned(t *testing.T) {
	cfg := certTestConfig(t, "self-signed")
	cfg.TLS.Domains = "nexy.example.org, voice.example.org"
	log, _ := certTestLogger(t)
	c, err := NewCerts(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	attrs := map[string]any{}
	d := c.Describe()
	for i := 0; i+1 < len(d); i += 2 {
		attrs[d[i].(string)] = d[i+1]
	}
	fp, _ := attrs["fingerprint_sha256"].(string)
	crtPath, _ := attrs["cert_file"].(string)
	if attrs["tls_mode"] != "self-signed" || fp == "" || crtPath != filepath.Join(cfg.Server.DataDir, "tls", "self-signed.crt") {
		t.Fatalf("Describe = %v", d)
	}

	// The fingerprint is the PEM's, in openssl's notation.
	raw, err := os.ReadFile(crtPath)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		t.Fatalf("%s is not PEM", crtPath)
	}
	if want := Fingerprint(block.Bytes); fp != want {
		t.Fatalf("fingerprint %s, PEM's %s", fp, want)
	}
	if len(fp) != 32*3-1 || strings.ToUpper(fp) != fp || strings.Count(fp, ":") != 31 {
		t.Fatalf("fingerprint %q is not colon-separated upper-case hex", fp)
	}
	if openssl, err := exec.LookPath("openssl"); err == nil {
		out, err := exec.Command(openssl, "x509", "-in", crtPath, "-noout", "-fingerprint", "-sha256").Output()
		if err != nil {
			t.Fatalf("openssl: %v", err)
		}
		if got := strings.TrimSpace(string(out)); !strings.HasSuffix(got, "="+fp) {
			t.Fatalf("openssl says %q, Describe says %s", got, fp)
		}
	}

	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"localhost", "127.0.0.1", "::1", "nexy.example.org", "voice.example.org"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("certificate not valid for %s: %v", name, err)
		}
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("certificate not valid for the hostname %s: %v", h, err)
		}
	}
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 800*24*time.Hour || life > 830*24*time.Hour {
		t.Errorf("validity %v, want about 825 days", life)
	}

	fi, err := os.Stat(filepath.Join(cfg.Server.DataDir, "tls", "self-signed.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}

	// A client pinning the fingerprint completes a handshake; one pinning
	// something else does not.
	addr := certTestServe(t, c.TLSConfig())
	pin := func(want string) *tls.Config {
		return &tls.Config{
			ServerName: "localhost",
			// The pin replaces chain verification: a self-signed certificate
			// has no chain to verify.
			InsecureSkipVerify: true,
			VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
				if len(rawCerts) == 0 || Fingerprint(rawCerts[0]) != want {
					return errors.New("fingerprint mismatch")
				}
				return nil
			},
		}
	}
	conn, _ := certTestDial(t, addr, pin(fp))
	certTestEcho(t, conn, "pinned")
	if _, err := tls.Dial("tcp", addr, pin(strings.Repeat("00:", 31)+"00")); err == nil {
		t.Fatal("a handshake pinning another fingerprint succeeded")
	}

	// A later start reuses the pair.
	c2, err := NewCerts(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got := c2.Describe(); !slices.Contains(got, any(fp)) {
		t.Fatalf("second start: Describe = %v, want fingerprint %s", got, fp)
	}
	if raw2, _ := os.ReadFile(crtPath); !bytes.Equal(raw, raw2) {
		t.Fatal("second start rewrote the certificate")
	}
}

func TestSelfSignedRegeneratesBrokenPair(t *testing.T) {
	cfg := certTestConfig(t, "self-signed")
	dir := filepath.Join(cfg.Server.DataDir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// A crash between writing the key and the certificate leaves this.
	if err := os.WriteFile(filepath.Join(dir, "self-signed.key"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	log, _ := certTestLogger(t)
	c, err := NewCerts(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, "self-signed.crt"), filepath.Join(dir, "self-signed.key")); err != nil {
		t.Fatalf("regenerated pair: %v", err)
	}
}

// certTestFiles writes a pair from ca to dir and returns a files-mode
// config for it.
func certTestFiles(t *testing.T, ca *certTestCA, serial int64) *config.Config {
	t.Helper()
	cfg := certTestConfig(t, "files")
	dir := t.TempDir()
	cfg.TLS.CertFile, cfg.TLS.KeyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	crt, key := ca.pair(t, serial, time.Now().Add(time.Hour), "nexy.test")
	certTestWrite(t, cfg.TLS.CertFile, crt)
	certTestWrite(t, cfg.TLS.KeyFile, key)
	return cfg
}

func TestFilesReload(t *testing.T) {
	ca := newCertTestCA(t)
	cfg := certTestFiles(t, ca, 1)
	log, logs := certTestLogger(t)
	// The poller is out of the way: this test is about Reload.
	c, err := newCerts(context.Background(), cfg, log, certOptions{pollEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client := &tls.Config{RootCAs: ca.pool, ServerName: "nexy.test"}
	addr := certTestServe(t, c.TLSConfig())

	open, leaf := certTestDial(t, addr, client)
	if leaf.SerialNumber.Int64() != 1 {
		t.Fatalf("serving serial %v, want 1", leaf.SerialNumber)
	}
	certTestEcho(t, open, "before")

	crt2, key2 := ca.pair(t, 2, time.Now().Add(time.Hour), "nexy.test")
	certTestWrite(t, cfg.TLS.CertFile, crt2)
	certTestWrite(t, cfg.TLS.KeyFile, key2)
	if err := c.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if _, leaf := certTestDial(t, addr, client); leaf.SerialNumber.Int64() != 2 {
		t.Fatalf("after Reload serving serial %v, want 2", leaf.SerialNumber)
	}
	certTestEcho(t, open, "after reload")

	// Broken new pairs are refused and the last good one keeps serving.
	crt3, _ := ca.pair(t, 3, time.Now().Add(time.Hour), "nexy.test")
	expired, expiredKey := ca.pair(t, 4, time.Now().Add(-time.Minute), "nexy.test")
	for _, bad := range []struct {
		name     string
		crt, key []byte
	}{
		{"key of another certificate", crt3, key2},
		{"not PEM", []byte("not a certificate"), key2},
		{"expired", expired, expiredKey},
	} {
		certTestWrite(t, cfg.TLS.CertFile, bad.crt)
		certTestWrite(t, cfg.TLS.KeyFile, bad.key)
		if err := c.Reload(); err == nil {
			t.Fatalf("Reload accepted a pair with a %s", bad.name)
		}
		if _, leaf := certTestDial(t, addr, client); leaf.SerialNumber.Int64() != 2 {
			t.Fatalf("after a %s: serving serial %v, want 2", bad.name, leaf.SerialNumber)
		}
	}
	if !strings.Contains(logs.String(), "reload_refused") {
		t.Error("a refused reload was not logged")
	}
	certTestEcho(t, open, "after refusals")

	if err := os.Remove(cfg.TLS.KeyFile); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(); err == nil {
		t.Fatal("Reload accepted a missing key file")
	}
}

func TestFilesPoll(t *testing.T) {
	ca := newCertTestCA(t)
	cfg := certTestFiles(t, ca, 1)
	log, _ := certTestLogger(t)
	c, err := newCerts(context.Background(), cfg, log, certOptions{pollEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client := &tls.Config{RootCAs: ca.pool, ServerName: "nexy.test"}
	addr := certTestServe(t, c.TLSConfig())
	open, _ := certTestDial(t, addr, client)

	serial := func() int64 {
		leaf := c.cur.Load().Leaf
		return leaf.SerialNumber.Int64()
	}
	waitFor := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for serial() != want {
			if time.Now().After(deadline) {
				t.Fatalf("serial %d after 10 s, want %d", serial(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	crt2, key2 := ca.pair(t, 2, time.Now().Add(time.Hour), "nexy.test")
	// Key first, then certificate: the poll may see the mismatched half,
	// refuse it, and must still pick up the finished pair.
	certTestWrite(t, cfg.TLS.KeyFile, key2)
	time.Sleep(50 * time.Millisecond)
	certTestWrite(t, cfg.TLS.CertFile, crt2)
	waitFor(2)
	if _, leaf := certTestDial(t, addr, client); leaf.SerialNumber.Int64() != 2 {
		t.Fatalf("new handshake got serial %v, want 2", leaf.SerialNumber)
	}
	certTestEcho(t, open, "after poll")

	// A broken pair seen by the poll leaves the good one in place.
	certTestWrite(t, cfg.TLS.CertFile, []byte("broken"))
	time.Sleep(200 * time.Millisecond)
	if serial() != 2 {
		t.Fatalf("after a broken pair serial %d, want 2", serial())
	}
}

func TestFilesStartRefusesBrokenPair(t *testing.T) {
	cfg := certTestConfig(t, "files")
	cfg.TLS.CertFile = filepath.Join(t.TempDir(), "missing.pem")
	cfg.TLS.KeyFile = cfg.TLS.CertFile
	if _, err := NewCerts(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Fatalf("NewCerts with a missing pair: %v", err)
	}
}

func TestCertsACMERefusesWildcard(t *testing.T) {
	cfg := certTestConfig(t, "acme")
	cfg.TLS.Domains = "nexy.example.org, *.example.org"
	_, err := NewCerts(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "DNS-01") {
		t.Fatalf("NewCerts with a wildcard domain: %v", err)
	}
}

func TestRedirect(t *testing.T) {
	for _, tc := range []struct {
		name, address, host, target, want string
	}{
		{"port kept", "127.0.0.1:8443", "nexy.test", "/a/b?x=1&y=%20z", "https://nexy.test:8443/a/b?x=1&y=%20z"},
		{"default port dropped", ":443", "nexy.test", "/a", "https://nexy.test/a"},
		{"request port replaced", ":8443", "nexy.test:80", "/", "https://nexy.test:8443/"},
		{"IPv6 literal", ":443", "[::1]:80", "/status", "https://[::1]/status"},
		{"IPv6 literal with port", "[::]:8443", "[::1]", "/", "https://[::1]:8443/"},
		{"escaped path kept", ":443", "nexy.test", "/a%2Fb/c", "https://nexy.test/a%2Fb/c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := certTestConfig(t, "self-signed")
			cfg.Listen.Address = tc.address
			c, err := NewCerts(context.Background(), cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			r := httptest.NewRequest(http.MethodPost, "http://"+tc.host+tc.target, nil)
			r.Host = tc.host
			w := httptest.NewRecorder()
			c.HTTPHandler().ServeHTTP(w, r)
			if w.Code != http.StatusPermanentRedirect {
				t.Fatalf("status %d, want 308", w.Code)
			}
			if got := w.Header().Get("Location"); got != tc.want {
				t.Fatalf("Location %q, want %q", got, tc.want)
			}
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Fatalf("Cache-Control %q", got)
			}
		})
	}

	t.Run("no host", func(t *testing.T) {
		c, err := NewCerts(context.Background(), certTestConfig(t, "self-signed"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Host = ""
		w := httptest.NewRecorder()
		c.HTTPHandler().ServeHTTP(w, r)
		if w.Code != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", w.Code)
		}
	})
}
