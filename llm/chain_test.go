package llm_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexy-server/nexy/llm"
	"github.com/nexy-server/nexy/llm/llmtest"
)

const (
	primaryLabel  = "llm"
	fallbackLabel = "llm.fallbacks[0]"
	// secretQuestion is the user's text: it must never reach the log.
	secretQuestion = "what is the code of my front door"
	fallbackText   = "Hello from the fallback."
	// waitLimit only turns a hang (a bug) into a failure.
	waitLimit = 10 * time.Second
)

// fallbackUsage is what the fallback's fake reports; the chain must hand it on.
var fallbackUsage = llm.Usage{InputTokens: 12, OutputTokens: 4, Model: "fallback-model-0125"}

// fallbackScript is a fallback that answers.
func fallbackScript() llmtest.Script {
	return llmtest.Script{Deltas: []string{"Hello", " from the", " fallback."},
		Usage: llmtest.Usage{InputTokens: 12, OutputTokens: 4, Model: fallbackUsage.Model}}
}

var question = llm.Request{System: "You are Nexy.", User: secretQuestion}

// entry is a real OpenAI-compatible provider pointed at url.
func entry(t *testing.T, label, url string, timeout time.Duration) llm.ChainEntry {
	t.Helper()
	model := strings.NewReplacer(".", "-", "[", "-", "]", "").Replace(label) + "-model"
	p := newOpenAI(t, url, func(c *llm.OpenAIConfig) { c.Timeout, c.Model = timeout, model })
	return llm.ChainEntry{Provider: p, Label: label, Model: model}
}

func newChain(t *testing.T, bc llm.BreakerConfig, log *slog.Logger, entries ...llm.ChainEntry) *llm.Chain {
	t.Helper()
	c, err := llm.NewChain(entries, bc, log)
	if err != nil {
		t.Fatalf("NewChain: %v", err)
	}
	return c
}

// turn runs one whole call through the chain, as the server would.
func turn(t *testing.T, ctx context.Context, c *llm.Chain) (string, llm.Usage, error) {
	t.Helper()
	s, err := c.Stream(ctx, question)
	if err != nil {
		return "", llm.Usage{}, err
	}
	defer s.Close()
	got, err := collect(t, s)
	return strings.Join(got, ""), s.Usage(), err
}

// mustAnswer runs a turn that must succeed with want.
func mustAnswer(t *testing.T, c *llm.Chain, want string) llm.Usage {
	t.Helper()
	text, u, err := turn(t, context.Background(), c)
	if err != nil || text != want {
		t.Fatalf("turn = %q, %v; want %q", text, err, want)
	}
	return u
}

// logSink collects JSON log lines; slog serialises writes, the mutex makes
// reading while goroutines log safe too.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logSink) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// records returns the lines with the given decision ("" = all lines).
func (l *logSink) records(t *testing.T, decision string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
		}
		if m["scope"] != "llm" {
			t.Fatalf("log line without scope llm: %s", sc.Text())
		}
		if decision == "" || m["decision"] == decision {
			out = append(out, m)
		}
	}
	return out
}

// decisions lists the logged decisions in order.
func (l *logSink) decisions(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, m := range l.records(t, "") {
		out = append(out, fmt.Sprint(m["decision"]))
	}
	return out
}

// checkPrivate fails if the request text or the API key reached the log.
func (l *logSink) checkPrivate(t *testing.T) {
	t.Helper()
	if s := l.String(); strings.Contains(s, secretQuestion) || strings.Contains(s, testOpenAIKey) {
		t.Fatalf("log carries the request text or the key:\n%s", s)
	}
}

// gate is an OpenAI-compatible fake the test steers: each request is
// announced on arrived (numbered from 1), then answered by respond.
type gate struct {
	URL     string
	arrived chan int
	hits    atomic.Int32
}

func newGate(t *testing.T, respond func(n int, w http.ResponseWriter, r *http.Request)) *gate {
	t.Helper()
	g := &gate{arrived: make(chan int, 64)}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		n := int(g.hits.Add(1))
		select {
		case g.arrived <- n:
		default:
		}
		respond(n, w, r)
	}))
	// Closing the connections first ends handlers still holding a request.
	t.Cleanup(func() { ts.CloseClientConnections(); ts.Close() })
	g.URL = ts.URL + "/v1"
	return g
}

