package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nexy-server/nexy/internal/httpclient"
)

// OpenAIConfig configures a provider for any OpenAI-compatible chat
// completions endpoint (OpenAI, Ollama, LocalAI, llama.cpp server, vLLM).
type OpenAIConfig struct {
	BaseURL     string        // the /v1 root, e.g. "http://localhost:11434/v1"; required
	Model       string        // required, passed through as is (e.g. "llama3.2:3b")
	APIKey      string        // optional; sent as "Authorization: Bearer" only when set
	Timeout     time.Duration // whole-call limit (connect + every read); 0 disables it
	Temperature float64       // 0..2, always sent
	MaxTokens   int           // sent as max_tokens; 0 leaves the server default
	HTTPClient  *http.Client  // nil: http.DefaultTransport; redirects are refused either way
}

// OpenAI streams answers from POST {base}/chat/completions.
type OpenAI struct {
	cfg    OpenAIConfig
	url    string
	client *http.Client
}

// NewOpenAI validates cfg and returns a provider.
func NewOpenAI(cfg OpenAIConfig) (*OpenAI, error) {
	if strings.TrimSpace(cfg.BaseURL) == "" {
		return nil, errors.New("llm openai: base URL is required (the /v1 root, e.g. http://localhost:11434/v1)")
	}
	base, err := checkBaseURL(strings.TrimSpace(cfg.BaseURL))
	if err != nil {
		return nil, fmt.Errorf("llm openai: %w", err)
	}
	cfg.Model = strings.TrimSpace(cfg.Model)
	if cfg.Model == "" {
		return nil, errors.New("llm openai: model is required")
	}
	if strings.ContainsFunc(cfg.Model, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return nil, fmt.Errorf("llm openai: model %q contains control characters", cfg.Model)
	}
	if cfg.APIKey, err = checkAPIKey(cfg.APIKey); err != nil {
		return nil, fmt.Errorf("llm openai: %w", err)
	}
	if err := checkGenSettings(cfg.Timeout, cfg.Temperature, cfg.MaxTokens); err != nil {
		return nil, fmt.Errorf("llm openai: %w", err)
	}
	client := httpclient.NoRedirects(cfg.HTTPClient)
	return &OpenAI{cfg: cfg, url: base + "/chat/completions", client: client}, nil
}

// Name implements Provider.
func (o *OpenAI) Name() string { return "openai" }

// Stream implements Provider: one streaming chat completion.
func (o *OpenAI) Stream(ctx context.Context, req Request) (Stream, error) {
	body, err := o.body(req)
	if err != nil {
		return nil, &Error{Provider: o.Name(), Kind: KindBadRequest, Message: err.Error()}
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "text/event-stream")
	if o.cfg.APIKey != "" {
		h.Set("Authorization", "Bearer "+o.cfg.APIKey)
	}
	call := &httpCall{
		provider: o.Name(),
		client:   o.client,
		timeout:  o.cfg.Timeout,
		url:      o.url,
		header:   h,
		body:     body,
		apiKey:   o.cfg.APIKey,
		parseErr: parseOpenAIError,
	}
	return call.start(ctx, &openaiDecoder{model: o.cfg.Model})
}

// Wire types of the request (chat completions API).
type (
	openaiRequest struct {
		Model         string          `json:"model"`
		Messages      []openaiMessage `json:"messages"`
		Stream        bool            `json:"stream"`
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
		Temperature float64 `json:"temperature"`
		MaxTokens   int     `json:"max_tokens,omitempty"`
	}
	openaiMessage struct {
		Role    string `json:"role"`
		Content any    `json:"content"` // a string, or []openaiPart with an image
	}
	openaiPart struct {
		Type     string          `json:"type"`
		Text     string          `json:"text,omitempty"`
		ImageURL *openaiImageURL `json:"image_url,omitempty"`
	}
	openaiImageURL struct {
		URL string `json:"url"`
	}
)

// body builds the JSON request; with an image the user content becomes a
// text part plus a data: URL part, the form every compatible server accepts.
func (o *OpenAI) body(req Request) ([]byte, error) {
	if err := checkStreamRequest(req); err != nil {
		return nil, err
	}
	r := openaiRequest{Model: o.cfg.Model, Stream: true, Temperature: o.cfg.Temperature, MaxTokens: o.cfg.MaxTokens}
	r.StreamOptions.IncludeUsage = true
	if req.System != "" {
		r.Messages = append(r.Messages, openaiMessage{Role: "system", Content: req.System})
	}
	var user any = req.User
	if req.Image != nil {
		var parts []openaiPart
		if req.User != "" {
			parts = append(parts, openaiPart{Type: "text", Text: req.User})
		}
		parts = append(parts, openaiPart{Type: "image_url", ImageURL: &openaiImageURL{
			URL: "data:" + req.Image.MIME + ";base64," + req.Image.Base64}})
		user = parts
	}
	r.Messages = append(r.Messages, openaiMessage{Role: "user", Content: user})
	return json.Marshal(r)
}

