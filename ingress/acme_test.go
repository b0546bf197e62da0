package ingress

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/nexy-server/nexy/internal/acmetest"
)

func certTestListen(t *testing.T) (net.Listener, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, ln.Addr().(*net.TCPAddr).Port
}

// TestACME obtains a certificate from an in-process Pebble, which really
// solves each challenge against the listeners the server would run:
// HTTP-01 through HTTPHandler, TLS-ALPN-01 through TLSConfig.
func TestACME(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an ACME server")
	}
	// Pebble reads these when its VA and WFE are made: validate at once,
	// never reject a good nonce, never reuse an authorization across the
	// subtests.
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")
	resolver := acmetest.StartDNS(t)

	for _, tc := range []struct {
		name string
		http bool // serve listen.http_redirect and solve HTTP-01 there
	}{
		{"HTTP01", true},
		{"TLSALPN01", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			logger, logs := certTestLogger(t)

			// The server's listeners exist before NewCerts, as in serve.
			tlsLn, tlsPort := certTestListen(t)
			httpLn, httpPort := certTestListen(t)
			pebble := acmetest.StartPebble(t, logs, resolver, httpPort, tlsPort)

			cfg := certTestConfig(t, "acme")
			cfg.TLS.Domains = "nexy.test"
			cfg.TLS.Email = "ops@nexy.test"
			cfg.TLS.CAURL = pebble.DirURL
			cfg.TLS.CARoots = pebble.RootsPEM
			cfg.Listen.Address = tlsLn.Addr().String()
			var opts certOptions
			if tc.http {
				cfg.Listen.HTTPRedirect = httpLn.Addr().String()
				// Only HTTP-01 may succeed, so the test proves it.
				opts.acmeIssuer = func(iss *certmagic.ACMEIssuer) { iss.DisableTLSALPNChallenge = true }
			} else {
				// No listen.http_redirect: NewCerts disables HTTP-01 itself.
				httpLn.Close()
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("config: %v", err)
			}

			certs, err := newCerts(ctx, cfg, logger, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer certs.Close()

			// The server as serve runs it: HTTPS on listen.address, the
			// redirect handler on listen.http_redirect; count what the
			// validator asks each of them.
			var alpnHellos, httpChallenges atomic.Int32
			tlsCfg := certs.TLSConfig()
			if !slices.Contains(tlsCfg.NextProtos, "acme-tls/1") {
				t.Fatalf("NextProtos %v lacks acme-tls/1", tlsCfg.NextProtos)
			}
			getCert := tlsCfg.GetCertificate
			tlsCfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
				if slices.Equal(hello.SupportedProtos, []string{"acme-tls/1"}) {
					alpnHellos.Add(1)
				}
				return getCert(hello)
			}
			var servers sync.WaitGroup
			httpsSrv := &http.Server{
				Handler:  http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "nexy") }),
				ErrorLog: log.New(logs, "https ", 0),
			}
			servers.Go(func() { httpsSrv.Serve(tls.NewListener(tlsLn, tlsCfg)) })
			defer func() { httpsSrv.Close(); servers.Wait() }()
			if tc.http {
				h := certs.HTTPHandler()
				redirectSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
						httpChallenges.Add(1)
					}
					h.ServeHTTP(w, r)
				})}
				servers.Go(func() { redirectSrv.Serve(httpLn) })
				defer redirectSrv.Close()
			}

			// The first handshake waits for issuance.
			client := &tls.Config{RootCAs: pebble.IssuingRoot(t), ServerName: "nexy.test", NextProtos: []string{"h2", "http/1.1"}}
			d := &tls.Dialer{Config: client}
			conn, err := d.DialContext(ctx, "tcp", tlsLn.Addr().String())
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			state := conn.(*tls.Conn).ConnectionState()
			conn.Close()
			issued := time.Since(start)
			leaf := state.PeerCertificates[0]
			if len(state.VerifiedChains) == 0 || !slices.Contains(leaf.DNSNames, "nexy.test") ||
				!strings.HasPrefix(leaf.Issuer.CommonName, "Pebble Intermediate CA") {
				t.Fatalf("leaf for %v issued by %q, verified chains %d", leaf.DNSNames, leaf.Issuer.CommonName, len(state.VerifiedChains))
			}
			if state.NegotiatedProtocol != "h2" {
				t.Errorf("negotiated %q, want h2", state.NegotiatedProtocol)
			}
			if tc.http && httpChallenges.Load() == 0 {
				t.Error("HTTP-01: the validator never reached HTTPHandler")
			}
			if !tc.http && alpnHellos.Load() == 0 {
				t.Error("TLS-ALPN-01: the validator never reached TLSConfig")
			}
			if tc.http && alpnHellos.Load() != 0 {
				t.Error("HTTP-01 run: TLS-ALPN-01 was used although disabled")
			}

			if tc.http {
				// Beside the challenges, the port redirects to HTTPS; a
				// token nobody asked for is not a challenge either.
				noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
				for _, path := range []string{"/health?x=1", "/.well-known/acme-challenge/unknown"} {
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpLn.Addr().String()+path, nil)
					req.Host = "nexy.test"
					resp, err := noFollow.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					want := fmt.Sprintf("https://nexy.test:%d%s", tlsPort, path)
					if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
						t.Errorf("GET %s: %d to %q, want 308 to %q", path, resp.StatusCode, resp.Header.Get("Location"), want)
					}
				}
			}

			// Kept in <data_dir>/tls: a restart serves the same certificate
			// without asking the CA again.
			certs.Close()
			again, err := newCerts(ctx, cfg, logger, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer again.Close()
			tlsLn2, _ := certTestListen(t)
			srv2 := &http.Server{ErrorLog: log.New(logs, "https ", 0)}
			servers.Go(func() { srv2.Serve(tls.NewListener(tlsLn2, again.TLSConfig())) })
			defer srv2.Close()
			conn, err = d.DialContext(ctx, "tcp", tlsLn2.Addr().String())
			if err != nil {
				t.Fatalf("handshake after restart: %v", err)
			}
			leaf2 := conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
			conn.Close()
			if !leaf2.Equal(leaf) {
				t.Fatal("after restart: a different certificate")
			}
			t.Logf("%s: certificate after %v (challenges: http-01 %d, tls-alpn-01 %d hellos), total %v",
				tc.name, issued.Round(time.Millisecond), httpChallenges.Load(), alpnHellos.Load(), time.Since(start).Round(time.Millisecond))
		})
	}
}
