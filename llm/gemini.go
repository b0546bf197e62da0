package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nexy-server/nexy/internal/httpclient"
)

// DefaultGeminiBaseURL is the Gemini Developer API host root.
const DefaultGeminiBaseURL = "https://generativelanguage.googleapis.com"

// GeminiConfig configures the Gemini provider (Developer API, streaming REST).
type GeminiConfig struct {
	BaseURL         string        // host root; empty means DefaultGeminiBaseURL
	Model           string        // e.g. "gemini-2.5-flash-lite"; a leading "models/" is accepted
	APIKey          string        // sent in the x-goog-api-key header, never in the URL
	Timeout         time.Duration // whole-call limit (connect + every read); 0 disables it
	Temperature     float64       // 0..2, always sent
	MaxOutputTokens int           // 0 leaves the model default
	GoogleSearch    bool          // add the google_search grounding tool
	// ThinkingBudget, when not nil, is sent as thinkingConfig.thinkingBudget:
	// 0 turns thinking off on 2.5 Flash models (faster first token, and
	// thinking tokens no longer eat maxOutputTokens); nil leaves the model default.
	ThinkingBudget *int
	HTTPClient     *http.Client // nil: http.DefaultTransport; redirects are refused either way
}

// Gemini streams answers from Gemini's streamGenerateContent endpoint.
type Gemini struct {
	cfg    GeminiConfig
	url    string
	client *http.Client
}

// NewGemini validates cfg and returns a provider.
func NewGemini(cfg GeminiConfig) (*Gemini, error) {
	cfg.Model = strings.TrimPrefix(strings.TrimSpace(cfg.Model), "models/")
	if err := checkGeminiModel(cfg.Model); err != nil {
		return nil, fmt.Errorf("llm gemini: %w", err)
	}
	key, err := checkAPIKey(cfg.APIKey)
	if err != nil {
		return nil, fmt.Errorf("llm gemini: %w", err)
	}
	if key == "" {
		return nil, errors.New("llm gemini: api key is required")
	}
	cfg.APIKey = key
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultGeminiBaseURL
	}
	base, err := checkBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("llm gemini: %w", err)
	}
	if err := checkGenSettings(cfg.Timeout, cfg.Temperature, cfg.MaxOutputTokens); err != nil {
		return nil, fmt.Errorf("llm gemini: %w", err)
	}
	client := httpclient.NoRedirects(cfg.HTTPClient)
	return &Gemini{
		cfg:    cfg,
		url:    base + "/v1beta/models/" + cfg.Model + ":streamGenerateContent?alt=sse",
		client: client,
	}, nil
}

// Name implements Provider.
func (g *Gemini) Name() string { return "gemini" }

// Stream implements Provider: one POST to streamGenerateContent with alt=sse.
func (g *Gemini) Stream(ctx context.Context, req Request) (Stream, error) {
	body, err := g.body(req)
	if err != nil {
		return nil, &Error{Provider: g.Name(), Kind: KindBadRequest, Message: err.Error()}
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "text/event-stream")
	h.Set("x-goog-api-key", g.cfg.APIKey)
	call := &httpCall{
		provider: g.Name(),
		client:   g.client,
		timeout:  g.cfg.Timeout,
		url:      g.url,
		header:   h,
		body:     body,
		apiKey:   g.cfg.APIKey,
		parseErr: parseGeminiError,
	}
	return call.start(ctx, &geminiDecoder{model: g.cfg.Model})
}

