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
	done     chan struct{}
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
	if p.mux, err = ingress.NewMux(ln, tlsConf, srv.HTTPServer(), log); err != nil {
		p.closeListeners(ln)
		p.close()
		return nil, err
	}
	srv.Attach(p.mux.GRPC(), p.mux.HTTP())
	if p.redirLn != nil {
		p.redirect = &http.Server{Handler: p.certs.HTTPHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	}
	attrs := append([]any{"scope", "server", "decision", "public", "address", p.mux.Addr().String()}, p.describe()...)
	if p.redirLn != nil {
		attrs = append(attrs, "http_redirect", p.redirLn.Addr().String())
	}
	log.Info("Public port ready: gRPC and HTTPS on one port", attrs...)
	return p, nil
}

func (p *public) describe() []any {
	if p.certs == nil {
		return []any{"tls.mode", "off"}
	}
	return p.certs.Describe()
}

// start serves the public ports until ctx ends, and reloads the
// certificate files on SIGHUP.
func (p *public) start(ctx context.Context) {
	if p.mux == nil {
		return
	}
	go func() {
		defer close(p.done)
		if err := p.mux.Serve(ctx); err != nil {
			p.log.Error("The public port stopped", "scope", "server", "decision", "public_failed", "error", err.Error())
		}
	}()
	if p.redirect != nil {
		go func() {
			if err := p.redirect.Serve(p.redirLn); !errors.Is(err, http.ErrServerClosed) {
				p.log.Error("The redirect port stopped", "scope", "server", "decision", "public_failed", "error", err.Error())
			}
		}()
	}
	if p.certs == nil {
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-hup:
				if err := p.certs.Reload(); err != nil {
					p.log.Error("Certificate reload failed: still serving the old one", "scope", "server", "decision", "tls_reload", "error", err.Error())
				} else {
					p.log.Info("Certificates reloaded (SIGHUP)", "scope", "server", "decision", "tls_reload")
				}
			case <-ctx.Done():
				return
			}
		}
	}()
}

// shutdown waits (within grace) for the connections the public port serves
// itself; the gRPC and HTTP servers have drained theirs in Serve.
func (p *public) shutdown(grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if p.redirect != nil {
		_ = p.redirect.Shutdown(ctx)
	}
	if p.mux != nil {
		p.mux.Shutdown(ctx)
		<-p.done
	}
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
