package server

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/nexy-server/nexy/internal/buildinfo"
	"github.com/nexy-server/nexy/internal/httpclient"
	"github.com/nexy-server/nexy/llm"
	pb "github.com/nexy-server/nexy/proto"
)

// Turn stages, in pipeline order: the keys of the stage histograms, of
// /status's latency block and of a turn's timings.
const (
	stageAdmitted       = "admitted"
	stageLLMFirstToken  = "llm_first_token"
	stageFirstSegment   = "first_segment"
	stageTTSFirstByte   = "tts_first_byte"
	stageFirstAudioSent = "first_audio_sent"
	stageLastChunkSent  = "last_chunk_sent"
)

var stageNames = []string{stageAdmitted, stageLLMFirstToken, stageFirstSegment, stageTTSFirstByte, stageFirstAudioSent, stageLastChunkSent}

// Turn outcomes, the label of nexy_turns_total.
const (
	outcomeComplete  = "complete"
	outcomeCancelled = "cancelled"
	outcomeFailed    = "failed"
)

// Provider stages, the label of the provider metrics and /status's
// last-error block.
const (
	providerLLM         = "llm"
	providerTTS         = "tts"
	providerTTSFallback = "tts_fallback"
)

// refusalKinds are the admission refusals of SPEC §6 (RESOURCE_EXHAUSTED);
// every such status message starts with its kind (see exhausted).
var refusalKinds = map[string]bool{
	"stream_limit_exceeded": true, "device_limit_exceeded": true,
	"rate_limit_exceeded": true, "collect_limit_exceeded": true,
}

// rpcMethods are the method label's values; anything else is "other", so a
// client probing random method names cannot grow the label set.
var rpcMethods = func() map[string]bool {
	m := map[string]bool{}
	for _, d := range pb.StreamingService_ServiceDesc.Methods {
		m[d.MethodName] = true
	}
	for _, d := range pb.StreamingService_ServiceDesc.Streams {
		m[d.StreamName] = true
	}
	return m
}()

// instruments are the server's metrics. The Prometheus collectors live in
// a registry of the server's own (not the global default), so /metrics shows
// exactly this server and tests can run servers side by side. The log
// summary and /status read small in-process tallies instead of scraping.
// Every label value comes from a fixed set (method names, gRPC codes, the
// error taxonomy, stages, provider kinds): never an id or a message.
type instruments struct {
	reg *prometheus.Registry

	rpcs            *prometheus.CounterVec
	rpcSeconds      *prometheus.HistogramVec
	rpcsInFlight    *prometheus.GaugeVec
	conns           prometheus.Gauge
	errs            *prometheus.CounterVec
	refusals        *prometheus.CounterVec
	turns           *prometheus.CounterVec
	stageSeconds    *prometheus.HistogramVec
	audioChunks     prometheus.Counter
	providerErrs    *prometheus.CounterVec
	providerRetries *prometheus.CounterVec
	memoryUpdates   *prometheus.CounterVec
	httpRequests    *prometheus.CounterVec
	decisions       *prometheus.CounterVec
	deviceRefusals  *prometheus.CounterVec
	speechFallbacks prometheus.Counter

	stages map[string]*sketch // per stage, for percentiles in /status and the summary
	mask   func(string) string
	chain  llmChain // nil: a single model without breaker

	mu           sync.Mutex
	turnCounts   map[string]int64 // by outcome
	errCounts    map[string]int64 // by kind
	refusalCount map[string]int64 // by reason
	lastErr      map[string]providerError
}

// providerError is the last failure of a provider, for /status.
type providerError struct {
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"`
	Message string    `json:"message"`
}

// latencyBuckets (seconds) cover a turn's stages, from an admission in
// microseconds to a long answer's last chunk.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, .75, 1, 1.5, 2, 3, 5, 8, 13, 20, 30, 60, 120, 300}