// Wire types of the request (https://ai.google.dev/api/generate-content).
type (
	geminiRequest struct {
		SystemInstruction *geminiContent   `json:"systemInstruction,omitempty"`
		Contents          []geminiContent  `json:"contents"`
		GenerationConfig  geminiGenConfig  `json:"generationConfig"`
		Tools             []map[string]any `json:"tools,omitempty"`
	}
	geminiContent struct {
		Role  string       `json:"role,omitempty"`
		Parts []geminiPart `json:"parts"`
	}
	geminiPart struct {
		Text       string          `json:"text,omitempty"`
		Thought    bool            `json:"thought,omitempty"`
		InlineData *geminiBlobData `json:"inlineData,omitempty"`
	}
	geminiBlobData struct {
		MIMEType string `json:"mimeType"`
		Data     string `json:"data"`
	}
	geminiGenConfig struct {
		Temperature     float64         `json:"temperature"`
		MaxOutputTokens int             `json:"maxOutputTokens,omitempty"`
		ThinkingConfig  *geminiThinking `json:"thinkingConfig,omitempty"`
	}
	geminiThinking struct {
		ThinkingBudget int `json:"thinkingBudget"`
	}
)

// body builds the JSON request; the image travels as inlineData next to the text.
func (g *Gemini) body(req Request) ([]byte, error) {
	if err := checkStreamRequest(req); err != nil {
		return nil, err
	}
	user := geminiContent{Role: "user"}
	if req.User != "" {
		user.Parts = append(user.Parts, geminiPart{Text: req.User})
	}
	if req.Image != nil {
		user.Parts = append(user.Parts, geminiPart{InlineData: &geminiBlobData{
			MIMEType: req.Image.MIME, Data: req.Image.Base64}})
	}
	r := geminiRequest{
		Contents: []geminiContent{user},
		GenerationConfig: geminiGenConfig{
			Temperature:     g.cfg.Temperature,
			MaxOutputTokens: g.cfg.MaxOutputTokens,
		},
	}
	if b := g.cfg.ThinkingBudget; b != nil {
		r.GenerationConfig.ThinkingConfig = &geminiThinking{ThinkingBudget: *b}
	}
	if req.System != "" {
		r.SystemInstruction = &geminiContent{Parts: []geminiPart{{Text: req.System}}}
	}
	if g.cfg.GoogleSearch {
		r.Tools = []map[string]any{{"googleSearch": struct{}{}}}
	}
	return json.Marshal(r)
}

// Wire types of one streamed GenerateContentResponse.
type (
	geminiChunk struct {
		Candidates []struct {
			Content      geminiContent `json:"content"`
			FinishReason string        `json:"finishReason"`
		} `json:"candidates"`
		PromptFeedback *struct {
			BlockReason        string `json:"blockReason"`
			BlockReasonMessage string `json:"blockReasonMessage"`
		} `json:"promptFeedback"`
		UsageMetadata *struct {
			PromptTokenCount     int `json:"promptTokenCount"`
			CandidatesTokenCount int `json:"candidatesTokenCount"`
			ThoughtsTokenCount   int `json:"thoughtsTokenCount"`
		} `json:"usageMetadata"`
		ModelVersion string             `json:"modelVersion"`
		Error        *googleErrorStatus `json:"error"`
	}
	googleErrorStatus struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Reason string `json:"reason"`
		} `json:"details"`
	}
)

// geminiDecoder accumulates usage and finish state across chunks.
type geminiDecoder struct {
	model   string // configured model, used when the stream names none
	u       Usage
	sawText bool
	finish  string
}

func (d *geminiDecoder) event(ev sseEvent, out []string) ([]string, bool, error) {
	var c geminiChunk
	if err := json.Unmarshal([]byte(ev.Data), &c); err != nil {
		return out, false, &Error{Provider: "gemini", Kind: KindUnavailable, Message: "malformed stream chunk", Err: err}
	}
	if c.Error != nil {
		return out, false, c.Error.toError(c.Error.Code)
	}
	if c.ModelVersion != "" {
		d.u.Model = c.ModelVersion
	}
	if m := c.UsageMetadata; m != nil {
		// Counts are cumulative; the last chunk holds the totals. Thinking
		// tokens are billed as output, so they count as output here.
		d.u.InputTokens = m.PromptTokenCount
		d.u.OutputTokens = m.CandidatesTokenCount + m.ThoughtsTokenCount
	}
	if pf := c.PromptFeedback; pf != nil && pf.BlockReason != "" {
		msg := "prompt blocked: " + pf.BlockReason
		if pf.BlockReasonMessage != "" {
			msg += ": " + pf.BlockReasonMessage
		}
		return out, false, &Error{Provider: "gemini", Kind: KindBadRequest, Message: msg}
	}
	if len(c.Candidates) == 0 {
		return out, false, nil
	}
	cand := c.Candidates[0]
	for _, p := range cand.Content.Parts {
		if p.Thought || p.Text == "" {
			continue // thought summaries are not the answer
		}
		out = append(out, p.Text)
		d.sawText = true
	}
	if cand.FinishReason != "" {
		d.finish = cand.FinishReason
		if !d.sawText && geminiRefused(cand.FinishReason) {
			return out, false, &Error{Provider: "gemini", Kind: KindBadRequest,
				Message: "answer blocked: finishReason " + cand.FinishReason}
		}
	}
	return out, false, nil
}

