package llm_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nexy-server/nexy/llm"
	"github.com/nexy-server/nexy/llm/llmtest"
)

func newOpenAI(t testing.TB, baseURL string, mod func(*llm.OpenAIConfig)) *llm.OpenAI {
	t.Helper()
	cfg := llm.OpenAIConfig{BaseURL: baseURL, Model: "gpt-4o-mini", APIKey: testOpenAIKey, Temperature: 0.4}
	if mod != nil {
		mod(&cfg)
	}
	o, err := llm.NewOpenAI(cfg)
	if err != nil {
		t.Fatalf("NewOpenAI: %v", err)
	}
	return o
}

func TestOpenAIRequestShape(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*llm.OpenAIConfig)
		req  llm.Request
		auth string
		want string
	}{
		{
			name: "system, text, image, max tokens, key",
			mod:  func(c *llm.OpenAIConfig) { c.MaxTokens = 1024 },
			req: llm.Request{System: "You are Nexy.", User: "What is on my screen?",
				Image: &llm.Image{MIME: "image/webp", Base64: testWebP}},
			auth: "Bearer " + testOpenAIKey,
			want: `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are Nexy."},
				{"role":"user","content":[{"type":"text","text":"What is on my screen?"},
					{"type":"image_url","image_url":{"url":"data:image/webp;base64,` + testWebP + `"}}]}],
				"stream":true,"stream_options":{"include_usage":true},"temperature":0.4,"max_tokens":1024}`,
		},
		{
			name: "local server without key, plain user string",
			mod: func(c *llm.OpenAIConfig) {
				c.APIKey, c.Model, c.Temperature = "", "llama3.2:3b", 0
			},
			req: llm.Request{User: " Привет \n"},
			want: `{"model":"llama3.2:3b","messages":[{"role":"user","content":" Привет \n"}],
				"stream":true,"stream_options":{"include_usage":true},"temperature":0}`,
		},
		{
			name: "image only",
			req:  llm.Request{System: "s", Image: &llm.Image{MIME: "image/jpeg", Base64: "/9j/4AAQ"}},
			auth: "Bearer " + testOpenAIKey,
			want: `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"s"},
				{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4AAQ"}}]}],
				"stream":true,"stream_options":{"include_usage":true},"temperature":0.4}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{"ok"}})
			s, err := newOpenAI(t, srv.URL, tc.mod).Stream(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := collect(t, s); err != nil {
				t.Fatal(err)
			}
			r := srv.Requests()[0]
			if r.Path != "/v1/chat/completions" || r.RawQuery != "" {
				t.Errorf("URL = %s?%s", r.Path, r.RawQuery)
			}
			if got := r.Header.Get("Authorization"); got != tc.auth {
				t.Errorf("Authorization = %q, want %q", got, tc.auth)
			}
			if !r.Stream || !r.IncludeUsage || r.System != tc.req.System || r.User != tc.req.User {
				t.Errorf("decoded request %+v", r)
			}
			if (r.Image == nil) != (tc.req.Image == nil) ||
				(r.Image != nil && (r.Image.MIME != tc.req.Image.MIME || r.Image.Base64 != tc.req.Image.Base64)) {
				t.Errorf("image = %+v, want %+v", r.Image, tc.req.Image)
			}
			jsonEqual(t, r.Body, tc.want)
		})
	}
}

var openaiCases = []streamCase{
	{
		fixture: "openai_text.sse",
		deltas: []string{`{"`, `text`, `":`, ` "`, `Your`, ` next`, ` meeting`, ` is`, ` \"`, `Design`, ` re`, `view`, `\`, `"`,
			` at`, ` `, `3`, `:`, `30`, ` PM`, `.\`, `n`, `It`, `'s`, ` in`, ` room`, ` `, `4`, `B`, `."`, `}`},
		usage: llm.Usage{InputTokens: 1873, OutputTokens: 24, Model: "gpt-4o-mini-2024-07-18"},
		reply: `{"text": "Your next meeting is \"Design review\" at 3:30 PM.\nIt's in room 4B."}`,
	},
	{
		fixture: "openai_action.sse",
		deltas: []string{`{"`, `text`, `":`, ` "`, `От`, `кры`, `ваю`, ` прилож`, `ение`, ` «`, `За`, `мет`, `ки`, `».`, `",`, ` "`,
			`command`, `":`, ` "`, `open`, `_app`, `",`, ` "`, `args`, `":`, ` {"`, `app`, `_name`, `":`, ` "`,
			`Notes`, `.app`, `"}}`},
		usage: llm.Usage{InputTokens: 1921, OutputTokens: 33, Model: "gpt-4o-mini-2024-07-18"},
		reply: `{"text": "Открываю приложение «Заметки».", "command": "open_app", "args": {"app_name": "Notes.app"}}`,
	},
	{
		fixture: "ollama_plain.sse",
		deltas: []string{`Сей`, `час`, ` в`, ` Моск`, `ве`, ` +`, `3`, ` °`, `C`, ` и`, ` облач`, `но`, `.`, ` Возь`, `мите`,
			` зонт`, ` на`, ` всякий`, ` слу`, `чай`, `.`},
		usage: llm.Usage{InputTokens: 1650, OutputTokens: 21, Model: "llama3.2:3b"},
		reply: "Сейчас в Москве +3 °C и облачно. Возьмите зонт на всякий случай.",
	},
}

func TestOpenAIFixtures(t *testing.T) {
	for _, tc := range openaiCases {
		for _, ws := range []int{0, 1, 5} {
			srv := llmtest.NewOpenAI(t, llmtest.Script{Raw: fixture(t, tc.fixture), WriteSize: ws})
			s, err := newOpenAI(t, srv.URL, nil).Stream(context.Background(), llm.Request{User: "q"})
			if err != nil {
				t.Fatal(err)
			}
			checkStream(t, tc, ws, s)
		}
	}
}

func TestOpenAIHTTPErrors(t *testing.T) {
	tests := []struct {
		status int
		body   []byte
		kind   llm.ErrorKind
		msg    string
	}{
		{401, fixture(t, "openai_error_401.json"), llm.KindAuth, "invalid_api_key: Incorrect API key provided: [redacted]"},
		{403, llmtest.OpenAIError(403, "Project does not have access to model gpt-5"), llm.KindAuth, "does not have access"},
		{400, []byte(`{"error":{"message":"bad key","type":"invalid_request_error","code":"invalid_api_key"}}`), llm.KindAuth, "bad key"},
		{429, fixture(t, "openai_error_429.json"), llm.KindRateLimited, "rate_limit_exceeded: Rate limit reached"},
		{400, llmtest.OpenAIError(400, "Invalid image."), llm.KindBadRequest, "Invalid image."},
		{404, fixture(t, "ollama_error_404.json"), llm.KindBadRequest, `model "llama3.2:3b" not found`},
		{400, []byte(`{"error":"plain string error"}`), llm.KindBadRequest, "plain string error"},
		{422, []byte(`{"detail":[{"msg":"field required"}]}`), llm.KindBadRequest, "field required"},
		{500, fixture(t, "openai_error_500.json"), llm.KindUnavailable, "The server had an error"},
		{503, []byte(""), llm.KindUnavailable, "Service Unavailable"},
		{401, llmtest.OpenAIError(401, "Incorrect API key provided: "+testOpenAIKey), llm.KindAuth, "[redacted]"},
	}
	for _, tc := range tests {
		srv := llmtest.NewOpenAI(t, llmtest.Script{Status: tc.status, Raw: tc.body})
		s, err := newOpenAI(t, srv.URL, nil).Stream(context.Background(), llm.Request{User: "q"})
		if s != nil {
			t.Fatalf("%d: got a stream for an error answer", tc.status)
		}
		e := asError(t, err, tc.kind)
		if e.Status != tc.status || e.Provider != "openai" || !strings.Contains(e.Message, tc.msg) {
			t.Fatalf("%d: %+v, want message containing %q", tc.status, e, tc.msg)
		}
		if strings.Contains(err.Error(), testOpenAIKey) || strings.Contains(err.Error(), "sk-proj") {
			t.Fatalf("%d: error carries an API key: %v", tc.status, err)
		}
	}
}

func TestOpenAIErrorInStream(t *testing.T) {
	srv := llmtest.NewOpenAI(t, llmtest.Script{Raw: fixture(t, "openai_stream_error.sse")})
	s, _ := newOpenAI(t, srv.URL, nil).Stream(context.Background(), llm.Request{User: "q"})
	defer s.Close()
	got, err := collect(t, s)
	e := asError(t, err, llm.KindUnavailable)
	if !reflect.DeepEqual(got, []string{`{"text": "Сей`}) || !strings.Contains(e.Message, "model runner has unexpectedly stopped") {
		t.Fatalf("deltas %q, err %v", got, err)
	}
}

func TestOpenAIStreamEnds(t *testing.T) {
	events := llmtest.SplitEvents(llmtest.OpenAISSE([]string{"a", "b"}, llmtest.Usage{InputTokens: 5, OutputTokens: 2}))
	// events: role, "a", "b", finish, usage, [DONE]
	join := func(evs ...[]byte) []byte {
		var out []byte
		for _, e := range evs {
			out = append(out, e...)
		}
		return out
	}
	tests := []struct {
		name string
		raw  []byte
		kind llm.ErrorKind
		ok   bool
	}{
		{"complete", join(events...), 0, true},
		{"finish but no [DONE]", join(events[:5]...), 0, true},
		{"cut before finish", join(events[:3]...), llm.KindUnavailable, false},
		{"content filter without text", []byte(`data: {"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"content_filter"}]}` + "\n\ndata: [DONE]\n\n"), llm.KindBadRequest, false},
		{"malformed chunk", []byte("data: {not json}\n\n"), llm.KindUnavailable, false},
	}
	for _, tc := range tests {
		srv := llmtest.NewOpenAI(t, llmtest.Script{Raw: tc.raw})
		s, err := newOpenAI(t, srv.URL, nil).Stream(context.Background(), llm.Request{User: "q"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := collect(t, s)
		if tc.ok {
			if err != nil || strings.Join(got, "") != "ab" {
				t.Fatalf("%s: %q, %v", tc.name, got, err)
			}
		} else {
			asError(t, err, tc.kind)
		}
		s.Close()
	}
}

// A 200 with a JSON body means the server ignored stream:true.
func TestOpenAINonStreamingAnswer(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"choices":[{"message":{"content":"hi"}}]}`)
	}))
	defer ts.Close()
	_, err := newOpenAI(t, ts.URL+"/v1", nil).Stream(context.Background(), llm.Request{User: "q"})
	e := asError(t, err, llm.KindUnavailable)
	if !strings.Contains(e.Message, "text/event-stream") {
		t.Fatalf("message %q", e.Message)
	}
}

func TestOpenAIValidation(t *testing.T) {
	bad := []struct {
		cfg  llm.OpenAIConfig
		want string
	}{
		{llm.OpenAIConfig{Model: "m"}, "base URL is required"},
		{llm.OpenAIConfig{BaseURL: "localhost:11434/v1", Model: "m"}, "scheme"},
		{llm.OpenAIConfig{BaseURL: "http://localhost:11434/v1"}, "model is required"},
		{llm.OpenAIConfig{BaseURL: "http://localhost:11434/v1", Model: "m\n1"}, "control characters"},
		{llm.OpenAIConfig{BaseURL: "http://localhost:11434/v1", Model: "m", APIKey: "sk a"}, "whitespace"},
		{llm.OpenAIConfig{BaseURL: "http://localhost:11434/v1", Model: "m", Temperature: -0.1}, "temperature"},
		{llm.OpenAIConfig{BaseURL: "http://localhost:11434/v1", Model: "m", MaxTokens: -5}, "max tokens"},
		{llm.OpenAIConfig{BaseURL: "http://localhost:11434/v1", Model: "m", Timeout: -time.Second}, "timeout"},
	}
	for _, tc := range bad {
		_, err := llm.NewOpenAI(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "llm openai: ") {
			t.Errorf("NewOpenAI(%+v) = %v, want error containing %q", tc.cfg, err, tc.want)
		}
	}
	// A trailing slash on the root is tolerated.
	srv := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{"x"}})
	s, err := newOpenAI(t, srv.URL+"/", nil).Stream(context.Background(), llm.Request{User: "q"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if p := srv.Requests()[0].Path; p != "/v1/chat/completions" {
		t.Fatalf("path %q", p)
	}
}

// ---------------------------------------------------------------------------
// Behaviour both providers share, run against both fakes.

type providerKit struct {
	name  string
	fake  func(t testing.TB, s ...llmtest.Script) *llmtest.Server
	make  func(t testing.TB, url string, timeout time.Duration) llm.Provider
	sse   func(deltas []string, u llmtest.Usage) []byte
	first int // SSE events before the first delta (OpenAI opens with a role-only chunk)
}

var kits = []providerKit{
	{
		name: "gemini",
		fake: llmtest.NewGemini,
		make: func(t testing.TB, url string, d time.Duration) llm.Provider {
			return newGemini(t, url, func(c *llm.GeminiConfig) { c.Timeout = d })
		},
		sse: llmtest.GeminiSSE,
	},
	{
		name: "openai",
		fake: llmtest.NewOpenAI,
		make: func(t testing.TB, url string, d time.Duration) llm.Provider {
			return newOpenAI(t, url, func(c *llm.OpenAIConfig) { c.Timeout = d })
		},
		sse:   llmtest.OpenAISSE,
		first: 1,
	},
}

// waitGone waits for the fake to see the client leave. The bound only turns
// a bug (request never aborted) into a failure instead of a hung test.
func waitGone(t *testing.T, srv *llmtest.Server) {
	t.Helper()
	select {
	case <-srv.Disconnected():
	case <-time.After(10 * time.Second):
		t.Fatal("the fake server never saw the client disconnect")
	}
}

func forEachKit(t *testing.T, f func(t *testing.T, k providerKit)) {
	for _, k := range kits {
		t.Run(k.name, func(t *testing.T) { f(t, k) })
	}
}

func TestDeltasExactAndNonEmpty(t *testing.T) {
	in := []string{"", " ", "  Hello", "", "\n", "wor", "ld  ", "\t\"é\"\\n", "🙂", "\r\n", ""}
	want := []string{" ", "  Hello", "\n", "wor", "ld  ", "\t\"é\"\\n", "🙂", "\r\n"}
	forEachKit(t, func(t *testing.T, k providerKit) {
		srv := k.fake(t, llmtest.Script{Deltas: in, Usage: llmtest.Usage{InputTokens: 10, OutputTokens: 8, Model: "m-1"}})
		s, err := k.make(t, srv.URL, 0).Stream(context.Background(), llm.Request{User: "q"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		got, err := collect(t, s)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("deltas %q, %v; want %q", got, err, want)
		}
		if u := s.Usage(); u != (llm.Usage{InputTokens: 10, OutputTokens: 8, Model: "m-1"}) {
			t.Fatalf("usage %+v", u)
		}
		if _, err := s.Recv(); err != io.EOF {
			t.Fatalf("Recv after EOF = %v", err)
		}
	})
}

func TestPerCallTimeoutWhileStreaming(t *testing.T) {
	forEachKit(t, func(t *testing.T, k providerKit) {
		srv := k.fake(t, llmtest.Script{Deltas: []string{"a", "b", "c"}, Hang: true, HangAfter: k.first + 1})
		s, err := k.make(t, srv.URL, 200*time.Millisecond).Stream(context.Background(), llm.Request{User: "q"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		got, err := collect(t, s)
		e := asError(t, err, llm.KindTimeout)
		if !reflect.DeepEqual(got, []string{"a"}) || !errors.Is(err, context.DeadlineExceeded) ||
			!strings.Contains(e.Message, "200ms") {
			t.Fatalf("deltas %q, err %v", got, err)
		}
		waitGone(t, srv)
	})
}

func TestPerCallTimeoutBeforeHeaders(t *testing.T) {
	forEachKit(t, func(t *testing.T, k providerKit) {
		srv := k.fake(t, llmtest.Script{HangBeforeHeaders: true})
		s, err := k.make(t, srv.URL, 100*time.Millisecond).Stream(context.Background(), llm.Request{User: "q"})
		if s != nil {
			t.Fatal("got a stream")
		}
		asError(t, err, llm.KindTimeout)
		waitGone(t, srv)
	})
}

func TestCallerCancelAbortsRequest(t *testing.T) {
	forEachKit(t, func(t *testing.T, k providerKit) {
		srv := k.fake(t, llmtest.Script{Deltas: []string{"a", "b", "c"}, Hang: true, HangAfter: k.first + 2})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s, err := k.make(t, srv.URL, time.Minute).Stream(ctx, llm.Request{User: "q"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if d, err := s.Recv(); d != "a" || err != nil {
			t.Fatalf("first Recv = %q, %v", d, err)
		}
		cancel()
		// "b" may already be buffered; cancellation still wins at once.
		_, err = s.Recv()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Recv after cancel = %v, want context.Canceled", err)
		}
		if llm.KindOf(err) == llm.KindTimeout {
			t.Fatal("a cancellation must not look like a timeout")
		}
		waitGone(t, srv)
		if _, err2 := s.Recv(); !errors.Is(err2, context.Canceled) {
			t.Fatalf("second Recv = %v", err2)
		}
	})
}

func TestCallerCancelBeforeHeaders(t *testing.T) {
	forEachKit(t, func(t *testing.T, k providerKit) {
		srv := k.fake(t, llmtest.Script{HangBeforeHeaders: true})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			for len(srv.Requests()) == 0 && ctx.Err() == nil { // cancel once the request is at the server
				time.Sleep(time.Millisecond)
			}
			cancel()
		}()
		s, err := k.make(t, srv.URL, 0).Stream(ctx, llm.Request{User: "q"})
		if s != nil || !errors.Is(err, context.Canceled) {
			t.Fatalf("Stream = %v, %v; want context.Canceled", s, err)
		}
		waitGone(t, srv)
	})
}

func TestCallerDeadline(t *testing.T) {
	forEachKit(t, func(t *testing.T, k providerKit) {
		srv := k.fake(t, llmtest.Script{Deltas: []string{"a"}, Hang: true, HangAfter: k.first + 1})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		s, err := k.make(t, srv.URL, 0).Stream(ctx, llm.Request{User: "q"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, err = collect(t, s)
		e := asError(t, err, llm.KindTimeout)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(e.Message, "caller deadline") {
			t.Fatalf("err %v", err)
		}
	})
}

func TestCloseAbortsAndIsIdempotent(t *testing.T) {
	forEachKit(t, func(t *testing.T, k providerKit) {
		srv := k.fake(t, llmtest.Script{Deltas: []string{"a", "b"}, Hang: true, HangAfter: k.first + 1})
		s, err := k.make(t, srv.URL, 0).Stream(context.Background(), llm.Request{User: "q"})
		if err != nil {
			t.Fatal(err)
		}
		if d, err := s.Recv(); d != "a" || err != nil {
			t.Fatalf("Recv = %q, %v", d, err)
		}
		// Recv blocked in another goroutine must be released by Close.
		done := make(chan error, 1)
		go func() {
			_, err := s.Recv()
			done <- err
		}()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "stream closed") {
				t.Fatalf("blocked Recv after Close = %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a Recv blocked in another goroutine was not released by Close")
		}
		if _, err := s.Recv(); err == nil || !strings.Contains(err.Error(), "stream closed") {
			t.Fatalf("Recv after Close = %v", err)
		}
		waitGone(t, srv)
	})
}

func TestHugeSSELine(t *testing.T) {
	forEachKit(t, func(t *testing.T, k providerKit) {
		raw := "data: {\"x\":\"" + strings.Repeat("a", 1<<20) + "\"}\n\n"
		srv := k.fake(t, llmtest.Script{Raw: []byte(raw)})
		s, err := k.make(t, srv.URL, 0).Stream(context.Background(), llm.Request{User: "q"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, err = collect(t, s)
		asError(t, err, llm.KindUnavailable)
		if !strings.Contains(err.Error(), "line exceeds 1048576 bytes") {
			t.Fatalf("err %v does not name the limit", err)
		}
	})
}

func TestInvalidRequestsNeverReachTheProvider(t *testing.T) {
	forEachKit(t, func(t *testing.T, k providerKit) {
		srv := k.fake(t, llmtest.Script{Deltas: []string{"x"}})
		p := k.make(t, srv.URL, 0)
		for _, req := range []llm.Request{
			{System: "only a system prompt"},
			{User: "q", Image: &llm.Image{MIME: "text/plain", Base64: "aGk="}},
			{User: "q", Image: &llm.Image{MIME: "image/webp"}},
		} {
			_, err := p.Stream(context.Background(), req)
			asError(t, err, llm.KindBadRequest)
		}
		if n := len(srv.Requests()); n != 0 {
			t.Fatalf("%d requests reached the fake", n)
		}
	})
}

func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	forEachKit(t, func(t *testing.T, k providerKit) {
		u := url
		if k.name == "openai" {
			u += "/v1"
		}
		_, err := k.make(t, u, 0).Stream(context.Background(), llm.Request{User: "q"})
		asError(t, err, llm.KindUnavailable)
	})
}

// Sequential calls on one provider each get their own script (e.g. a retry
// after a 429); the fake hands them out in order.
func TestSequentialCalls(t *testing.T) {
	forEachKit(t, func(t *testing.T, k providerKit) {
		srv := k.fake(t, llmtest.Script{Status: 429}, llmtest.Script{Deltas: []string{"ok"}})
		p := k.make(t, srv.URL, 0)
		_, err := p.Stream(context.Background(), llm.Request{User: "q"})
		asError(t, err, llm.KindRateLimited)
		s, err := p.Stream(context.Background(), llm.Request{User: "q"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got, err := collect(t, s); err != nil || !reflect.DeepEqual(got, []string{"ok"}) {
			t.Fatalf("%q, %v", got, err)
		}
	})
}

func benchmarkStream(b *testing.B, k providerKit, fix string) {
	srv := k.fake(b, llmtest.Script{Raw: fixture(b, fix)})
	p := k.make(b, srv.URL, 0)
	b.ReportAllocs()
	for b.Loop() {
		s, err := p.Stream(context.Background(), llm.Request{System: "s", User: "q"})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := collect(b, s); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// BenchmarkStream measures a whole call (request, SSE parse, decode) against
// the loopback fake replaying a fixture.
func BenchmarkStream(b *testing.B) {
	b.Run("gemini_action", func(b *testing.B) { benchmarkStream(b, kits[0], "gemini_action.sse") })
	b.Run("openai_action", func(b *testing.B) { benchmarkStream(b, kits[1], "openai_action.sse") })
}
