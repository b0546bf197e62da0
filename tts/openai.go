package tts

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/nexy-server/nexy/audio"
	"github.com/nexy-server/nexy/internal/httpclient"
)

// OpenAI-compatible speech formats this provider can decode.
const (
	OpenAIFormatWAV = "wav" // default: self-describing; OpenAI, Kokoro and LocalAI stream it
	OpenAIFormatPCM = "pcm" // raw s16le mono at PCMSampleRate (OpenAI: 24 kHz)
)

// OpenAIConfig configures an OpenAI-compatible /audio/speech provider.
type OpenAIConfig struct {
	BaseURL       string        // the /v1 root, e.g. "http://localhost:8880/v1"; "" = "https://api.openai.com/v1"
	APIKey        string        // sent as a Bearer token only when set
	Model         string        // "" = "tts-1"
	Voice         string        // default voice; "" = "alloy"
	Format        string        // "wav" (default) or "pcm"
	PCMSampleRate int           // rate of "pcm" responses; 0 = 24000
	Speed         float64       // 0 = server default; else 0.25…4.0
	Timeout       time.Duration // whole call incl. reading the stream; 0 = 30 s
	MaxAudioBytes int64         // audio bytes accepted per call; 0 = 32 MiB
	HTTPClient    *http.Client  // nil = a client without its own timeout (ctx bounds calls)
}

// OpenAI speaks through an OpenAI-compatible POST {base_url}/audio/speech
// (OpenAI, Kokoro-FastAPI, LocalAI, …).
type OpenAI struct {
	cfg      OpenAIConfig
	endpoint string
}

// NewOpenAI validates cfg, fills defaults and returns the provider.
func NewOpenAI(cfg OpenAIConfig) (*OpenAI, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = "https://api.openai.com/v1"
	}
	endpoint, err := joinURL(cfg.BaseURL, "/audio/speech")
	if err != nil {
		return nil, errorf("openai", "BaseURL: %w", err)
	}
	if strings.ContainsAny(cfg.APIKey, "\r\n") {
		return nil, errorf("openai", "APIKey contains a line break")
	}
	if cfg.Model == "" {
		cfg.Model = "tts-1"
	}
	if cfg.Voice == "" {
		cfg.Voice = "alloy"
	}
	if len(cfg.Model) > 200 || len(cfg.Voice) > 200 {
		return nil, errorf("openai", "Model and Voice must be at most 200 bytes")
	}
	switch cfg.Format {
	case "":
		cfg.Format = OpenAIFormatWAV
	case OpenAIFormatWAV, OpenAIFormatPCM:
	default:
		return nil, errorf("openai", "Format %q: want \"wav\" or \"pcm\"", cfg.Format)
	}
	if cfg.PCMSampleRate == 0 {
		cfg.PCMSampleRate = 24000
	}
	if cfg.PCMSampleRate < 8000 || cfg.PCMSampleRate > 192000 {
		return nil, errorf("openai", "PCMSampleRate %d: want 8000…192000", cfg.PCMSampleRate)
	}
	if cfg.Speed != 0 && (math.IsNaN(cfg.Speed) || cfg.Speed < 0.25 || cfg.Speed > 4) {
		return nil, errorf("openai", "Speed %v: want 0 (default) or 0.25…4.0", cfg.Speed)
	}
	if err := commonLimits("openai", &cfg.Timeout, &cfg.MaxAudioBytes); err != nil {
		return nil, err
	}
	cfg.HTTPClient = httpclient.NoRedirects(cfg.HTTPClient)
	return &OpenAI{cfg: cfg, endpoint: endpoint}, nil
}

// Name implements Synthesizer.
func (o *OpenAI) Name() string { return "openai" }

// openAIRequest is the JSON body of POST /audio/speech.
type openAIRequest struct {
	Model          string  `json:"model"`
	Input          string  `json:"input"`
	Voice          string  `json:"voice"`
	ResponseFormat string  `json:"response_format"`
	Speed          float64 `json:"speed,omitempty"`
}

// Synthesize implements Synthesizer. Request.Language is not part of this
// API (the model infers it from the text and voice).
func (o *OpenAI) Synthesize(ctx context.Context, req Request) (io.ReadCloser, error) {
	if strings.TrimSpace(req.Text) == "" {
		return nil, badRequestf("openai", "empty text")
	}
	voice := req.Voice
	if voice == "" {
		voice = o.cfg.Voice
	}
	if len(voice) > 200 {
		return nil, badRequestf("openai", "voice longer than 200 bytes")
	}
	body, err := json.Marshal(openAIRequest{
		Model: o.cfg.Model, Input: strings.ToValidUTF8(req.Text, " "), Voice: voice,
		ResponseFormat: o.cfg.Format, Speed: o.cfg.Speed,
	})
	if err != nil {
		return nil, errorf("openai", "encode request: %w", err)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	if o.cfg.APIKey != "" {
		h.Set("Authorization", "Bearer "+o.cfg.APIKey)
	}
	enc, format := audio.WAV, audio.Format{}
	if o.cfg.Format == OpenAIFormatPCM {
		enc, format = audio.PCM16, audio.Format{SampleRate: o.cfg.PCMSampleRate, Channels: 1}
	}
	return httpSpeech(ctx, httpCall{
		name: "openai", client: o.cfg.HTTPClient, url: o.endpoint, header: h, body: body,
		timeout: o.cfg.Timeout, maxAudio: o.cfg.MaxAudioBytes, enc: enc, format: format,
		statusErr: openAIStatusErr, accept: openAIAudioType, encodingFor: openAIEncoding,
	})
}

// openAIEncoding trusts a Content-Type that names a container over the
// requested format: some compatible servers ignore response_format and send
// WAV or MP3, whose header bytes would otherwise be played as noise.
func openAIEncoding(ct string, enc audio.Encoding, f audio.Format) (audio.Encoding, audio.Format) {
	mt, _, _ := mime.ParseMediaType(ct)
	switch mt {
	case "audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave":
		return audio.WAV, audio.Format{}
	case "audio/mpeg", "audio/mp3":
		return audio.MP3, audio.Format{}
	}
	return enc, f
}

// openAIAudioType refuses JSON/HTML/text answers that some servers send
// with status 200 instead of audio; a missing Content-Type is tolerated.
func openAIAudioType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil {
		return ct == ""
	}
	return !strings.HasPrefix(mt, "text/") && mt != "application/json" && !strings.HasSuffix(mt, "+json")
}

// openAIStatusErr maps an error answer to a clear error, quoting the
// server's own message when its JSON has one. The kind comes from the status
// (httpError): 401/403 Auth, 429 RateLimited, 404 and other 4xx BadRequest,
// 5xx Unavailable; an error document sent with 200 is Unavailable.
func openAIStatusErr(status int, body []byte, header http.Header) error {
	detail := jsonErrorMessage(body)
	if detail == "" && !json.Valid(body) {
		detail = string(body)
	}
	var what string
	switch status {
	case http.StatusOK:
		what = "server answered with an error document instead of audio"
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		what = "request rejected (model, voice, format or input)"
	case http.StatusUnauthorized:
		what = "unauthorized: the key was rejected: check tts.api_key"
	case http.StatusForbidden:
		what = "forbidden: the key was rejected or may not use this model: check tts.api_key and tts.model"
	case http.StatusNotFound:
		what = "not found: check base_url (the /v1 root) and the model name"
	case http.StatusTooManyRequests:
		what = "rate limited or out of quota" + retryAfter(header)
	default:
		if status >= 500 {
			what = "server error"
		} else {
			what = "unexpected status"
		}
	}
	return statusError("openai", status, what, detail)
}