// newMetrics builds the collectors. active reports the turns running now,
// streams the concurrency slots in use (turns and welcome audio); secrets
// are masked out of provider messages shown by /status.
func newMetrics(active, streams func() int, secrets []string) *instruments {
	m := &instruments{reg: prometheus.NewRegistry(), stages: map[string]*sketch{},
		turnCounts: map[string]int64{}, errCounts: map[string]int64{}, refusalCount: map[string]int64{},
		lastErr: map[string]providerError{}}
	mk := &masker{secrets: secrets}
	m.mask = mk.mask
	for _, s := range stageNames {
		m.stages[s] = &sketch{}
	}
	f := promFactory{m.reg}
	m.rpcs = f.counter("nexy_grpc_requests_total", "gRPC requests handled, by method and status code.", "method", "code")
	m.rpcSeconds = f.histogram("nexy_grpc_request_duration_seconds", "gRPC request duration, from the request's arrival to its status, by method and status code.", latencyBuckets, "method", "code")
	m.rpcsInFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "nexy_grpc_requests_in_flight", Help: "gRPC requests being handled now, by method."}, []string{"method"})
	m.reg.MustRegister(m.rpcsInFlight)
	m.conns = prometheus.NewGauge(prometheus.GaugeOpts{Name: "nexy_grpc_connections", Help: "Open gRPC client connections."})
	m.reg.MustRegister(m.conns)
	m.errs = f.counter("nexy_errors_total", "Failed gRPC requests by method and error type (SPEC §6 taxonomy: validation_failed, stream_limit_exceeded, timeout, unavailable, cancelled_by_user, internal, …).", "method", "kind")
	m.decisions = f.counter("nexy_decisions_total", "Decisions the server logged (one per request outcome), by method and decision.", "method", "decision")
	m.refusals = f.counter("nexy_admission_refusals_total", "Requests refused by admission control, by reason (stream_limit_exceeded, device_limit_exceeded, rate_limit_exceeded, collect_limit_exceeded).", "reason")
	m.turns = f.counter("nexy_turns_total", "Turns (admitted StreamAudio COMMITs) that ended, by outcome: complete, cancelled, failed.", "outcome")
	m.stageSeconds = f.histogram("nexy_turn_stage_seconds", "Time from a turn's arrival until each stage: admitted, llm_first_token, first_segment, tts_first_byte, first_audio_sent, last_chunk_sent (complete turns only).", latencyBuckets, "stage")
	m.audioChunks = prometheus.NewCounter(prometheus.CounterOpts{Name: "nexy_audio_chunks_sent_total", Help: "Audio chunks of turns queued for the client."})
	m.reg.MustRegister(m.audioChunks)
	m.providerErrs = f.counter("nexy_provider_errors_total", "Failed calls to the AI (llm) and speech (tts) providers, by kind; each attempt counts.", "provider", "kind")
	m.providerRetries = f.counter("nexy_provider_retries_total", "Provider calls retried after a failure before any output, by provider and the failure's kind.", "provider", "kind")
	m.memoryUpdates = f.counter("nexy_memory_analyses_total", "Memory analyses after turns, by method (llm, heuristic) and result (saved, failed).", "method", "result")
	m.deviceRefusals = f.counter("nexy_device_refusals_total", "Requests refused for the device (spoken or as a status), by reason: not_approved, revoked, bad_token, daily_turns, daily_tokens.", "reason")
	for _, r := range refusalReasons {
		m.deviceRefusals.WithLabelValues(r)
	}
	m.speechFallbacks = prometheus.NewCounter(prometheus.CounterOpts{Name: "nexy_tts_fallbacks_total", Help: "Syntheses [tts.fallback] spoke because [tts] failed before any audio."})
	m.reg.MustRegister(m.speechFallbacks)
	m.httpRequests = f.counter("nexy_http_requests_total", "HTTP requests by route pattern and status code.", "route", "code")
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "nexy_active_turns", Help: "Turns running now."}, func() float64 { return float64(active()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "nexy_active_streams", Help: "Concurrency slots in use (turns and welcome audio), out of limits.max_concurrent_streams."}, func() float64 { return float64(streams()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	bi := buildinfo.Current()
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "nexy_build_info", Help: "Always 1; the labels name the running build.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Commit(), "goversion": bi.GoVersion}})
	build.Set(1)
	m.reg.MustRegister(build)
	return m
}

// promFactory registers vectors as it builds them.
type promFactory struct{ reg *prometheus.Registry }

func (f promFactory) counter(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f promFactory) histogram(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

// rpcMethodLabel bounds the method label.
func rpcMethodLabel(fullMethod string) string {
	if m := shortMethod(fullMethod); rpcMethods[m] {
		return m
	}
	return "other"
}

// errorKind is the taxonomy type (SPEC §6) of the error an RPC ended with:
// the kind a *turnError carried (every failure of ours is classified once,
// at the edge, into one), else the nearest type for a status grpc-go made
// itself (a message over limits.max_message_bytes, a cancelled stream).
func errorKind(err error) string {
	var se *statusError
	if errors.As(err, &se) {
		return se.kind
	}
	switch status.Code(err) {
	case codes.ResourceExhausted, codes.InvalidArgument, codes.Unimplemented:
		return "validation_failed"
	case codes.PermissionDenied:
		return "quota_exceeded"
	case codes.DeadlineExceeded:
		return "timeout"
	case codes.Unavailable:
		return "unavailable"
	case codes.Canceled:
		return "cancelled_by_user"
	case codes.Unauthenticated:
		return "unauthenticated"
	}
	return "internal"
}

// rpcEnded records one finished RPC: count, latency, and for a failure its
// error type and, for a refusal, its reason. It sees every RPC exactly once,
// whatever layer refused it (the request budget, validation, admission).
func (m *instruments) rpcEnded(method string, d time.Duration, err error) {
	st := status.Convert(err)
	code := st.Code().String()
	m.rpcs.WithLabelValues(method, code).Inc()
	m.rpcSeconds.WithLabelValues(method, code).Observe(d.Seconds())
	if err == nil {
		return
	}
	kind := errorKind(err)
	m.errs.WithLabelValues(method, kind).Inc()
	refused := refusalKinds[kind]
	if refused {
		m.refusals.WithLabelValues(kind).Inc()
	}
	m.mu.Lock()
	m.errCounts[kind]++
	if refused {
		m.refusalCount[kind]++
	}
	m.mu.Unlock()
}

// turnEnded records a turn's outcome and the stages it reached.
func (m *instruments) turnEnded(tm *timings, chunks int, outcome string) {
	m.turns.WithLabelValues(outcome).Inc()
	m.audioChunks.Add(float64(chunks))
	m.mu.Lock()
	m.turnCounts[outcome]++
	m.mu.Unlock()
	for _, s := range []struct {
		name string
		ns   int64
	}{
		{stageAdmitted, tm.admitted.Load()}, {stageLLMFirstToken, tm.llmFirstToken.Load()},
		{stageFirstSegment, tm.firstSegment.Load()}, {stageTTSFirstByte, tm.ttsFirstByte.Load()},
		{stageFirstAudioSent, tm.firstAudioSent.Load()}, {stageLastChunkSent, tm.lastChunkSent.Load()},
	} {
		// 0 = not reached. The last chunk of a turn cut short says nothing
		// about how long answers take, so only complete turns count there.
		if s.ns <= 0 || s.name == stageLastChunkSent && outcome != outcomeComplete {
			continue
		}
		d := time.Duration(s.ns)
		m.stageSeconds.WithLabelValues(s.name).Observe(d.Seconds())
		m.stages[s.name].observe(d)
	}
}

// turnOutcome names how a turn ended, for nexy_turns_total.
func turnOutcome(ctx context.Context, err error) string {
	switch {
	case err == nil:
		return outcomeComplete
	case classify(ctx, err).kind == "cancelled_by_user":
		return outcomeCancelled
	}
	return outcomeFailed
}

// providerFailed records a provider failure: its count and, for /status, the
// last one of the provider. Kinds are llm.ErrorKind's names for the model,
// timeout or unavailable for speech.
func (m *instruments) providerFailed(provider, kind string, err error) {
	m.providerErrs.WithLabelValues(provider, kind).Inc()
	msg := truncate(m.mask(err.Error()), maxStatusMessage) // masked first: a cut must not split a secret
	m.mu.Lock()
	m.lastErr[provider] = providerError{At: time.Now().UTC(), Kind: kind, Message: msg}
	m.mu.Unlock()
}

// maxStatusMessage bounds a provider message shown by /status: enough to
// say what went wrong, never a whole error page.
const maxStatusMessage = 300

// providerRetried records a retry of a provider call.
func (m *instruments) providerRetried(provider, kind string) {
	m.providerRetries.WithLabelValues(provider, kind).Inc()
}

// deviceRefused records a request refused for its device.
func (m *instruments) deviceRefused(reason string) {
	m.deviceRefusals.WithLabelValues(reason).Inc()
	m.mu.Lock()
	m.refusalCount[reason]++
	m.mu.Unlock()
}

// speechFellBack records a synthesis handed to [tts.fallback].
func (m *instruments) speechFellBack() { m.speechFallbacks.Inc() }

// llmChain is the LLM provider with fallbacks and circuit breakers
// (llm.Chain); its state is in /status and /metrics.
type llmChain interface {
	States() []llm.ProviderState
}

// watchChain exports the chain's breakers at each scrape.
func (m *instruments) watchChain(c llmChain) {
	m.chain = c
	m.reg.MustRegister(chainCollector{c})
}

var (
	breakerOpenDesc = prometheus.NewDesc("nexy_llm_breaker_open", "1 while the model's circuit breaker skips it (open), 0.5 half-open (one trial call), 0 closed; by config entry (llm, llm.fallbacks[N]).", []string{"model"}, nil)
	llmCallsDesc    = prometheus.NewDesc("nexy_llm_calls_total", "Calls started on each model of the chain.", []string{"model"}, nil)
	llmFailsDesc    = prometheus.NewDesc("nexy_llm_failures_total", "Calls that failed before any text, by model of the chain.", []string{"model"}, nil)
	llmSkipsDesc    = prometheus.NewDesc("nexy_llm_fallbacks_total", "Times the chain moved on from a model (it failed, or its breaker was open).", []string{"model"}, nil)
)

// chainCollector reads the chain's state when /metrics is scraped.
type chainCollector struct{ c llmChain }

func (cc chainCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{breakerOpenDesc, llmCallsDesc, llmFailsDesc, llmSkipsDesc} {
		ch <- d
	}
}

func (cc chainCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range cc.c.States() {
		open := 0.0
		switch st.State {
		case "open":
			open = 1
		case "half_open":
			open = 0.5
		}
		ch <- prometheus.MustNewConstMetric(breakerOpenDesc, prometheus.GaugeValue, open, st.Label)
		ch <- prometheus.MustNewConstMetric(llmCallsDesc, prometheus.CounterValue, float64(st.Calls), st.Label)
		ch <- prometheus.MustNewConstMetric(llmFailsDesc, prometheus.CounterValue, float64(st.Failures), st.Label)
		ch <- prometheus.MustNewConstMetric(llmSkipsDesc, prometheus.CounterValue, float64(st.Fallbacks), st.Label)
	}
}

// watchHTTP exports the providers' shared HTTP transport counters at each
// scrape.
func (m *instruments) watchHTTP(counts func() httpclient.Counts) {
	m.reg.MustRegister(httpCollector{counts})
}

var (
	providerHTTPRequestsDesc = prometheus.NewDesc("nexy_provider_http_requests_total", "HTTP requests to the LLM and speech providers (each attempt).", nil, nil)
	providerHTTPReusedDesc   = prometheus.NewDesc("nexy_provider_http_conns_reused_total", "Provider HTTP requests sent on an already open connection (pooled, or shared HTTP/2): no TCP or TLS handshake.", nil, nil)
	providerHTTPDialsDesc    = prometheus.NewDesc("nexy_provider_http_dials_total", "Connections opened to the providers over HTTP.", nil, nil)
)

// httpCollector reads the shared transport's counters when /metrics is scraped.
type httpCollector struct{ counts func() httpclient.Counts }

func (hc httpCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- providerHTTPRequestsDesc
	ch <- providerHTTPReusedDesc
	ch <- providerHTTPDialsDesc
}

func (hc httpCollector) Collect(ch chan<- prometheus.Metric) {
	n := hc.counts()
	ch <- prometheus.MustNewConstMetric(providerHTTPRequestsDesc, prometheus.CounterValue, float64(n.Requests))
	ch <- prometheus.MustNewConstMetric(providerHTTPReusedDesc, prometheus.CounterValue, float64(n.Reused))
	ch <- prometheus.MustNewConstMetric(providerHTTPDialsDesc, prometheus.CounterValue, float64(n.Dials))
}

// memoryAnalyzed records one memory analysis.
func (m *instruments) memoryAnalyzed(method string, saved bool) {
	result := "saved"
	if !saved {
		result = "failed"
	}
	m.memoryUpdates.WithLabelValues(method, result).Inc()
}

// tally is a copy of the in-process counters.
type tally struct {
	turns, errors, refusals map[string]int64
	lastErr                 map[string]providerError
}

func (m *instruments) tally() tally {
	m.mu.Lock()
	defer m.mu.Unlock()
	cp := func(src map[string]int64) map[string]int64 {
		out := make(map[string]int64, len(src))
		for k, v := range src {
			out[k] = v
		}
		return out
	}
	last := make(map[string]providerError, len(m.lastErr))
	for k, v := range m.lastErr {
		last[k] = v
	}
	return tally{turns: cp(m.turnCounts), errors: cp(m.errCounts), refusals: cp(m.refusalCount), lastErr: last}
}

// grpcStats is the gRPC stats handler that times and counts every RPC.
//
// It never keeps a message, and must not: grpc-go hands OutPayload (which
// holds the sent message) to stats handlers, and outbox.run recycles an
// audio buffer as soon as Send returns, so a handler that used it later
// would read audio the chunker has already overwritten.
type grpcStats struct{ m *instruments }

type rpcKey struct{}

// grpcHandler is the stats handler to install with grpc.StatsHandler.
func (m *instruments) grpcHandler() stats.Handler { return grpcStats{m} }

func (h grpcStats) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, rpcKey{}, rpcMethodLabel(info.FullMethodName))
}

func (h grpcStats) HandleRPC(ctx context.Context, s stats.RPCStats) {
	switch s := s.(type) {
	case *stats.Begin:
		method, _ := ctx.Value(rpcKey{}).(string)
		h.m.rpcsInFlight.WithLabelValues(method).Inc()
	case *stats.End:
		method, _ := ctx.Value(rpcKey{}).(string)
		h.m.rpcsInFlight.WithLabelValues(method).Dec()
		h.m.rpcEnded(method, s.EndTime.Sub(s.BeginTime), s.Error)
	}
}

func (h grpcStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (h grpcStats) HandleConn(_ context.Context, s stats.ConnStats) {
	switch s.(type) {
	case *stats.ConnBegin:
		h.m.conns.Inc()
	case *stats.ConnEnd:
		h.m.conns.Dec()
	}
}

// sketch is a fixed-size latency histogram with log-spaced buckets, each
// about 9% wider than the last, from 100 µs to over an hour: percentiles
// within a few percent, in constant memory, with lock-free updates. The
// Prometheus histograms are for scrapers; this one answers /status and the
// log summary without reading them back.
type sketch struct {
	counts [sketchBuckets]atomic.Uint64
}

const (
	sketchBuckets = 200
	sketchMin     = 100 * time.Microsecond
	sketchGrowth  = 1.09
)

var logGrowth = math.Log(sketchGrowth)

func (s *sketch) observe(d time.Duration) {
	i := 0
	if d > sketchMin {
		i = min(int(math.Log(float64(d)/float64(sketchMin))/logGrowth)+1, sketchBuckets-1)
	}
	s.counts[i].Add(1)
}

// quantiles returns the count and the given quantiles (0 < q ≤ 1), each the
// geometric middle of its bucket; all 0 when nothing was observed.
func (s *sketch) quantiles(qs ...float64) (n uint64, out []time.Duration) {
	var counts [sketchBuckets]uint64
	for i := range counts {
		counts[i] = s.counts[i].Load()
		n += counts[i]
	}
	out = make([]time.Duration, len(qs))
	if n == 0 {
		return 0, out
	}
	for j, q := range qs {
		rank := uint64(math.Ceil(q * float64(n)))
		var cum uint64
		for i, c := range counts {
			if cum += c; cum >= max(rank, 1) {
				out[j] = bucketMiddle(i)
				break
			}
		}
	}
	return n, out
}

// bucketMiddle is a representative value of bucket i: bucket 0 holds
// everything up to sketchMin, bucket i (i ≥ 1) (min·g^(i-1), min·g^i].
func bucketMiddle(i int) time.Duration {
	if i == 0 {
		return sketchMin
	}
	return time.Duration(float64(sketchMin) * math.Pow(sketchGrowth, float64(i)-0.5))
}

// latencySummary is one stage's percentiles, in milliseconds.
type latencySummary struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
}

func (s *sketch) summary() latencySummary {
	n, q := s.quantiles(.5, .95, .99)
	return latencySummary{Count: n, P50: millis(q[0]), P95: millis(q[1]), P99: millis(q[2])}
}

// millis is d in milliseconds, rounded to 0.1 ms.
func millis(d time.Duration) float64 { return math.Round(float64(d)/1e5) / 10 }

// runMetricsSummary logs a summary every metrics.summary_interval until ctx
// ends; an interval of 0 logs only the final one (logMetricsSummary at
// shutdown).
func (s *Server) runMetricsSummary(ctx context.Context) {
	every := s.cfg.Metrics.SummaryInterval.Duration
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.logMetricsSummary()
		}
	}
}

