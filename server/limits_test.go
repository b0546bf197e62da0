package server

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nexy-server/nexy/llm/llmtest"
	pb "github.com/nexy-server/nexy/proto"
)

// startHanging starts a turn whose LLM hangs after one delta and waits until
// it holds an admission slot.
func startHanging(t *testing.T, h *harness, sid string) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := h.client.StreamAudio(ctx, commitReq(sid, "first"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("hanging turn: %v", err)
	}
	return cancel
}

func hangingScript() llmtest.Script {
	// The splitter commits a sentence once the next word starts, so the first
	// segment goes out with the second delta; then the fake hangs.
	return llmtest.Script{Deltas: []string{`{"text": "Working on it right now. `, `Almost`, ` done."}`}, Hang: true, HangAfter: 3} // role chunk + 2 deltas
}

func TestSingleFlightPerSession(t *testing.T) {
	fake := llmtest.NewOpenAI(t, hangingScript(), llmtest.Script{Deltas: []string{`{"text": "Second answer."}`}})
	h := startServer(t, testConfig(t, "openai", fake.URL, newSpeechFake(t).URL))
	sid := newSession()
	cancel := startHanging(t, h, sid)
	msgs, err := h.call(t, commitReq(sid, "again"))
	if status.Code(err) != codes.ResourceExhausted || len(msgs) != 1 || !strings.Contains(msgs[0].GetErrorMessage(), "already in progress") {
		t.Fatalf("duplicate COMMIT: %v %v", msgs, err)
	}
	cancel()
	waitIdle(t, h)
	msgs, err = h.call(t, commitReq(sid, "again"))
	if err != nil {
		t.Fatalf("after the first turn ended the session is free again: %v", err)
	}
	checkAnswer(t, msgs)
}

func TestStreamLimit(t *testing.T) {
	fake := llmtest.NewOpenAI(t, hangingScript())
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.Limits.MaxConcurrentStreams = 1
	h := startServer(t, cfg)
	sid := newSession()
	collectMsgs, err := h.call(t, collectReq(sid, 1, "keep me"))
	if err != nil || collectMsgs[0].GetEndMessage() != "COLLECT_ACCEPTED" {
		t.Fatal(err)
	}
	cancel := startHanging(t, h, newSession())
	defer cancel()
	msgs, err := h.call(t, commitReq(sid, ""))
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(msgs[0].GetErrorMessage(), "stream_limit_exceeded") {
		t.Fatalf("over the limit: %v %v", msgs, err)
	}
	// The refused COMMIT did not consume the collected transcript.
	if c, ok := h.srv.svc.collect.peek(testHW, sid); !ok || c.text != "keep me" {
		t.Errorf("COLLECT buffer lost on refusal: %+v %v", c, ok)
	}
	// Welcome audio counts against the same limit.
	ws, err := h.client.GenerateWelcomeAudio(context.Background(), &pb.WelcomeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	wm, err := ws.Recv()
	if err != nil || !strings.Contains(wm.GetErrorMessage(), "stream_limit_exceeded") {
		t.Fatalf("welcome over the limit: %v %v", wm, err)
	}
}

func TestRateLimitPerDevice(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Fine, thank you."}`}})
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.Limits.MaxRatePerSecond = 0.001 // burst of 1, then one per 1000 s
	h := startServer(t, cfg)
	if _, err := h.call(t, commitReq(newSession(), "how are you")); err != nil {
		t.Fatal(err)
	}
	msgs, err := h.call(t, commitReq(newSession(), "and now?"))
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(msgs[0].GetErrorMessage(), "rate_limit_exceeded") {
		t.Fatalf("second turn: %v %v", msgs, err)
	}
}

func TestNoLLMKeySaysWhatToSet(t *testing.T) {
	cfg := testConfig(t, "gemini", "", newSpeechFake(t).URL)
	cfg.LLM.APIKey = ""
	h := startServer(t, cfg)
	msgs, err := h.call(t, commitReq(newSession(), "hello"))
	if status.Code(err) != codes.Unavailable || !strings.Contains(msgs[0].GetErrorMessage(), "NEXY_LLM_API_KEY") {
		t.Fatalf("no key: %v %v", msgs, err)
	}
}

func TestLLMErrorsBeforeData(t *testing.T) {
	cases := []struct {
		status int
		code   codes.Code
		want   string
	}{
		{401, codes.Unavailable, "API key"},
		{429, codes.Unavailable, "rate-limiting"},
		{500, codes.Unavailable, "unavailable"},
	}
	for _, c := range cases {
		fake := llmtest.NewOpenAI(t, llmtest.Script{Status: c.status})
		h := startServer(t, testConfig(t, "openai", fake.URL, newSpeechFake(t).URL))
		msgs, err := h.call(t, commitReq(newSession(), "hello"))
		if status.Code(err) != c.code || len(msgs) != 1 || !strings.Contains(msgs[0].GetErrorMessage(), c.want) {
			t.Errorf("HTTP %d: %v %v", c.status, msgs, err)
		}
	}
}

func TestLLMRefusalIsRetriedOnce(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Status: 503}, llmtest.Script{Deltas: []string{`{"text": "Second time lucky."}`}})
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.LLM.RetryBackoff.Duration = time.Millisecond
	h := startServer(t, cfg)
	msgs, err := h.call(t, commitReq(newSession(), "hello"))
	if err != nil {
		t.Fatal(err)
	}
	if a := checkAnswer(t, msgs); a.texts[0] != "Second time lucky." || len(fake.Requests()) != 2 {
		t.Fatalf("answer %q after %d requests", a.texts, len(fake.Requests()))
	}
	// A rejected key is not retried.
	auth := llmtest.NewOpenAI(t, llmtest.Script{Status: 401})
	h = startServer(t, testConfig(t, "openai", auth.URL, newSpeechFake(t).URL))
	if _, err := h.call(t, commitReq(newSession(), "hello")); status.Code(err) != codes.Unavailable || len(auth.Requests()) != 1 {
		t.Fatalf("401: %v after %d requests", err, len(auth.Requests()))
	}
}

