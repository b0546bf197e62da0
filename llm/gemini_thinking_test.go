package llm_test

import (
	"context"
	"io"
	"testing"

	"github.com/nexy-server/nexy/llm"
	"github.com/nexy-server/nexy/llm/llmtest"
)

func TestGeminiThinkingBudget(t *testing.T) {
	for _, budget := range []*int{nil, new(int)} {
		fake := llmtest.NewGemini(t, llmtest.Script{Deltas: []string{"Hi."}})
		g, err := llm.NewGemini(llm.GeminiConfig{BaseURL: fake.URL, Model: "gemini-2.5-flash", APIKey: testGeminiKey, ThinkingBudget: budget})
		if err != nil {
			t.Fatal(err)
		}
		s, err := g.Stream(context.Background(), llm.Request{User: "hello"})
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := s.Recv(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		gc, _ := fake.Requests()[0].JSON["generationConfig"].(map[string]any)
		tc, sent := gc["thinkingConfig"].(map[string]any)
		switch {
		case budget == nil && sent:
			t.Errorf("thinkingConfig sent without a budget: %v", gc)
		case budget != nil && (!sent || tc["thinkingBudget"] != float64(0)):
			t.Errorf("thinkingBudget 0 not sent: %v", gc)
		}
	}
}
