package providers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/internal/httpclient"
	"github.com/nexy-server/nexy/llm"
	"github.com/nexy-server/nexy/tts"
)

func testKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "test-" + hex.EncodeToString(b[:])
}

// TestBuilderSharesHTTP: every HTTP provider a Builder makes sends its calls
// through Builder.HTTP (here the shared transport, which counts them).
func TestBuilderSharesHTTP(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":{"message":"down for the test"}}`, http.StatusServiceUnavailable)
	}))
	defer ts.Close()
	transport := httpclient.NewTransport(4)
	defer transport.Close()
	b := Builder{HTTP: transport.Client()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	models := map[string]string{"gemini": "gemini-2.5-flash", "openai": "llama3.2"}
	for provider, model := range models {
		cfg := config.Default("dev")
		cfg.LLM.Provider, cfg.LLM.BaseURL, cfg.LLM.Model, cfg.LLM.APIKey = provider, ts.URL, model, testKey()
		entries, missing, err := b.Models(&cfg)
		if err != nil || missing != "" {
			t.Fatalf("%s: %v %s", provider, err, missing)
		}
		before := transport.Counts().Requests
		if s, err := entries[0].Provider.Stream(ctx, llm.Request{User: "hi"}); err == nil {
			s.Close()
			t.Fatalf("%s: the failing fake answered", provider)
		}
		if transport.Counts().Requests != before+1 {
			t.Errorf("llm %s did not call through Builder.HTTP", provider)
		}
	}
	for _, sp := range []config.Speaker{
		{Provider: "openai", BaseURL: ts.URL + "/v1", APIKey: testKey()},
		{Provider: "azure", BaseURL: ts.URL, APIKey: testKey()},
	} {
		syn, err := b.Speaker(sp, 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", sp.Provider, err)
		}
		before := transport.Counts().Requests
		if r, err := syn.Synthesize(ctx, tts.Request{Text: "hi"}); err == nil {
			r.Close()
			t.Fatalf("%s: the failing fake answered", sp.Provider)
		}
		if transport.Counts().Requests != before+1 {
			t.Errorf("tts %s did not call through Builder.HTTP", sp.Provider)
		}
	}
}
