// Package acmetest runs a real ACME server (Pebble, in-process) and a DNS
// server that resolves every name to 127.0.0.1, so tests can obtain a
// certificate the way a VPS does, with the challenge really solved on
// loopback. Only tests import it.
package acmetest

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// Env is what Pebble must run with in tests: no random validation sleeps,
// no nonce rejections, no authorization reuse. Set it with t.Setenv in
// the process that calls StartPebble.
var Env = map[string]string{"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}

// StartDNS starts a DNS server (TCP, as pebble's VA asks) that resolves
// every name to 127.0.0.1, so the VA reaches the test's listeners.
func StartDNS(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{
		Listener:          ln,
		NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(r)
			for _, q := range r.Question {
				if q.Qtype == dns.TypeA {
					m.Answer = append(m.Answer, &dns.A{
						Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET},
						A:   net.IPv4(127, 0, 0, 1),
					})
				}
			}
			w.WriteMsg(m)
		}),
	}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// Pebble is an in-process Pebble ACME server.
type Pebble struct {
	DirURL   string // ACME directory, https://127.0.0.1:port/dir
	RootsPEM string // file with the root of the directory's HTTPS certificate
	mgmt     *httptest.Server
}

// StartPebble starts Pebble in-process, wired as its cmd/pebble does, with the VA
// validating HTTP-01 on httpPort and TLS-ALPN-01 on tlsPort of whatever
// resolver resolves (127.0.0.1).
func StartPebble(t testing.TB, logw io.Writer, resolver string, httpPort, tlsPort int) *Pebble {
	t.Helper()
	logger := log.New(logw, "pebble ", log.Lmicroseconds)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	validator := va.New(logger, httpPort, tlsPort, false, resolver, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)

	// httptest's own certificate (127.0.0.1, self-signed) stands in for
	// the ACME server's HTTPS certificate; its PEM is tls.ca_roots.
	dir := httptest.NewUnstartedServer(front.Handler())
	dir.StartTLS()
	t.Cleanup(dir.Close)
	mgmt := httptest.NewTLSServer(front.ManagementHandler())
	t.Cleanup(mgmt.Close)

	roots := filepath.Join(t.TempDir(), "acme-roots.pem")
	if err := os.WriteFile(roots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: dir.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &Pebble{DirURL: dir.URL + wfe.DirectoryPath, RootsPEM: roots, mgmt: mgmt}
}

// IssuingRoot is the root Pebble signs certificates with, from its
// management interface.
func (p *Pebble) IssuingRoot(t testing.TB) *x509.CertPool {
	t.Helper()
	resp, err := p.mgmt.Client().Get(p.mgmt.URL + wfe.RootCertPath + "0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble root: %d %v", resp.StatusCode, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(body) {
		t.Fatalf("pebble root is not PEM: %q", body)
	}
	return pool
}
