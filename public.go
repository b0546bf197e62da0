package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/ingress"
	"github.com/nexy-server/nexy/server"
)

// public is the public side of the server: the TLS port (gRPC and HTTP
// together) and the plaintext redirect port, as listen.address,
// listen.http_redirect and tls.* describe them.
type public struct {
	certs    *ingress.Certs
	mux      *ingress.Mux
	redirect *http.Server
	redirLn  net.Listener
	log      *slog.Logger
	done     chan struct{} // closed when the accept loop has ended
	drained  chan struct{} // closed when the public port has drained
	stopHUP  chan struct{}
}

// openPublic prepares the certificates and binds the public ports, and
// hands the TLS port's connections to srv. Nothing is served before start.
func openPublic(ctx context.Context, cfg *config.Config, srv *server.Server, log *slog.Logger) (*public, error) {
	p := &public{log: log, done: make(chan struct{})}
	if cfg.Listen.Address == "" {
		close(p.done)
		return p, nil
	}
	// Both ports are bound before the certificates are prepared: certmagic
	// answers challenges through them only when it finds them taken.
	ln, err := net.Listen("tcp", cfg.Listen.Address)
	if err != nil {
		return nil, fmt.Errorf("listen.address: %w", err)
	}
	if cfg.Listen.HTTPRedirect != "" {
		if p.redirLn, err = net.Listen("tcp", cfg.Listen.HTTPRedirect); err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen.http_redirect: %w", err)
		}
	}
	if p.certs, err = ingress.NewCerts(ctx, cfg, log); err != nil {
		p.closeListeners(ln)
		return nil, err
	}
	var tlsConf *tls.Config
	if p.certs != nil {
		tlsConf = p.certs.TLSConfig()
	}
	opts := ingress.MuxOptions{HandshakeTimeout: cfg.Listen.HandshakeTimeout.Duration, FirstRequestTimeout: cfg.Listen.FirstRequestTimeout.Duration}
	if p.mux, err = ingress.NewMux(ln, tlsConf, srv.HTTPServer(), opts, log); err != nil {
		p.closeListeners(ln)
		p.close()
		return nil, err
	}
	srv.Attach(p.mux.GRPC(), p.mux.HTTP())
	if p.redirLn != nil {
		p.redirect = &http.Server{Handler: p.certs.HTTPHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	}
	attrs := append([]any{"scope", "server", "decision", "public", "address", p.mux.Addr().String()}, p.certs.Describe()...)
	if p.redirLn != nil {
		attrs = append(attrs, "http_redirect", p.redirLn.Addr().String())
	}
	log.Info("Public port ready: gRPC and HTTPS on one port", attrs...)
	return p, nil
}

// start serves the public ports until ctx ends, and reloads the
// certificate files on SIGHUP. If a public port fails, fail is called (the
// server then stops: a server without its public port must be restarted).
// When ctx ends the public port drains alongside the server, within grace.
func (p *public) start(ctx context.Context, grace time.Duration, fail func(error)) {
	p.drained = make(chan struct{})
	p.stopHUP = make(chan struct{})
	if p.mux == nil {
		close(p.drained)
		return
	}
	go func() {
		defer close(p.done)
		if err := p.mux.Serve(ctx); err != nil {
			fail(fmt.Errorf("the public port stopped: %w", err))
		}
	}()
	if p.redirect != nil {
		go func() {
			if err := p.redirect.Serve(p.redirLn); !errors.Is(err, http.ErrServerClosed) {
				fail(fmt.Errorf("the redirect port stopped: %w", err))
			}
		}()
	}
	context.AfterFunc(ctx, func() {
		defer close(p.drained)
		dctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		<-p.done // the accept loop has ended (ctx closed its listener)
		if p.redirect != nil {
			_ = p.redirect.Shutdown(dctx)
		}
		p.mux.Shutdown(dctx)
	})
	if p.certs != nil {
		go p.reloadOnHUP()
	}
}

// reloadOnHUP reloads the certificate files on SIGHUP until shutdown has
// finished (a renewal hook's SIGHUP during the drain must not kill the
// process before the stores are flushed).
func (p *public) reloadOnHUP() {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if err := p.certs.Reload(); err != nil {
				p.log.Error("Certificate reload failed: still serving the old one", "scope", "server", "decision", "tls_reload", "error", err.Error())
			} else {
				p.log.Info("Certificates reloaded (SIGHUP)", "scope", "server", "decision", "tls_reload")
			}
		case <-p.stopHUP:
			return
		}
	}
}

// wait returns once the public port has drained (it began when the
// server's context ended), then releases the certificates.
func (p *public) wait() {
	<-p.drained
	close(p.stopHUP)
	p.close()
}

func (p *public) closeListeners(ln net.Listener) {
	ln.Close()
	if p.redirLn != nil {
		p.redirLn.Close()
	}
}

func (p *public) close() {
	if p.certs != nil {
		p.certs.Close()
	}
}
