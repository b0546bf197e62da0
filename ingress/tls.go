// Package ingress is the public listener's edge: its TLS certificates
// (tls.mode acme, files, self-signed) and the HTTP mux behind it.
package ingress

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/nexy-server/nexy/config"
)

const (
	// certPollEvery is how often mode "files" looks at the pair's mtimes:
	// often enough that a renewal by an outside tool (certbot, a secret
	// mount) is picked up within seconds, rare enough to cost nothing.
	certPollEvery = 2 * time.Second

	// certSelfSignedValidity is the self-signed certificate's lifetime:
	// 825 days is the longest a TLS server certificate may live on Apple
	// platforms (the shipped client is a macOS app), and long enough that
	// a pinned fingerprint rarely has to change.
	certSelfSignedValidity = 825 * 24 * time.Hour

	// certSelfSignedName is the file name (without extension) of the
	// self-signed pair under <server.data_dir>/tls.
	certSelfSignedName = "self-signed"
)

// Certs provides the public listener's certificates for one tls.mode.
type Certs struct {
	mode    string
	domains []string
	log     *slog.Logger
	// httpsPort is listen.address's port for the redirect target, "" when
	// it is the default 443.
	httpsPort string

	// cur is the pair served by modes files and self-signed; handshakes
	// read it without a lock, Reload swaps it.
	cur atomic.Pointer[tls.Certificate]

	// Mode "files".
	certFile, keyFile string
	reloadMu          sync.Mutex // serializes Reload (SIGHUP) with the poller
	seenCert, seenKey fs.FileInfo

	// Mode "self-signed".
	fingerprint string
	pemPath     string

	// Mode "acme".
	acme *certACME

	stop      chan struct{}
	done      sync.WaitGroup
	closeOnce sync.Once
}

// certOptions are knobs tests turn; NewCerts uses the zero value.
type certOptions struct {
	pollEvery time.Duration
	// acmeIssuer edits the ACME issuer template before use (tests disable
	// one challenge type to prove the other works on its own).
	acmeIssuer func(*certmagic.ACMEIssuer)
}

// NewCerts prepares the certificates of cfg.TLS.Mode ("off" → nil, nil).
// It does not block on issuance: acme obtains and renews in the
// background (until Close or ctx ends), and a handshake for a configured
// domain waits up to 30 s for the first certificate. The nil *Certs of
// mode off is safe to Close, Reload and Describe.
//
// In acme mode, bind listen.address and listen.http_redirect before
// calling NewCerts: certmagic answers challenges through TLSConfig and
// HTTPHandler only when it finds those ports taken; on a free port it
// would start its own challenge listener there.
func NewCerts(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Certs, error) {
	return newCerts(ctx, cfg, log, certOptions{})
}

func newCerts(ctx context.Context, cfg *config.Config, log *slog.Logger, opts certOptions) (*Certs, error) {
	if cfg.TLS.Mode == "off" {
		return nil, nil
	}
	if log == nil {
		log = slog.Default()
	}
	if opts.pollEvery <= 0 {
		opts.pollEvery = certPollEvery
	}
	c := &Certs{
		mode:    cfg.TLS.Mode,
		domains: cfg.TLSDomains(),
		log:     log,
		stop:    make(chan struct{}),
	}
	if _, port, err := net.SplitHostPort(cfg.Listen.Address); err == nil && port != "443" && port != "https" {
		c.httpsPort = port
	}
	var err error
	switch cfg.TLS.Mode {
	case "acme":
		c.acme, err = newCertACME(ctx, cfg, log, opts)
	case "files":
		err = c.startFiles(cfg.TLS.CertFile, cfg.TLS.KeyFile, opts.pollEvery)
	case "self-signed":
		err = c.loadSelfSigned(filepath.Join(cfg.Server.DataDir, "tls"))
	default:
		err = fmt.Errorf("tls.mode %q is not one of acme, files, self-signed, off", cfg.TLS.Mode)
	}
	if err != nil {
		return nil, fmt.Errorf("ingress: tls.mode %s: %w", cfg.TLS.Mode, err)
	}
	return c, nil
}

// TLSConfig is the server's tls.Config: ALPN h2 and http/1.1 (plus
// acme-tls/1 in acme mode, for TLS-ALPN-01), TLS 1.2 at least, and the
// mode's certificates. Each call returns a new Config the caller may edit.
func (c *Certs) TLSConfig() *tls.Config {
	if c == nil {
		return nil
	}
	tc := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
	}
	if c.acme != nil {
		// Last, so a normal client never negotiates it; the ACME validator
		// offers it alone.
		tc.NextProtos = append(tc.NextProtos, certACMETLS1)
		tc.GetCertificate = c.acme.getCertificate
	} else {
		tc.GetCertificate = c.currentCertificate
	}
	return tc
}

