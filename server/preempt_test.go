package server

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/llm/llmtest"
	pb "github.com/nexy-server/nexy/proto"
	"github.com/nexy-server/nexy/store"
)

func preemptConfig(t *testing.T, llmURL, ttsURL string) *config.Config {
	t.Helper()
	cfg := testConfig(t, "openai", llmURL, ttsURL)
	cfg.Preempt.Enabled = "on"
	cfg.Preempt.StableAfter = config.Duration{Duration: 50 * time.Millisecond}
	return cfg
}

func TestNormalizePrompt(t *testing.T) {
	for _, c := range []struct{ a, b string }{
		{"what time is it", "What time is it?"},
		{"  what   time is\tit ", "what time is it."},
		{"open safari", "Open Safari!"},
		{"¿qué hora es", "¿Qué hora es?"},
	} {
		if normalizePrompt(c.a) != normalizePrompt(c.b) {
			t.Errorf("%q and %q should match: %q vs %q", c.a, c.b, normalizePrompt(c.a), normalizePrompt(c.b))
		}
	}
	for _, c := range []struct{ a, b string }{
		{"turn on the lights", "turn off the lights"},
		{"what time is it", "what time is it in Tokyo"},
		{"call mom", "call mom 2"},
	} {
		if normalizePrompt(c.a) == normalizePrompt(c.b) {
			t.Errorf("%q and %q must not match", c.a, c.b)
		}
	}
}

// TestPreemptAnswersFromTheSpeculation: the transcript stands still while
// the key is held, the answer starts; the COMMIT with the same words (a
// final period and capital added) streams it. The model is asked once.
func TestPreemptAnswersFromTheSpeculation(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: actionReply, Usage: llmtest.Usage{InputTokens: 40, OutputTokens: 20}})
	speech := newSpeechFake(t)
	cfg := preemptConfig(t, fake.URL, speech.URL)
	// Two COLLECTs in a row must not look stable in between, even on a
	// loaded machine.
	cfg.Preempt.StableAfter = config.Duration{Duration: 300 * time.Millisecond}
	h := startServer(t, cfg)
	sid := newSession()
	if _, err := h.call(t, collectReq(sid, 1, "open safari for")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.call(t, collectReq(sid, 2, "open safari for me")); err != nil {
		t.Fatal(err)
	}
	// The speculation has spoken its first segment before the key is released.
	waitFor(t, "speculative speech", func() bool { return len(speech.requests()) > 0 })
	if n := len(fake.Requests()); n != 1 || fake.Requests()[0].User != "open safari for me" {
		t.Fatalf("model requests before COMMIT: %d", n)
	}
	msgs, err := h.call(t, commitReq(sid, "Open Safari for me."))
	if err != nil {
		t.Fatal(err)
	}
	a := checkAnswer(t, msgs)
	if a.chunks == 0 || a.action == nil || a.action.GetSessionId() != sid || !strings.Contains(a.action.GetActionJson(), "Safari") {
		t.Fatalf("answer: %+v", a)
	}
	if n := len(fake.Requests()); n != 1 {
		t.Fatalf("model asked %d times; the speculation should have been used", n)
	}
	fams := scrape(t, h)
	if metricValue(fams, "nexy_speculations_total", "outcome", "used") != 1 || metricValue(fams, "nexy_speculations_total", "outcome", "started") != 1 {
		t.Fatalf("nexy_speculations_total: %v", fams["nexy_speculations_total"])
	}
	// Recorded as an ordinary turn, its tokens as "main".
	waitFor(t, "usage recorded", func() bool {
		rows, _ := h.db.UsageReport(context.Background(), time.Time{}, testHW)
		return len(rows) == 1 && rows[0].Source == store.SourceMain && rows[0].InputTokens == 40
	})
}

