package ingress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/nexy-server/nexy/config"
)

const (
	// certACMETLS1 is the ALPN protocol of the TLS-ALPN-01 challenge
	// (RFC 8737).
	certACMETLS1 = "acme-tls/1"

	// certIssueWait caps how long a handshake for a configured domain
	// waits for the first certificate while it is being obtained. A
	// client's own handshake timeout usually cuts it shorter; the cap
	// keeps goroutines from piling up when issuance fails.
	certIssueWait = 30 * time.Second
)

// certACME is mode "acme": certmagic obtains and renews the certificates
// of tls.domains from tls.ca_url and keeps them in <server.data_dir>/tls.
type certACME struct {
	magic  *certmagic.Config
	cache  *certmagic.Cache
	issuer *certmagic.ACMEIssuer
	cancel context.CancelFunc

	// pending holds, per configured domain, a channel closed once its
	// certificate is first in the cache; a handshake that finds no
	// certificate waits on it instead of failing while issuance is under
	// way, and tries again once it is closed.
	mu      sync.Mutex
	pending map[string]chan struct{}
}

func newCertACME(ctx context.Context, cfg *config.Config, log *slog.Logger, opts certOptions) (*certACME, error) {
	domains := cfg.TLSDomains()
	if len(domains) == 0 {
		return nil, errors.New("tls.domains is empty")
	}
	for _, d := range domains {
		// HTTP-01 and TLS-ALPN-01 cannot prove control of a whole zone;
		// refuse now rather than fail every renewal attempt later.
		if strings.HasPrefix(d, "*.") {
			return nil, fmt.Errorf("tls.domains: %q is a wildcard, which needs the DNS-01 challenge; list the names instead", d)
		}
	}
	a := &certACME{pending: map[string]chan struct{}{}}
	for _, d := range domains {
		a.pending[strings.ToLower(d)] = make(chan struct{})
	}

	zlog := zap.New(certZapCore{log: log.With("scope", "tls")})
	// The cache is ours, not certmagic's package default, so Close can stop
	// its maintenance goroutine and two Certs (tests) never share state.
	a.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return a.magic, nil },
		Logger:           zlog,
	})
	a.magic = certmagic.New(a.cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: filepath.Join(cfg.Server.DataDir, "tls")},
		Logger:  zlog,
		// A client that sends no SNI (dialing by IP) still gets the
		// domain's certificate and a clear name-mismatch error.
		DefaultServerName: domains[0],
		OnEvent:           a.onEvent,
	})

	tmpl := certmagic.ACMEIssuer{
		CA:     cfg.TLS.CAURL,
		Email:  cfg.TLS.Email,
		Agreed: true,
		Logger: zlog,
		// Challenges are answered on our own listeners: TLS-ALPN-01 by
		// TLSConfig on listen.address, HTTP-01 by HTTPHandler on
		// listen.http_redirect. certmagic still tries to bind the
		// challenge port before each challenge; pointing it at our ports
		// makes that bind fail as "in use", which it takes to mean our
		// server answers. Without listen.http_redirect there is nothing
		// to answer HTTP-01, and certmagic would bind :80 itself.
		DisableHTTPChallenge:    cfg.Listen.HTTPRedirect == "",
		DisableTLSALPNChallenge: false,
		AltTLSALPNPort:          certPort(cfg.Listen.Address, 443),
		AltHTTPPort:             certPort(cfg.Listen.HTTPRedirect, 80),
	}
	if tmpl.CA == "" {
		tmpl.CA = certmagic.LetsEncryptProductionCA
	}
	if cfg.TLS.CARoots != "" {
		pool, err := certRootPool(cfg.TLS.CARoots)
		if err != nil {
			a.cache.Stop()
			return nil, err
		}
		tmpl.TrustedRoots = pool
	}
	if opts.acmeIssuer != nil {
		opts.acmeIssuer(&tmpl)
	}
	a.issuer = certmagic.NewACMEIssuer(a.magic, tmpl)
	a.magic.Issuers = []certmagic.Issuer{a.issuer}

	// Obtaining and renewing run until Close or until ctx ends, so the
	// caller passes the server's lifetime context, not a setup timeout.
	ctx, a.cancel = context.WithCancel(ctx)
	if err := a.magic.ManageAsync(ctx, domains); err != nil {
		a.close()
		return nil, fmt.Errorf("manage %v: %w", domains, err)
	}
	return a, nil
}

