// Package server is the gRPC service and the turn pipeline: validation,
// admission, the COLLECT buffer, the LLM → TTS stream of one answer,
// interrupts, listeners and graceful shutdown. It is the only package that
// knows the whole flow of a turn.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/internal/buildinfo"
	"github.com/nexy-server/nexy/internal/httpclient"
	"github.com/nexy-server/nexy/llm"
	"github.com/nexy-server/nexy/tts"
)

// streamWindow is the HTTP/2 flow-control window of each stream: the
// protocol's initial 64 KiB, the least grpc-go accepts.
const streamWindow = 64 << 10

// Server owns the listeners and the service.
type Server struct {
	cfg   *config.Config
	log   *slog.Logger
	svc   *service
	grpc  *grpc.Server
	http  *http.Server
	feed  Feed
	start time.Time

	grpcLn, httpLn net.Listener
	// Listeners handed over by the caller (the public TLS port): connections
	// for the gRPC server and HTTP/1.1 connections for the HTTP server.
	extraGRPC, extraHTTP []net.Listener
}

// Attach adds listeners that Serve serves besides the plaintext ones: grpcLn
// yields connections that speak gRPC's HTTP/2 (TLS already terminated),
// httpLn HTTP/1.1 connections; either may be nil. Call before Serve.
func (s *Server) Attach(grpcLn, httpLn net.Listener) {
	if grpcLn != nil {
		s.extraGRPC = append(s.extraGRPC, grpcLn)
	}
	if httpLn != nil {
		s.extraHTTP = append(s.extraHTTP, httpLn)
	}
}

// HTTPServer is the server of every HTTP endpoint. The public port serves
// HTTP/2 connections with it directly (golang.org/x/net/http2's ServeConn,
// with it as the base config), so its Shutdown reaches them too.
func (s *Server) HTTPServer() *http.Server { return s.http }

// Deps are what the server works with, built by the caller (main.go wires
// config → store → providers → server).
type Deps struct {
	// LLM answers turns. Nil: turns are refused with LLMMissing, which says
	// what to configure (a server without a key still starts).
	LLM        llm.Provider
	LLMMissing string
	// TTS speaks; required.
	TTS tts.Synthesizer
	// TTSFallback speaks when TTS fails before any audio; nil = none.
	TTSFallback tts.Synthesizer
	// Store records turns, usage and memory. Nil: nothing is recorded, and
	// ReportUsage answers success=false.
	Store Store
	// AudioCache keeps repeated phrases' speech; nil = no cache.
	AudioCache tts.Cache
	// Feed is the app's update feed, served under /updates/; nil = none.
	Feed Feed
	// HTTPStats reads the providers' shared HTTP transport counters for
	// /metrics (nexy_provider_http_*); nil = not exported.
	HTTPStats func() httpclient.Counts
}

// Feed is the app's Sparkle update feed (package updates implements it).
type Feed interface {
	// ServeHTTP answers /updates/... requests.
	http.Handler
	// Latest is the stable channel's current release, for /health; ok is
	// false when nothing is published.
	Latest() (version string, build int64, ok bool)
	// Status describes the feed for /status (channels, degraded, last error).
	Status() any
}