// waitArrival waits for the next request to reach the fake.
func (g *gate) waitArrival(t *testing.T) int {
	t.Helper()
	select {
	case n := <-g.arrived:
		return n
	case <-time.After(waitLimit):
		t.Fatal("no request reached the fake")
		return 0
	}
}

func answer(w http.ResponseWriter, text string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Write(llmtest.OpenAISSE([]string{text}, llmtest.Usage{InputTokens: 1, OutputTokens: 1}))
}

func refuse(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(llmtest.OpenAIError(status, http.StatusText(status)))
}

// holdUntilGone answers nothing until the client leaves.
func holdUntilGone(_ int, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

// dropAfterRoleChunk sends a 200 and the role-only first chunk, then cuts the
// TCP connection without ending the chunked body: a provider process that died.
func dropAfterRoleChunk(_ int, w http.ResponseWriter, _ *http.Request) {
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	ev := llmtest.SplitEvents(llmtest.OpenAISSE([]string{"never"}, llmtest.Usage{}))[0]
	fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(ev), ev)
	buf.Flush()
}

// fake is a primary under test: its URL and how many requests it saw.
type fake struct {
	url     string
	hits    func() int
	arrived <-chan int // gated fakes only: announces each request
}

func scripted(s ...llmtest.Script) func(t *testing.T) fake {
	return func(t *testing.T) fake {
		srv := llmtest.NewOpenAI(t, s...)
		return fake{url: srv.URL, hits: func() int { return len(srv.Requests()) }}
	}
}

func gated(respond func(int, http.ResponseWriter, *http.Request)) func(t *testing.T) fake {
	return func(t *testing.T) fake {
		g := newGate(t, respond)
		return fake{url: g.URL, hits: func() int { return int(g.hits.Load()) }, arrived: g.arrived}
	}
}

// roleOnly is a stream that says "assistant" and ends: a 200 without text.
func roleOnly() []byte {
	return llmtest.SplitEvents(llmtest.OpenAISSE([]string{"never"}, llmtest.Usage{}))[0]
}

func TestChainFallsBackBeforeText(t *testing.T) {
	tests := []struct {
		name    string
		primary func(t *testing.T) fake
		timeout time.Duration
		kind    llm.ErrorKind
	}{
		{"HTTP 500", scripted(llmtest.Script{Status: 500}), 0, llm.KindUnavailable},
		{"HTTP 401 echoing the key", scripted(llmtest.Script{Status: 401,
			Raw: llmtest.OpenAIError(401, "Incorrect API key provided: "+testOpenAIKey)}), 0, llm.KindAuth},
		{"HTTP 429", scripted(llmtest.Script{Status: 429}), 0, llm.KindRateLimited},
		{"timeout before headers", scripted(llmtest.Script{HangBeforeHeaders: true}), 200 * time.Millisecond, llm.KindTimeout},
		{"timeout after the role chunk", scripted(llmtest.Script{Deltas: []string{"late"}, Hang: true, HangAfter: 1}),
			200 * time.Millisecond, llm.KindTimeout},
		{"stream ends after the role chunk", scripted(llmtest.Script{Raw: roleOnly()}), 0, llm.KindUnavailable},
		{"connection dropped after the role chunk", gated(dropAfterRoleChunk), 0, llm.KindUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			primary := tc.primary(t)
			fb := llmtest.NewOpenAI(t, fallbackScript())
			var logs logSink
			c := newChain(t, llm.BreakerConfig{Failures: 3, Cooldown: time.Minute}, logs.logger(),
				entry(t, primaryLabel, primary.url, tc.timeout), entry(t, fallbackLabel, fb.URL, 0))

			if u := mustAnswer(t, c, fallbackText); u != fallbackUsage {
				t.Fatalf("usage %+v, want the fallback's %+v", u, fallbackUsage)
			}
			if primary.hits() != 1 || len(fb.Requests()) != 1 || fb.Requests()[0].User != secretQuestion {
				t.Fatalf("primary saw %d requests, fallback %d", primary.hits(), len(fb.Requests()))
			}
			st := c.States()
			p, f := st[0], st[1]
			if p.Calls != 1 || p.Failures != 1 || p.ConsecutiveFailures != 1 || p.Fallbacks != 1 ||
				p.LastKind != tc.kind.String() || p.LastError == "" || p.State != "closed" {
				t.Fatalf("primary state %+v", p)
			}
			if strings.Contains(p.LastError, testOpenAIKey) {
				t.Fatalf("LastError carries the key: %q", p.LastError)
			}
			if f.Calls != 1 || f.Failures != 0 || f.Fallbacks != 0 || f.LastError != "" {
				t.Fatalf("fallback state %+v", f)
			}
			recs := logs.records(t, "llm_fallback")
			if len(recs) != 1 || recs[0]["from"] != primaryLabel || recs[0]["to"] != fallbackLabel ||
				recs[0]["kind"] != tc.kind.String() || recs[0]["error"] == "" {
				t.Fatalf("llm_fallback lines %v", recs)
			}
			if d := logs.decisions(t); len(d) != 1 {
				t.Fatalf("decisions %v, want only llm_fallback", d)
			}
			logs.checkPrivate(t)
		})
	}
}