func (c *Certs) currentCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if cert := c.cur.Load(); cert != nil {
		return cert, nil
	}
	return nil, errors.New("ingress: no certificate loaded")
}

// HTTPHandler is what listen.http_redirect serves: ACME HTTP-01 challenges
// (acme mode) and, for everything else, a 308 redirect to the same host,
// path and query over https on listen.address's port.
func (c *Certs) HTTPHandler() http.Handler {
	if c == nil {
		return nil
	}
	h := http.Handler(http.HandlerFunc(c.redirect))
	if c.acme != nil {
		h = c.acme.issuer.HTTPChallengeHandler(h)
	}
	return h
}

func (c *Certs) redirect(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	// net/http already refuses malformed Host headers; these would still
	// turn the redirect into one to somewhere else.
	if host == "" || strings.ContainsAny(host, "/\\@?#") {
		http.Error(w, "missing or invalid Host header", http.StatusBadRequest)
		return
	}
	switch {
	case c.httpsPort != "":
		host = net.JoinHostPort(host, c.httpsPort)
	case strings.Contains(host, ":"): // IPv6 literal
		host = "[" + host + "]"
	}
	target := url.URL{Scheme: "https", Host: host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	if target.Path == "" {
		target.Path = "/"
	}
	// no-store: a cached redirect would outlive a change of listen.address.
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target.String(), http.StatusPermanentRedirect)
}

// Reload re-reads tls.cert_file and tls.key_file (mode files; other modes:
// no-op). A pair that does not load, or whose certificate has expired,
// is refused: the old pair keeps serving and the reason is logged and
// returned.
func (c *Certs) Reload() error {
	if c == nil || c.mode != "files" {
		return nil
	}
	return c.reloadFiles(true)
}

