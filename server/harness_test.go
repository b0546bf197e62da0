package server

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/internal/providers"
	pb "github.com/nexy-server/nexy/proto"
	"github.com/nexy-server/nexy/store"
)

// testKey is generated per run: no secret ever lives in the repo.
func testKey(t testing.TB) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "test-" + hex.EncodeToString(b[:])
}

// speechFake is a local OpenAI-compatible /v1/audio/speech server that streams
// a recorded WAV (espeak-ng output) in small pieces, like a real server.
type speechFake struct {
	URL        string
	wav        []byte
	mu         sync.Mutex
	texts      []string
	hang       bool          // hold the response open after the header until the client leaves
	delay      time.Duration // wait before answering each request
	repeat     int           // answer with the WAV this many times over (one WAV per sentence, as some servers do); 0 = once
	failOn     string        // answer requests whose body contains this with HTTP 500 ("" = never)
	failFirst  int           // answer the first failFirst requests with failStatus
	failStatus int           // the status of failOn and failFirst; 0 = 500
	// holdUntil: a request whose body contains holdUntil[0] stops after its
	// first piece until a request containing holdUntil[1] has arrived.
	holdUntil   [2]string
	holdExpired bool          // the awaited request never came while holding
	gone        chan struct{} // closed when a client left mid-response
	once        sync.Once
}

func newSpeechFake(t testing.TB) *speechFake {
	t.Helper()
	wav, err := os.ReadFile(filepath.Join("..", "testdata", "tts", "openai_hello_24k.wav"))
	if err != nil {
		t.Fatal(err)
	}
	f := &speechFake{wav: wav, gone: make(chan struct{})}
	ts := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(ts.Close)
	f.URL = ts.URL + "/v1"
	return f
}

func (f *speechFake) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/audio/speech" {
		http.Error(w, `{"error":{"message":"not found"}}`, http.StatusNotFound)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	f.mu.Lock()
	f.texts = append(f.texts, string(body))
	hang, delay, out := f.hang, f.delay, f.wav
	for range f.repeat - 1 {
		out = append(out[:len(out):len(out)], f.wav...)
	}
	failing := f.failOn != "" && strings.Contains(string(body), f.failOn) || len(f.texts) <= f.failFirst
	failStatus := cmp.Or(f.failStatus, http.StatusInternalServerError)
	hold := f.holdUntil[0] != "" && strings.Contains(string(body), f.holdUntil[0])
	f.mu.Unlock()

	if failing {
		http.Error(w, `{"error":{"message":"engine crashed"}}`, failStatus)
		return
	}
	time.Sleep(delay)
	w.Header().Set("Content-Type", "audio/wav")
	fl := w.(http.Flusher)
	for off := 0; off < len(out); off += 1000 {
		if _, err := w.Write(out[off:min(off+1000, len(out))]); err != nil {
			return
		}
		fl.Flush()
		if hang && off == 0 {
			select { // until the client leaves (bounded: a test never hangs here)
			case <-r.Context().Done():
			case <-time.After(waitLimit):
			}
			f.once.Do(func() { close(f.gone) })
			return
		}
		if hold && off == 0 && !f.waitFor(f.holdUntil[1]) {
			f.mu.Lock()
			f.holdExpired = true
			f.mu.Unlock()
		}
	}
}

// waitFor blocks until a request whose body contains s has arrived; false
// if it did not within a generous bound.
func (f *speechFake) waitFor(s string) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, body := range f.requests() {
			if strings.Contains(body, s) {
				return true
			}
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

func (f *speechFake) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.texts...)
}

// testConfig is a dev config on loopback port 0 with the LLM and TTS pointed at fakes.
func testConfig(t testing.TB, llmProvider, llmURL, ttsURL string) *config.Config {
	t.Helper()
	c := config.Default("dev")
	c.Server.DataDir = t.TempDir()
	c.Listen.GRPCPlain = "127.0.0.1:0"
	c.Listen.HTTPPlain = "127.0.0.1:0"
	c.LLM.Provider, c.LLM.BaseURL, c.LLM.APIKey = llmProvider, llmURL, testKey(t)
	if llmProvider == "openai" {
		c.LLM.Model = "llama3.2"
	}
	c.TTS.Provider, c.TTS.BaseURL = "openai", ttsURL
	c.Log.Level = "debug"
	// The LLM analyzer would make a second model call after each turn;
	// tests that count model requests expect one. Memory tests opt in.
	c.Memory.Analyzer = "heuristic"
	// A loopback model turns the preemptive answer on ("auto"); tests that
	// send COLLECTs and count model calls expect none ahead of COMMIT.
	// preempt_test.go turns it on.
	c.Preempt.Enabled = "off"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return &c
}