func TestChainNeverFallsBackAfterText(t *testing.T) {
	events := llmtest.SplitEvents(llmtest.OpenAISSE([]string{"Hel", "lo"}, llmtest.Usage{}))
	cut := append(append([]byte(nil), events[0]...), events[1]...) // role, "Hel", then EOF
	tests := []struct {
		name    string
		script  llmtest.Script
		timeout time.Duration
		kind    llm.ErrorKind
	}{
		{"stream cut after text", llmtest.Script{Raw: cut}, 0, llm.KindUnavailable},
		{"timeout after text", llmtest.Script{Deltas: []string{"Hel", "lo"}, Hang: true, HangAfter: 2},
			200 * time.Millisecond, llm.KindTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			primary := llmtest.NewOpenAI(t, tc.script)
			fb := llmtest.NewOpenAI(t, fallbackScript())
			var logs logSink
			c := newChain(t, llm.BreakerConfig{Failures: 1, Cooldown: time.Minute}, logs.logger(),
				entry(t, primaryLabel, primary.URL, tc.timeout), entry(t, fallbackLabel, fb.URL, 0))
			s, err := c.Stream(context.Background(), question)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if d, err := s.Recv(); d != "Hel" || err != nil {
				t.Fatalf("first Recv = %q, %v", d, err)
			}
			_, err = s.Recv()
			asError(t, err, tc.kind)
			if _, again := s.Recv(); again == nil || again.Error() != err.Error() {
				t.Fatalf("Recv after the error = %v, want %v again", again, err)
			}
			if n := len(fb.Requests()); n != 0 {
				t.Fatalf("the fallback was called %d times after text", n)
			}
			// The breaker measures whether a provider starts answering; a break
			// after text is returned, not counted.
			if st := c.States(); st[0].Failures != 0 || st[0].State != "closed" || st[1].Calls != 0 {
				t.Fatalf("states %+v", st)
			}
			if d := logs.decisions(t); len(d) != 0 {
				t.Fatalf("decisions %v", d)
			}
		})
	}
}

func TestChainCallerCancelIsNoFault(t *testing.T) {
	tests := []struct {
		name    string
		primary func(t *testing.T) fake
		run     func(t *testing.T, c *llm.Chain, primary fake) error
	}{
		{"cancelled before headers", gated(holdUntilGone), func(t *testing.T, c *llm.Chain, p fake) error {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				// Cancel once the request is at the fake; the bound only ends a hang.
				select {
				case <-p.arrived:
				case <-time.After(waitLimit):
				}
				cancel()
			}()
			_, err := c.Stream(ctx, question)
			if p.hits() != 1 {
				t.Fatalf("the fake saw %d requests before the cancel", p.hits())
			}
			return err
		}},
		{"cancelled before the first text", scripted(llmtest.Script{Deltas: []string{"a"}, Hang: true, HangAfter: 1}),
			func(t *testing.T, c *llm.Chain, _ fake) error {
				ctx, cancel := context.WithCancel(context.Background())
				s, err := c.Stream(ctx, question)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				cancel()
				_, err = s.Recv()
				return err
			}},
		{"cancelled before the call", scripted(fallbackScript()), func(t *testing.T, c *llm.Chain, _ fake) error {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_, err := c.Stream(ctx, question)
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			primary := tc.primary(t)
			fb := llmtest.NewOpenAI(t, fallbackScript())
			var logs logSink
			c := newChain(t, llm.BreakerConfig{Failures: 1, Cooldown: time.Minute}, logs.logger(),
				entry(t, primaryLabel, primary.url, 0), entry(t, fallbackLabel, fb.URL, 0))
			err := tc.run(t, c, primary)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			checkNoFault(t, c, fb, &logs)
		})
	}
}

