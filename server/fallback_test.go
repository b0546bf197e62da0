package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/llm/llmtest"
)

// TestLLMFallbackThroughServer: the main model fails before any text, the
// fallback answers the user; after llm.breaker_failures failures the main
// model is skipped, and /status and /metrics say so.
func TestLLMFallbackThroughServer(t *testing.T) {
	primary := llmtest.NewOpenAI(t, llmtest.Script{Status: http.StatusInternalServerError})
	fallback := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "From the fallback."}`}, Usage: llmtest.Usage{InputTokens: 10, OutputTokens: 2, Model: "qwen-local"}})
	cfg := testConfig(t, "openai", primary.URL, newSpeechFake(t).URL)
	cfg.LLM.Retries = 0
	cfg.LLM.BreakerFailures = 2
	cfg.LLM.Fallbacks = []config.LLMFallback{{Provider: "openai", Model: "qwen-local", BaseURL: fallback.URL}}
	h := startServer(t, cfg)
	for i := range 3 {
		msgs, err := h.call(t, commitReq(newSession(), "hello"))
		if err != nil {
			t.Fatalf("turn %d: %v", i, err)
		}
		if a := checkAnswer(t, msgs); strings.Join(a.texts, "") != "From the fallback." {
			t.Fatalf("turn %d answered %q", i, a.texts)
		}
	}
	// Two failures opened the breaker: the third turn went straight to the fallback.
	if n, m := len(primary.Requests()), len(fallback.Requests()); n != 2 || m != 3 {
		t.Fatalf("primary asked %d times (want 2), fallback %d (want 3)", n, m)
	}
	var st statusResponse
	getJSON(t, "http://"+h.srv.HTTPAddr().String()+"/status", &st)
	if c := st.Providers.Chain; len(c) != 2 || c[0].Entry != "llm" || c[0].State != "open" || c[0].LastKind != "unavailable" ||
		c[1].Entry != "llm.fallbacks[0]" || c[1].State != "closed" || c[1].Calls != 3 {
		t.Fatalf("/status llm_chain = %+v", c)
	}
	mf := scrape(t, h)
	if v := metricValue(mf, "nexy_llm_breaker_open", "model", "llm"); v != 1 {
		t.Errorf("nexy_llm_breaker_open{model=llm} = %v, want 1", v)
	}
	if v := metricValue(mf, "nexy_llm_fallbacks_total", "model", "llm"); v != 3 {
		t.Errorf("nexy_llm_fallbacks_total{model=llm} = %v, want 3", v)
	}
	if !strings.Contains(h.log.String(), "decision=llm_fallback") || !strings.Contains(h.log.String(), "decision=breaker_open") {
		t.Error("the fallback and the breaker are not logged")
	}
	rows, err := h.db.UsageReport(t.Context(), time.Now().Add(-time.Hour), "")
	if err != nil || len(rows) == 0 || rows[0].Model != "qwen-local" {
		t.Errorf("usage recorded under %+v, want the fallback's model", rows)
	}
}

// TestLLMNoFallbackAfterText: once text was sent, a broken stream is not
// answered again by the fallback (nothing is said twice).
func TestLLMNoFallbackAfterText(t *testing.T) {
	primary := llmtest.NewOpenAI(t, llmtest.Script{Raw: []byte("data: {\"choices\":[{\"delta\":{\"content\":\"{\\\"text\\\": \\\"Half an answer. And\"}}]}\n\n")})
	fallback := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "From the fallback."}`}})
	cfg := testConfig(t, "openai", primary.URL, newSpeechFake(t).URL)
	cfg.LLM.Retries = 0
	cfg.LLM.Fallbacks = []config.LLMFallback{{Provider: "openai", Model: "m", BaseURL: fallback.URL}}
	h := startServer(t, cfg)
	msgs, err := h.call(t, commitReq(newSession(), "hello"))
	if status.Code(err) == codes.OK {
		t.Fatalf("a stream broken after text ended OK: %v", msgs)
	}
	if n := len(fallback.Requests()); n != 0 {
		t.Fatalf("the fallback was asked %d times after text was sent", n)
	}
}