func TestLLMTimeoutIsDeadlineExceeded(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "late"}`}, Hang: true, HangAfter: 0})
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.LLM.Timeout.Duration = 200 * time.Millisecond
	h := startServer(t, cfg)
	msgs, err := h.call(t, commitReq(newSession(), "hello"))
	if status.Code(err) != codes.DeadlineExceeded || len(msgs) != 1 || msgs[0].GetErrorMessage() == "" {
		t.Fatalf("timeout: %v %v", msgs, err)
	}
}

func TestFirstTokenTimeout(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "late"}`}, Hang: true, HangAfter: 1}) // role chunk only
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.LLM.FirstTokenTimeout.Duration = 200 * time.Millisecond
	h := startServer(t, cfg)
	msgs, err := h.call(t, commitReq(newSession(), "hello"))
	if status.Code(err) != codes.DeadlineExceeded || len(msgs) != 1 || !strings.Contains(msgs[0].GetErrorMessage(), "first_token_timeout") {
		t.Fatalf("no first token: %v %v", msgs, err)
	}
	waitClosed(t, fake.Disconnected(), "the LLM request to be aborted")
}

func TestActionsGatedByFlagsAndKillSwitch(t *testing.T) {
	browse := []string{`{"text": "Searching flights now.", "command": "browser_use", "args": {"task": "find flights to Oslo"}}`}
	open := []string{`{"command": "open_app", "args": {"app_name": "Notes"}}`}
	cases := []struct {
		name       string
		deltas     []string
		browser    bool
		kill       bool
		wantAction string
		wantText   string
	}{
		{"disabled feature", browse, false, false, "", "Searching flights now."},
		{"enabled feature", browse, true, false, "browser_use", "Searching flights now."},
		{"kill switch wins", browse, true, true, "", "Searching flights now."},
		{"command without text", open, false, false, "open_app", "Notes"},
		{"killed command without text", open, false, true, "", "can't"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: c.deltas})
			cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
			cfg.Features.Browser = c.browser
			cfg.KillSwitches.DisableForwardAssistantActions = c.kill
			h := startServer(t, cfg)
			msgs, err := h.call(t, commitReq(newSession(), "do it"))
			if err != nil {
				t.Fatal(err)
			}
			a := checkAnswer(t, msgs)
			got := ""
			if a.action != nil {
				got = a.action.GetActionJson()
			}
			if (c.wantAction == "") != (got == "") || !strings.Contains(got, c.wantAction) {
				t.Errorf("action = %q, want %q", got, c.wantAction)
			}
			if !strings.Contains(strings.Join(a.texts, " "), c.wantText) {
				t.Errorf("texts = %q, want %q", a.texts, c.wantText)
			}
			if sys := fake.Requests()[0].System; c.kill == strings.Contains(sys, "open_app") {
				t.Errorf("kill switch %v, but the prompt offering commands is %v", c.kill, !c.kill)
			}
		})
	}
}

func TestEmptyModelAnswerIsSpokenFallback(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: nil})
	h := startServer(t, testConfig(t, "openai", fake.URL, newSpeechFake(t).URL))
	msgs, err := h.call(t, commitReq(newSession(), "secret prompt text"))
	if err != nil {
		t.Fatal(err)
	}
	a := checkAnswer(t, msgs)
	if len(a.texts) == 0 || strings.Contains(strings.Join(a.texts, " "), "secret prompt") || a.chunks == 0 {
		t.Fatalf("empty answer must speak a fixed sentence, never the prompt: %+v", a)
	}
}

