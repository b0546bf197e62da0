package tts

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexy-server/nexy/internal/fault"
)

// openAIFake is a local OpenAI-compatible /v1/audio/speech endpoint that
// streams the fixture in small pieces; the WAV fixture carries the
// placeholder sizes (0xFFFFFFFF) streaming servers write.
type openAIFake struct {
	wav    []byte
	status int
	body   string // error body for status != 200
	ctype  string // Content-Type override for 200
	mu     sync.Mutex
	req    openAIRequest
	raw    map[string]any
	auth   string
}

func (f *openAIFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/audio/speech" {
		http.Error(w, `{"detail":"Not Found"}`, http.StatusNotFound)
		return
	}
	if r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, `{"error":{"message":"want JSON"}}`, http.StatusBadRequest)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var req openAIRequest
	var raw map[string]any
	if json.Unmarshal(body, &req) != nil || json.Unmarshal(body, &raw) != nil {
		http.Error(w, `{"error":{"message":"bad JSON"}}`, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.req, f.raw, f.auth = req, raw, r.Header.Get("Authorization")
	f.mu.Unlock()
	if f.status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.status)
		io.WriteString(w, f.body)
		return
	}
	data := f.wav
	ctype := "audio/wav"
	if req.ResponseFormat == "pcm" {
		data, ctype = f.wav[44:], "audio/pcm"
	}
	if f.ctype != "" {
		ctype = f.ctype
	}
	w.Header().Set("Content-Type", ctype)
	for i := 0; i < len(data); i += 777 {
		w.Write(data[i:min(i+777, len(data))])
		w.(http.Flusher).Flush()
	}
}

func (f *openAIFake) seen() (openAIRequest, map[string]any, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.req, f.raw, f.auth
}

func newOpenAIFake(t *testing.T) (*openAIFake, string) {
	f := &openAIFake{wav: provFixture(t, "openai_hello_24k.wav")}
	if binary.LittleEndian.Uint32(f.wav[40:]) != 0xFFFFFFFF || string(f.wav[36:40]) != "data" {
		t.Fatal("fixture openai_hello_24k.wav should have a 44-byte header with placeholder sizes")
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL + "/v1"
}

func TestOpenAIWAV(t *testing.T) {
	f, base := newOpenAIFake(t)
	o, err := NewOpenAI(OpenAIConfig{BaseURL: base, Model: "kokoro", Voice: "af_heart"})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := o.Synthesize(context.Background(), Request{Text: "Hello from Nexy."})
	if err != nil {
		t.Fatal(err)
	}
	pcm := provReadAll(t, rc)
	// 60614 data bytes at 24 kHz s16 = 1.263 s; resampled to 48 kHz.
	provCheckSpeech(t, pcm, 1263*time.Millisecond)
	req, raw, auth := f.seen()
	if req.Model != "kokoro" || req.Voice != "af_heart" || req.Input != "Hello from Nexy." || req.ResponseFormat != "wav" {
		t.Errorf("request %+v", req)
	}
	if _, ok := raw["speed"]; ok || auth != "" {
		t.Errorf("speed sent without being set (%v) or auth without key (%q)", raw, auth)
	}
}

func TestOpenAIPCM(t *testing.T) {
	f, base := newOpenAIFake(t)
	o, err := NewOpenAI(OpenAIConfig{BaseURL: base + "/", APIKey: "sk-test", Format: "pcm", Speed: 1.25})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := o.Synthesize(context.Background(), Request{Text: "Hello", Voice: "nova"})
	if err != nil {
		t.Fatal(err)
	}
	pcm := provReadAll(t, rc)
	provCheckSpeech(t, pcm, 1263*time.Millisecond)
	req, raw, auth := f.seen()
	if req.Model != "tts-1" || req.Voice != "nova" || req.ResponseFormat != "pcm" || raw["speed"] != 1.25 || auth != "Bearer sk-test" {
		t.Errorf("request %+v raw %v auth %q", req, raw, auth)
	}
}

func TestOpenAIErrors(t *testing.T) {
	cases := []struct {
		status int
		ctype  string
		body   string
		want   string
	}{
		{401, "", `{"error":{"message":"Incorrect API key provided: sk-te***","type":"invalid_request_error","code":"invalid_api_key"}}`, "HTTP 401: unauthorized: the key was rejected: check tts.api_key: Incorrect API key provided"},
		{429, "", `{"error":{"message":"You exceeded your current quota","type":"insufficient_quota"}}`, "HTTP 429: rate limited or out of quota: You exceeded your current quota"},
		{400, "", `{"detail":{"error":"validation_error","message":"Voice 'x' not found","type":"invalid_request_error"}}`, "HTTP 400: request rejected (model, voice, format or input): Voice 'x' not found"},
		{422, "", `{"detail":[{"loc":["body","input"],"msg":"Field required","type":"missing"}]}`, "HTTP 422: request rejected (model, voice, format or input): Field required"},
		{500, "", `internal <b>oops</b>`, "HTTP 500: server error: internal <b>oops</b>"},
		{0, "application/json", `{"error":"model not loaded"}`, "HTTP 200: server answered with an error document instead of audio: model not loaded"},
	}
	for _, c := range cases {
		f, base := newOpenAIFake(t)
		f.status, f.body, f.ctype = c.status, c.body, c.ctype
		if c.status == 0 {
			f.wav = []byte(c.body)
		}
		o, err := NewOpenAI(OpenAIConfig{BaseURL: base, APIKey: "sk-secret"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = o.Synthesize(context.Background(), Request{Text: "Hello"})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("status %d: err %v\nwant %q", c.status, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "sk-secret") {
			t.Errorf("error leaks the key: %v", err)
		}
	}
	// A wrong base_url (missing /v1) is a 404 that says what to check.
	_, base := newOpenAIFake(t)
	o, _ := NewOpenAI(OpenAIConfig{BaseURL: strings.TrimSuffix(base, "/v1")})
	if _, err := o.Synthesize(context.Background(), Request{Text: "Hello"}); err == nil || !strings.Contains(err.Error(), "check base_url") {
		t.Errorf("404: %v", err)
	}
}

func TestOpenAITimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "audio/wav")
		w.Write(provFixture(t, "openai_hello_24k.wav")[:2000])
		w.(http.Flusher).Flush()
		select { // stall mid-stream
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	o, err := NewOpenAI(OpenAIConfig{BaseURL: srv.URL + "/v1", Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := o.Synthesize(context.Background(), Request{Text: "Hello"})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	if err == nil || !strings.Contains(err.Error(), "timed out after 300ms") {
		t.Fatalf("stalled stream: err %v, want a timeout error", err)
	}
	if k := KindOf(err); k != fault.Timeout {
		t.Errorf("stalled stream: kind %v, want timeout", k)
	}
}

func TestOpenAIEmptyBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "audio/pcm")
	}))
	defer srv.Close()
	o, _ := NewOpenAI(OpenAIConfig{BaseURL: srv.URL + "/v1", Format: "pcm"})
	rc, err := o.Synthesize(context.Background(), Request{Text: "Hello"})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err == nil || !strings.Contains(err.Error(), "no audio") {
		t.Fatalf("empty body: err %v, want 'no audio'", err)
	}
}