// onEvent marks domains whose certificate reached the cache (obtained, or
// loaded from storage at start), releasing handshakes waiting for them.
func (a *certACME) onEvent(_ context.Context, event string, data map[string]any) error {
	if event != "cached_managed_cert" {
		return nil
	}
	sans, _ := data["sans"].([]string)
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, san := range sans {
		// Closed channels stay: a handshake that missed the certificate
		// just before it arrived must find the channel closed, not gone.
		if ch, ok := a.pending[strings.ToLower(san)]; ok {
			select {
			case <-ch:
			default:
				close(ch)
			}
		}
	}
	return nil
}

// getCertificate is certmagic's, except that a handshake for a configured
// domain arriving before its first certificate waits for it rather than
// failing; the TLS-ALPN-01 validator's handshakes are answered by
// certmagic as they come.
func (a *certACME) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert, err := a.magic.GetCertificate(hello)
	if err == nil || slices.Contains(hello.SupportedProtos, certACMETLS1) {
		return cert, err
	}
	a.mu.Lock()
	ch, ok := a.pending[strings.ToLower(hello.ServerName)]
	a.mu.Unlock()
	if !ok {
		return cert, err
	}
	ctx := hello.Context()
	if ctx == nil { // a ClientHelloInfo built by hand
		ctx = context.Background()
	}
	t := time.NewTimer(certIssueWait)
	defer t.Stop()
	select {
	case <-ch:
		return a.magic.GetCertificate(hello)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, fmt.Errorf("ingress: the certificate for %s is still being obtained: %w", hello.ServerName, err)
	}
}

func (a *certACME) close() {
	a.cancel()
	a.cache.Stop()
}

// certPort is addr's numeric port, or def when addr has none.
func certPort(addr string, def int) int {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return def
	}
	p, err := net.LookupPort("tcp", port)
	if err != nil || p == 0 {
		return def
	}
	return p
}

// certRootPool is the system roots plus the PEM roots of tls.ca_roots, so
// a private ACME server can be trusted without dropping the public ones.
func certRootPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls.ca_roots: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls.ca_roots: %s holds no PEM certificate", path)
	}
	return pool, nil
}

// certZapCore sends certmagic's zap logs to our slog logger, so issuance
// and renewal show up in the one structured log.
type certZapCore struct {
	log    *slog.Logger
	fields []zapcore.Field
}

func (z certZapCore) Enabled(l zapcore.Level) bool {
	return z.log.Enabled(context.Background(), certSlogLevel(l))
}

func (z certZapCore) With(fields []zapcore.Field) zapcore.Core {
	return certZapCore{log: z.log, fields: append(slices.Clip(z.fields), fields...)}
}

func (z certZapCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if z.Enabled(e.Level) {
		return ce.AddCore(e, z)
	}
	return ce
}

func (z certZapCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range z.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	attrs := make([]slog.Attr, 0, len(keys)+1)
	// certmagic names some loggers ".acme_client" (an empty parent name).
	component := "certmagic"
	if name := strings.TrimPrefix(e.LoggerName, "."); name != "" {
		component += "." + name
	}
	attrs = append(attrs, slog.String("component", component))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, enc.Fields[k]))
	}
	z.log.LogAttrs(context.Background(), certSlogLevel(e.Level), e.Message, attrs...)
	return nil
}

func (certZapCore) Sync() error { return nil }

func certSlogLevel(l zapcore.Level) slog.Level {
	switch {
	case l < zapcore.InfoLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}
