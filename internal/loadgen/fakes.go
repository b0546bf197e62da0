package loadgen

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nexy-server/nexy/audio"
)

// What the fake model's chunks say about themselves, in the shape of the
// recorded fixtures (testdata/llm/openai_text.sse).
const (
	fakeModel       = "gpt-4o-mini-2024-07-18"
	fakeID          = "chatcmpl-BNch7kR2sT3uV4wX5yZ6aB7cD8eF9"
	fakeCreated     = 1745236812
	fakeFingerprint = "fp_b8bc95a0ac"
)

// sseChunk is one chat.completion.chunk event with the given delta object
// and finish_reason (JSON), LF line ends.
func sseChunk(delta, finish string) []byte {
	return []byte(`data: {"id":"` + fakeID + `","object":"chat.completion.chunk","created":` + strconv.Itoa(fakeCreated) +
		`,"model":"` + fakeModel + `","service_tier":"default","system_fingerprint":"` + fakeFingerprint +
		`","choices":[{"index":0,"delta":` + delta + `,"logprobs":null,"finish_reason":` + finish +
		`}],"usage":null,"obfuscation":"xxxx"}` + "\n\n")
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// OpenAIStream is the fake model's answer as OpenAI streams it with
// stream_options.include_usage: events[0] carries the role and the first
// delta, one event per further delta, then tail: the finish_reason chunk,
// the usage chunk and [DONE].
func OpenAIStream(a *Answer) (events [][]byte, tail []byte) {
	for i, d := range a.Deltas {
		var ev []byte
		if i == 0 {
			ev = sseChunk(`{"role":"assistant","content":"","refusal":null}`, "null")
		}
		events = append(events, append(ev, sseChunk(`{"content":`+jsonString(d)+`}`, "null")...))
	}
	tail = sseChunk(`{}`, `"stop"`)
	n := len(a.Deltas)
	tail = append(tail, `data: {"id":"`+fakeID+`","object":"chat.completion.chunk","created":`+strconv.Itoa(fakeCreated)+
		`,"model":"`+fakeModel+`","service_tier":"default","system_fingerprint":"`+fakeFingerprint+
		`","choices":[],"usage":{"prompt_tokens":1873,"completion_tokens":`+strconv.Itoa(n)+`,"total_tokens":`+strconv.Itoa(1873+n)+
		`,"prompt_tokens_details":{"cached_tokens":1664,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"obfuscation":"xxxxxx"}`+"\n\n"...)
	tail = append(tail, "data: [DONE]\n\n"...)
	return events, tail
}

// Tone is n samples of a 440 Hz sine at rate, mono s16le, at a quarter of
// full scale: speech the client does not take for silence.
func Tone(rate, n int) []byte {
	pcm := make([]byte, 2*n)
	for i := 0; i < n; i++ {
		v := int16(8192 * math.Sin(2*math.Pi*440*float64(i)/float64(rate)))
		binary.LittleEndian.PutUint16(pcm[2*i:], uint16(v))
	}
	return pcm
}

// Fakes are an OpenAI-compatible chat completions endpoint and speech
// endpoint on one loopback HTTP server, answering with the scripted answer
// on the configured timing.
type Fakes struct {
	// URL is the /v1 root of both.
	URL string

	timing   Timing
	events   [][]byte
	tail     []byte
	wav, pcm []byte
	srv      *http.Server
	done     chan struct{}

	// LLMRequests and TTSRequests count the calls answered.
	LLMRequests, TTSRequests atomic.Int64
}

// StartFakes starts the fake providers on 127.0.0.1.
func StartFakes(t Timing) (*Fakes, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := NewFakes(t)
	f.URL = "http://" + ln.Addr().String() + "/v1"
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	f.done = make(chan struct{})
	go func() { defer close(f.done); _ = f.srv.Serve(ln) }()
	return f, nil
}

// NewFakes builds the handler without a listener (tests use httptest).
func NewFakes(t Timing) *Fakes {
	f := &Fakes{timing: t}
	f.events, f.tail = OpenAIStream(NewAnswer(t.Sentences))
	f.pcm = Tone(t.TTSRate, int(math.Round(t.AudioSec*float64(t.TTSRate))))
	f.wav = audio.EncodeWAV(t.TTSRate, f.pcm)
	return f
}

// Close stops the server and its running answers.
func (f *Fakes) Close() {
	if f.srv == nil {
		return
	}
	_ = f.srv.Close()
	<-f.done
}

// ServeHTTP implements POST /v1/chat/completions and POST /v1/audio/speech.
func (f *Fakes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/chat/completions":
		f.chat(w, r)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/audio/speech":
		f.speech(w, r)
	default:
		openAIError(w, http.StatusNotFound, fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path))
	}
}

func openAIError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `{"error":{"message":%s,"type":"invalid_request_error","param":null,"code":null}}`, jsonString(msg))
}

func (f *Fakes) chat(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model    string            `json:"model"`
		Stream   bool              `json:"stream"`
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<20)).Decode(&req); err != nil {
		openAIError(w, http.StatusBadRequest, "We could not parse the JSON body of your request. "+err.Error())
		return
	}
	if req.Model == "" || len(req.Messages) == 0 {
		openAIError(w, http.StatusBadRequest, "model and messages are required")
		return
	}
	f.LLMRequests.Add(1)
	start := time.Now()
	if !req.Stream { // e.g. a memory analysis: the whole answer at once
		if !sleepCtx(r.Context(), f.timing.LLMTime(NewAnswer(f.timing.Sentences))) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"id":"%s","object":"chat.completion","created":%d,"model":"%s","choices":[{"index":0,"message":{"role":"assistant","content":%s,"refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1873,"completion_tokens":%d,"total_tokens":%d},"system_fingerprint":"%s"}`,
			fakeID, fakeCreated, fakeModel, jsonString(NewAnswer(f.timing.Sentences).Text()), len(f.events), 1873+len(f.events), fakeFingerprint)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	fl, _ := w.(http.Flusher)
	for i, ev := range f.events {
		// Flush only before a pause: with no pause the answer goes out in
		// as few writes as the buffer allows, as from a fast local server.
		if wait := f.timing.tokenAt(i) - time.Since(start); wait > 0 {
			if i > 0 && fl != nil {
				fl.Flush()
			}
			if !sleepCtx(r.Context(), wait) {
				return
			}
		}
		if _, err := w.Write(ev); err != nil {
			return
		}
	}
	_, _ = w.Write(f.tail)
}

func (f *Fakes) speech(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Input          string `json:"input"`
		ResponseFormat string `json:"response_format"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		openAIError(w, http.StatusBadRequest, "We could not parse the JSON body of your request. "+err.Error())
		return
	}
	if req.Input == "" {
		openAIError(w, http.StatusBadRequest, "[] is too short - 'input'")
		return
	}
	f.TTSRequests.Add(1)
	if !sleepCtx(r.Context(), f.timing.TTSFirstByte) {
		return
	}
	body, ctype := f.wav, "audio/wav"
	if req.ResponseFormat == "pcm" {
		body, ctype = f.pcm, "audio/pcm"
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// sleepCtx waits d, or until ctx is done (false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// errStopped marks work ended because the run stopped, not a failure.
var errStopped = errors.New("bench stopped")
