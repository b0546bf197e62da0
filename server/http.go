package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nexy-server/nexy/internal/buildinfo"
)

// Cache-Control values of the endpoints (SPEC §9).
const (
	cacheNoStore = "no-store"
	cacheHealth  = "public, max-age=30"
)

// routes is every HTTP endpoint, served on the plaintext HTTP listener and
// on the public TLS port alike. GET patterns answer HEAD too; a known path
// with another method gets 405 with Allow, an unknown path 404 (both from
// the mux), and every response gets exactly one Cache-Control.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", s.health)
	mux.HandleFunc("GET /status", s.status)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.svc.metrics.reg, promhttp.HandlerOpts{
		ErrorLog: promLog{s}, Registry: s.svc.metrics.reg}))
	mux.HandleFunc("GET /api/subscription/status", s.subscriptionStatus)
	mux.HandleFunc("POST /api/subscription/checkout", s.billingDisabled)
	mux.HandleFunc("POST /api/subscription/portal", s.billingDisabled)
	if s.feed != nil {
		mux.Handle("/updates/", s.feed)
	}
	if s.cfg.Metrics.Pprof {
		mux.Handle("/debug/pprof/", s.plainOnly(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/profile", s.plainOnly(http.HandlerFunc(pprof.Profile)))
	}
	return s.httpMetrics(mux)
}

// plainOnly answers only requests from this machine (a loopback address)
// on listen.http_plain, the operator's own port; anything else, the public
// TLS port included, gets 404.
func (s *Server) plainOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plain, _ := r.Context().Value(plainKey{}).(bool)
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); !plain || ip == nil || !ip.IsLoopback() {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// httpMetrics counts requests by route pattern (bounded: the mux's patterns,
// "" for no match) and status, and gives every response a Cache-Control:
// the handler's own, else no-store. That covers what the mux answers itself
// (404, 405), and a handler's error page.
func (s *Server) httpMetrics(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &cacheWriter{ResponseWriter: w, code: http.StatusOK}
		mux.ServeHTTP(cw, r)
		cw.ensure()
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		s.svc.metrics.httpRequests.WithLabelValues(route, strconv.Itoa(cw.code)).Inc()
	})
}

// cacheWriter adds Cache-Control: no-store to a response whose handler set
// none, at the moment the header goes out. It keeps the writer's optional
// interfaces: Flush and Unwrap through http.ResponseController, ReadFrom
// (sendfile for update downloads) through io.Copy on the real writer.
type cacheWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (w *cacheWriter) ensure() {
	if w.wroteHeader {
		return
	}
	w.wroteHeader = true
	if w.Header().Get("Cache-Control") == "" {
		w.Header().Set("Cache-Control", cacheNoStore)
	}
}

func (w *cacheWriter) WriteHeader(code int) {
	if code >= 200 && !w.wroteHeader {
		w.code = code
		w.ensure()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *cacheWriter) Write(b []byte) (int, error) {
	w.ensure()
	return w.ResponseWriter.Write(b)
}

func (w *cacheWriter) ReadFrom(r io.Reader) (int64, error) {
	w.ensure()
	return io.Copy(w.ResponseWriter, r)
}

func (w *cacheWriter) Flush() {
	w.ensure()
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *cacheWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// promLog sends the metrics handler's errors to the log.
type promLog struct{ s *Server }

func (l promLog) Println(v ...any) {
	l.s.log.Warn("Metrics not served", "scope", "http", "decision", "metrics_error", "error", fmt.Sprint(v...))
}

// writeJSON answers v as JSON with the given Cache-Control.
func writeJSON(w http.ResponseWriter, code int, cache string, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", cache)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// healthResponse is /health (SPEC §9). latest_version and latest_build name
// the newest stable app release in the update feed ("" and 0 when none, the
// build a number as in /updates/health), as upstream's monitoring compares
// them with the appcast; server_version is this server.
type healthResponse struct {
	Status        string `json:"status"`
	LatestVersion string `json:"latest_version"`
	LatestBuild   int64  `json:"latest_build"`
	ServerVersion string `json:"server_version"`
	Commit        string `json:"commit"`
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	h := healthResponse{Status: "OK", ServerVersion: buildinfo.Current().Version, Commit: buildinfo.Revision()}
	if s.feed != nil {
		if v, b, ok := s.feed.Latest(); ok {
			h.LatestVersion, h.LatestBuild = v, b
		}
	}
	writeJSON(w, http.StatusOK, cacheHealth, h)
}

// stripeMode is upstream's "stripe_mode" field, on every billing answer.
// Upstream answers "test" whenever live billing is not configured, which is
// always the case here: there is no Stripe at all.
const stripeMode = "test"

// billingOff is said by every billing endpoint: the client shows or logs it.
const billingOff = "Billing is disabled on this self-hosted server: every feature is available without a subscription."

// subscriptionResponse is GET /api/subscription/status in upstream's shape
// (updates-db-tts.md §5.6): active and billing_active (the unlimited tier)
// are both true and billing_action is "none", so the client never offers a
// purchase or nags about limits.
type subscriptionResponse struct {
	Status                  string  `json:"status"`
	StripeStatus            string  `json:"stripe_status"`
	Email                   *string `json:"email"`
	Active                  bool    `json:"active"`
	BillingActive           bool    `json:"billing_active"`
	CancelAtPeriodEnd       bool    `json:"cancel_at_period_end"`
	RecommendedBillingRoute string  `json:"recommended_billing_route"`
	BillingAction           string  `json:"billing_action"`
	CurrentPeriodEnd        *string `json:"current_period_end"`
	StripeMode              string  `json:"stripe_mode"`
	// Unlimited and SubscriptionEnabled are ours: what a person reading the
	// answer needs to know.
	Unlimited           bool   `json:"unlimited"`
	SubscriptionEnabled bool   `json:"subscription_enabled"`
	Message             string `json:"message"`
}

// subscriptionStatus answers every device as active and unlimited. The
// hardware id is checked as on the gRPC side (upstream answers 400 without
// one), never stored or logged.
func (s *Server) subscriptionStatus(w http.ResponseWriter, r *http.Request) {
	if te := validateHardwareID(r.URL.Query().Get("hardware_id"), s.cfg.Limits.MaxIDLength); te != nil {
		writeJSON(w, http.StatusBadRequest, cacheNoStore, map[string]any{"status": "error", "error": te.msg, "message": te.msg, "stripe_mode": stripeMode})
		return
	}
	writeJSON(w, http.StatusOK, cacheNoStore, subscriptionResponse{
		Status: "active", StripeStatus: "", Active: true, BillingActive: true,
		RecommendedBillingRoute: "manage", BillingAction: "none", StripeMode: stripeMode,
		Unlimited: true, SubscriptionEnabled: false, Message: billingOff,
	})
}

// billingDisabled answers checkout and portal with 503 and a clear message:
// upstream's status for "subscriptions disabled", which the shipped client
// already handles (it shows an error instead of opening a page). A 404 from
// the portal would instead send it into the purchase flow.
func (s *Server) billingDisabled(w http.ResponseWriter, r *http.Request) {
	// The body (a hardware id) is not needed; reading a little of it lets
	// the connection be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 4<<10))
	writeJSON(w, http.StatusServiceUnavailable, cacheNoStore, map[string]any{
		"error": billingOff, "message": billingOff, "subscription_enabled": false, "stripe_mode": stripeMode,
	})
}