// New builds the server from a validated config and its dependencies.
func New(cfg *config.Config, log *slog.Logger, deps Deps) (*Server, error) {
	if deps.TTS == nil {
		return nil, errors.New("server: no speech synthesizer")
	}
	if deps.LLM == nil && deps.LLMMissing == "" {
		deps.LLMMissing = "no LLM provider is configured"
	}
	// Uptime counts from here: the public port may answer /status before Serve runs.
	s := &Server{cfg: cfg, log: log, svc: newService(cfg, log, deps), start: time.Now()}
	if deps.HTTPStats != nil {
		s.svc.metrics.watchHTTP(deps.HTTPStats)
	}
	s.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(cfg.Limits.MaxMessageBytes),
		grpc.MaxSendMsgSize(cfg.Limits.MaxMessageBytes),
		// One connection cannot open more streams than this; with the request
		// budget it bounds what a single client can make the server hold.
		grpc.MaxConcurrentStreams(uint32(cfg.Limits.MaxStreamsPerConn)),
		// A fixed per-stream window (HTTP/2's 64 KiB) instead of grpc-go's
		// dynamic one, which grows to megabytes on a fast link: a stream
		// waiting for the request budget then holds at most 64 KiB of its
		// message. A stream being read still gets a window for its whole
		// message at once (grpc-go grants what a read asks for), so uploads
		// are not slowed; the connection window lets one full message through.
		grpc.InitialWindowSize(streamWindow),
		grpc.InitialConnWindowSize(int32(max(2*cfg.Limits.MaxMessageBytes, streamWindow))),
		// RPCs run on reused goroutines whose stacks have already grown
		// (a turn's handler goes deep: SQLite, the pipeline), instead of a
		// new 8 KiB stack grown again by copying for every request; past
		// 64 at once grpc-go starts goroutines as before. CPU per turn
		// 3.91-4.38 -> 3.57-3.60 ms (nexy bench --devices 50 --floor).
		grpc.NumStreamWorkers(streamWorkers),
		grpc.StreamInterceptor(s.svc.streamInterceptor),
		grpc.StatsHandler(s.svc.metrics.grpcHandler()),
		// The shipped client pings every 120 s during a call; grpc-go's default
		// policy (5 min) would answer with GOAWAY too_many_pings.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: cfg.Limits.KeepaliveMinTime.Duration, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 60 * time.Second, Timeout: 20 * time.Second}),
	)
	// The generated description, with unary requests read under the budget.
	s.grpc.RegisterService(s.svc.serviceDesc(), s.svc)
	s.feed = deps.Feed
	// WriteTimeout is off: downloads of the app's update are large; a slow
	// client is bounded by the idle and header timeouts instead.
	s.http = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnContext: markPlain}
	return s, nil
}

// streamWorkers is how many goroutines serve RPCs, reused (see New).
const streamWorkers = 64

// plainListener marks the connections of listen.http_plain, the operator's
// own port, so operator-only routes (pprof) can tell them from the public
// port's, which the same http.Server serves.
type plainListener struct{ net.Listener }

// plainConn embeds the *net.TCPConn itself, so its ReadFrom (sendfile for
// update downloads) still applies.
type plainConn struct{ *net.TCPConn }

func (l plainListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		return plainConn{tc}, nil
	}
	return c, err
}

type plainKey struct{}

func markPlain(ctx context.Context, c net.Conn) context.Context {
	if _, ok := c.(plainConn); ok {
		return context.WithValue(ctx, plainKey{}, true)
	}
	return ctx
}

// Listen binds the configured plaintext addresses (port 0 picks a free port).
func (s *Server) Listen() error {
	var err error
	if s.cfg.Listen.GRPCPlain != "" {
		if s.grpcLn, err = net.Listen("tcp", s.cfg.Listen.GRPCPlain); err != nil {
			return fmt.Errorf("listen.grpc_plain: %w", err)
		}
	}
	if s.cfg.Listen.HTTPPlain != "" {
		ln, err := net.Listen("tcp", s.cfg.Listen.HTTPPlain)
		if err != nil {
			if s.grpcLn != nil {
				s.grpcLn.Close()
			}
			return fmt.Errorf("listen.http_plain: %w", err)
		}
		s.httpLn = plainListener{ln}
	}
	return nil
}

// GRPCAddr is the bound plaintext gRPC address (after Listen), nil when off.
func (s *Server) GRPCAddr() net.Addr {
	if s.grpcLn == nil {
		return nil
	}
	return s.grpcLn.Addr()
}

// HTTPAddr is the bound HTTP address, nil when HTTP is off.
func (s *Server) HTTPAddr() net.Addr {
	if s.httpLn == nil {
		return nil
	}
	return s.httpLn.Addr()
}

// Serve runs until ctx is cancelled, then shuts down gracefully: new turns are
// refused, running ones get limits.grace_period to finish, then are cancelled.
func (s *Server) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	defer stopSweep()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.svc.collect.sweepEvery(sweepCtx, sweepInterval(s.cfg.Limits.CollectTTL.Duration))
	}()
	wg.Add(1)
	go func() { defer wg.Done(); s.runMetricsSummary(sweepCtx) }()
	// The device list is read before the first request is served: under
	// pairing "approve" nobody is refused for want of it.
	s.svc.devices.refresh(ctx)
	wg.Add(1)
	go func() { defer wg.Done(); s.svc.devices.run(sweepCtx) }()
	grpcLns, httpLns := s.extraGRPC, s.extraHTTP
	if s.grpcLn != nil {
		grpcLns = append([]net.Listener{s.grpcLn}, grpcLns...)
	}
	if s.httpLn != nil {
		httpLns = append([]net.Listener{s.httpLn}, httpLns...)
	}
	errc := make(chan error, 1+len(grpcLns)+len(httpLns))
	for _, ln := range grpcLns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.grpc.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				errc <- fmt.Errorf("gRPC on %s: %w", ln.Addr(), err)
			}
		}()
	}
	for _, ln := range httpLns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("HTTP on %s: %w", ln.Addr(), err)
			}
		}()
	}
	s.logStart()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.shutdown()
	stopSweep()
	wg.Wait()
	// Every turn has ended; let the memory analyses write what they found,
	// and the phrase cache its last entries, before main closes the stores.
	s.svc.memory.close()
	s.svc.phrases.wait()
	s.svc.speech.wait()
	s.logMetricsSummary()
	return err
}

