// Package providers builds the LLM and TTS providers a config describes. It
// is the composition step main.go runs before handing them to the server
// (tests use it the same way), so the server never builds its own.
package providers

import (
	"fmt"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/llm"
	"github.com/nexy-server/nexy/tts"
)

// The constructors' own errors are wrapped as "config: llm: …" / "config: tts: …"
// as a fallback only: config.Validate applies every check they make first and
// names the key and env variable (main's TestValidatedProvidersConstruct).

// LLM builds the configured LLM provider. Without a key the server still
// starts; missing then tells the operator (and each refused turn) what to set.
func LLM(cfg *config.Config) (p llm.Provider, missing string, err error) {
	c := cfg.LLM
	switch c.Provider {
	case "gemini":
		if c.APIKey == "" {
			return nil, "no LLM key: set llm.api_key, llm.api_key_file or NEXY_LLM_API_KEY (a Gemini API key), " +
				"or point llm.provider = \"openai\" and llm.base_url at a local OpenAI-compatible server", nil
		}
		gc := llm.GeminiConfig{BaseURL: c.BaseURL, Model: c.Model, APIKey: c.APIKey, Timeout: c.Timeout.Duration,
			Temperature: c.Temperature, MaxOutputTokens: c.MaxOutputTokens, GoogleSearch: c.GoogleSearch}
		if c.ThinkingBudget >= 0 {
			gc.ThinkingBudget = &c.ThinkingBudget
		}
		p, err = llm.NewGemini(gc)
	case "openai":
		p, err = llm.NewOpenAI(llm.OpenAIConfig{BaseURL: c.BaseURL, Model: c.Model, APIKey: c.APIKey, Timeout: c.Timeout.Duration,
			Temperature: c.Temperature, MaxTokens: c.MaxOutputTokens})
	default:
		err = fmt.Errorf("unknown provider %q", c.Provider)
	}
	if err != nil {
		return nil, "", fmt.Errorf("config: llm: %w", err)
	}
	return p, "", nil
}

// TTS builds the configured speech provider.
func TTS(cfg *config.Config) (tts.Synthesizer, error) {
	c := cfg.TTS
	var (
		s   tts.Synthesizer
		err error
	)
	switch c.Provider {
	case "edge":
		s, err = tts.NewEdge(tts.EdgeConfig{URL: c.BaseURL, Voice: c.Voice, Rate: c.Rate, Pitch: c.Pitch, Volume: c.Volume, Timeout: c.Timeout.Duration})
	case "azure":
		if c.APIKey == "" {
			return nil, fmt.Errorf("config: tts.api_key: the Azure Speech key is required (or tts.api_key_file / NEXY_TTS_API_KEY)")
		}
		s, err = tts.NewAzure(tts.AzureConfig{BaseURL: c.BaseURL, Region: c.Region, APIKey: c.APIKey, Voice: c.Voice, Rate: c.Rate, Timeout: c.Timeout.Duration})
	case "openai":
		s, err = tts.NewOpenAI(tts.OpenAIConfig{BaseURL: c.BaseURL, APIKey: c.APIKey, Model: c.Model, Voice: c.Voice,
			Format: c.Format, PCMSampleRate: c.SampleRate, Timeout: c.Timeout.Duration})
	case "command":
		s, err = tts.NewCommand(tts.CommandConfig{Command: c.Command, Format: c.Format, SampleRate: c.SampleRate, Voice: c.Voice, Timeout: c.Timeout.Duration})
	default:
		err = fmt.Errorf("unknown provider %q", c.Provider)
	}
	if err != nil {
		return nil, fmt.Errorf("config: tts: %w", err)
	}
	return s, nil
}