// The caller's own deadline surfaces as KindTimeout from the provider; the
// chain must still see it as the caller's, not the provider's.
func TestChainCallerDeadlineIsNoFault(t *testing.T) {
	primary := llmtest.NewOpenAI(t, llmtest.Script{HangBeforeHeaders: true})
	fb := llmtest.NewOpenAI(t, fallbackScript())
	var logs logSink
	c := newChain(t, llm.BreakerConfig{Failures: 1, Cooldown: time.Minute}, logs.logger(),
		entry(t, primaryLabel, primary.URL, 0), entry(t, fallbackLabel, fb.URL, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err := c.Stream(ctx, question)
	asError(t, err, llm.KindTimeout)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	checkNoFault(t, c, fb, &logs)
}

// checkNoFault asserts nothing was counted, logged or sent to the fallback.
func checkNoFault(t *testing.T, c *llm.Chain, fb *llmtest.Server, logs *logSink) {
	t.Helper()
	if n := len(fb.Requests()); n != 0 {
		t.Fatalf("fallback called %d times for a cancelled turn", n)
	}
	st := c.States()
	if p := st[0]; p.Failures != 0 || p.ConsecutiveFailures != 0 || p.Fallbacks != 0 || p.State != "closed" {
		t.Fatalf("primary state %+v", p)
	}
	if d := logs.decisions(t); len(d) != 0 {
		t.Fatalf("decisions %v", d)
	}
}

func TestChainAllFailReturnsLastError(t *testing.T) {
	t.Run("both fail at Stream", func(t *testing.T) {
		primary := llmtest.NewOpenAI(t, llmtest.Script{Status: 500})
		fb := llmtest.NewOpenAI(t, llmtest.Script{Status: 429})
		var logs logSink
		c := newChain(t, llm.BreakerConfig{Failures: 3, Cooldown: time.Minute}, logs.logger(),
			entry(t, primaryLabel, primary.URL, 0), entry(t, fallbackLabel, fb.URL, 0))
		s, err := c.Stream(context.Background(), question)
		if s != nil {
			t.Fatal("got a stream although every provider failed")
		}
		if e := asError(t, err, llm.KindRateLimited); e.Status != 429 || llm.KindOf(err) != llm.KindRateLimited {
			t.Fatalf("err %+v", e)
		}
		st := c.States()
		if st[0].Fallbacks != 1 || st[1].Fallbacks != 0 || st[1].Failures != 1 || st[1].LastKind != "rate_limited" {
			t.Fatalf("states %+v", st)
		}
		if d := logs.decisions(t); len(d) != 1 || d[0] != "llm_fallback" {
			t.Fatalf("decisions %v", d)
		}
	})
	t.Run("primary fails at Recv, fallback at Stream", func(t *testing.T) {
		primary := llmtest.NewOpenAI(t, llmtest.Script{Raw: roleOnly()})
		fb := llmtest.NewOpenAI(t, llmtest.Script{Status: 503})
		c := newChain(t, llm.BreakerConfig{}, nil,
			entry(t, primaryLabel, primary.URL, 0), entry(t, fallbackLabel, fb.URL, 0))
		s, err := c.Stream(context.Background(), question)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, err = s.Recv()
		if e := asError(t, err, llm.KindUnavailable); e.Status != 503 {
			t.Fatalf("err %+v, want the fallback's 503", e)
		}
		if _, again := s.Recv(); again != err {
			t.Fatalf("Recv again = %v, want the same error", again)
		}
		if u := s.Usage(); u != (llm.Usage{}) {
			t.Fatalf("usage %+v without an answer", u)
		}
	})
}

// A BadRequest is the request's fault: the next provider may accept it
// (e.g. one that takes images), but the breaker does not count it.
func TestChainBadRequestFallsBackUncounted(t *testing.T) {
	primary := llmtest.NewOpenAI(t, llmtest.Script{Status: 400, Raw: llmtest.OpenAIError(400, "Invalid image.")})
	fb := llmtest.NewOpenAI(t, fallbackScript())
	var logs logSink
	c := newChain(t, llm.BreakerConfig{Failures: 1, Cooldown: time.Minute}, logs.logger(),
		entry(t, primaryLabel, primary.URL, 0), entry(t, fallbackLabel, fb.URL, 0))
	mustAnswer(t, c, fallbackText)
	mustAnswer(t, c, fallbackText)
	if n := len(primary.Requests()); n != 2 {
		t.Fatalf("primary saw %d requests, want 2 (never skipped)", n)
	}
	p := c.States()[0]
	if p.State != "closed" || p.ConsecutiveFailures != 0 || p.Failures != 2 || p.LastKind != "bad_request" ||
		!strings.Contains(p.LastError, "Invalid image.") {
		t.Fatalf("primary state %+v", p)
	}
	if d := logs.decisions(t); strings.Join(d, ",") != "llm_fallback,llm_fallback" {
		t.Fatalf("decisions %v", d)
	}
}

// An empty answer (a clean end without text) is an answer: no fallback, and
// it resets the breaker's count.
func TestChainEmptyAnswerIsSuccess(t *testing.T) {
	primary := llmtest.NewOpenAI(t, llmtest.Script{Status: 500}, llmtest.Script{Usage: llmtest.Usage{Model: "primary-model-0125"}})
	fb := llmtest.NewOpenAI(t, fallbackScript())
	c := newChain(t, llm.BreakerConfig{Failures: 2, Cooldown: time.Minute}, nil,
		entry(t, primaryLabel, primary.URL, 0), entry(t, fallbackLabel, fb.URL, 0))
	mustAnswer(t, c, fallbackText)
	if n := c.States()[0].ConsecutiveFailures; n != 1 {
		t.Fatalf("consecutive failures %d after one 500", n)
	}
	u := mustAnswer(t, c, "")
	if u.Model != "primary-model-0125" {
		t.Fatalf("usage %+v, want the primary's", u)
	}
	if n := len(fb.Requests()); n != 1 {
		t.Fatalf("fallback saw %d requests, want 1", n)
	}
	if p := c.States()[0]; p.ConsecutiveFailures != 0 || p.Calls != 2 || p.Failures != 1 {
		t.Fatalf("primary state %+v", p)
	}
}

// Close while the chain is starting the fallback aborts that call at once,
// and the abandoned call counts as nothing.
func TestChainCloseDuringFallback(t *testing.T) {
	primary := llmtest.NewOpenAI(t, llmtest.Script{Raw: roleOnly()})
	fb := newGate(t, holdUntilGone)
	c := newChain(t, llm.BreakerConfig{Failures: 1, Cooldown: time.Minute}, nil,
		entry(t, primaryLabel, primary.URL, 0), entry(t, fallbackLabel, fb.URL, 0))
	s, err := c.Stream(context.Background(), question)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Recv()
		done <- err
	}()
	fb.waitArrival(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "stream closed") {
			t.Fatalf("Recv = %v, want stream closed", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Close did not release a Recv waiting on the fallback")
	}
	if _, err := s.Recv(); err == nil || !strings.Contains(err.Error(), "stream closed") {
		t.Fatalf("Recv after Close = %v", err)
	}
	if f := c.States()[1]; f.Calls != 1 || f.Failures != 0 || f.State != "closed" {
		t.Fatalf("fallback state %+v", f)
	}
}

func TestChainCloseIsIdempotent(t *testing.T) {
	srv := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{"a", "b"}, Hang: true, HangAfter: 2})
	c := newChain(t, llm.BreakerConfig{}, nil, entry(t, primaryLabel, srv.URL, 0))
	s, err := c.Stream(context.Background(), question)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := s.Recv(); d != "a" || err != nil {
		t.Fatalf("Recv = %q, %v", d, err)
	}
	for range 2 {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Recv(); err == nil || !strings.Contains(err.Error(), "stream closed") {
		t.Fatalf("Recv after Close = %v", err)
	}
	waitGone(t, srv)
	if p := c.States()[0]; p.Calls != 1 || p.Failures != 0 {
		t.Fatalf("state %+v", p)
	}
}

// Many turns at once through a failing primary: run with -race.
func TestChainConcurrentTurns(t *testing.T) {
	primary := llmtest.NewOpenAI(t, llmtest.Script{Status: 502})
	fb := llmtest.NewOpenAI(t, fallbackScript())
	c := newChain(t, llm.BreakerConfig{Failures: 1000, Cooldown: time.Minute}, nil,
		entry(t, primaryLabel, primary.URL, 0), entry(t, fallbackLabel, fb.URL, 0))
	const n = 16
	errs := make(chan error, n)
	for range n {
		go func() {
			text, _, err := turn(t, context.Background(), c)
			if err == nil && text != fallbackText {
				err = fmt.Errorf("text %q", text)
			}
			errs <- err
		}()
	}
	for range n {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(waitLimit):
			t.Fatal("a turn did not finish")
		}
	}
	st := c.States()
	if st[0].Calls != n || st[0].Failures != n || st[0].ConsecutiveFailures != n || st[1].Calls != n {
		t.Fatalf("states %+v", st)
	}
}

