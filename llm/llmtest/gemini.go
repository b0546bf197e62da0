package llmtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// DefaultGeminiModel is the modelVersion a Gemini fake reports when Usage.Model is empty.
const DefaultGeminiModel = "gemini-2.5-flash-lite"

// geminiFlavor implements the Gemini Developer API surface the server uses:
// POST /v1beta/models/{model}:streamGenerateContent?alt=sse and :generateContent.
type geminiFlavor struct{ t testing.TB }

// geminiTopLevel lists the request fields the real API knows (camelCase and
// the snake_case its JSON mapping also accepts); anything else is refused
// with 400, as Google does.
var geminiTopLevel = map[string]bool{
	"contents": true, "systemInstruction": true, "system_instruction": true,
	"generationConfig": true, "generation_config": true, "tools": true,
	"toolConfig": true, "tool_config": true, "safetySettings": true, "safety_settings": true,
	"cachedContent": true, "cached_content": true, "labels": true,
}

func (g geminiFlavor) contentType() string { return "text/event-stream" }

func (g geminiFlavor) route(r *http.Request, body []byte) (Request, int, []byte) {
	const prefix = "/v1beta/models/"
	model, method, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, prefix), ":")
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, prefix) || !ok || model == "" ||
		(method != "streamGenerateContent" && method != "generateContent") {
		return Request{}, http.StatusNotFound, g.errorBody(http.StatusNotFound,
			fmt.Sprintf("%s %s is not found for API version v1beta.", r.Method, r.URL.Path))
	}
	if r.URL.Query().Has("key") {
		g.t.Errorf("llmtest gemini: API key sent in the URL query; it belongs in the x-goog-api-key header")
	}
	stream := method == "streamGenerateContent"
	if stream && r.URL.Query().Get("alt") != "sse" {
		return Request{}, http.StatusBadRequest, g.errorBody(http.StatusBadRequest,
			"llmtest fake: streamGenerateContent is served with alt=sse only")
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return Request{}, http.StatusBadRequest, g.errorBody(http.StatusBadRequest,
			"Invalid JSON payload received. "+err.Error())
	}
	for k := range m {
		if !geminiTopLevel[k] {
			return Request{}, http.StatusBadRequest, g.errorBody(http.StatusBadRequest,
				fmt.Sprintf("Invalid JSON payload received. Unknown name %q: Cannot find field.", k))
		}
	}
	contents, _ := m["contents"].([]any)
	if len(contents) == 0 {
		return Request{}, http.StatusBadRequest, g.errorBody(http.StatusBadRequest,
			"* GenerateContentRequest.contents: contents is not specified")
	}
	req := Request{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(),
		Body: body, JSON: m, Model: model, Stream: stream,
	}
	if si := obj(m, "systemInstruction", "system_instruction"); si != nil {
		req.System = joinNonEmpty(partTexts(si))
	}
	for _, c := range contents {
		cm, _ := c.(map[string]any)
		if cm == nil || (str(cm, "role") != "" && str(cm, "role") != "user") {
			continue
		}
		req.User = joinNonEmpty(partTexts(cm))
		req.Image = inlineImage(cm)
	}
	if gc := obj(m, "generationConfig", "generation_config"); gc != nil {
		if t, ok := gc["temperature"].(float64); ok {
			req.Temperature = &t
		}
		req.MaxTokens = num(gc, "maxOutputTokens") + num(gc, "max_output_tokens")
	}
	tools, _ := m["tools"].([]any)
	for _, t := range tools {
		if tm, _ := t.(map[string]any); tm != nil && (tm["googleSearch"] != nil || tm["google_search"] != nil) {
			req.GoogleSearch = true
		}
	}
	return req, 0, nil
}

// obj returns the first of keys in m that holds an object.
func obj(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		if o, ok := m[k].(map[string]any); ok {
			return o
		}
	}
	return nil
}

// partTexts returns the text of each part of a Content object.
func partTexts(content map[string]any) []string {
	parts, _ := content["parts"].([]any)
	var out []string
	for _, p := range parts {
		if pm, _ := p.(map[string]any); pm != nil {
			out = append(out, str(pm, "text"))
		}
	}
	return out
}

// inlineImage returns the first inlineData part of a Content object.
func inlineImage(content map[string]any) *Image {
	parts, _ := content["parts"].([]any)
	for _, p := range parts {
		pm, _ := p.(map[string]any)
		if d := obj(pm, "inlineData", "inline_data"); d != nil {
			mime := str(d, "mimeType")
			if mime == "" {
				mime = str(d, "mime_type")
			}
			return &Image{MIME: mime, Base64: str(d, "data")}
		}
	}
	return nil
}