// end: the SSE stream has no end marker; a finishReason on the last candidate
// is what tells a complete answer from a cut connection.
func (d *geminiDecoder) end(bool) error {
	if d.finish == "" {
		return &Error{Provider: "gemini", Kind: KindUnavailable, Message: "stream ended without a finishReason"}
	}
	return nil
}

func (d *geminiDecoder) usage() Usage {
	u := d.u
	if u.Model == "" {
		u.Model = d.model
	}
	return u
}

// geminiRefused reports finish reasons that mean the model withheld its answer.
func geminiRefused(reason string) bool {
	switch reason {
	case "STOP", "MAX_TOKENS", "FINISH_REASON_UNSPECIFIED":
		return false
	}
	return true // SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII, OTHER, …
}

// toError maps a google.rpc.Status to an *Error for the given HTTP status.
func (s *googleErrorStatus) toError(status int) *Error {
	keyInvalid := false
	for _, d := range s.Details {
		if d.Reason == "API_KEY_INVALID" {
			keyInvalid = true
		}
	}
	msg := s.Message
	if s.Status != "" {
		msg = s.Status + ": " + msg
	}
	return &Error{Provider: "gemini", Kind: httpStatusKind(status, keyInvalid), Status: status, Message: msg}
}

// parseGeminiError reads `{"error":{code,message,status,details}}`; the
// streaming endpoint may also wrap it in a one-element array.
func parseGeminiError(status int, body []byte) *Error {
	type envelope struct {
		Error *googleErrorStatus `json:"error"`
	}
	var env envelope
	trimmed := bytes.TrimSpace(body)
	if bytes.HasPrefix(trimmed, []byte("[")) {
		var arr []envelope
		if json.Unmarshal(trimmed, &arr) == nil && len(arr) > 0 {
			env = arr[0]
		}
	} else {
		_ = json.Unmarshal(trimmed, &env) // not JSON: fall back to the raw text below
	}
	if env.Error == nil {
		return &Error{Provider: "gemini", Kind: httpStatusKind(status, false), Status: status, Message: errorBodyText(status, body)}
	}
	return env.Error.toError(status)
}

// checkGeminiModel keeps the model a single URL path segment.
func checkGeminiModel(m string) error {
	if m == "" {
		return errors.New("model is required")
	}
	for _, r := range m {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_", r)
		if !ok {
			return fmt.Errorf("model %q: only letters, digits, '.', '-' and '_' are allowed", m)
		}
	}
	return nil
}

// checkGenSettings checks the generation settings both providers share.
func checkGenSettings(timeout time.Duration, temperature float64, maxTokens int) error {
	switch {
	case timeout < 0:
		return fmt.Errorf("timeout %s is negative", timeout)
	case temperature < 0 || temperature > 2 || temperature != temperature:
		return fmt.Errorf("temperature %v is outside 0..2", temperature)
	case maxTokens < 0:
		return fmt.Errorf("max tokens %d is negative", maxTokens)
	}
	return nil
}

// checkStreamRequest rejects calls that no provider could answer.
func checkStreamRequest(req Request) error {
	if req.User == "" && req.Image == nil {
		return errors.New("empty request: no user text and no image")
	}
	return checkImage(req.Image)
}
