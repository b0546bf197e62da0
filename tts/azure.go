package tts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/nexy-server/nexy/audio"
	"github.com/nexy-server/nexy/internal/httpclient"
)

const (
	azureOutputFormat = "raw-48khz-16bit-mono-pcm"
	azurePath         = "/cognitiveservices/v1"
	userAgent         = "nexy-server"
	maxErrorBody      = 16 << 10 // bytes of an error response we read
)

var (
	azureRegionRe = regexp.MustCompile(`^[a-z0-9]{2,40}$`)
	azureVoiceRe  = regexp.MustCompile(`^[A-Za-z]{2,3}-[A-Za-z]{2,4}(-[A-Za-z0-9]+)+$`)
	azureRateRe   = regexp.MustCompile(`^([+-]?\d{1,3}(\.\d+)?%|\d(\.\d+)?|x-slow|slow|medium|fast|x-fast|default)$`)
)

// AzureConfig configures the Azure Speech REST provider.
type AzureConfig struct {
	Region        string        // e.g. "westeurope"; used when BaseURL is ""
	BaseURL       string        // host root, e.g. "https://westeurope.tts.speech.microsoft.com"; overrides Region
	APIKey        string        // Ocp-Apim-Subscription-Key (required)
	Voice         string        // default voice; "" = "en-US-AriaNeural"
	Rate          string        // optional prosody rate: "+10%", "-5%", "1.2", "fast"
	Timeout       time.Duration // whole call incl. reading the stream; 0 = 30 s
	MaxAudioBytes int64         // PCM bytes accepted per call; 0 = 32 MiB
	HTTPClient    *http.Client  // nil = a client without its own timeout (ctx bounds calls)
}

// Azure speaks through the Azure Speech text-to-speech REST API, asking for
// 48 kHz mono PCM so nothing needs resampling.
type Azure struct {
	cfg      AzureConfig
	endpoint string
}

// NewAzure validates cfg, fills defaults and returns the provider.
func NewAzure(cfg AzureConfig) (*Azure, error) {
	if cfg.APIKey == "" {
		return nil, errorf("azure", "APIKey is required")
	}
	if strings.ContainsAny(cfg.APIKey, "\r\n") {
		return nil, errorf("azure", "APIKey contains a line break")
	}
	base := cfg.BaseURL
	if base == "" {
		if !azureRegionRe.MatchString(cfg.Region) {
			return nil, errorf("azure", "Region %q: want a region like \"westeurope\" (or set BaseURL)", cfg.Region)
		}
		base = "https://" + cfg.Region + ".tts.speech.microsoft.com"
	}
	endpoint, err := joinURL(base, azurePath)
	if err != nil {
		return nil, errorf("azure", "BaseURL: %w", err)
	}
	if cfg.Voice == "" {
		cfg.Voice = "en-US-AriaNeural"
	}
	if !azureVoiceRe.MatchString(cfg.Voice) {
		return nil, errorf("azure", "Voice %q: want a voice like \"en-US-AriaNeural\"", truncate(cfg.Voice, 80))
	}
	if cfg.Rate != "" && !azureRateRe.MatchString(cfg.Rate) {
		return nil, errorf("azure", "Rate %q: want \"+10%%\", \"-5%%\", \"1.2\" or x-slow…x-fast", cfg.Rate)
	}
	if err := commonLimits("azure", &cfg.Timeout, &cfg.MaxAudioBytes); err != nil {
		return nil, err
	}
	cfg.HTTPClient = httpclient.NoRedirects(cfg.HTTPClient)
	return &Azure{cfg: cfg, endpoint: endpoint}, nil
}

// Name implements Synthesizer.
func (a *Azure) Name() string { return "azure" }

