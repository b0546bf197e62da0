package llm_test

import (
	"context"
	"testing"

	"github.com/nexy-server/nexy/llm"
	"github.com/nexy-server/nexy/llm/llmtest"
)

// BenchmarkOpenAIStream is one whole OpenAI-compatible call per op (request,
// SSE read, chunk decode, body release) against the loopback fake replaying a
// recorded fixture. The connection is reused across ops when the client
// leaves the body in a reusable state.
func BenchmarkOpenAIStream(b *testing.B) {
	for _, fix := range []string{"openai_text.sse", "openai_action.sse", "ollama_plain.sse"} {
		b.Run(fix, func(b *testing.B) {
			srv := llmtest.NewOpenAI(b, llmtest.Script{Raw: fixture(b, fix)})
			p := newOpenAI(b, srv.URL, nil)
			b.ReportAllocs()
			for b.Loop() {
				s, err := p.Stream(context.Background(), llm.Request{System: "s", User: "q"})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := collect(b, s); err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
		})
	}
}
