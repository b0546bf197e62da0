package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nexy-server/nexy/audio"
	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/internal/httpclient"
	"github.com/nexy-server/nexy/internal/providers"
	"github.com/nexy-server/nexy/llm/llmtest"
	pb "github.com/nexy-server/nexy/proto"
	"github.com/nexy-server/nexy/store"
	"github.com/nexy-server/nexy/tts"
)

// scrape reads /metrics and parses it as Prometheus text.
func scrape(t *testing.T, h *harness) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + h.srv.HTTPAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != cacheNoStore {
		t.Fatalf("/metrics: %s, Cache-Control %q", resp.Status, resp.Header.Values("Cache-Control"))
	}
	if bytes.Contains(body, []byte(testHW)) {
		t.Fatalf("/metrics names a hardware id")
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// metricValue is the counter, gauge or histogram count of the series of
// family name whose labels include labels (pairs); 0 when there is none.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	var sum float64
	for _, m := range f.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == pairs[i] && l.GetValue() == pairs[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// waitMetrics scrapes until ok holds: an RPC is counted when grpc-go reports
// its end, which may come just after the client has read the status.
func waitMetrics(t *testing.T, h *harness, ok func(map[string]*dto.MetricFamily) bool) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		fams := scrape(t, h)
		if ok(fams) {
			return fams
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never reached the expected state")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func withHW(req *pb.StreamRequest, hw string) *pb.StreamRequest {
	req.HardwareId = hw
	return req
}

// TestMetricsStatusAndSummary runs turns that end every way worth counting —
// two complete, one whose model fails (retried once), one refused by the
// rate limit, one invalid — then checks /metrics, /status and the summary
// line written at shutdown.
func TestMetricsStatusAndSummary(t *testing.T) {
	answer := llmtest.Script{Deltas: []string{"Hello there, this is the answer. ", "It has two sentences."}, Usage: llmtest.Usage{InputTokens: 10, OutputTokens: 5}}
	broken := llmtest.Script{Status: http.StatusServiceUnavailable}
	fake := llmtest.NewOpenAI(t, answer, answer, broken, broken)
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.Limits.MaxRatePerSecond = 0.001 // burst of 1: a device's second turn is refused
	cfg.LLM.Retries, cfg.LLM.RetryBackoff.Duration = 1, time.Millisecond
	cfg.Metrics.SummaryInterval.Duration = 50 * time.Millisecond
	h := startServer(t, cfg)

	for i, hw := range []string{"DEVICE-A", "DEVICE-B"} {
		msgs, err := h.call(t, withHW(commitReq(newSession(), "what time is it"), hw))
		if err != nil {
			t.Fatalf("turn %d: %v", i, err)
		}
		checkAnswer(t, msgs)
	}
	if _, err := h.call(t, withHW(commitReq(newSession(), "again"), "DEVICE-A")); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("rate-limited turn: %v", err)
	}
	if _, err := h.call(t, withHW(commitReq(newSession(), "and the model breaks"), "DEVICE-C")); status.Code(err) != codes.Unavailable {
		t.Fatalf("turn with a broken model: %v", err)
	}
	if _, err := h.call(t, withHW(commitReq(newSession(), "hi"), "unknown")); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("invalid request: %v", err)
	}

	fams := waitMetrics(t, h, func(f map[string]*dto.MetricFamily) bool {
		return metricValue(f, "nexy_grpc_requests_total", "method", "StreamAudio") == 5 &&
			metricValue(f, "nexy_memory_analyses_total", "method", "heuristic", "result", "saved") >= 1
	})
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"nexy_grpc_requests_total", []string{"method", "StreamAudio", "code", "OK"}, 2},
		{"nexy_grpc_requests_total", []string{"method", "StreamAudio", "code", "ResourceExhausted"}, 1},
		{"nexy_grpc_request_duration_seconds", []string{"method", "StreamAudio", "code", "Unavailable"}, 1},
		{"nexy_turns_total", []string{"outcome", "complete"}, 2},
		{"nexy_turns_total", []string{"outcome", "failed"}, 1},
		{"nexy_turn_stage_seconds", []string{"stage", "llm_first_token"}, 2},
		{"nexy_turn_stage_seconds", []string{"stage", "tts_first_byte"}, 2},
		{"nexy_turn_stage_seconds", []string{"stage", "first_audio_sent"}, 2},
		{"nexy_turn_stage_seconds", []string{"stage", "last_chunk_sent"}, 2},
		{"nexy_turn_stage_seconds", []string{"stage", "admitted"}, 3},
		{"nexy_admission_refusals_total", []string{"reason", "rate_limit_exceeded"}, 1},
		{"nexy_errors_total", []string{"method", "StreamAudio", "kind", "rate_limit_exceeded"}, 1},
		{"nexy_errors_total", []string{"method", "StreamAudio", "kind", "unavailable"}, 1},
		{"nexy_errors_total", []string{"method", "StreamAudio", "kind", "validation_failed"}, 1},
		{"nexy_provider_errors_total", []string{"provider", "llm", "kind", "unavailable"}, 2},
		{"nexy_provider_retries_total", []string{"provider", "llm", "kind", "unavailable"}, 1},
		{"nexy_provider_errors_total", []string{"provider", "tts"}, 0},
		{"nexy_decisions_total", []string{"method", "StreamAudio", "decision", "complete"}, 2},
		{"nexy_active_turns", nil, 0},
		{"nexy_build_info", nil, 1},
	} {
		if got := metricValue(fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if metricValue(fams, "nexy_audio_chunks_sent_total") == 0 {
		t.Errorf("no audio chunk counted")
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "nexy_grpc_connections"} {
		if fams[name] == nil {
			t.Errorf("%s missing", name)
		}
	}

	st := getStatus(t, h)
	if st.Turns["complete"] != 2 || st.Turns["failed"] != 1 || st.Turns["total"] != 3 || st.Refusals["rate_limit_exceeded"] != 1 || st.Errors["unavailable"] != 1 {
		t.Errorf("status counts: turns %v, refusals %v, errors %v", st.Turns, st.Refusals, st.Errors)
	}
	fa := st.Latency[stageFirstAudioSent]
	if fa.Count != 2 || fa.P50 <= 0 || fa.P50 > fa.P95 || fa.P95 > fa.P99 {
		t.Errorf("first audio latency: %+v", fa)
	}
	if e := st.Providers.LLM.LastError; e == nil || e.Kind != "unavailable" || e.Message == "" || time.Since(e.At) > time.Minute {
		t.Errorf("last LLM error: %+v", e)
	}
	if st.Providers.TTS.LastError != nil {
		t.Errorf("last TTS error: %+v", st.Providers.TTS.LastError)
	}

	// The ticker has written a summary, and shutdown writes a last one.
	waitLog(t, h, `msg="Metrics summary"`)
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	lines := summaryLines(h.log.String())
	if len(lines) < 2 {
		t.Fatalf("want a periodic and a final summary, got %d", len(lines))
	}
	last := lines[len(lines)-1]
	for _, want := range []string{"scope=server", "decision=metrics", "turns=3", "turn.complete=2", "turn.failed=1",
		"errors=3", "error.rate_limit_exceeded=1", "error.unavailable=1", "error.validation_failed=1",
		"refusals=1", "refusal.rate_limit_exceeded=1", "first_audio_p50_ms=", "first_audio_p95_ms=", "active_turns=0"} {
		if !strings.Contains(last, want) {
			t.Errorf("final summary lacks %q:\n%s", want, last)
		}
	}
}

func summaryLines(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `msg="Metrics summary"`) {
			out = append(out, l)
		}
	}
	return out
}

