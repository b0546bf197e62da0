package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nexy-server/nexy/llm/llmtest"
	pb "github.com/nexy-server/nexy/proto"
)

// answer is a COMMIT stream checked against the answer grammar of SPEC §2.
type answer struct {
	texts  []string
	chunks int
	bytes  int
	action *pb.ActionMessage
	end    string
}

func checkAnswer(t *testing.T, msgs []*pb.StreamResponse) answer {
	t.Helper()
	var a answer
	for i, m := range msgs {
		if a.end != "" {
			t.Fatalf("message %d after end_message: %v", i, m)
		}
		switch c := m.Content.(type) {
		case *pb.StreamResponse_TextChunk:
			if a.action != nil {
				t.Fatalf("text_chunk after action_message")
			}
			a.texts = append(a.texts, c.TextChunk)
		case *pb.StreamResponse_AudioChunk:
			if len(a.texts) == 0 || a.action != nil {
				t.Fatalf("audio_chunk %d not preceded by its text_chunk, or after the action", i)
			}
			ac := c.AudioChunk
			n := len(ac.GetAudioData())
			if ac.GetSampleRate() != 48000 || ac.GetChannels() != 1 || ac.GetDtype() != "int16" || n == 0 || n%2 != 0 || n > 4096 {
				t.Fatalf("audio chunk %d breaks the wire format: %d bytes, %d Hz, %d ch, %q", i, n, ac.GetSampleRate(), ac.GetChannels(), ac.GetDtype())
			}
			a.chunks++
			a.bytes += n
		case *pb.StreamResponse_ActionMessage:
			if a.action != nil {
				t.Fatalf("second action_message")
			}
			a.action = c.ActionMessage
		case *pb.StreamResponse_EndMessage:
			a.end = c.EndMessage
		default:
			t.Fatalf("unexpected message %d: %v", i, m)
		}
	}
	if a.end == "" {
		t.Fatalf("no end_message; got %d messages", len(msgs))
	}
	return a
}

// actionReply is a model reply split mid-word and mid-escape across deltas.
var actionReply = []string{
	`{"te`, `xt": "Sure, I'll op`, `en Safari for y`, `ou. It\u2019`, `s on its way.\n`, `Anything el`, `se?", "com`,
	`mand": "open_app", "ar`, `gs": {"app_name": "Saf`, `ari.app"}}`,
}

func TestTurnEndToEnd(t *testing.T) {
	for _, provider := range []string{"openai", "gemini"} {
		t.Run(provider, func(t *testing.T) {
			var fake *llmtest.Server
			script := llmtest.Script{Deltas: actionReply, Usage: llmtest.Usage{InputTokens: 321, OutputTokens: 45}}
			if provider == "openai" {
				fake = llmtest.NewOpenAI(t, script)
			} else {
				fake = llmtest.NewGemini(t, script)
			}
			speech := newSpeechFake(t)
			h := startServer(t, testConfig(t, provider, fake.URL, speech.URL))
			sid := newSession()

			// COLLECT snapshots, last-wins by chunk_seq; a stale one is acknowledged and ignored.
			for _, c := range []struct {
				seq  int32
				text string
			}{{1, "open"}, {2, "open safari"}, {1, "stale"}} {
				msgs, err := h.call(t, collectReq(sid, c.seq, c.text))
				if err != nil || len(msgs) != 1 || msgs[0].GetEndMessage() != "COLLECT_ACCEPTED" {
					t.Fatalf("COLLECT %d: %v %v", c.seq, msgs, err)
				}
			}
			// COMMIT with an empty prompt: the buffered snapshot is the prompt.
			msgs, err := h.call(t, commitReq(sid, ""))
			if err != nil {
				t.Fatalf("COMMIT: %v", err)
			}
			a := checkAnswer(t, msgs)
			spoken := strings.Join(a.texts, " ")
			if want := "Sure, I'll open Safari for you. It\u2019s on its way.\nAnything else?"; strings.ReplaceAll(spoken, "\n", " ") != strings.ReplaceAll(want, "\n", " ") {
				t.Errorf("spoken text = %q, want %q", spoken, want)
			}
			if a.chunks == 0 {
				t.Fatal("no audio")
			}
			if a.action == nil || a.action.GetSessionId() != sid {
				t.Fatalf("action = %v", a.action)
			}
			var act map[string]any
			if err := json.Unmarshal([]byte(a.action.GetActionJson()), &act); err != nil {
				t.Fatal(err)
			}
			if act["session_id"] != sid || act["command"] != "open_app" || act["args"].(map[string]any)["app_name"] != "Safari" {
				t.Errorf("action_json = %s", a.action.GetActionJson())
			}
			reqs := fake.Requests()
			if len(reqs) != 1 || reqs[0].User != "open safari" {
				t.Fatalf("LLM requests = %+v", reqs)
			}
			if !strings.Contains(reqs[0].System, "open_app") || strings.Contains(reqs[0].System, "browser_use") {
				t.Errorf("system prompt does not follow the feature flags")
			}
			if n := len(speech.requests()); n != len(a.texts) {
				t.Errorf("TTS calls = %d, segments = %d", n, len(a.texts))
			}
			if !strings.Contains(h.log.String(), "decision=complete") {
				t.Errorf("no decision line in the log")
			}
			if strings.Contains(h.log.String(), h.srv.cfg.LLM.APIKey) {
				t.Errorf("the API key leaked into the log")
			}
		})
	}
}

