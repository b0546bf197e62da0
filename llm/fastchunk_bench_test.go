package llm

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// openaiFixtureEvents returns the data of every event of the recorded
// OpenAI-compatible fixtures (testdata/llm/openai_*.sse, ollama_*.sse).
func openaiFixtureEvents(tb testing.TB) []sseEvent {
	tb.Helper()
	var evs []sseEvent
	for _, name := range []string{"openai_text.sse", "openai_action.sse", "ollama_plain.sse"} {
		raw, err := os.ReadFile(filepath.Join("..", "testdata", "llm", name))
		if err != nil {
			tb.Fatal(err)
		}
		got, err := readAllSSE(bytes.NewReader(raw), 0)
		if err != io.EOF {
			tb.Fatalf("%s: %v", name, err)
		}
		evs = append(evs, got...)
	}
	return evs
}

// BenchmarkOpenAIChunk decodes every chunk of the recorded OpenAI and Ollama
// streams (88 events) through the decoder a live stream uses.
func BenchmarkOpenAIChunk(b *testing.B) {
	evs := openaiFixtureEvents(b)
	n := 0
	for _, ev := range evs {
		n += len(ev.Data)
	}
	b.SetBytes(int64(n))
	b.ReportAllocs()
	var out []string
	for b.Loop() {
		d := &openaiDecoder{model: "m"}
		for _, ev := range evs {
			var err error
			out, _, err = d.event(ev, out[:0])
			if err != nil && ev.Data != "[DONE]" {
				if _, ok := err.(*Error); !ok {
					b.Fatal(err)
				}
			}
		}
	}
	b.ReportMetric(float64(len(evs)), "events/op")
}

// BenchmarkSSEReaderStream reads one recorded stream per op with a fresh
// reader, as every LLM call does: the reader's own buffer is part of the cost.
func BenchmarkSSEReaderStream(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "llm", "openai_action.sse"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	r := bytes.NewReader(raw)
	for b.Loop() {
		r.Reset(raw)
		s := newSSEReader(r, 0)
		for {
			if _, err := s.Next(); err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
		}
	}
}
