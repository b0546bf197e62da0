package llm

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexy-server/nexy/llm/llmtest"
)

// countingClient is an HTTP client with its own transport that counts the
// connections it dials.
func countingClient(t *testing.T) (*http.Client, *atomic.Int32) {
	var dials atomic.Int32
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, &dials
}

func testOpenAI(t *testing.T, url string, client *http.Client) *OpenAI {
	t.Helper()
	p, err := NewOpenAI(OpenAIConfig{BaseURL: url, Model: "gpt-4o-mini", HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "llm", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// streamAll runs one call to its end; it fails the test after a deadline
// rather than hang.
func streamAll(t *testing.T, p Provider) ([]string, error) {
	t.Helper()
	type result struct {
		deltas []string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		s, err := p.Stream(context.Background(), Request{User: "q"})
		if err != nil {
			done <- result{nil, err}
			return
		}
		defer s.Close()
		var out []string
		for {
			d, err := s.Recv()
			if err == io.EOF {
				done <- result{out, nil}
				return
			}
			if err != nil {
				done <- result{out, err}
				return
			}
			out = append(out, d)
		}
	}()
	select {
	case r := <-done:
		return r.deltas, r.err
	case <-time.After(10 * time.Second):
		t.Fatal("stream did not end")
		return nil, nil
	}
}

// TestOpenAIConnectionReused: after [DONE] the rest of the body (the end of
// the chunked response) is read before the body is closed, so sequential
// calls share one connection. The server ends its response a little after
// [DONE], so a client that closes at [DONE] loses the connection every time.
func TestOpenAIConnectionReused(t *testing.T) {
	defer func(w time.Duration) { drainWait = w }(drainWait)
	drainWait = 10 * time.Second // the test is about reuse, not about the bound

	raw := readFixture(t, "openai_text.sse")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write(raw)
		w.(http.Flusher).Flush()
		time.Sleep(30 * time.Millisecond) // then the terminating chunk
	}))
	defer srv.Close()
	client, dials := countingClient(t)
	p := testOpenAI(t, srv.URL, client)
	for i := range 3 {
		if deltas, err := streamAll(t, p); err != nil || len(deltas) != 31 {
			t.Fatalf("call %d: %d deltas, %v", i, len(deltas), err)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("3 calls dialed %d connections, want 1 (body not drained after [DONE])", n)
	}
}

// TestOpenAIDrainBounded: a server that keeps the body open after [DONE], or
// sends more than the drain bound, still ends the call soon and cleanly, and
// the held response is given up, not leaked.
func TestOpenAIDrainBounded(t *testing.T) {
	raw := readFixture(t, "openai_action.sse")
	junk := append(bytes.Clone(raw), bytes.Repeat([]byte(": padding after the end\n\n"), 400)...)
	for name, sc := range map[string]llmtest.Script{
		"held open":      {Raw: raw, Hang: true, HangAfter: len(llmtest.SplitEvents(raw))},
		"more than 4KiB": {Raw: junk},
		"junk then held": {Raw: junk, Hang: true, HangAfter: len(llmtest.SplitEvents(junk))},
	} {
		t.Run(name, func(t *testing.T) {
			srv := llmtest.NewOpenAI(t, sc)
			client, _ := countingClient(t)
			deltas, err := streamAll(t, testOpenAI(t, srv.URL, client))
			if err != nil || len(deltas) != 33 {
				t.Fatalf("%d deltas, %v; want 33 and a clean end", len(deltas), err)
			}
			if sc.Hang {
				select {
				case <-srv.Disconnected():
				case <-time.After(10 * time.Second):
					t.Fatal("the held response was never given up")
				}
			}
		})
	}
}
