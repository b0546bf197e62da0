package llm_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nexy-server/nexy/llm"
	"github.com/nexy-server/nexy/llm/llmtest"
)

// Keys are generated per run (no secret-shaped literal lives in the repo) but
// keep the providers' real shapes, so key scrubbing is tested on them.
var (
	testGeminiKey = "AIza" + randomKey(35)
	testOpenAIKey = "sk-test-" + randomKey(16)
)

func randomKey(n int) string {
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)[:n]
}

const (
	// testWebP is a 1x1 WebP, base64: the providers must pass it through untouched.
	testWebP = "UklGRiQAAABXRUJQVlA4IBgAAAAwAQCdASoBAAEAAwA0JaQAA3AA/vuUAAA="
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	return llmtest.ReadFixture(t, filepath.Join("..", "testdata", "llm", name))
}

// collect reads a stream to its end; err is nil after a clean io.EOF.
func collect(t testing.TB, s llm.Stream) ([]string, error) {
	t.Helper()
	var out []string
	for {
		d, err := s.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if d == "" {
			t.Fatal("Recv returned an empty delta")
		}
		out = append(out, d)
	}
}

func newGemini(t testing.TB, baseURL string, mod func(*llm.GeminiConfig)) *llm.Gemini {
	t.Helper()
	cfg := llm.GeminiConfig{BaseURL: baseURL, Model: "gemini-2.5-flash-lite", APIKey: testGeminiKey, Temperature: 0.4}
	if mod != nil {
		mod(&cfg)
	}
	g, err := llm.NewGemini(cfg)
	if err != nil {
		t.Fatalf("NewGemini: %v", err)
	}
	return g
}

// jsonEqual compares two JSON documents by value.
func jsonEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("request body is not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want JSON: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("request body\n got %s\nwant %s", got, want)
	}
}

// asError asserts err is an *llm.Error of the given kind and returns it.
func asError(t *testing.T, err error, kind llm.ErrorKind) *llm.Error {
	t.Helper()
	var e *llm.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want *llm.Error", err, err)
	}
	if e.Kind != kind {
		t.Fatalf("kind = %s, want %s (err: %v)", e.Kind, kind, err)
	}
	return e
}