// TestPreemptMismatchStartsFresh: the released prompt differs from the
// speculation's; the speculation is cancelled, unsent, and the COMMIT is
// answered from its own prompt. What the speculation spent is recorded.
func TestPreemptMismatchStartsFresh(t *testing.T) {
	fake := llmtest.NewOpenAI(t,
		llmtest.Script{Deltas: []string{`{"text": "The lights are on now."}`}, Usage: llmtest.Usage{InputTokens: 30, OutputTokens: 7}},
		llmtest.Script{Deltas: []string{`{"text": "The lights are off now."}`}, Usage: llmtest.Usage{InputTokens: 31, OutputTokens: 7}})
	speech := newSpeechFake(t)
	h := startServer(t, preemptConfig(t, fake.URL, speech.URL))
	sid := newSession()
	if _, err := h.call(t, collectReq(sid, 1, "turn on the lights")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "speculative speech", func() bool { return len(speech.requests()) > 0 })
	msgs, err := h.call(t, commitReq(sid, "turn off the lights"))
	if err != nil {
		t.Fatal(err)
	}
	a := checkAnswer(t, msgs)
	if got := strings.Join(a.texts, ""); !strings.Contains(got, "off") || strings.Contains(got, "on now") {
		t.Fatalf("answer text %q: the speculation's words leaked or the fresh answer is missing", got)
	}
	if reqs := fake.Requests(); len(reqs) != 2 || reqs[1].User != "turn off the lights" {
		t.Fatalf("model requests: %d", len(reqs))
	}
	waitFor(t, "speculative usage recorded", func() bool {
		rows, _ := h.db.UsageReport(context.Background(), time.Time{}, testHW)
		var spec, main int64
		for _, r := range rows {
			switch r.Source {
			case store.SourceSpeculative:
				spec += r.InputTokens
			case store.SourceMain:
				main += r.InputTokens
			}
		}
		return spec == 30 && main == 31
	})
	if got := h.srv.svc.preempt.counts[specMismatch].Load(); got != 1 {
		t.Fatalf("mismatch = %d", got)
	}
}

