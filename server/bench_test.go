package server

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/nexy-server/nexy/llm/llmtest"
)

// BenchmarkTurn measures what the server adds on top of its providers: both
// fakes answer at once (loopback HTTP, no artificial delay), so the time from
// COMMIT to the first audio chunk is the server's own path (admission, prompt,
// LLM client and parser, splitter, TTS client, WAV decode, resampling to
// 48 kHz, chunking, gRPC send).
//
//	go test -run '^$' -bench BenchmarkTurn -benchtime 200x ./server/
func BenchmarkTurn(b *testing.B) {
	fake := llmtest.NewOpenAI(b, llmtest.Script{Deltas: actionReply})
	speech := newSpeechFake(b)
	cfg := testConfig(b, "openai", fake.URL, speech.URL)
	cfg.Log.Level = "warn"
	cfg.Limits.MaxConcurrentStreams = 1000
	h := startServer(b, cfg)
	var firstText, firstAudio, end time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		stream, err := h.client.StreamAudio(context.Background(), commitReq(newSession(), "open safari"))
		if err != nil {
			b.Fatal(err)
		}
		gotText, gotAudio := false, false
		for {
			m, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if !gotText && m.GetTextChunk() != "" {
				gotText = true
				firstText += time.Since(start)
			}
			if !gotAudio && m.GetAudioChunk() != nil {
				gotAudio = true
				firstAudio += time.Since(start)
			}
		}
		end += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(float64(firstText.Microseconds())/1000/n, "first_text_ms")
	b.ReportMetric(float64(firstAudio.Microseconds())/1000/n, "first_audio_ms")
	b.ReportMetric(float64(end.Microseconds())/1000/n, "end_ms")
}
