// Package providers builds the LLM and TTS providers a config describes. It
// is the composition step main.go runs before handing them to the server
// (tests use it the same way), so the server never builds its own.
package providers

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/llm"
	"github.com/nexy-server/nexy/tts"
)

// The constructors' own errors are wrapped as "config: llm: …" / "config: tts: …"
// as a fallback only: config.Validate applies every check they make first and
// names the key and env variable (main's TestValidatedProvidersConstruct).

// Builder builds providers. HTTP, when set, is the client of every HTTP
// provider (OpenAI-compatible and Gemini models, OpenAI and Azure speech),
// so they share its connection pool; `nexy serve` hands it the shared
// transport (httpclient.NewTransport). The zero Builder, used by the
// package-level functions, leaves each provider its own default client.
// Edge (a websocket), Wyoming (raw TCP) and command speech make their own
// connections either way.
type Builder struct {
	HTTP *http.Client
}

// LLM is Builder{}.LLM.
func LLM(cfg *config.Config, log *slog.Logger) (p llm.Provider, missing string, err error) {
	return Builder{}.LLM(cfg, log)
}

// Models is Builder{}.Models.
func Models(cfg *config.Config) (entries []llm.ChainEntry, missing string, err error) {
	return Builder{}.Models(cfg)
}

// TTS is Builder{}.TTS.
func TTS(cfg *config.Config) (tts.Synthesizer, error) { return Builder{}.TTS(cfg) }

// TTSFallback is Builder{}.TTSFallback.
func TTSFallback(cfg *config.Config) (tts.Synthesizer, error) { return Builder{}.TTSFallback(cfg) }

// Speaker is Builder{}.Speaker.
func Speaker(c config.Speaker, defaultTimeout time.Duration) (tts.Synthesizer, error) {
	return Builder{}.Speaker(c, defaultTimeout)
}

// LLM builds the configured model and its [[llm.fallbacks]] as one chain
// with a circuit breaker per model. Without a key for the main model the
// server still starts; missing then tells the operator (and each refused
// turn) what to set.
func (b Builder) LLM(cfg *config.Config, log *slog.Logger) (p llm.Provider, missing string, err error) {
	entries, missing, err := b.Models(cfg)
	if err != nil || missing != "" {
		return nil, missing, err
	}
	chain, err := llm.NewChain(entries, llm.BreakerConfig{Failures: cfg.LLM.BreakerFailures, Cooldown: cfg.LLM.BreakerCooldown.Duration}, log)
	if err != nil {
		return nil, "", fmt.Errorf("config: llm: %w", err)
	}
	return chain, "", nil
}

// Models builds each configured model on its own, in chain order: the main
// one ("llm"), then "llm.fallbacks[0]" and so on. `nexy doctor` checks each.
func (b Builder) Models(cfg *config.Config) (entries []llm.ChainEntry, missing string, err error) {
	c := cfg.LLM
	if c.Provider == "gemini" && c.APIKey == "" {
		return nil, "no LLM key: set llm.api_key, llm.api_key_file or NEXY_LLM_API_KEY (a Gemini API key), " +
			"or point llm.provider = \"openai\" and llm.base_url at a local OpenAI-compatible server", nil
	}
	main, err := b.model(c, c.Provider, c.Model, c.BaseURL, c.APIKey, c.Timeout.Duration)
	if err != nil {
		return nil, "", fmt.Errorf("config: llm: %w", err)
	}
	entries = append(entries, llm.ChainEntry{Provider: main, Label: "llm", Model: c.Model})
	for i, f := range c.Fallbacks {
		label := fmt.Sprintf("llm.fallbacks[%d]", i)
		if f.Provider == "gemini" && f.APIKey == "" {
			return nil, "", fmt.Errorf("config: %s.api_key: a Gemini fallback needs a key (api_key or api_key_file)", label)
		}
		timeout := f.Timeout.Duration
		if timeout == 0 {
			timeout = c.Timeout.Duration
		}
		p, err := b.model(c, f.Provider, f.Model, f.BaseURL, f.APIKey, timeout)
		if err != nil {
			return nil, "", fmt.Errorf("config: %s: %w", label, err)
		}
		entries = append(entries, llm.ChainEntry{Provider: p, Label: label, Model: f.Model})
	}
	return entries, "", nil
}