func TestChainNameStatesAndLabels(t *testing.T) {
	srv := llmtest.NewOpenAI(t, fallbackScript())
	p := newOpenAI(t, srv.URL, nil)
	c := newChain(t, llm.BreakerConfig{}, nil,
		llm.ChainEntry{Provider: p, Model: "gpt-4o-mini"}, entry(t, fallbackLabel, srv.URL, 0))
	if c.Name() != "openai" {
		t.Fatalf("Name = %q", c.Name())
	}
	want := []llm.ProviderState{
		{Label: "openai", Provider: "openai", Model: "gpt-4o-mini", State: "closed"},
		{Label: fallbackLabel, Provider: "openai", Model: "llm-fallbacks-0-model", State: "closed"},
	}
	if st := c.States(); len(st) != 2 || st[0] != want[0] || st[1] != want[1] {
		t.Fatalf("States = %+v, want %+v", st, want)
	}
}

func TestNewChainValidation(t *testing.T) {
	p := newOpenAI(t, "http://127.0.0.1:1/v1", nil)
	bad := []struct {
		entries []llm.ChainEntry
		bc      llm.BreakerConfig
		want    string
	}{
		{nil, llm.BreakerConfig{}, "at least one provider"},
		{[]llm.ChainEntry{{Label: "llm"}}, llm.BreakerConfig{}, "no provider"},
		{[]llm.ChainEntry{{Provider: p}}, llm.BreakerConfig{Failures: -1}, "negative"},
		{[]llm.ChainEntry{{Provider: p}}, llm.BreakerConfig{Failures: 3}, "cooldown"},
	}
	for _, tc := range bad {
		if _, err := llm.NewChain(tc.entries, tc.bc, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewChain(%+v, %+v) = %v, want error containing %q", tc.entries, tc.bc, err, tc.want)
		}
	}
}

// stubProvider answers without usage model, as a provider might; only the
// chain's Usage fill-in is under test here (real providers always set one).
type stubProvider struct{}

func (stubProvider) Name() string { return "stub" }
func (stubProvider) Stream(context.Context, llm.Request) (llm.Stream, error) {
	return &stubStream{}, nil
}

type stubStream struct{ sent bool }

func (s *stubStream) Recv() (string, error) {
	if s.sent {
		return "", io.EOF
	}
	s.sent = true
	return "hi", nil
}
func (s *stubStream) Usage() llm.Usage { return llm.Usage{InputTokens: 2, OutputTokens: 1} }
func (s *stubStream) Close() error     { return nil }

func TestChainUsageModelFromEntry(t *testing.T) {
	c := newChain(t, llm.BreakerConfig{}, nil, llm.ChainEntry{Provider: stubProvider{}, Label: "llm", Model: "stub-1"})
	if u := mustAnswer(t, c, "hi"); u != (llm.Usage{InputTokens: 2, OutputTokens: 1, Model: "stub-1"}) {
		t.Fatalf("usage %+v", u)
	}
}
