package llmtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// DefaultOpenAIModel is the model an OpenAI fake reports when Usage.Model is empty.
const DefaultOpenAIModel = "gpt-4o-mini-2024-07-18"

// openaiFlavor implements POST /v1/chat/completions of the OpenAI API.
type openaiFlavor struct{}

func (openaiFlavor) contentType() string { return "text/event-stream; charset=utf-8" }

func (o openaiFlavor) route(r *http.Request, body []byte) (Request, int, []byte) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		return Request{}, http.StatusNotFound, o.errorBody(http.StatusNotFound,
			fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path))
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return Request{}, http.StatusBadRequest, o.errorBody(http.StatusBadRequest,
			"We could not parse the JSON body of your request. "+err.Error())
	}
	if str(m, "model") == "" {
		return Request{}, http.StatusBadRequest, o.errorBody(http.StatusBadRequest,
			"you must provide a model parameter")
	}
	msgs, _ := m["messages"].([]any)
	if len(msgs) == 0 {
		return Request{}, http.StatusBadRequest, o.errorBody(http.StatusBadRequest,
			"[] is too short - 'messages'")
	}
	req := Request{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(),
		Body: body, JSON: m, Model: str(m, "model"),
	}
	req.Stream, _ = m["stream"].(bool)
	if so := obj(m, "stream_options"); so != nil {
		req.IncludeUsage, _ = so["include_usage"].(bool)
	}
	if t, ok := m["temperature"].(float64); ok {
		req.Temperature = &t
	}
	req.MaxTokens = num(m, "max_tokens") + num(m, "max_completion_tokens")
	var system []string
	for _, raw := range msgs {
		msg, _ := raw.(map[string]any)
		switch str(msg, "role") {
		case "system", "developer":
			text, _ := messageContent(msg)
			system = append(system, text)
		case "user":
			req.User, req.Image = messageContent(msg)
		}
	}
	req.System = joinNonEmpty(system)
	return req, 0, nil
}

// messageContent returns a message's text and first image, whether content
// is a plain string or an array of typed parts.
func messageContent(msg map[string]any) (string, *Image) {
	if s, ok := msg["content"].(string); ok {
		return s, nil
	}
	parts, _ := msg["content"].([]any)
	var texts []string
	var img *Image
	for _, p := range parts {
		pm, _ := p.(map[string]any)
		switch str(pm, "type") {
		case "text":
			texts = append(texts, str(pm, "text"))
		case "image_url":
			if iu := obj(pm, "image_url"); iu != nil && img == nil {
				img = parseDataURL(str(iu, "url"))
			}
		}
	}
	return joinNonEmpty(texts), img
}

// parseDataURL splits "data:<mime>;base64,<data>"; other URLs keep MIME empty.
func parseDataURL(u string) *Image {
	rest, ok := strings.CutPrefix(u, "data:")
	if !ok {
		return &Image{Base64: u}
	}
	meta, data, _ := strings.Cut(rest, ",")
	mime, _ := strings.CutSuffix(meta, ";base64")
	return &Image{MIME: mime, Base64: data}
}

// OpenAI wire types of a chat.completion.chunk, in the API's field order.
type (
	oChunk struct {
		ID                string    `json:"id"`
		Object            string    `json:"object"`
		Created           int64     `json:"created"`
		Model             string    `json:"model"`
		SystemFingerprint string    `json:"system_fingerprint"`
		Choices           []oChoice `json:"choices"`
		Usage             *oUsage   `json:"usage"`
	}
	oChoice struct {
		Index        int     `json:"index"`
		Delta        *oDelta `json:"delta,omitempty"`
		Message      *oDelta `json:"message,omitempty"`
		Logprobs     any     `json:"logprobs"`
		FinishReason *string `json:"finish_reason"`
	}
	oDelta struct {
		Role    string  `json:"role,omitempty"`
		Content *string `json:"content,omitempty"`
	}
	oUsage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	}
)

const (
	openaiID          = "chatcmpl-BQ7zYvLxq2H3kP9mN4rT6sWcE1aFd"
	openaiCreated     = 1745236800
	openaiFingerprint = "fp_b8bc95a0ac"
)

// OpenAISSE builds a chat completions stream for deltas as OpenAI sends it
// with stream_options.include_usage: a role chunk with empty content, one
// chunk per delta, a finish_reason "stop" chunk, a usage chunk with empty
// choices, then "data: [DONE]"; LF line ends.
func OpenAISSE(deltas []string, u Usage) []byte {
	if u.Model == "" {
		u.Model = DefaultOpenAIModel
	}
	base := oChunk{ID: openaiID, Object: "chat.completion.chunk", Created: openaiCreated,
		Model: u.Model, SystemFingerprint: openaiFingerprint}
	var out []byte
	add := func(c oChunk) {
		out = append(out, "data: "...)
		out = append(out, marshal(c)...)
		out = append(out, "\n\n"...)
	}
	empty := ""
	c := base
	c.Choices = []oChoice{{Delta: &oDelta{Role: "assistant", Content: &empty}}}
	add(c)
	for _, d := range deltas {
		c := base
		c.Choices = []oChoice{{Delta: &oDelta{Content: &d}}}
		add(c)
	}
	stop := "stop"
	c = base
	c.Choices = []oChoice{{Delta: &oDelta{}, FinishReason: &stop}}
	add(c)
	c = base
	c.Choices = []oChoice{}
	c.Usage = &oUsage{PromptTokens: u.InputTokens, CompletionTokens: u.OutputTokens,
		TotalTokens: u.InputTokens + u.OutputTokens}
	add(c)
	return append(out, "data: [DONE]\n\n"...)
}

func (openaiFlavor) sse(deltas []string, u Usage) []byte { return OpenAISSE(deltas, u) }

// whole builds a non-streaming chat.completion answer.
func (openaiFlavor) whole(deltas []string, u Usage) []byte {
	if u.Model == "" {
		u.Model = DefaultOpenAIModel
	}
	text, stop := strings.Join(deltas, ""), "stop"
	return marshal(oChunk{
		ID: openaiID, Object: "chat.completion", Created: openaiCreated, Model: u.Model,
		SystemFingerprint: openaiFingerprint,
		Choices:           []oChoice{{Message: &oDelta{Role: "assistant", Content: &text}, FinishReason: &stop}},
		Usage: &oUsage{PromptTokens: u.InputTokens, CompletionTokens: u.OutputTokens,
			TotalTokens: u.InputTokens + u.OutputTokens},
	})
}

func (o openaiFlavor) errorBody(status int, msg string) []byte { return OpenAIError(status, msg) }

// OpenAIError builds an OpenAI error body: {"error":{message,type,param,code}}.
func OpenAIError(status int, msg string) []byte {
	typ, code := "invalid_request_error", any(nil)
	switch {
	case status == 401:
		code = "invalid_api_key"
	case status == 429:
		typ, code = "requests", "rate_limit_exceeded"
	case status >= 500:
		typ = "server_error"
	}
	return marshal(map[string]any{"error": map[string]any{
		"message": msg, "type": typ, "param": nil, "code": code,
	}})
}