// TestSpeechKeyRejectedIsNotRetried: a 401 from the speech provider is not
// retried; the user's error and /status name the setting to fix.
func TestSpeechKeyRejectedIsNotRetried(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Hello there."}`}})
	speech := newSpeechFake(t)
	speech.failFirst, speech.failStatus = 100, http.StatusUnauthorized
	cfg := testConfig(t, "openai", fake.URL, speech.URL)
	cfg.TTS.Retries = 3
	h := startServer(t, cfg)
	msgs, err := h.call(t, commitReq(newSession(), "hello"))
	if status.Code(err) != codes.Unavailable || len(msgs) != 1 || !strings.Contains(msgs[0].GetErrorMessage(), "check tts.api_key") {
		t.Fatalf("got %v, %v; want one error_message naming tts.api_key", msgs, err)
	}
	if n := len(speech.requests()); n != 1 {
		t.Fatalf("the rejected key was tried %d times, want 1", n)
	}
	var st statusResponse
	getJSON(t, "http://"+h.srv.HTTPAddr().String()+"/status", &st)
	if e := st.Providers.TTS.LastError; e == nil || e.Kind != "auth" || !strings.Contains(e.Message, "tts.api_key") {
		t.Fatalf("/status tts last_error = %+v", e)
	}
	if !strings.Contains(h.log.String(), "decision=tts_auth_failed") {
		t.Error("the log does not say the key was rejected")
	}
}

// TestSpeechFallsBack: a 503 is retried (tts.retries), then [tts.fallback]
// speaks: the user hears the answer in the other voice instead of an error.
// The turn's later segments go to the fallback at once.
func TestSpeechFallsBack(t *testing.T) {
	const reply = "Hello there, this is the first sentence. Here comes the second one for you. And a third one ends it."
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "` + reply + `"}`}})
	speech, second := newSpeechFake(t), newSpeechFake(t)
	speech.failFirst, speech.failStatus = 100, http.StatusServiceUnavailable
	cfg := testConfig(t, "openai", fake.URL, speech.URL)
	cfg.TTS.Retries = 1
	cfg.TTS.Lookahead = 1 // one synthesis at a time: the counts below are exact
	cfg.TTS.Fallback = config.Speaker{Provider: "openai", BaseURL: second.URL, Voice: "other"}
	h := startServer(t, cfg)
	msgs, err := h.call(t, commitReq(newSession(), "hello"))
	if err != nil {
		t.Fatal(err)
	}
	a := checkAnswer(t, msgs)
	if a.chunks == 0 || strings.Join(a.texts, " ") != reply || len(a.texts) < 2 {
		t.Fatalf("answer %q with %d audio chunks", a.texts, a.chunks)
	}
	if n, m := len(speech.requests()), len(second.requests()); n != 2 || m != len(a.texts) {
		t.Fatalf("speech asked %d times (want 2: the first segment and one retry), fallback %d (want every segment, %d)", n, m, len(a.texts))
	}
	if v := metricValue(scrape(t, h), "nexy_tts_fallbacks_total"); v != 1 {
		t.Errorf("nexy_tts_fallbacks_total = %v, want 1", v)
	}
	if !strings.Contains(h.log.String(), "decision=tts_fallback") {
		t.Error("the fallback is not logged")
	}
}

// TestRefusalWhileSpeechIsDown: a refusal that cannot be spoken goes out as
// text, a complete answer; the failure is remembered, so the next refusals
// do not wait for the failing provider again; and refusals count against
// limits.max_rate_per_second like turns.
func TestRefusalWhileSpeechIsDown(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Hi."}`}})
	speech := newSpeechFake(t)
	speech.failFirst = 100
	cfg := testConfig(t, "openai", fake.URL, speech.URL)
	cfg.TTS.Retries = 0
	cfg.Devices.Pairing = "approve"
	cfg.Limits.MaxRatePerSecond = 1 // a burst of 2
	h := startServer(t, cfg)
	for i := range 2 {
		msgs, err := h.call(t, commitReq(newSession(), "hello"))
		if err != nil {
			t.Fatalf("refusal %d: %v", i, err)
		}
		if a := checkAnswer(t, msgs); len(a.texts) != 1 || a.texts[0] != notApprovedText || a.chunks != 0 {
			t.Fatalf("refusal %d: %q with %d audio chunks, want the text alone", i, a.texts, a.chunks)
		}
	}
	if n := len(speech.requests()); n != 1 {
		t.Errorf("speech asked %d times for two refusals, want 1", n)
	}
	msgs, err := h.call(t, commitReq(newSession(), "hello"))
	if status.Code(err) != codes.ResourceExhausted || len(msgs) != 1 || !strings.HasPrefix(msgs[0].GetErrorMessage(), "rate_limit_exceeded") {
		t.Fatalf("a third refusal at once: %v, %v; want rate_limit_exceeded", msgs, err)
	}
}