func TestGeminiRequestShape(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*llm.GeminiConfig)
		req  llm.Request
		want string
	}{
		{
			name: "system, text, image, search, max tokens",
			mod: func(c *llm.GeminiConfig) {
				c.GoogleSearch = true
				c.MaxOutputTokens = 2048
			},
			req: llm.Request{System: "You are Nexy.\nAnswer in JSON.", User: "What is on my screen?",
				Image: &llm.Image{MIME: "image/webp", Base64: testWebP}},
			want: `{"systemInstruction":{"parts":[{"text":"You are Nexy.\nAnswer in JSON."}]},
				"contents":[{"role":"user","parts":[{"text":"What is on my screen?"},
					{"inlineData":{"mimeType":"image/webp","data":"` + testWebP + `"}}]}],
				"generationConfig":{"temperature":0.4,"maxOutputTokens":2048},
				"tools":[{"googleSearch":{}}]}`,
		},
		{
			name: "text only, defaults",
			mod:  func(c *llm.GeminiConfig) { c.Temperature = 0 },
			req:  llm.Request{User: "  hi <b> & \"you\"  "},
			want: `{"contents":[{"role":"user","parts":[{"text":"  hi <b> & \"you\"  "}]}],
				"generationConfig":{"temperature":0}}`,
		},
		{
			name: "image only",
			req:  llm.Request{System: "s", Image: &llm.Image{MIME: "image/png", Base64: "iVBORw0KGgo="}},
			want: `{"systemInstruction":{"parts":[{"text":"s"}]},
				"contents":[{"role":"user","parts":[{"inlineData":{"mimeType":"image/png","data":"iVBORw0KGgo="}}]}],
				"generationConfig":{"temperature":0.4}}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := llmtest.NewGemini(t, llmtest.Script{Deltas: []string{"ok"}})
			s, err := newGemini(t, srv.URL, tc.mod).Stream(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := collect(t, s); err != nil {
				t.Fatal(err)
			}
			reqs := srv.Requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Path != "/v1beta/models/gemini-2.5-flash-lite:streamGenerateContent" || r.RawQuery != "alt=sse" {
				t.Errorf("URL = %s?%s", r.Path, r.RawQuery)
			}
			if got := r.Header.Get("x-goog-api-key"); got != testGeminiKey {
				t.Errorf("x-goog-api-key = %q", got)
			}
			if strings.Contains(r.RawQuery, testGeminiKey) || r.Header.Get("Authorization") != "" {
				t.Error("key leaked into the query or an Authorization header")
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if r.System != tc.req.System || r.User != tc.req.User {
				t.Errorf("system/user = %q / %q", r.System, r.User)
			}
			if (r.Image == nil) != (tc.req.Image == nil) ||
				(r.Image != nil && (r.Image.MIME != tc.req.Image.MIME || r.Image.Base64 != tc.req.Image.Base64)) {
				t.Errorf("image = %+v, want %+v", r.Image, tc.req.Image)
			}
			jsonEqual(t, r.Body, tc.want)
		})
	}
}

// streamCase is a recorded-format stream and what the client must make of it.
type streamCase struct {
	fixture string
	deltas  []string
	usage   llm.Usage
	reply   string // the concatenated answer
}

var geminiCases = []streamCase{
	{
		fixture: "gemini_text.sse",
		deltas:  []string{`{"text": "The caf`, `\u00`, `e9 \"Le Pe`, `tit Zinc\`, `" is open until 11 p.m.\`, `nWant directions?"}`},
		usage:   llm.Usage{InputTokens: 1843, OutputTokens: 27, Model: "gemini-2.5-flash-lite"},
		reply:   `{"text": "The caf\u00e9 \"Le Petit Zinc\" is open until 11 p.m.\nWant directions?"}`,
	},
	{
		fixture: "gemini_action.sse",
		deltas: []string{`{"text": "Откры`, `ваю Telegr`, `am и пишу ма`, `ме: \"Бу`, `ду в 8\`, `".", "command": "send_mes`,
			`sage", "args": {"contact": "Ма`, `ма", "message": "Буду в 8"}}`},
		// Thinking tokens (96) are billed as output and counted with the 41 candidate tokens.
		usage: llm.Usage{InputTokens: 2210, OutputTokens: 137, Model: "gemini-2.5-flash"},
		reply: `{"text": "Открываю Telegram и пишу маме: \"Буду в 8\".", "command": "send_message", "args": {"contact": "Мама", "message": "Буду в 8"}}`,
	},
	{
		fixture: "gemini_plain.sse",
		deltas:  []string{"Sure. It's 7 deg", "rees and raining in Berlin right n", "ow, so take an umbrella."},
		usage:   llm.Usage{InputTokens: 1790, OutputTokens: 19, Model: "gemini-2.5-flash-lite"},
		reply:   "Sure. It's 7 degrees and raining in Berlin right now, so take an umbrella.",
	},
}

func TestGeminiFixtures(t *testing.T) {
	for _, tc := range geminiCases {
		// Writes of 1 and 7 bytes split CRLFs, UTF-8 sequences and JSON escapes.
		for _, ws := range []int{0, 1, 7} {
			srv := llmtest.NewGemini(t, llmtest.Script{Raw: fixture(t, tc.fixture), WriteSize: ws})
			s, err := newGemini(t, srv.URL, nil).Stream(context.Background(), llm.Request{User: "q"})
			if err != nil {
				t.Fatal(err)
			}
			checkStream(t, tc, ws, s)
		}
	}
}

// checkStream asserts the exact deltas, the reply and the usage of one case.
func checkStream(t *testing.T, tc streamCase, writeSize int, s llm.Stream) {
	t.Helper()
	defer s.Close()
	got, err := collect(t, s)
	if err != nil {
		t.Fatalf("%s/%d: %v", tc.fixture, writeSize, err)
	}
	if !reflect.DeepEqual(got, tc.deltas) {
		t.Fatalf("%s/%d: deltas\n got %q\nwant %q", tc.fixture, writeSize, got, tc.deltas)
	}
	if reply := strings.Join(got, ""); reply != tc.reply {
		t.Fatalf("%s: reply %q, want %q", tc.fixture, reply, tc.reply)
	}
	if strings.HasPrefix(tc.reply, "{") && !json.Valid([]byte(tc.reply)) {
		t.Fatalf("%s: reply is not valid JSON", tc.fixture)
	}
	if u := s.Usage(); u != tc.usage {
		t.Fatalf("%s: usage %+v, want %+v", tc.fixture, u, tc.usage)
	}
}

// The escapes cut between deltas must survive untouched: decoding the joined
// reply gives the intended characters.
func TestGeminiReplyEscapesSurvive(t *testing.T) {
	var reply struct{ Text string }
	if err := json.Unmarshal([]byte(geminiCases[0].reply), &reply); err != nil {
		t.Fatal(err)
	}
	if want := "The café \"Le Petit Zinc\" is open until 11 p.m.\nWant directions?"; reply.Text != want {
		t.Fatalf("text %q, want %q", reply.Text, want)
	}
}

func TestGeminiRefusals(t *testing.T) {
	for fix, reason := range map[string]string{
		"gemini_blocked_prompt.sse": "prompt blocked: PROHIBITED_CONTENT",
		"gemini_safety.sse":         "finishReason SAFETY",
	} {
		srv := llmtest.NewGemini(t, llmtest.Script{Raw: fixture(t, fix)})
		s, err := newGemini(t, srv.URL, nil).Stream(context.Background(), llm.Request{User: "q"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := collect(t, s)
		e := asError(t, err, llm.KindBadRequest)
		if len(got) != 0 || !strings.Contains(e.Message, reason) {
			t.Fatalf("%s: deltas %q, message %q", fix, got, e.Message)
		}
		s.Close()
	}
}

// A SAFETY stop after some text ends the answer normally: what was said stands.
func TestGeminiSafetyAfterText(t *testing.T) {
	raw := strings.Replace(string(llmtest.GeminiSSE([]string{"Hello", " there"}, llmtest.Usage{})),
		`"finishReason":"STOP"`, `"finishReason":"SAFETY"`, 1)
	if !strings.Contains(raw, "SAFETY") {
		t.Fatal("test stream has no SAFETY finish")
	}
	srv := llmtest.NewGemini(t, llmtest.Script{Raw: []byte(raw)})
	s, _ := newGemini(t, srv.URL, nil).Stream(context.Background(), llm.Request{User: "q"})
	defer s.Close()
	got, err := collect(t, s)
	if err != nil || strings.Join(got, "") != "Hello there" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestGeminiErrorInStream(t *testing.T) {
	srv := llmtest.NewGemini(t, llmtest.Script{Raw: fixture(t, "gemini_stream_error.sse")})
	s, _ := newGemini(t, srv.URL, nil).Stream(context.Background(), llm.Request{User: "q"})
	defer s.Close()
	got, err := collect(t, s)
	e := asError(t, err, llm.KindUnavailable)
	if !reflect.DeepEqual(got, []string{`{"text": "Let me che`}) || e.Status != 503 || !strings.Contains(e.Message, "overloaded") {
		t.Fatalf("deltas %q, err %v", got, err)
	}
}

func TestGeminiTruncated(t *testing.T) {
	events := llmtest.SplitEvents(llmtest.GeminiSSE([]string{"a", "b"}, llmtest.Usage{}))
	for name, raw := range map[string][]byte{
		"no finishReason": events[0],
		"cut mid-event":   append(append([]byte{}, events[0]...), `data: {"candid`...),
	} {
		srv := llmtest.NewGemini(t, llmtest.Script{Raw: raw})
		s, _ := newGemini(t, srv.URL, nil).Stream(context.Background(), llm.Request{User: "q"})
		got, err := collect(t, s)
		asError(t, err, llm.KindUnavailable)
		if !reflect.DeepEqual(got, []string{"a"}) {
			t.Fatalf("%s: deltas %q", name, got)
		}
		if name == "cut mid-event" && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%s: err %v does not wrap io.ErrUnexpectedEOF", name, err)
		}
		s.Close()
	}
}

func TestGeminiHTTPErrors(t *testing.T) {
	tests := []struct {
		status int
		body   []byte
		kind   llm.ErrorKind
		msg    string
	}{
		{400, fixture(t, "gemini_error_invalid_key.json"), llm.KindAuth, "API key not valid"},
		{403, fixture(t, "gemini_error_403.json"), llm.KindAuth, "PERMISSION_DENIED"},
		{401, llmtest.GeminiError(401, "Request had invalid authentication credentials."), llm.KindAuth, "invalid authentication"},
		{429, fixture(t, "gemini_error_429.json"), llm.KindRateLimited, "exceeded your current quota"},
		{400, fixture(t, "gemini_error_400_image.json"), llm.KindBadRequest, "Unable to process input image"},
		{404, llmtest.GeminiError(404, "models/gemini-9 is not found for API version v1beta"), llm.KindBadRequest, "not found"},
		{500, fixture(t, "gemini_error_500.json"), llm.KindUnavailable, "internal error"},
		{503, fixture(t, "gemini_error_503.json"), llm.KindUnavailable, "overloaded"},
		{502, []byte("<html><body>502 Bad Gateway</body></html>"), llm.KindUnavailable, "502 Bad Gateway"},
		{500, []byte(`[{"error":{"code":500,"message":"array form","status":"INTERNAL"}}]`), llm.KindUnavailable, "array form"},
		{400, []byte("key " + testGeminiKey + " is bad"), llm.KindBadRequest, "[redacted]"},
	}
	for _, tc := range tests {
		srv := llmtest.NewGemini(t, llmtest.Script{Status: tc.status, Raw: tc.body})
		s, err := newGemini(t, srv.URL, nil).Stream(context.Background(), llm.Request{User: "q"})
		if s != nil {
			t.Fatalf("%d: got a stream for an error answer", tc.status)
		}
		e := asError(t, err, tc.kind)
		if e.Status != tc.status || e.Provider != "gemini" || !strings.Contains(e.Message, tc.msg) {
			t.Fatalf("%d: %+v, want message containing %q", tc.status, e, tc.msg)
		}
		if strings.Contains(err.Error(), testGeminiKey) {
			t.Fatalf("%d: error carries the API key: %v", tc.status, err)
		}
	}
}

// roundTripFunc lets a test see the exact outgoing request without a network.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestGeminiDefaultsAndValidation(t *testing.T) {
	var gotURL string
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		gotURL = r.URL.String()
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}},
			Body: io.NopCloser(bytes.NewReader(llmtest.GeminiSSE([]string{"x"}, llmtest.Usage{}))), Request: r}, nil
	})}
	g, err := llm.NewGemini(llm.GeminiConfig{Model: "models/gemini-2.5-flash", APIKey: " key-from-file\n", HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	s, err := g.Stream(context.Background(), llm.Request{User: "q"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if want := "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"; gotURL != want {
		t.Fatalf("URL %s, want %s", gotURL, want)
	}

	bad := []struct {
		cfg  llm.GeminiConfig
		want string
	}{
		{llm.GeminiConfig{APIKey: "k"}, "model is required"},
		{llm.GeminiConfig{Model: "gemini/../x", APIKey: "k"}, "only letters"},
		{llm.GeminiConfig{Model: "m"}, "api key is required"},
		{llm.GeminiConfig{Model: "m", APIKey: "a b"}, "whitespace"},
		{llm.GeminiConfig{Model: "m", APIKey: "k", BaseURL: "ftp://x"}, "scheme"},
		{llm.GeminiConfig{Model: "m", APIKey: "k", BaseURL: "http://"}, "missing host"},
		{llm.GeminiConfig{Model: "m", APIKey: "k", BaseURL: "http://h/?key=x"}, "query"},
		{llm.GeminiConfig{Model: "m", APIKey: "k", BaseURL: "http://h\x7f"}, "base URL"},
		{llm.GeminiConfig{Model: "m", APIKey: "k", Timeout: -1}, "timeout"},
		{llm.GeminiConfig{Model: "m", APIKey: "k", Temperature: 2.5}, "temperature"},
		{llm.GeminiConfig{Model: "m", APIKey: "k", MaxOutputTokens: -1}, "max tokens"},
	}
	for _, tc := range bad {
		_, err := llm.NewGemini(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "llm gemini: ") {
			t.Errorf("NewGemini(%+v) = %v, want error containing %q", tc.cfg, err, tc.want)
		}
	}
}

// A redirect would make net/http forward x-goog-api-key to another host; the
// provider refuses to follow it.
func TestGeminiRefusesRedirects(t *testing.T) {
	other := llmtest.NewGemini(t, llmtest.Script{Deltas: []string{"x"}})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	defer ts.Close()
	_, err := newGemini(t, ts.URL, nil).Stream(context.Background(), llm.Request{User: "q"})
	if e := asError(t, err, llm.KindUnavailable); e.Status != http.StatusTemporaryRedirect {
		t.Fatalf("status %d", e.Status)
	}
	if n := len(other.Requests()); n != 0 {
		t.Fatalf("redirect was followed: %d requests at the other host", n)
	}
}