// logMetricsSummary writes one line with the totals since start: turns by
// outcome, errors by type, refusals by reason, RPCs, and the first audio's
// p50/p95 latency (SPEC §10).
func (s *Server) logMetricsSummary() {
	m := s.svc.metrics
	t := m.tally()
	_, q := m.stages[stageFirstAudioSent].quantiles(.5, .95)
	uptime := time.Duration(0)
	if !s.start.IsZero() {
		uptime = time.Since(s.start)
	}
	args := []any{"scope", "server", "decision", "metrics", "uptime_s", int64(uptime.Seconds())}
	args = append(args, counts("turns", "turn", t.turns)...)
	args = append(args, counts("errors", "error", t.errors)...)
	args = append(args, counts("refusals", "refusal", t.refusals)...)
	args = append(args, "first_audio_p50_ms", millis(q[0]), "first_audio_p95_ms", millis(q[1]), "active_turns", s.svc.adm.turns())
	s.log.Info("Metrics summary", args...)
}

// counts is a total and a group of its parts in key order:
// "errors=3 error.timeout=2 error.unavailable=1". The total is always there;
// the group only when something was counted.
func counts(total, group string, byKey map[string]int64) []any {
	keys := make([]string, 0, len(byKey))
	var sum int64
	for k, n := range byKey {
		keys = append(keys, k)
		sum += n
	}
	sort.Strings(keys)
	parts := make([]any, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, slog.Int64(k, byKey[k]))
	}
	return []any{slog.Int64(total, sum), slog.Group(group, parts...)}
}