// Gemini wire types of a GenerateContentResponse, in the API's field order.
type (
	gChunk struct {
		Candidates    []gCandidate `json:"candidates,omitempty"`
		UsageMetadata *gUsage      `json:"usageMetadata,omitempty"`
		ModelVersion  string       `json:"modelVersion"`
		ResponseID    string       `json:"responseId"`
	}
	gCandidate struct {
		Content      gContent `json:"content"`
		FinishReason string   `json:"finishReason,omitempty"`
		Index        int      `json:"index"`
	}
	gContent struct {
		Parts []gPart `json:"parts"`
		Role  string  `json:"role"`
	}
	gPart struct {
		Text string `json:"text"`
	}
	gUsage struct {
		PromptTokenCount     int `json:"promptTokenCount"`
		CandidatesTokenCount int `json:"candidatesTokenCount,omitempty"`
		TotalTokenCount      int `json:"totalTokenCount"`
	}
)

const geminiResponseID = "kXpZaOXYBtiP1dkPz5qK8Qk"

// GeminiSSE builds a streamGenerateContent?alt=sse body for deltas as Gemini
// sends it: one `data: <GenerateContentResponse>` per chunk, CRLF line ends,
// prompt usage on every chunk, candidate usage and finishReason "STOP" on the
// last. With no deltas it sends one empty-text final chunk.
func GeminiSSE(deltas []string, u Usage) []byte {
	if u.Model == "" {
		u.Model = DefaultGeminiModel
	}
	if len(deltas) == 0 {
		deltas = []string{""}
	}
	var out []byte
	for i, d := range deltas {
		c := gChunk{
			Candidates:    []gCandidate{{Content: gContent{Parts: []gPart{{Text: d}}, Role: "model"}}},
			UsageMetadata: &gUsage{PromptTokenCount: u.InputTokens, TotalTokenCount: u.InputTokens},
			ModelVersion:  u.Model,
			ResponseID:    geminiResponseID,
		}
		if i == len(deltas)-1 {
			c.Candidates[0].FinishReason = "STOP"
			c.UsageMetadata.CandidatesTokenCount = u.OutputTokens
			c.UsageMetadata.TotalTokenCount = u.InputTokens + u.OutputTokens
		}
		out = append(out, "data: "...)
		out = append(out, marshal(c)...)
		out = append(out, "\r\n\r\n"...)
	}
	return out
}

// whole builds a non-streaming generateContent answer.
func (g geminiFlavor) whole(deltas []string, u Usage) []byte {
	if u.Model == "" {
		u.Model = DefaultGeminiModel
	}
	return marshal(gChunk{
		Candidates: []gCandidate{{Content: gContent{Parts: []gPart{{Text: strings.Join(deltas, "")}}, Role: "model"},
			FinishReason: "STOP"}},
		UsageMetadata: &gUsage{PromptTokenCount: u.InputTokens, CandidatesTokenCount: u.OutputTokens,
			TotalTokenCount: u.InputTokens + u.OutputTokens},
		ModelVersion: u.Model,
		ResponseID:   geminiResponseID,
	})
}

func (g geminiFlavor) sse(deltas []string, u Usage) []byte { return GeminiSSE(deltas, u) }

func (g geminiFlavor) errorBody(status int, msg string) []byte { return GeminiError(status, msg) }

// GeminiError builds a Google API error body: {"error":{code,message,status}}.
func GeminiError(status int, msg string) []byte {
	return marshal(map[string]any{"error": map[string]any{
		"code": status, "message": msg, "status": googleStatus(status),
	}})
}

// googleStatus is the google.rpc.Code name Google pairs with an HTTP status.
func googleStatus(status int) string {
	switch status {
	case 400:
		return "INVALID_ARGUMENT"
	case 401:
		return "UNAUTHENTICATED"
	case 403:
		return "PERMISSION_DENIED"
	case 404:
		return "NOT_FOUND"
	case 429:
		return "RESOURCE_EXHAUSTED"
	case 503:
		return "UNAVAILABLE"
	case 504:
		return "DEADLINE_EXCEEDED"
	}
	if status >= 500 {
		return "INTERNAL"
	}
	return "FAILED_PRECONDITION"
}
