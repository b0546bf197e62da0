package server

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexy-server/nexy/llm/llmtest"
)

// wyomingFake is a Wyoming TTS server on loopback: it reads each client's
// synthesize event (header line, then its data) and replays a recording of
// wyoming-piper's answer (tts/testdata/wyoming).
type wyomingFake struct {
	addr  string
	mu    sync.Mutex
	texts []string
}

func newWyomingFake(t *testing.T) *wyomingFake {
	t.Helper()
	events, err := os.ReadFile(filepath.Join("..", "tts", "testdata", "wyoming", "piper_hello.events"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &wyomingFake{addr: "tcp://" + ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(waitLimit))
				f.serve(c, events)
			}()
		}
	}()
	return f
}

func (f *wyomingFake) serve(c net.Conn, events []byte) {
	r := bufio.NewReader(c)
	line, err := r.ReadBytes('\n')
	if err != nil {
		return
	}
	var head struct {
		Type       string          `json:"type"`
		Data       json.RawMessage `json:"data"`
		DataLength int             `json:"data_length"`
	}
	if json.Unmarshal(line, &head) != nil || head.Type != "synthesize" || head.DataLength > 1<<16 {
		return
	}
	data := head.Data
	if head.DataLength > 0 {
		data = make([]byte, head.DataLength)
		if _, err := io.ReadFull(r, data); err != nil {
			return
		}
	}
	var req struct {
		Text string `json:"text"`
	}
	_ = json.Unmarshal(data, &req)
	f.mu.Lock()
	f.texts = append(f.texts, req.Text)
	f.mu.Unlock()
	_, _ = c.Write(events)
}

// TestWyomingTurn: a whole turn spoken by a Wyoming server (22050 Hz piper
// audio) reaches the client in the wire format, like every other provider.
func TestWyomingTurn(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Hello there, how can I help?"}`}})
	wy := newWyomingFake(t)
	cfg := testConfig(t, "openai", fake.URL, "http://127.0.0.1:1/v1")
	cfg.TTS.Provider, cfg.TTS.BaseURL = "wyoming", wy.addr
	h := startServer(t, cfg)
	msgs, err := h.call(t, commitReq(newSession(), "hello"))
	if err != nil {
		t.Fatal(err)
	}
	a := checkAnswer(t, msgs) // every chunk: 48 kHz mono int16, even, ≤ 4096 bytes
	// 27845 samples at 22050 Hz are 1.26 s: 121,228 bytes at 48 kHz, less
	// the all-zero chunks of the recording's leading and trailing silence,
	// which are not sent (the client skips them).
	if a.bytes < 60000 || a.bytes > 121228 {
		t.Errorf("%d bytes of audio, want up to 121228 (1.26 s at 48 kHz)", a.bytes)
	}
	wy.mu.Lock()
	defer wy.mu.Unlock()
	if len(wy.texts) != 1 || !strings.Contains(wy.texts[0], "Hello there") {
		t.Errorf("the Wyoming server was asked %q", wy.texts)
	}
}