func TestOpenAIConfigValidation(t *testing.T) {
	bad := map[string]OpenAIConfig{
		"BaseURL":       {BaseURL: "localhost:8880/v1"},
		"Format":        {Format: "mp3"},
		"PCMSampleRate": {Format: "pcm", PCMSampleRate: 100},
		"Speed":         {Speed: 9},
		"MaxAudioBytes": {MaxAudioBytes: -5},
	}
	for field, cfg := range bad {
		if _, err := NewOpenAI(cfg); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err %v, want one naming the field", field, err)
		}
	}
	o, err := NewOpenAI(OpenAIConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if o.endpoint != "https://api.openai.com/v1/audio/speech" || o.cfg.Model != "tts-1" || o.cfg.Voice != "alloy" || o.cfg.Format != "wav" || o.Name() != "openai" {
		t.Errorf("defaults: %+v %s", o.cfg, o.endpoint)
	}
	if _, err := o.Synthesize(context.Background(), Request{Text: "  "}); err == nil {
		t.Error("empty text accepted")
	}
}

func FuzzJSONErrorMessage(f *testing.F) {
	f.Add([]byte(`{"error":{"message":"x"}}`))
	f.Add([]byte(`{"detail":[{"msg":"y"}]}`))
	f.Add([]byte(`{"error":"z"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if msg := jsonErrorMessage(body); len(msg) > 2*len(body)+8 {
			t.Fatalf("message longer than its source: %q", msg)
		}
	})
}

func BenchmarkOpenAIFakeWAV(b *testing.B) {
	f := &openAIFake{wav: provFixture(b, "openai_hello_24k.wav")}
	srv := httptest.NewServer(f)
	defer srv.Close()
	o, err := NewOpenAI(OpenAIConfig{BaseURL: srv.URL + "/v1"})
	if err != nil {
		b.Fatal(err)
	}
	provBench(b, o, Request{Text: "Hello from Nexy."})
}
