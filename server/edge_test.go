package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexy-server/nexy/llm/llmtest"
	"github.com/nexy-server/nexy/tts/ttstest"
)

// TestEdgeEndToEnd runs a turn with the default production speech provider:
// the Edge read-aloud WebSocket protocol against a local fake, MP3 decoded and
// resampled in process, through the whole pipeline and config wiring.
func TestEdgeEndToEnd(t *testing.T) {
	session, err := ttstest.LoadEdgeSession(filepath.Join("..", "testdata", "tts", "edge_session.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	mp3, err := os.ReadFile(filepath.Join("..", "testdata", "tts", "edge_hello.mp3"))
	if err != nil {
		t.Fatal(err)
	}
	edge := ttstest.NewEdgeServer(t, ttstest.EdgeOptions{Session: session, MP3: mp3})
	fake := llmtest.NewGemini(t, llmtest.Script{Deltas: []string{`{"text": "Hello from Nexy. `, `How can I help?"}`}})
	cfg := testConfig(t, "gemini", fake.URL, "http://127.0.0.1:1/v1")
	cfg.TTS.Provider, cfg.TTS.BaseURL, cfg.TTS.Voice = "edge", edge.URL, "ru-RU-SvetlanaNeural"
	h := startServer(t, cfg)
	msgs, err := h.call(t, commitReq(newSession(), "hello"))
	if err != nil {
		t.Fatal(err)
	}
	a := checkAnswer(t, msgs)
	// Each segment is the fixture's 1.32 s of 24 kHz MP3 at 48 kHz mono s16le,
	// less the digital silence at its edges, which is not sent.
	if len(a.texts) != 2 || a.bytes < 150000 {
		t.Fatalf("segments %q, %d audio bytes", a.texts, a.bytes)
	}
	if err := edge.Err(); err != nil {
		t.Fatalf("the fake saw protocol errors: %v", err)
	}
	reqs := edge.Requests()
	if len(reqs) != 2 || !strings.Contains(reqs[0].Voice, "SvetlanaNeural") || reqs[0].Lang != "ru-RU" {
		t.Fatalf("edge requests: %+v", reqs)
	}
}

// BenchmarkTurnEdge is BenchmarkTurn with the default speech provider: the
// Edge WebSocket protocol and in-process MP3 decoding, against a local fake.
//
//	go test -run '^$' -bench BenchmarkTurnEdge -benchtime 200x ./server/
func BenchmarkTurnEdge(b *testing.B) {
	session, err := ttstest.LoadEdgeSession(filepath.Join("..", "testdata", "tts", "edge_session.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	mp3, err := os.ReadFile(filepath.Join("..", "testdata", "tts", "edge_hello.mp3"))
	if err != nil {
		b.Fatal(err)
	}
	edge := ttstest.NewEdgeServer(b, ttstest.EdgeOptions{Session: session, MP3: mp3})
	fake := llmtest.NewOpenAI(b, llmtest.Script{Deltas: actionReply})
	cfg := testConfig(b, "openai", fake.URL, "http://127.0.0.1:1/v1")
	cfg.TTS.Provider, cfg.TTS.BaseURL = "edge", edge.URL
	cfg.Log.Level = "warn"
	h := startServer(b, cfg)
	var first time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		first += oneTurn(b, h, testHW)
	}
	b.ReportMetric(float64(first.Microseconds())/1000/float64(b.N), "first_audio_ms")
}