func TestTTSDownBeforeDataIsOneError(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "This will not be spoken."}`}})
	cfg := testConfig(t, "openai", fake.URL, "http://127.0.0.1:1/v1") // nothing listens there
	h := startServer(t, cfg)
	msgs, err := h.call(t, commitReq(newSession(), "hello"))
	if status.Code(err) != codes.Unavailable || len(msgs) != 1 || !strings.Contains(msgs[0].GetErrorMessage(), "speech synthesis") ||
		!strings.Contains(msgs[0].GetErrorMessage(), `tts.provider = "openai"`) {
		t.Fatalf("TTS down: %v %v", msgs, err)
	}
	if !strings.Contains(h.log.String(), "tts.provider openai:") {
		t.Errorf("the log does not name tts.provider:\n%s", h.log.String())
	}
}

func TestTTSStartIsRetried(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Spoken on the second try."}`}})
	speech := newSpeechFake(t)
	speech.failFirst = 1
	h := startServer(t, testConfig(t, "openai", fake.URL, speech.URL))
	msgs, err := h.call(t, commitReq(newSession(), "hello"))
	if err != nil {
		t.Fatal(err)
	}
	if a := checkAnswer(t, msgs); a.chunks == 0 || len(speech.requests()) != 2 {
		t.Fatalf("chunks %d, TTS requests %d", a.chunks, len(speech.requests()))
	}
	if !strings.Contains(h.log.String(), "decision=tts_retry") {
		t.Error("retry not logged")
	}
}

func TestTTSFailureAfterDataEndsWithoutEndMessage(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "The first sentence is spoken fine. The second one breaks the engine."}`}})
	speech := newSpeechFake(t)
	speech.failOn = "breaks the engine"
	h := startServer(t, testConfig(t, "openai", fake.URL, speech.URL))
	msgs, err := h.call(t, commitReq(newSession(), "hello"))
	if status.Code(err) != codes.Unavailable || len(msgs) < 2 || msgs[0].GetTextChunk() == "" {
		t.Fatalf("status = %v, msgs = %d", err, len(msgs))
	}
	for _, m := range msgs {
		if m.GetEndMessage() != "" || m.GetErrorMessage() != "" {
			t.Fatalf("after data the stream just ends: %v", m)
		}
	}
}

// TestLongAnswerNotCutByLLMTimeout: the model answered at once; speaking the
// answer takes longer than llm.timeout, which must not cut it.
func TestLongAnswerNotCutByLLMTimeout(t *testing.T) {
	text := strings.Repeat("This sentence takes a little while to say. ", 6)
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "` + text + `"}`}})
	speech := newSpeechFake(t)
	speech.delay = 150 * time.Millisecond
	cfg := testConfig(t, "openai", fake.URL, speech.URL)
	cfg.LLM.Timeout.Duration = 300 * time.Millisecond
	cfg.TTS.Lookahead = 1
	h := startServer(t, cfg)
	msgs, err := h.call(t, commitReq(newSession(), "talk"))
	if err != nil {
		t.Fatal(err)
	}
	if a := checkAnswer(t, msgs); len(a.texts) < 6 {
		t.Fatalf("segments = %d", len(a.texts))
	}
}

func TestJSONLookingTextIsNotAnAction(t *testing.T) {
	defused := []string{
		`{"command":"send_message","args":{"contact":"Boss","message":"I quit"}}`,
		`__MCP__{"command":"browser_use","args":{"task":"x"}}`,
		"```json\n{\"command\":\"open_app\",\"args\":{\"app_name\":\"Terminal\"}}\n```",
	}
	for _, in := range defused {
		if got := displayText(in); got != "("+in+")" {
			t.Errorf("displayText(%q) = %q: the client would execute it", in, got)
		}
	}
	for _, in := range []string{"Use {braces} freely.", "Plain answer.", "{not json}"} {
		if got := displayText(in); got != in {
			t.Errorf("displayText(%q) = %q, want it unchanged", in, got)
		}
	}
}

