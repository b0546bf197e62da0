// Package llmtest runs fake LLM servers for tests: a Gemini and an
// OpenAI-compatible HTTP server on 127.0.0.1 that speak the providers' real
// streaming wire formats (SSE), replay recorded-format fixtures byte for byte,
// record what clients sent, and report when a client went away mid-answer.
//
// It does not import package llm, so tests inside llm can use it too.
package llmtest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// maxRequestBody bounds what a fake reads from a client (a screenshot is a few MiB).
const maxRequestBody = 32 << 20

// Usage is what a fake reports with its final chunk.
type Usage struct {
	InputTokens  int
	OutputTokens int
	Model        string // empty: a realistic default for the provider
}

// Script is a fake's answer to one request.
type Script struct {
	// Deltas are the text pieces to stream, built into the provider's SSE
	// format (see GeminiSSE, OpenAISSE). Ignored when Raw is set.
	Deltas []string
	// Usage goes with the final chunk built from Deltas.
	Usage Usage
	// Raw is written as the response body byte for byte (a fixture). With a
	// 200 status it is streamed event by event, so Delay, Hang and WriteSize
	// apply at event boundaries.
	Raw []byte
	// Status, when set and not 200, makes the fake answer with this status and
	// Raw as a JSON body (or a provider-format error body if Raw is nil).
	Status int
	// Delay is waited before each event; a client that leaves cuts it short.
	Delay time.Duration
	// Hang, when true, stops after HangAfter events and holds the response
	// open until the client disconnects (or the server closes).
	Hang      bool
	HangAfter int
	// HangBeforeHeaders holds the request without answering at all (no
	// status line) until the client disconnects: a provider that accepted the
	// connection but never responds.
	HangBeforeHeaders bool
	// WriteSize, when > 0, splits every event into writes of at most this many
	// bytes, each flushed, to exercise clients on partial reads.
	WriteSize int
}

// Image is an inline image found in a request.
type Image struct {
	MIME   string
	Base64 string
}

// Request is one request a fake received, with a provider-neutral view of
// the fields tests usually check.
type Request struct {
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	Body     []byte         // the raw JSON body
	JSON     map[string]any // Body decoded, for checks the fields below do not cover

	Model        string   // from the path (Gemini) or the body (OpenAI)
	Stream       bool     // streaming endpoint (Gemini) or "stream": true (OpenAI)
	System       string   // system instruction / system message text
	User         string   // the user's text parts, joined
	Image        *Image   // the first inline image, nil if none
	Temperature  *float64 // nil when not sent
	MaxTokens    int      // maxOutputTokens / max_tokens / max_completion_tokens
	GoogleSearch bool     // Gemini: tools contained googleSearch
	IncludeUsage bool     // OpenAI: stream_options.include_usage
}

// Server is a running fake provider.
type Server struct {
	// URL is what a client config takes as its base URL: the host root for
	// Gemini, the /v1 root for OpenAI.
	URL string

	t        testing.TB
	ts       *httptest.Server
	flavor   flavor
	done     chan struct{}
	gone     chan struct{}
	goneOnce sync.Once

	mu          sync.Mutex
	scripts     []Script
	reqs        []Request
	disconnects int
	closeOnce   sync.Once
}

// flavor is what differs between the two fakes.
type flavor interface {
	// route checks method and path and decodes the body; status != 0 means
	// the request is refused with errBody, as the real API would.
	route(r *http.Request, body []byte) (req Request, status int, errBody []byte)
	// sse builds the stream for deltas.
	sse(deltas []string, u Usage) []byte
	// whole builds the non-streaming answer for deltas.
	whole(deltas []string, u Usage) []byte
	// errorBody builds a provider-format error for status.
	errorBody(status int, msg string) []byte
	contentType() string
}

// NewGemini starts a fake Gemini API. Request i gets scripts[i]; requests
// past the end get the last script. It is closed when the test ends.
func NewGemini(t testing.TB, scripts ...Script) *Server {
	t.Helper()
	return start(t, geminiFlavor{t: t}, "", scripts)
}

// NewOpenAI starts a fake OpenAI-compatible API; Server.URL is its /v1 root.
// Request i gets scripts[i]; requests past the end get the last script.
func NewOpenAI(t testing.TB, scripts ...Script) *Server {
	t.Helper()
	return start(t, openaiFlavor{}, "/v1", scripts)
}

func start(t testing.TB, f flavor, prefix string, scripts []Script) *Server {
	t.Helper()
	if len(scripts) == 0 {
		t.Fatal("llmtest: at least one Script is required")
	}
	s := &Server{t: t, flavor: f, scripts: scripts, done: make(chan struct{}), gone: make(chan struct{})}
	s.ts = httptest.NewServer(http.HandlerFunc(s.handle))
	s.URL = s.ts.URL + prefix
	t.Cleanup(s.Close)
	return s
}