// sweepInterval is how often expired COLLECT data is dropped: a quarter of
// its lifetime, so nothing outlives limits.collect_ttl by more than that.
func sweepInterval(ttl time.Duration) time.Duration { return max(ttl/4, time.Second) }

func (s *Server) logStart() {
	attrs := []any{"scope", "server", "decision", "start", "version", buildinfo.Current().String(),
		"llm", s.cfg.LLM.Provider, "model", s.cfg.LLM.Model, "tts", s.svc.speech.turn.Name()}
	if a := s.GRPCAddr(); a != nil {
		attrs = append(attrs, "grpc", a.String())
	}
	if a := s.HTTPAddr(); a != nil {
		attrs = append(attrs, "http", a.String())
	}
	s.log.Info("Server started", attrs...)
	llmNet, ttsNet := needsInternet(s.cfg.LLM.Provider, s.cfg.LLM.BaseURL), needsInternet(s.cfg.TTS.Provider, s.cfg.TTS.BaseURL)
	s.log.Info("Providers", "scope", "server", "decision", "providers",
		"llm.provider", s.cfg.LLM.Provider, "llm_endpoint", endpointHost(s.cfg.LLM.Provider, s.cfg.LLM.BaseURL), "llm_needs_internet", llmNet,
		"tts.provider", s.cfg.TTS.Provider, "tts_endpoint", endpointHost(s.cfg.TTS.Provider, s.cfg.TTS.BaseURL), "tts_needs_internet", ttsNet)
	if s.svc.llm == nil {
		s.log.Warn(s.svc.llmMissing, "scope", "server", "decision", "degraded")
	}
}

// defaultHosts are where providers go when no base_url is set.
var defaultHosts = map[string]string{
	"gemini": "generativelanguage.googleapis.com",
	"edge":   "speech.platform.bing.com",
	"azure":  "<region>.tts.speech.microsoft.com",
}

// endpointHost is the host a provider talks to ("local process" for a command).
func endpointHost(provider, baseURL string) string {
	if provider == "command" {
		return "local process"
	}
	if baseURL == "" {
		return defaultHosts[provider]
	}
	if u, err := url.Parse(baseURL); err == nil && u.Host != "" {
		return u.Host
	}
	return baseURL
}

// needsInternet tells an operator, once at start, which providers stop
// working offline: a command or an endpoint on this machine or the local
// network does not need the internet.
func needsInternet(provider, baseURL string) bool {
	if provider == "command" {
		return false
	}
	if baseURL == "" {
		return true // the provider's public default
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return true
	}
	host := u.Hostname()
	if host == "localhost" || strings.HasSuffix(host, ".local") || strings.HasSuffix(host, ".localhost") {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !(ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast())
}

func (s *Server) shutdown() {
	start := time.Now()
	s.svc.adm.drain()
	s.svc.preempt.close() // speculations have no COMMIT to wait for
	s.log.Info("Shutting down: new turns are refused; running turns may finish", "scope", "server", "decision", "drain",
		"active_turns", s.svc.adm.running(), "grace_period", s.cfg.Limits.GracePeriod.Duration.String())
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Limits.GracePeriod.Duration)
	defer cancel()
	// Both listeners drain at once, each within the same grace period.
	httpDone := make(chan struct{})
	go func() { _ = s.http.Shutdown(ctx); close(httpDone) }()
	grpcDone := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(grpcDone) }()
	select {
	case <-grpcDone:
	case <-ctx.Done():
		s.log.Warn("Grace period over: cancelling the turns still running", "scope", "server", "decision", "cancel_all",
			"active_turns", s.svc.adm.running())
		s.svc.adm.cancelAll(errShutdown)
		s.grpc.Stop()
		<-grpcDone
	}
	<-httpDone
	s.log.Info("Server stopped", "scope", "server", "decision", "stop", "dur_ms", time.Since(start).Milliseconds())
}