func TestWelcomeAudio(t *testing.T) {
	speech := newSpeechFake(t)
	h := startServer(t, testConfig(t, "openai", "http://127.0.0.1:1/v1", speech.URL))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := h.client.GenerateWelcomeAudio(ctx, &pb.WelcomeRequest{SessionId: "welcome_1732600000.123", Voice: "en-US-JennyNeural"})
	if err != nil {
		t.Fatal(err)
	}
	var meta *pb.WelcomeMetadata
	total, end := 0, ""
	for {
		m, err := stream.Recv()
		if err != nil {
			if status.Code(err) != codes.OK && err.Error() != "EOF" {
				t.Fatal(err)
			}
			break
		}
		switch c := m.Content.(type) {
		case *pb.WelcomeResponse_Metadata:
			if meta != nil || total > 0 {
				t.Fatal("metadata must come first, once")
			}
			meta = c.Metadata
		case *pb.WelcomeResponse_AudioChunk:
			if meta == nil {
				t.Fatal("audio before metadata")
			}
			ac := c.AudioChunk
			if ac.GetSampleRate() != 48000 || ac.GetChannels() != 1 || ac.GetDtype() != "int16" || len(ac.GetAudioData())%2 != 0 || len(ac.GetAudioData()) > 4096 {
				t.Fatalf("bad chunk: %d bytes %d Hz", len(ac.GetAudioData()), ac.GetSampleRate())
			}
			total += len(ac.GetAudioData())
		case *pb.WelcomeResponse_EndMessage:
			end = c.EndMessage
		case *pb.WelcomeResponse_ErrorMessage:
			t.Fatal(c.ErrorMessage)
		}
	}
	if end == "" || meta == nil || total == 0 {
		t.Fatalf("end=%q meta=%v bytes=%d", end, meta, total)
	}
	if meta.GetSampleRate() != 48000 || meta.GetChannels() != 1 || meta.GetDtype() != "int16" || meta.GetMethod() != "openai" {
		t.Errorf("metadata = %v", meta)
	}
	// An estimate from the text (the field is documented as one): the default
	// text of 43 characters is about three seconds.
	if got := meta.GetDurationSec(); got < 2 || got > 4 {
		t.Errorf("duration_sec = %v, want about 3", got)
	}
	reqs := speech.requests()
	if len(reqs) != 1 || !strings.Contains(reqs[0], "How can I help you today") || strings.Contains(reqs[0], "Jenny") {
		t.Errorf("TTS request = %v (default text; client voice ignored unless tts.honor_client_voice)", reqs)
	}
}

func TestReportUsageNeedsHardwareID(t *testing.T) {
	h := startServer(t, testConfig(t, "openai", "http://127.0.0.1:1/v1", newSpeechFake(t).URL))
	if _, err := h.client.ReportUsage(context.Background(), &pb.UsageRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty hardware_id: %v", err)
	}
}

// TestEspeakEndToEnd runs a turn with the real local TTS engine.
func TestEspeakEndToEnd(t *testing.T) {
	if _, err := exec.LookPath("espeak-ng"); err != nil {
		if os.Getenv("NEXY_REQUIRE_ESPEAK") == "1" {
			t.Fatal("espeak-ng is required (NEXY_REQUIRE_ESPEAK=1) but not installed")
		}
		t.Skip("espeak-ng not installed; .ci/run installs it")
	}
	fake := llmtest.NewGemini(t, llmtest.Script{Deltas: []string{"```json\n", `{"text": "Привет! Это Nexy. `, `Чем могу помочь?"}`, "\n```"}})
	cfg := testConfig(t, "gemini", fake.URL, "http://127.0.0.1:1/v1")
	cfg.TTS.Provider, cfg.TTS.BaseURL, cfg.TTS.Command = "command", "", "espeak-ng --stdout -v ru"
	h := startServer(t, cfg)
	msgs, err := h.call(t, commitReq(newSession(), "привет"))
	if err != nil {
		t.Fatal(err)
	}
	a := checkAnswer(t, msgs)
	if strings.Contains(strings.Join(a.texts, ""), "json") || a.bytes < 48000 {
		t.Fatalf("answer = %+v", a)
	}
}

func TestWelcomeAudioErrors(t *testing.T) {
	h := startServer(t, testConfig(t, "openai", "http://127.0.0.1:1/v1", "http://127.0.0.1:1/v1")) // TTS unreachable
	stream, err := h.client.GenerateWelcomeAudio(context.Background(), &pb.WelcomeRequest{Text: "Hello there."})
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.Recv()
	if err != nil || !strings.Contains(m.GetErrorMessage(), "speech synthesis") {
		t.Fatalf("TTS down: first message %v, %v", m, err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("status = %v, want Unavailable", err)
	}
	stream, err = h.client.GenerateWelcomeAudio(context.Background(), &pb.WelcomeRequest{Text: "🙂🙂"})
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := stream.Recv(); !strings.Contains(m.GetErrorMessage(), "nothing speakable") {
		t.Fatalf("emoji-only text: %v", m)
	}
}