func waitLog(t *testing.T, h *harness, s string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !strings.Contains(h.log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the log never had %q", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func getStatus(t *testing.T, h *harness) statusResponse {
	t.Helper()
	resp, err := http.Get("http://" + h.srv.HTTPAddr().String() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != cacheNoStore {
		t.Fatalf("/status: %s, Cache-Control %q", resp.Status, resp.Header.Values("Cache-Control"))
	}
	var st statusResponse
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestAudioIntactWithStatsHandler runs concurrent turns with the metrics
// stats handler installed and checks every audio chunk against what the
// speech fake produced: grpc-go hands a sent message to stats handlers, so a
// buffer reused after Send would show up here as another turn's audio.
func TestAudioIntactWithStatsHandler(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{"Here is the first sentence of the answer. ", "And here comes the second one, a little longer."}})
	speech := newSpeechFake(t)
	cfg := testConfig(t, "openai", fake.URL, speech.URL)
	h := startServer(t, cfg)
	want := expectedPCM(t, cfg)

	const turns = 6
	var wg sync.WaitGroup
	results := make([][]*pb.StreamResponse, turns)
	errs := make([]error, turns)
	for i := range turns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			stream, err := h.client.StreamAudio(ctx, withHW(commitReq(newSession(), "tell me something"), fmt.Sprintf("DEVICE-%d", i)))
			if err == nil {
				results[i], err = readAll(stream)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i := range turns {
		if errs[i] != nil {
			t.Fatalf("turn %d: %v", i, errs[i])
		}
		a := checkAnswer(t, results[i])
		if len(a.texts) < 2 {
			t.Fatalf("turn %d: %d segments, want 2", i, len(a.texts))
		}
		// Split the answer into segments: each text_chunk's audio follows it.
		var segs [][][]byte
		for _, m := range results[i] {
			switch c := m.Content.(type) {
			case *pb.StreamResponse_TextChunk:
				segs = append(segs, nil)
			case *pb.StreamResponse_AudioChunk:
				segs[len(segs)-1] = append(segs[len(segs)-1], c.AudioChunk.GetAudioData())
			}
		}
		for j, seg := range segs {
			if err := matchPCM(want, seg); err != nil {
				t.Fatalf("turn %d, segment %d: %v", i, j, err)
			}
		}
	}
	if got := metricValue(scrape(t, h), "nexy_turns_total", "outcome", "complete"); got != turns {
		t.Fatalf("nexy_turns_total{complete} = %v, want %d", got, turns)
	}
}

// expectedPCM is what the speech fake's audio becomes through the same
// provider the server uses: the wire PCM of every segment.
func expectedPCM(t *testing.T, cfg *config.Config) []byte {
	t.Helper()
	syn, err := providers.TTS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pcm, err := syn.Synthesize(context.Background(), tts.Request{Text: "expected"})
	if err != nil {
		t.Fatal(err)
	}
	defer pcm.Close()
	b, err := io.ReadAll(pcm)
	if err != nil {
		t.Fatal(err)
	}
	return b[:len(b)&^1]
}

// matchPCM checks that chunks, in order, are exactly want's bytes, except
// for runs of silence the server may leave out (it skips all-zero chunks,
// whose boundaries depend on how the provider's bytes arrived).
func matchPCM(want []byte, chunks [][]byte) error {
	if len(chunks) == 0 {
		return errors.New("no audio")
	}
	pos := 0
	for i, c := range chunks {
		for !bytes.Equal(want[pos:min(pos+len(c), len(want))], c) {
			if pos >= len(want) || want[pos] != 0 {
				return fmt.Errorf("chunk %d (%d bytes) differs from the provider's audio at byte %d", i, len(c), pos)
			}
			pos++ // a skipped silent chunk
		}
		pos += len(c)
	}
	if !audio.IsSilent(want[pos:]) {
		return fmt.Errorf("audio ends at byte %d of %d", pos, len(want))
	}
	return nil
}

// TestSketchQuantiles checks the percentile structure against exact
// percentiles of a known sample: within one bucket (9%).
func TestSketchQuantiles(t *testing.T) {
	var s sketch
	if n, q := s.quantiles(.5); n != 0 || q[0] != 0 {
		t.Fatalf("empty sketch: %d, %v", n, q)
	}
	for i := 1; i <= 1000; i++ {
		s.observe(time.Duration(i) * time.Millisecond)
	}
	s.observe(0)                    // below the first bucket
	s.observe(100 * 24 * time.Hour) // beyond the last
	n, q := s.quantiles(.5, .95, .99)
	if n != 1002 {
		t.Fatalf("count %d", n)
	}
	for i, want := range []time.Duration{500 * time.Millisecond, 950 * time.Millisecond, 990 * time.Millisecond} {
		if r := float64(q[i]) / float64(want); r < 0.91 || r > 1.09 {
			t.Errorf("quantile %d = %v, want about %v", i, q[i], want)
		}
	}
}

// TestErrorKindFromStatus checks that the taxonomy type is recovered from
// every status a failure is reported with.
func TestErrorKindFromStatus(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{exhausted("device_limit_exceeded", "busy").status(), "device_limit_exceeded"},
		{exhausted("collect_limit_exceeded", "full").status(), "collect_limit_exceeded"},
		{status.Error(codes.ResourceExhausted, "grpc: received message larger than max"), "validation_failed"},
		{invalid("bad").status(), "validation_failed"},
		{classify(context.Background(), errSendStalled).status(), "timeout"},
		{status.Error(codes.Canceled, "x"), "cancelled_by_user"},
		{status.Error(codes.Unavailable, "x"), "unavailable"},
		{status.Error(codes.PermissionDenied, "daily limit exceeded"), "quota_exceeded"},
		{status.Error(codes.Unauthenticated, "x"), "unauthenticated"},
		{status.Error(codes.Internal, "x"), "internal"},
		{errors.New("plain"), "internal"},
	} {
		if got := errorKind(c.err); got != c.want {
			t.Errorf("%v → %s, want %s", c.err, got, c.want)
		}
	}
}

// TestProviderErrorMasked: /status shows provider messages, so the
// configured secrets are masked and the text is bounded.
func TestProviderErrorMasked(t *testing.T) {
	m := newMetrics(func() int { return 0 }, func() int { return 0 }, []string{"sk-secret-value"})
	m.providerFailed(providerLLM, "auth", errors.New("401 for key sk-secret-value: "+strings.Repeat("x", 2000)))
	e := m.tally().lastErr[providerLLM]
	if strings.Contains(e.Message, "sk-secret-value") || !strings.Contains(e.Message, "****") || len(e.Message) > maxStatusMessage+10 || e.Kind != "auth" {
		t.Fatalf("last error = %+v", e)
	}
}

// statusStore is implemented by the real store.
var _ statusStore = (*store.DB)(nil)

// TestProviderHTTPMetrics: with the shared provider transport handed over
// in Deps.HTTPStats, /metrics counts its requests, reused connections and
// dials; every model and speech call made goes through it.
func TestProviderHTTPMetrics(t *testing.T) {
	answer := llmtest.Script{Deltas: []string{"Hello there, this is the answer. ", "It has two sentences."}}
	fake := llmtest.NewOpenAI(t, answer, answer)
	speech := newSpeechFake(t)
	cfg := testConfig(t, "openai", fake.URL, speech.URL)
	transport := httpclient.NewTransport(cfg.Limits.MaxConcurrentStreams)
	t.Cleanup(transport.Close)
	h := startServer(t, cfg, func(d *Deps) {
		build := providers.Builder{HTTP: transport.Client()}
		var err error
		if d.LLM, _, err = build.LLM(cfg, nil); err != nil {
			t.Fatal(err)
		}
		if d.TTS, err = build.TTS(cfg); err != nil {
			t.Fatal(err)
		}
		d.HTTPStats = transport.Counts
	})
	for i, hw := range []string{"DEVICE-A", "DEVICE-B"} {
		msgs, err := h.call(t, withHW(commitReq(newSession(), "what time is it"), hw))
		if err != nil {
			t.Fatalf("turn %d: %v", i, err)
		}
		checkAnswer(t, msgs)
	}
	calls := float64(len(fake.Requests()) + len(speech.requests()))
	fams := scrape(t, h)
	requests := metricValue(fams, "nexy_provider_http_requests_total")
	reused := metricValue(fams, "nexy_provider_http_conns_reused_total")
	dials := metricValue(fams, "nexy_provider_http_dials_total")
	for _, name := range []string{"nexy_provider_http_requests_total", "nexy_provider_http_conns_reused_total", "nexy_provider_http_dials_total"} {
		if fams[name] == nil {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if requests != calls || calls < 4 {
		t.Errorf("nexy_provider_http_requests_total = %v, the fakes saw %v calls (want ≥ 4)", requests, calls)
	}
	t.Logf("provider HTTP: %v requests, %v reused, %v dials", requests, reused, dials)
	// The second turn's calls find the first turn's connections idle.
	if dials < 1 || reused < 1 || reused > requests || dials > requests {
		t.Errorf("reused %v, dials %v of %v requests", reused, dials, requests)
	}
}