// TestPreemptTranscriptChangeRestarts: the user keeps talking; the first
// speculation is cancelled and a new one starts from the longer transcript,
// which the COMMIT then uses.
func TestPreemptTranscriptChangeRestarts(t *testing.T) {
	fake := llmtest.NewOpenAI(t,
		llmtest.Script{Deltas: []string{`{"text": "It is sunny."}`}},
		llmtest.Script{Deltas: []string{`{"text": "Tomorrow it will rain in Paris."}`}})
	speech := newSpeechFake(t)
	h := startServer(t, preemptConfig(t, fake.URL, speech.URL))
	sid := newSession()
	if _, err := h.call(t, collectReq(sid, 1, "what is the weather")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first speculation", func() bool { return len(fake.Requests()) == 1 })
	if _, err := h.call(t, collectReq(sid, 2, "what is the weather tomorrow in paris")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second speculation", func() bool { return len(fake.Requests()) == 2 })
	msgs, err := h.call(t, commitReq(sid, "What is the weather tomorrow in Paris?"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(checkAnswer(t, msgs).texts, ""); !strings.Contains(got, "rain in Paris") {
		t.Fatalf("answer %q", got)
	}
	if n := len(fake.Requests()); n != 2 {
		t.Fatalf("model asked %d times, want 2", n)
	}
	p := h.srv.svc.preempt
	if p.counts[specChanged].Load() != 1 || p.counts[specUsed].Load() != 1 {
		t.Fatalf("changed=%d used=%d", p.counts[specChanged].Load(), p.counts[specUsed].Load())
	}
}

// TestPreemptNeverCommittedSendsNothing: a speculation whose key is never
// released (the user cancelled) expires after preempt.hold: no turn is
// recorded, no action reached anyone, its goroutines end, and its tokens
// are on record as speculative.
func TestPreemptNeverCommittedSendsNothing(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: actionReply, Usage: llmtest.Usage{InputTokens: 12, OutputTokens: 5}})
	speech := newSpeechFake(t)
	base := runtime.NumGoroutine()
	cfg := preemptConfig(t, fake.URL, speech.URL)
	cfg.Preempt.Hold = config.Duration{Duration: time.Second}
	h := startServer(t, cfg)
	if _, err := h.call(t, collectReq(newSession(), 1, "open safari please")); err != nil {
		t.Fatal(err)
	}
	p := h.srv.svc.preempt
	waitFor(t, "speculation to expire", func() bool { return p.counts[specExpired].Load() == 1 })
	waitFor(t, "speculative usage", func() bool {
		rows, _ := h.db.UsageReport(context.Background(), time.Time{}, testHW)
		return len(rows) == 1 && rows[0].Source == store.SourceSpeculative && rows[0].OutputTokens == 5
	})
	counts, err := h.db.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if counts["commands"] != 0 || counts["llm_answers"] != 0 {
		t.Fatalf("a speculation was recorded as a turn: %v", counts)
	}
	checkNoLeak(t, h, base)
}

// TestPreemptBounds: below min_chars nothing starts; with
// max_speculations = 1 a second device waits its turn; off means off.
func TestPreemptBounds(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Yes."}`}})
	speech := newSpeechFake(t)
	cfg := preemptConfig(t, fake.URL, speech.URL)
	cfg.Preempt.MaxSpeculations = 1
	h := startServer(t, cfg)
	if _, err := h.call(t, collectReq(newSession(), 1, "hi")); err != nil { // 2 < min_chars
		t.Fatal(err)
	}
	if _, err := h.call(t, collectReq(newSession(), 1, "tell me a joke")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "one speculation", func() bool { return len(fake.Requests()) == 1 })
	other := collectReq(newSession(), 1, "tell me another joke")
	other.HardwareId = "0A1B2C3D-0B4D-4E5F-8A9B-0C1D2E3F4A5B"
	if _, err := h.call(t, other); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * cfg.Preempt.StableAfter.Duration) // would have started by now
	if n := len(fake.Requests()); n != 1 || h.srv.svc.preempt.counts[specStarted].Load() != 1 {
		t.Fatalf("model requests %d, started %d: the global cap did not hold", n, h.srv.svc.preempt.counts[specStarted].Load())
	}

	off := testConfig(t, "openai", fake.URL, speech.URL) // preempt off in tests
	h2 := startServer(t, off)
	if _, err := h2.call(t, collectReq(newSession(), 1, "tell me a third joke")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * cfg.Preempt.StableAfter.Duration)
	if got := h2.srv.svc.preempt.counts[specStarted].Load(); got != 0 {
		t.Fatalf("preempt off started %d", got)
	}
}

// TestPreemptLateCollectStartsNothing: a COLLECT handled after its COMMIT
// (separate requests may overtake each other) starts no speculation for an
// utterance already answered.
func TestPreemptLateCollectStartsNothing(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Done."}`}})
	speech := newSpeechFake(t)
	h := startServer(t, preemptConfig(t, fake.URL, speech.URL))
	sid := newSession()
	msgs, err := h.call(t, commitReq(sid, "set a timer for ten minutes"))
	if err != nil {
		t.Fatal(err)
	}
	checkAnswer(t, msgs)
	if _, err := h.call(t, collectReq(sid, 3, "set a timer for ten minutes")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * h.srv.cfg.Preempt.StableAfter.Duration) // would have started by now
	if n, started := len(fake.Requests()), h.srv.svc.preempt.counts[specStarted].Load(); n != 1 || started != 0 {
		t.Fatalf("model requests %d, speculations %d after a late COLLECT", n, started)
	}
}

// TestPreemptInterruptAndCancel: InterruptSession drops the device's held
// answer; the client's cancel of an adopted COMMIT stops the model stream
// the speculation opened.
func TestPreemptInterruptAndCancel(t *testing.T) {
	slow := llmtest.Script{Deltas: []string{`{"text": "Here is a long story. `, `It goes on. `, `And on. `, `And on."}`}, Delay: 300 * time.Millisecond}
	fake := llmtest.NewOpenAI(t, slow)
	speech := newSpeechFake(t)
	h := startServer(t, preemptConfig(t, fake.URL, speech.URL))
	p := h.srv.svc.preempt

	if _, err := h.call(t, collectReq(newSession(), 1, "tell me a long story")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a speculation", func() bool { return len(fake.Requests()) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if _, err := h.client.InterruptSession(ctx, &pb.InterruptRequest{HardwareId: testHW}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the interrupted speculation to go", func() bool { return p.counts[specInterrupted].Load() == 1 })
	select {
	case <-fake.Disconnected():
	case <-time.After(waitLimit):
		t.Fatal("the interrupted speculation kept its model stream open")
	}

	sid := newSession()
	if _, err := h.call(t, collectReq(sid, 1, "tell me another long story")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a second speculation", func() bool { return len(fake.Requests()) == 2 })
	before := fake.Disconnects()
	cctx, ccancel := context.WithCancel(context.Background())
	stream, err := h.client.StreamAudio(cctx, commitReq(sid, "Tell me another long story."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil { // the adopted answer is flowing
		t.Fatal(err)
	}
	ccancel()
	waitFor(t, "the adopted turn's model stream to close", func() bool { return fake.Disconnects() > before })
	waitIdle(t, h)
	if p.counts[specUsed].Load() != 1 || len(fake.Requests()) != 2 {
		t.Fatalf("used %d, model requests %d", p.counts[specUsed].Load(), len(fake.Requests()))
	}
}