// Wire types of one streamed chat.completion.chunk.
type (
	openaiChunk struct {
		Model   string `json:"model"`
		Choices []struct {
			Delta struct {
				Content string `json:"content"`
			} `json:"delta"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage *struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
		Error *openaiErrorBody `json:"error"`
	}
	openaiErrorBody struct {
		Message string          `json:"message"`
		Type    string          `json:"type"`
		Code    json.RawMessage `json:"code"` // a string at OpenAI, a number or null elsewhere
	}
)

// openaiDecoder accumulates usage and finish state across chunks.
type openaiDecoder struct {
	model   string
	u       Usage
	sawText bool
	finish  string
}

func (d *openaiDecoder) event(ev sseEvent, out []string) ([]string, bool, error) {
	if ev.Data == "[DONE]" {
		return out, true, nil
	}
	var c openaiChunk
	if err := d.decodeChunk(ev.Data, &c); err != nil {
		return out, false, &Error{Provider: "openai", Kind: KindUnavailable, Message: "malformed stream chunk", Err: err}
	}
	if c.Error != nil {
		// Servers that fail after the 200 (Ollama, vLLM) put the error in the stream.
		return out, false, c.Error.toError(0)
	}
	if c.Model != "" {
		d.u.Model = c.Model
	}
	if c.Usage != nil {
		d.u.InputTokens = c.Usage.PromptTokens
		d.u.OutputTokens = c.Usage.CompletionTokens
	}
	if len(c.Choices) == 0 {
		return out, false, nil
	}
	ch := c.Choices[0]
	if ch.Delta.Content != "" {
		out = append(out, ch.Delta.Content)
		d.sawText = true
	}
	if ch.FinishReason != "" {
		d.finish = ch.FinishReason
		if ch.FinishReason == "content_filter" && !d.sawText {
			return out, false, &Error{Provider: "openai", Kind: KindBadRequest, Message: "answer blocked: finish_reason content_filter"}
		}
	}
	return out, false, nil
}

// end accepts a stream without [DONE] only if a finish_reason arrived: some
// compatible servers close without the marker, but a bare EOF mid-answer is a
// broken stream.
func (d *openaiDecoder) end(done bool) error {
	if !done && d.finish == "" {
		return &Error{Provider: "openai", Kind: KindUnavailable, Message: "stream ended before [DONE]"}
	}
	return nil
}

func (d *openaiDecoder) usage() Usage {
	u := d.u
	if u.Model == "" {
		u.Model = d.model
	}
	return u
}

// code returns the error code as text whether it came as a string or a number.
func (e *openaiErrorBody) code() string {
	var s string
	if json.Unmarshal(e.Code, &s) == nil {
		return s
	}
	if len(e.Code) == 0 || string(e.Code) == "null" {
		return ""
	}
	return string(e.Code)
}

// toError maps an OpenAI error object; status 0 means it came inside the
// stream, and the kind is then inferred from its code and type.
func (e *openaiErrorBody) toError(status int) *Error {
	code, typ := e.code(), e.Type
	msg := e.Message
	if code != "" {
		msg = code + ": " + msg
	}
	authInvalid := code == "invalid_api_key" || typ == "authentication_error"
	if status == 0 {
		switch {
		case authInvalid:
			status = http.StatusUnauthorized
		case strings.Contains(code, "rate_limit") || strings.Contains(typ, "rate_limit") || code == "insufficient_quota":
			status = http.StatusTooManyRequests
		case typ == "invalid_request_error":
			status = http.StatusBadRequest
		}
		kind := KindUnavailable
		if status != 0 {
			kind = httpStatusKind(status, authInvalid)
		}
		return &Error{Provider: "openai", Kind: kind, Message: msg}
	}
	return &Error{Provider: "openai", Kind: httpStatusKind(status, authInvalid), Status: status, Message: msg}
}

// parseOpenAIError reads `{"error":{message,type,code}}`. Some compatible
// servers answer `{"error":"text"}` or `{"detail":…}`; those keep their text.
func parseOpenAIError(status int, body []byte) *Error {
	var env struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &env) == nil && len(env.Error) > 0 {
		var e openaiErrorBody
		if json.Unmarshal(env.Error, &e) == nil && e.Message != "" {
			return e.toError(status)
		}
		var s string
		if json.Unmarshal(env.Error, &s) == nil && s != "" {
			return &Error{Provider: "openai", Kind: httpStatusKind(status, false), Status: status, Message: s}
		}
	}
	return &Error{Provider: "openai", Kind: httpStatusKind(status, false), Status: status, Message: errorBodyText(status, body)}
}