// Synthesize implements Synthesizer. HTTP status errors are returned here;
// the body is streamed to the reader as it arrives.
func (a *Azure) Synthesize(ctx context.Context, req Request) (io.ReadCloser, error) {
	if strings.TrimSpace(req.Text) == "" {
		return nil, badRequestf("azure", "empty text")
	}
	voice := req.Voice
	if voice == "" {
		voice = a.cfg.Voice
	}
	if !azureVoiceRe.MatchString(voice) {
		return nil, badRequestf("azure", "voice %q: want a voice like \"en-US-AriaNeural\"", truncate(voice, 80))
	}
	lang, err := ssmlLang(req.Language, voice)
	if err != nil {
		return nil, badRequestf("azure", "%w", err)
	}
	h := http.Header{}
	h.Set("Ocp-Apim-Subscription-Key", a.cfg.APIKey)
	h.Set("Content-Type", "application/ssml+xml")
	h.Set("X-Microsoft-OutputFormat", azureOutputFormat)
	return httpSpeech(ctx, httpCall{
		name: "azure", client: a.cfg.HTTPClient, url: a.endpoint, header: h,
		body:    []byte(azureSSML(edgeCleanText(req.Text), voice, lang, a.cfg.Rate)),
		timeout: a.cfg.Timeout, maxAudio: a.cfg.MaxAudioBytes,
		enc: audio.PCM16, format: audio.Format{SampleRate: audio.SampleRate, Channels: 1},
		statusErr: azureStatusErr,
	})
}

func azureSSML(text, voice, lang, rate string) string {
	inner := xmlEscape(text)
	if rate != "" {
		inner = "<prosody rate='" + rate + "'>" + inner + "</prosody>"
	}
	return "<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang='" + lang + "'>" +
		"<voice xml:lang='" + lang + "' name='" + voice + "'>" + inner + "</voice></speak>"
}

// azureStatusErr explains a non-200 answer; the service's body is plain text
// (often empty) and never contains our key. The kind comes from the status
// (httpError): 401/403 Auth, 429 RateLimited, other 4xx BadRequest, 5xx
// Unavailable.
func azureStatusErr(status int, body []byte, header http.Header) error {
	detail := strings.TrimSpace(string(body))
	var what string
	switch status {
	case http.StatusBadRequest:
		what = "request rejected (invalid SSML, unknown voice or text too long)"
	case http.StatusUnauthorized:
		what = "unauthorized: the key was rejected: check tts.api_key (a key works only in its own tts.region)"
	case http.StatusForbidden:
		what = "forbidden: the key was rejected (no access to this resource, or its quota is exhausted): check tts.api_key"
	case http.StatusUnsupportedMediaType:
		what = "unsupported media type"
	case http.StatusTooManyRequests:
		what = "rate limited" + retryAfter(header)
	default:
		if status >= 500 {
			what = "service error"
		} else {
			what = "unexpected status"
		}
	}
	return statusError("azure", status, what, detail)
}

// ---- HTTP plumbing shared by the Azure and OpenAI-compatible providers ----

// httpCall is one streaming speech request.
type httpCall struct {
	name      string
	client    *http.Client
	url       string
	header    http.Header
	body      []byte
	timeout   time.Duration
	maxAudio  int64
	enc       audio.Encoding
	format    audio.Format
	statusErr func(status int, body []byte, header http.Header) error
	// accept rejects a 200 whose Content-Type is not audio (some servers
	// report errors as JSON with status 200); nil accepts anything.
	accept func(contentType string) bool
	// encodingFor, when set, picks the decoder from the response's
	// Content-Type, so a server that ignores the requested format cannot make
	// container bytes reach the client as PCM.
	encodingFor func(contentType string, enc audio.Encoding, f audio.Format) (audio.Encoding, audio.Format)
}