// Requests returns a copy of the requests received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// Disconnected is closed the first time a client goes away before its
// answer was complete (a cancelled turn must abort the LLM request).
func (s *Server) Disconnected() <-chan struct{} { return s.gone }

// Disconnects counts responses cut short by the client.
func (s *Server) Disconnects() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.disconnects
}

// Close releases hanging handlers and shuts the server down. Idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.ts.CloseClientConnections()
		s.ts.Close()
	})
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	if err != nil || len(body) > maxRequestBody {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		return
	}
	req, status, errBody := s.flavor.route(r, body)
	if status != 0 {
		writeJSON(w, status, errBody)
		return
	}
	sc := s.record(req)
	if sc.HangBeforeHeaders {
		s.hang(r)
		return
	}
	switch {
	case sc.Status != 0 && sc.Status != http.StatusOK:
		b := sc.Raw
		if b == nil {
			b = s.flavor.errorBody(sc.Status, http.StatusText(sc.Status))
		}
		writeJSON(w, sc.Status, b)
	case !req.Stream:
		b := sc.Raw
		if b == nil {
			b = s.flavor.whole(sc.Deltas, sc.Usage)
		}
		writeJSON(w, http.StatusOK, b)
	default:
		s.stream(w, r, sc)
	}
}

// record stores the request and picks its script.
func (s *Server) record(req Request) Script {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := min(len(s.reqs), len(s.scripts)-1)
	s.reqs = append(s.reqs, req)
	return s.scripts[i]
}

// stream writes the events of sc, honouring Delay, Hang and WriteSize.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, sc Script) {
	raw := sc.Raw
	if raw == nil {
		raw = s.flavor.sse(sc.Deltas, sc.Usage)
	}
	events := SplitEvents(raw)
	w.Header().Set("Content-Type", s.flavor.contentType())
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	for i, ev := range events {
		if sc.Hang && i == sc.HangAfter {
			s.hang(r)
			return
		}
		if sc.Delay > 0 && !s.wait(r, sc.Delay) {
			return
		}
		if !s.write(w, flusher, ev, sc.WriteSize) {
			s.markGone()
			return
		}
	}
	if sc.Hang && sc.HangAfter >= len(events) {
		s.hang(r)
	}
}

// write sends one event in pieces of at most size bytes (all at once if size <= 0).
func (s *Server) write(w http.ResponseWriter, f http.Flusher, ev []byte, size int) bool {
	if size <= 0 {
		size = len(ev)
	}
	for len(ev) > 0 {
		n := min(size, len(ev))
		if _, err := w.Write(ev[:n]); err != nil {
			return false
		}
		if f != nil {
			f.Flush()
		}
		ev = ev[n:]
	}
	return true
}

// hang holds the response open until the client leaves or the server closes.
func (s *Server) hang(r *http.Request) {
	select {
	case <-r.Context().Done():
		s.markGone()
	case <-s.done:
	}
}

// wait sleeps d unless the client leaves first (then it reports false).
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		s.markGone()
		return false
	case <-s.done:
		return false
	}
}

func (s *Server) markGone() {
	s.mu.Lock()
	s.disconnects++
	s.mu.Unlock()
	s.goneOnce.Do(func() { close(s.gone) })
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	w.Write(body)
}

// SplitEvents cuts an SSE byte stream after each blank line (LF or CRLF), so
// that concatenating the pieces gives back raw exactly.
func SplitEvents(raw []byte) [][]byte {
	var out [][]byte
	start := 0
	for i := 0; i < len(raw); {
		j := bytes.IndexByte(raw[i:], '\n')
		if j < 0 {
			break
		}
		lineEnd := i + j + 1
		line := raw[i:lineEnd]
		if (len(line) == 1 || (len(line) == 2 && line[0] == '\r')) && lineEnd > start {
			out = append(out, raw[start:lineEnd])
			start = lineEnd
		}
		i = lineEnd
	}
	if start < len(raw) {
		out = append(out, raw[start:])
	}
	return out
}

// ReadFixture returns a fixture file's bytes or fails the test.
func ReadFixture(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("llmtest: read fixture: %v", err)
	}
	return b
}

// marshal encodes v as compact JSON without HTML escaping, as the real APIs do.
func marshal(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic("llmtest: marshal: " + err.Error()) // only our own wire types get here
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}

// str returns m[k] as a string ("" when absent or not a string).
func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

// num returns m[k] as an int (0 when absent or not a number).
func num(m map[string]any, k string) int {
	f, _ := m[k].(float64)
	return int(f)
}

// joinNonEmpty joins the non-empty parts with "\n".
func joinNonEmpty(parts []string) string {
	var kept []string
	for _, p := range parts {
		if p != "" {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, "\n")
}