func TestCommitPromptWinsAndScreenshotFromCollect(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Ok."}`}})
	h := startServer(t, testConfig(t, "openai", fake.URL, newSpeechFake(t).URL))
	sid := newSession()
	req := collectReq(sid, 1, "what is on my scren")
	req.Screenshot = ptr(webpBase64)
	if _, err := h.call(t, req); err != nil {
		t.Fatal(err)
	}
	msgs, err := h.call(t, commitReq(sid, "What is on my screen?"))
	if err != nil {
		t.Fatal(err)
	}
	a := checkAnswer(t, msgs)
	if len(a.texts) != 1 || a.texts[0] != "Ok." || a.chunks == 0 {
		t.Errorf("\"Ok.\" must be spoken: %+v", a)
	}
	r := fake.Requests()[0]
	if r.User != "What is on my screen?" {
		t.Errorf("user text = %q, the final transcript must win", r.User)
	}
	if r.Image == nil || r.Image.MIME != "image/webp" || r.Image.Base64 != webpBase64 {
		t.Errorf("screenshot from COLLECT not attached: %+v", r.Image)
	}
}

// webpBase64 is a 1×1 lossless WebP.
const webpBase64 = "UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA=="

func TestValidationErrors(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "never"}`}})
	h := startServer(t, testConfig(t, "openai", fake.URL, newSpeechFake(t).URL))
	long := strings.Repeat("a", 8001)
	cases := []struct {
		name string
		req  *pb.StreamRequest
		want string
	}{
		{"unknown hardware", &pb.StreamRequest{Prompt: "hi", HardwareId: "unknown", SessionId: newSession(), Phase: 2}, "hardware_id"},
		{"empty hardware", &pb.StreamRequest{Prompt: "hi", SessionId: newSession(), Phase: 2}, "hardware_id"},
		{"empty session", &pb.StreamRequest{Prompt: "hi", HardwareId: testHW, Phase: 2}, "session_id is required"},
		{"bad session chars", &pb.StreamRequest{Prompt: "hi", HardwareId: testHW, SessionId: "a b", Phase: 2}, "session_id"},
		{"phase 7", &pb.StreamRequest{Prompt: "hi", HardwareId: testHW, SessionId: newSession(), Phase: 7}, "phase 7"},
		{"empty prompt", commitReq(newSession(), "   "), "Empty prompt"},
		{"long prompt", commitReq(newSession(), long), "limits.max_prompt_chars"},
		{"bad base64", &pb.StreamRequest{Prompt: "hi", Screenshot: ptr("not base64!"), HardwareId: testHW, SessionId: newSession(), Phase: 2}, "base64"},
		{"not an image", &pb.StreamRequest{Prompt: "hi", Screenshot: ptr("aGVsbG8gd29ybGQh"), HardwareId: testHW, SessionId: newSession(), Phase: 2}, "WebP"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msgs, err := h.call(t, c.req)
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("status = %v, want InvalidArgument", err)
			}
			if len(msgs) != 1 || !strings.Contains(msgs[0].GetErrorMessage(), c.want) {
				t.Fatalf("want one error_message containing %q, got %v", c.want, msgs)
			}
		})
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("refused requests reached the LLM %d times", n)
	}
}

func TestCancelStopsLLMAndTTS(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Let me think about this `, `for a while. `, `Still`, ` thinking."}`}, Hang: true, HangAfter: 4})
	h := startServer(t, testConfig(t, "openai", fake.URL, newSpeechFake(t).URL))
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := h.client.StreamAudio(ctx, commitReq(newSession(), "think"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil { // the first segment's text: the turn is streaming
		t.Fatal(err)
	}
	cancel() // what the app does when the user presses the key again
	select {
	case <-fake.Disconnected():
	case <-time.After(10 * time.Second):
		t.Fatal("the LLM request was not aborted after the client cancelled")
	}
	waitIdle(t, h)
}

// waitIdle waits (bounded) until the server holds no running turn.
func waitIdle(t *testing.T, h *harness) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.srv.svc.adm.running() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("turn still running after cancel")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestInterruptSessionCancelsTurns(t *testing.T) {
	fake := llmtest.NewOpenAI(t,
		llmtest.Script{Deltas: []string{`{"text": "A long story begins here. `, `And goes on."}`}, Hang: true, HangAfter: 1},
		llmtest.Script{Deltas: []string{`{"text": "Yes?"}`}})
	h := startServer(t, testConfig(t, "openai", fake.URL, newSpeechFake(t).URL))
	sid := newSession()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := h.client.StreamAudio(ctx, commitReq(sid, "tell me a story"))
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the model has the request, then interrupt the device. (An
	// interrupt that lands after admission but before the request is sent
	// cancels the turn just as well, but then the fake never sees a client
	// to lose: waiting for the slot alone made this test hang.)
	waitFor(t, "the LLM request to arrive", func() bool { return len(fake.Requests()) == 1 })
	resp, err := h.client.InterruptSession(ctx, &pb.InterruptRequest{HardwareId: testHW})
	if err != nil || !resp.GetSuccess() || len(resp.GetInterruptedSessions()) != 1 || resp.GetInterruptedSessions()[0] != sid {
		t.Fatalf("InterruptSession = %v, %v", resp, err)
	}
	msgs, err := readAll(stream)
	if status.Code(err) != codes.Canceled {
		t.Fatalf("status = %v, want Canceled", err)
	}
	for _, m := range msgs {
		if m.GetEndMessage() != "" {
			t.Fatal("an interrupted turn must not end with end_message")
		}
	}
	waitClosed(t, fake.Disconnected(), "the LLM request to be aborted")
	waitIdle(t, h)
	// The interrupt never blocks the next question (upstream refused it for 5 s).
	msgs, err = h.call(t, commitReq(newSession(), "hello"))
	if err != nil {
		t.Fatal(err)
	}
	checkAnswer(t, msgs)
	// Unknown device: nothing to cancel, still success.
	resp, err = h.client.InterruptSession(ctx, &pb.InterruptRequest{HardwareId: "OTHER-DEVICE"})
	if err != nil || !resp.GetSuccess() || len(resp.GetInterruptedSessions()) != 0 {
		t.Fatalf("InterruptSession(other) = %v, %v", resp, err)
	}
	if _, err := h.client.InterruptSession(ctx, &pb.InterruptRequest{HardwareId: "unknown"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("InterruptSession(unknown) = %v", err)
	}
}

func TestCancelStopsSynthesis(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Here is a long answer that takes a while to speak."}`}})
	speech := newSpeechFake(t)
	speech.hang = true
	h := startServer(t, testConfig(t, "openai", fake.URL, speech.URL))
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := h.client.StreamAudio(ctx, commitReq(newSession(), "talk"))
	if err != nil {
		t.Fatal(err)
	}
	for { // text, then the first audio: synthesis is under way
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.GetAudioChunk() != nil {
			break
		}
	}
	cancel()
	select {
	case <-speech.gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the TTS request was not aborted after the client cancelled")
	}
	waitIdle(t, h)
}

// TestSynthesisOverlapsStreaming: segment 2 is synthesized while segment 1 is
// still streaming. The fake holds segment 1's audio until segment 2's request
// has arrived; a sequential pipeline would only send that request after
// segment 1 ended, so the fake's wait would run out (holdExpired).
func TestSynthesisOverlapsStreaming(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "This is the first sentence of the answer. And this is the second sentence."}`}})
	speech := newSpeechFake(t)
	speech.holdUntil = [2]string{"first sentence", "second sentence"}
	h := startServer(t, testConfig(t, "openai", fake.URL, speech.URL))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := h.client.StreamAudio(ctx, commitReq(newSession(), "talk"))
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := readAll(stream)
	if err != nil {
		t.Fatal(err)
	}
	a := checkAnswer(t, msgs)
	if len(a.texts) != 2 {
		t.Fatalf("segments = %q", a.texts)
	}
	speech.mu.Lock()
	expired := speech.holdExpired
	speech.mu.Unlock()
	if expired {
		t.Fatal("segment 2 was not synthesized while segment 1 was streaming")
	}
	if log := h.log.String(); strings.Contains(log, "decision=error") {
		t.Fatalf("turn failed:\n%s", log)
	}
}
