package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
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
	// no_store vs store: the difference in end_ms is what recording the turn
	// adds (its commit comes before end_message); first_audio_ms must not move.
	b.Run("no_store", func(b *testing.B) { benchTurn(b, func(d *Deps) { d.Store = nil }) })
	b.Run("store", func(b *testing.B) { benchTurn(b) })
}

func benchTurn(b *testing.B, opts ...func(*Deps)) {
	fake := llmtest.NewOpenAI(b, llmtest.Script{Deltas: actionReply})
	speech := newSpeechFake(b)
	cfg := testConfig(b, "openai", fake.URL, speech.URL)
	cfg.Log.Level = "warn"
	cfg.Limits.MaxConcurrentStreams = 1000
	h := startServer(b, cfg, opts...)
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

// BenchmarkConcurrentTurns runs 200 turns at once (one op = one batch) against
// zero-latency fakes in the same process and reports the spread of time to
// first audio. The fakes share the CPU with the server, so this is a bound on
// what the server alone needs.
//
//	go test -run '^$' -bench BenchmarkConcurrentTurns -benchtime 5x ./server/
func BenchmarkConcurrentTurns(b *testing.B) {
	const concurrent = 200
	fake := llmtest.NewOpenAI(b, llmtest.Script{Deltas: actionReply})
	speech := newSpeechFake(b)
	cfg := testConfig(b, "openai", fake.URL, speech.URL)
	cfg.Log.Level = "warn"
	cfg.Limits.MaxConcurrentStreams = concurrent
	h := startServer(b, cfg)
	var all []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		firsts := make([]time.Duration, concurrent)
		var wg sync.WaitGroup
		for j := 0; j < concurrent; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				firsts[j] = oneTurn(b, h, fmt.Sprintf("BENCH-DEVICE-%04d", j)) // 200 devices, one turn each
			}()
		}
		wg.Wait()
		all = append(all, firsts...)
	}
	b.StopTimer()
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "first_audio_p50_ms")
	b.ReportMetric(pct(0.95), "first_audio_p95_ms")
	b.ReportMetric(float64(concurrent*b.N)/b.Elapsed().Seconds(), "turns/s")
}

// oneTurn runs a turn of device hw to its end and returns the time to its first audio chunk.
func oneTurn(b *testing.B, h *harness, hw string) time.Duration {
	start := time.Now()
	req := commitReq(newSession(), "open safari")
	req.HardwareId = hw
	stream, err := h.client.StreamAudio(context.Background(), req)
	if err != nil {
		b.Error(err)
		return 0
	}
	var first time.Duration
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return first
		}
		if err != nil {
			b.Error(err)
			return first
		}
		if first == 0 && m.GetAudioChunk() != nil {
			first = time.Since(start)
		}
	}
}

// BenchmarkSpokenRefusal is the cost of turning away a device that is not
// approved: the sentence's audio is made once, then every refusal is sent
// from memory (no model or speech call; the test TestPairingApproveThenRevoke
// proves it).
//
//	go test -run '^$' -bench BenchmarkSpokenRefusal -benchtime 500x ./server/
func BenchmarkSpokenRefusal(b *testing.B) {
	fake := llmtest.NewOpenAI(b, llmtest.Script{Deltas: actionReply})
	cfg := testConfig(b, "openai", fake.URL, newSpeechFake(b).URL)
	cfg.Log.Level = "warn"
	cfg.Devices.Pairing = "approve"
	h := startServer(b, cfg)
	refuse := func() int {
		stream, err := h.client.StreamAudio(context.Background(), commitReq(newSession(), "hello"))
		if err != nil {
			b.Fatal(err)
		}
		chunks := 0
		for {
			m, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return chunks
			}
			if err != nil {
				b.Fatal(err)
			}
			if m.GetAudioChunk() != nil {
				chunks++
			}
		}
	}
	refuse() // the first refusal synthesizes the sentence
	b.ResetTimer()
	for b.Loop() {
		if refuse() == 0 {
			b.Fatal("a refusal without audio")
		}
	}
	b.StopTimer()
	if n := len(fake.Requests()); n != 0 {
		b.Fatalf("the model was asked %d times", n)
	}
}