// httpSpeech POSTs the request and returns the decoded body as PCM.
func httpSpeech(ctx context.Context, c httpCall) (io.ReadCloser, error) {
	callCtx, cancel := context.WithTimeout(ctx, c.timeout)
	hreq, err := http.NewRequestWithContext(callCtx, http.MethodPost, c.url, bytes.NewReader(c.body))
	if err != nil {
		cancel()
		return nil, errorf(c.name, "build request: %w", err)
	}
	hreq.Header = c.header
	hreq.Header.Set("User-Agent", userAgent)
	resp, err := c.client.Do(hreq)
	if err != nil {
		cancel()
		return nil, timeoutErr(c.name, callCtx, c.timeout, scrubURLError(err))
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
		cancel()
		return nil, c.statusErr(resp.StatusCode, body, resp.Header)
	}
	if c.accept != nil && !c.accept(resp.Header.Get("Content-Type")) {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
		cancel()
		return nil, c.statusErr(resp.StatusCode, body, resp.Header)
	}
	enc, format := c.enc, c.format
	if c.encodingFor != nil {
		enc, format = c.encodingFor(resp.Header.Get("Content-Type"), enc, format)
	}
	src := &capReader{r: resp.Body, name: c.name, max: c.maxAudio}
	pcm, err := audio.Decode(src, enc, format)
	if err != nil {
		resp.Body.Close()
		cancel()
		return nil, errorf(c.name, "decoder: %w", err)
	}
	// A complete body is complete audio: net/http reports a truncated one
	// (short Content-Length, missing last chunk) as an error, not EOF.
	release := func() { resp.Body.Close() }
	return newPCMStream(c.name, &ctxErrReader{r: pcm, ctx: callCtx, name: c.name, timeout: c.timeout}, cancel, release, nil, nil), nil
}

// ctxErrReader turns the transport's view of a cancelled or expired request
// ("context canceled" buried in a read error) into the context's own error,
// so callers can test it with errors.Is.
type ctxErrReader struct {
	r       io.Reader
	ctx     context.Context
	name    string
	timeout time.Duration
}

func (c *ctxErrReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF && c.ctx.Err() != nil {
		return n, timeoutErr(c.name, c.ctx, c.timeout, c.ctx.Err())
	}
	return n, err
}

// statusError formats an HTTP failure with a bounded, single-line detail;
// its Kind and Status come from the status (httpError).
func statusError(name string, status int, what, detail string) error {
	detail = strings.Join(strings.Fields(detail), " ")
	if detail != "" {
		return httpError(name, status, "HTTP %d: %s: %s", status, what, truncate(detail, 300))
	}
	return httpError(name, status, "HTTP %d: %s", status, what)
}

func retryAfter(h http.Header) string {
	if v := h.Get("Retry-After"); v != "" {
		return " (Retry-After " + truncate(v, 40) + ")"
	}
	return ""
}

// scrubURLError drops the URL from a transport error: it is noise in logs and
// some deployments put credentials in it.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// joinURL appends path to an http(s) base URL, keeping any base path.
func joinURL(base, path string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q: want an http:// or https:// URL", truncate(base, 120))
	}
	if u.User != nil {
		return "", fmt.Errorf("%q: credentials in the URL are not allowed; use the API key setting", u.Redacted())
	}
	u.Path = strings.TrimRight(u.Path, "/") + path
	u.RawQuery, u.Fragment = "", ""
	return u.String(), nil
}

// commonLimits validates and defaults the per-call limits every provider has.
func commonLimits(name string, timeout *time.Duration, maxAudio *int64) error {
	if *timeout < 0 {
		return errorf(name, "Timeout %v: must not be negative", *timeout)
	}
	if *timeout == 0 {
		*timeout = defaultTimeout
	}
	if *maxAudio < 0 {
		return errorf(name, "MaxAudioBytes %d: must not be negative", *maxAudio)
	}
	if *maxAudio == 0 {
		*maxAudio = defaultMaxAudioBytes
	}
	return nil
}

// jsonErrorMessage extracts a message from the error bodies OpenAI-style
// servers send: {"error":{"message":…}}, {"error":"…"}, {"detail":"…"} or
// {"detail":{"message":…}} (FastAPI, Kokoro), {"message":…}.
func jsonErrorMessage(body []byte) string {
	var v struct {
		Error   json.RawMessage `json:"error"`
		Detail  json.RawMessage `json:"detail"`
		Message string          `json:"message"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	for _, raw := range []json.RawMessage{v.Error, v.Detail} {
		if len(raw) == 0 {
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) == nil && s != "" {
			return s
		}
		var o struct {
			Message string `json:"message"`
			Msg     string `json:"msg"`
		}
		if json.Unmarshal(raw, &o) == nil && (o.Message != "" || o.Msg != "") {
			return o.Message + o.Msg
		}
		var list []struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal(raw, &list) == nil && len(list) > 0 && list[0].Msg != "" {
			return list[0].Msg
		}
	}
	return v.Message
}