// Describe is one log line's attributes: the mode and domains, the CA in
// acme mode, the files in files mode, and in self-signed mode the SHA-256
// fingerprint (hex, colon-separated, as `openssl x509 -fingerprint
// -sha256` prints it) and the PEM path, so a client can pin it.
func (c *Certs) Describe() []any {
	if c == nil {
		return []any{"tls_mode", "off"}
	}
	attrs := []any{"tls_mode", c.mode}
	switch c.mode {
	case "acme":
		attrs = append(attrs, "domains", c.domains, "ca", c.acme.issuer.CA)
	case "files":
		attrs = append(attrs, "cert_file", c.certFile, "key_file", c.keyFile)
		if leaf := certLeaf(c.cur.Load()); leaf != nil {
			attrs = append(attrs, "domains", certNames(leaf), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
		}
	case "self-signed":
		if leaf := certLeaf(c.cur.Load()); leaf != nil {
			attrs = append(attrs, "domains", certNames(leaf), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		attrs = append(attrs, "fingerprint_sha256", c.fingerprint, "cert_file", c.pemPath)
	}
	return attrs
}

// Close stops renewals and file polling. It is safe to call more than once.
func (c *Certs) Close() {
	if c == nil {
		return
	}
	c.closeOnce.Do(func() {
		close(c.stop)
		if c.acme != nil {
			c.acme.close()
		}
		c.done.Wait()
	})
}

// ---- mode "files" ----

func (c *Certs) startFiles(certFile, keyFile string, every time.Duration) error {
	c.certFile, c.keyFile = certFile, keyFile
	if err := c.reloadFiles(false); err != nil {
		return err
	}
	c.done.Add(1)
	go c.pollFiles(every)
	return nil
}

// pollFiles reloads the pair when either file changes, so a renewal by an
// outside tool needs no SIGHUP.
func (c *Certs) pollFiles(every time.Duration) {
	defer c.done.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.reloadMu.Lock()
		changed := certFileChanged(c.seenCert, c.certFile) || certFileChanged(c.seenKey, c.keyFile)
		c.reloadMu.Unlock()
		if changed {
			// The error is logged by reloadFiles; the old pair keeps serving.
			_ = c.reloadFiles(true)
		}
	}
}

// certFileChanged reports whether path is no longer the file seen was:
// replaced (rename), rewritten (mtime, size), or gone.
func certFileChanged(seen fs.FileInfo, path string) bool {
	fi, err := os.Stat(path)
	if err != nil || seen == nil {
		return err == nil || seen != nil
	}
	return !os.SameFile(seen, fi) || !fi.ModTime().Equal(seen.ModTime()) || fi.Size() != seen.Size()
}

// reloadFiles loads the pair; logNew says whether a successful load is
// worth a log line (not at start: Describe covers that).
func (c *Certs) reloadFiles(logNew bool) error {
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	// Remember what was tried even when it fails, so a broken pair is
	// reported once per change instead of on every poll.
	c.seenCert, _ = os.Stat(c.certFile)
	c.seenKey, _ = os.Stat(c.keyFile)

	old := c.cur.Load()
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err == nil && cert.Leaf == nil {
		cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0])
	}
	if err == nil && old != nil && time.Now().After(cert.Leaf.NotAfter) {
		err = fmt.Errorf("the certificate expired on %s", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if err != nil {
		err = fmt.Errorf("tls.cert_file %s / tls.key_file %s: %w", c.certFile, c.keyFile, err)
		if old != nil {
			c.log.Error("TLS certificate not reloaded: still serving the previous one", "scope", "tls",
				"decision", "reload_refused", "error", err.Error())
		}
		return err
	}
	if old == nil && time.Now().After(cert.Leaf.NotAfter) {
		// At start there is nothing better to serve; say so loudly.
		c.log.Warn("TLS certificate has expired", "scope", "tls", "decision", "expired",
			"cert_file", c.certFile, "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	c.cur.Store(&cert)
	if logNew {
		c.log.Info("TLS certificate reloaded", "scope", "tls", "decision", "reloaded", "cert_file", c.certFile,
			"domains", certNames(cert.Leaf), "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// ---- mode "self-signed" ----

// loadSelfSigned reuses <dir>/self-signed.crt|.key, generating them when
// missing, unusable or expired: the pair must outlive restarts, or every
// client pinning its fingerprint would break on each start.
func (c *Certs) loadSelfSigned(dir string) error {
	crtPath := filepath.Join(dir, certSelfSignedName+".crt")
	keyPath := filepath.Join(dir, certSelfSignedName+".key")
	c.pemPath = crtPath

	cert, err := tls.LoadX509KeyPair(crtPath, keyPath)
	if err == nil && cert.Leaf == nil {
		cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0])
	}
	if err == nil && time.Now().After(cert.Leaf.NotAfter) {
		err = fmt.Errorf("it expired on %s", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("Self-signed certificate unusable: generating a new one (clients must pin the new fingerprint)",
				"scope", "tls", "decision", "regenerate", "cert_file", crtPath, "error", err.Error())
		}
		if cert, err = certGenerateSelfSigned(dir, crtPath, keyPath, c.domains); err != nil {
			return err
		}
	} else if missing := certMissingNames(cert.Leaf, c.domains); len(missing) > 0 {
		// Regenerating would change the pinned fingerprint; leave that to
		// the operator.
		c.log.Warn("Self-signed certificate does not cover every tls.domains name; delete it to regenerate",
			"scope", "tls", "decision", "kept", "cert_file", crtPath, "missing", missing)
	}
	c.cur.Store(&cert)
	c.fingerprint = Fingerprint(cert.Leaf.Raw)
	return nil
}

// certGenerateSelfSigned writes a new ECDSA P-256 pair for localhost, the
// loopback addresses, the machine's hostname and domains.
func certGenerateSelfSigned(dir, crtPath, keyPath string, domains []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate serial: %w", err)
	}
	names := []string{"localhost"}
	if h, err := os.Hostname(); err == nil && h != "" && !strings.ContainsAny(h, " /") {
		names = append(names, h)
	}
	names = append(names, domains...)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "Nexy self-signed", Organization: []string{"Nexy server"}},
		// An hour back absorbs clients whose clocks run slightly behind.
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(certSelfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	seen := map[string]bool{}
	for _, n := range names {
		n = strings.ToLower(n)
		if seen[n] {
			continue
		}
		seen[n] = true
		if ip := net.ParseIP(n); ip != nil {
			if !ip.IsLoopback() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
			continue
		}
		tmpl.DNSNames = append(tmpl.DNSNames, n)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("encode key: %w", err)
	}
	crtPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, err
	}
	// Key first: a crash in between leaves a key without a certificate,
	// which the next start treats as missing and replaces.
	if err := certWriteFile(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := certWriteFile(crtPath, crtPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(crtPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	if cert.Leaf == nil {
		cert.Leaf, _ = x509.ParseCertificate(der)
	}
	return cert, nil
}

// certWriteFile replaces path atomically (temp file + rename), so a reader
// never sees half a PEM.
func certWriteFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Fingerprint is the SHA-256 of a certificate's DER as colon-separated
// upper-case hex, the form `openssl x509 -noout -fingerprint -sha256`
// prints (and serve logs, so a client can pin it).
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

func certLeaf(cert *tls.Certificate) *x509.Certificate {
	if cert == nil {
		return nil
	}
	return cert.Leaf
}

// certNames is the leaf's DNS and IP subject alternative names.
func certNames(leaf *x509.Certificate) []string {
	names := append([]string(nil), leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// certMissingNames is the domains leaf is not valid for.
func certMissingNames(leaf *x509.Certificate, domains []string) []string {
	var missing []string
	for _, d := range domains {
		if leaf.VerifyHostname(d) != nil {
			missing = append(missing, d)
		}
	}
	return missing
}