// harness is a running server and a real gRPC client connected to it.
type harness struct {
	srv    *Server
	db     *store.DB         // the server's store
	cache  *store.AudioCache // its phrase-audio cache
	client pb.StreamingServiceClient
	log    *syncBuffer
	stop   func() error // closes the client, shuts the server down, returns Serve's error
}

// syncBuffer collects the server log for assertions.
type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// startServer starts a server on cfg and a client connected to it; both stop
// when the test ends, or earlier through harness.stop.
func startServer(t testing.TB, cfg *config.Config, opts ...func(*Deps)) *harness {
	t.Helper()
	logs := &syncBuffer{}
	log := NewLogger(logs, cfg.Log, cfg.Secrets())
	deps, closeDeps, err := buildDeps(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	for _, opt := range opts {
		opt(&deps)
	}
	srv, err := New(cfg, log, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var serveErr error
	db, _ := deps.Store.(*store.DB)
	cache, _ := deps.AudioCache.(*store.AudioCache)
	h := &harness{srv: srv, db: db, cache: cache, client: pb.NewStreamingServiceClient(conn), log: logs}
	h.stop = func() error {
		once.Do(func() {
			conn.Close()
			cancel()
			select {
			case serveErr = <-done:
			case <-time.After(cfg.Limits.GracePeriod.Duration + waitLimit):
				serveErr = errors.New("Serve did not return after shutdown")
			}
			closeDeps() // after the server, as main.go does: the writer is flushed last
		})
		return serveErr
	}
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return h
}

// buildDeps wires what main.go wires: a store in cfg's data dir, the
// phrase-audio cache, and the configured providers.
func buildDeps(cfg *config.Config, log *slog.Logger) (Deps, func(), error) {
	db, err := store.Open(filepath.Join(cfg.Server.DataDir, store.FileName), store.Options{Log: log})
	if err != nil {
		return Deps{}, nil, err
	}
	deps := Deps{Store: db}
	closers := []func() error{db.Close}
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			_ = closers[i]()
		}
	}
	if n := cfg.Store.AudioCacheBytes; n > 0 {
		cache, err := store.OpenAudioCache(filepath.Join(cfg.Server.DataDir, store.AudioCacheFile), int64(n))
		if err != nil {
			closeAll()
			return Deps{}, nil, err
		}
		closers = append(closers, cache.Close)
		deps.AudioCache = cache
	}
	if deps.LLM, deps.LLMMissing, err = providers.LLM(cfg, log); err == nil {
		deps.TTS, err = providers.TTS(cfg)
	}
	if err == nil {
		deps.TTSFallback, err = providers.TTSFallback(cfg)
	}
	if err != nil {
		closeAll()
		return Deps{}, nil, err
	}
	return deps, closeAll, nil
}

const testHW = "6E3F2C1A-0B4D-4E5F-8A9B-0C1D2E3F4A5B"

func newSession() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func ptr[T any](v T) *T { return &v }

// commitReq is a COMMIT exactly as the shipped client builds it: optional
// strings present but empty, chunk_seq 0.
func commitReq(sid, prompt string) *pb.StreamRequest {
	return &pb.StreamRequest{Prompt: prompt, Screenshot: ptr(""), HardwareId: testHW, SessionId: sid,
		Phase: pb.RequestPhase_REQUEST_PHASE_COMMIT, ChunkText: ptr("")}
}

func collectReq(sid string, seq int32, text string) *pb.StreamRequest {
	return &pb.StreamRequest{Screenshot: ptr(""), HardwareId: testHW, SessionId: sid,
		Phase: pb.RequestPhase_REQUEST_PHASE_COLLECT, ChunkSeq: seq, ChunkText: ptr(text)}
}

// readAll drains a stream; err is the final status (nil for OK).
func readAll(stream grpc.ServerStreamingClient[pb.StreamResponse]) ([]*pb.StreamResponse, error) {
	var msgs []*pb.StreamResponse
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return msgs, nil
		}
		if err != nil {
			return msgs, err
		}
		msgs = append(msgs, m)
	}
}

func (h *harness) call(t testing.TB, req *pb.StreamRequest) ([]*pb.StreamResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := h.client.StreamAudio(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return readAll(stream)
}

// waitClosed waits for ch to close, failing the test with what it waited for
// instead of hanging: no test waits on a channel without a deadline.
func waitClosed[T any](t testing.TB, ch <-chan T, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("timed out after %v waiting for %s", waitLimit, what)
	}
}

// waitLimit bounds every wait in the tests; generous, for a loaded CI machine
// running with -race.
const waitLimit = 20 * time.Second