// model builds one model endpoint; the generation settings are the main model's.
func (b Builder) model(c config.LLM, provider, name, baseURL, key string, timeout time.Duration) (llm.Provider, error) {
	switch provider {
	case "gemini":
		gc := llm.GeminiConfig{BaseURL: baseURL, Model: name, APIKey: key, Timeout: timeout,
			Temperature: c.Temperature, MaxOutputTokens: c.MaxOutputTokens, GoogleSearch: c.GoogleSearch, HTTPClient: b.HTTP}
		if c.ThinkingBudget >= 0 {
			gc.ThinkingBudget = &c.ThinkingBudget
		}
		return llm.NewGemini(gc)
	case "openai":
		return llm.NewOpenAI(llm.OpenAIConfig{BaseURL: baseURL, Model: name, APIKey: key, Timeout: timeout,
			Temperature: c.Temperature, MaxTokens: c.MaxOutputTokens, HTTPClient: b.HTTP})
	}
	return nil, fmt.Errorf("unknown provider %q", provider)
}

// TTS builds the configured speech provider ([tts]).
func (b Builder) TTS(cfg *config.Config) (tts.Synthesizer, error) {
	s, err := b.Speaker(cfg.TTS.Speaker, cfg.TTS.Timeout.Duration)
	if err != nil {
		return nil, fmt.Errorf("config: tts: %w", err)
	}
	return s, nil
}

// TTSFallback builds [tts.fallback]; nil when none is configured.
func (b Builder) TTSFallback(cfg *config.Config) (tts.Synthesizer, error) {
	if cfg.TTS.Fallback.Provider == "" {
		return nil, nil
	}
	s, err := b.Speaker(cfg.TTS.Fallback, cfg.TTS.Timeout.Duration)
	if err != nil {
		return nil, fmt.Errorf("config: tts.fallback: %w", err)
	}
	return s, nil
}

// Speaker builds one speech provider; a zero Timeout means defaultTimeout.
func (b Builder) Speaker(c config.Speaker, defaultTimeout time.Duration) (tts.Synthesizer, error) {
	timeout := c.Timeout.Duration
	if timeout == 0 {
		timeout = defaultTimeout
	}
	switch c.Provider {
	case "edge":
		return tts.NewEdge(tts.EdgeConfig{URL: c.BaseURL, Voice: c.Voice, Rate: c.Rate, Pitch: c.Pitch, Volume: c.Volume, Timeout: timeout})
	case "azure":
		if c.APIKey == "" {
			return nil, fmt.Errorf("api_key: the Azure Speech key is required (or api_key_file)")
		}
		return tts.NewAzure(tts.AzureConfig{BaseURL: c.BaseURL, Region: c.Region, APIKey: c.APIKey, Voice: c.Voice, Rate: c.Rate, Timeout: timeout, HTTPClient: b.HTTP})
	case "openai":
		return tts.NewOpenAI(tts.OpenAIConfig{BaseURL: c.BaseURL, APIKey: c.APIKey, Model: c.Model, Voice: c.Voice,
			Format: c.Format, PCMSampleRate: c.SampleRate, Timeout: timeout, HTTPClient: b.HTTP})
	case "wyoming":
		return tts.NewWyoming(tts.WyomingConfig{Address: c.BaseURL, Voice: c.Voice, Timeout: timeout})
	case "command":
		return tts.NewCommand(tts.CommandConfig{Command: c.Command, Format: c.Format, SampleRate: c.SampleRate, Voice: c.Voice, Timeout: timeout})
	}
	return nil, fmt.Errorf("unknown provider %q", c.Provider)
}
