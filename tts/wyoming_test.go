package tts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexy-server/nexy/audio"
	"github.com/nexy-server/nexy/internal/fault"
)

// piper_hello.events: espeak-ng "Hello from Nexy." at 22050 Hz mono s16,
// 27845 samples in 28 chunks of at most 1024 samples (testdata/wyoming/README.md).
const (
	wyHelloSamples = 27845
	wyHelloChunks  = 28
	wyWait         = 10 * time.Second // bound on every wait in these tests
)

func wyFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "wyoming", name))
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return b
}

// wyEvent frames one event with the provider's own writer.
func wyEvent(t testing.TB, typ string, data any, payload []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := writeWyomingEvent(&b, typ, data, payload); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func wyFormat(rate, width, channels int) map[string]any {
	return map[string]any{"rate": rate, "width": width, "channels": channels}
}

// wyEvents parses a fixture into its events (payloads copied).
func wyEvents(t testing.TB, stream []byte) []wyomingEvent {
	t.Helper()
	r := newWyomingReader(bytes.NewReader(stream))
	var out []wyomingEvent
	for {
		ev, err := r.next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("event %d: %v", len(out), err)
		}
		ev.Payload = bytes.Clone(ev.Payload)
		out = append(out, ev)
	}
}

// wyHelloPCM is the fixture's audio as the server sent it (22050 Hz s16 mono).
func wyHelloPCM(t testing.TB) []byte {
	t.Helper()
	var pcm []byte
	for _, ev := range wyEvents(t, wyFixture(t, "piper_hello.events")) {
		pcm = append(pcm, ev.Payload...)
	}
	return pcm
}

// wySeen is what the fake read from the client.
type wySeen struct {
	Type string
	Data map[string]json.RawMessage
}

func (s wySeen) text() string {
	var v string
	json.Unmarshal(s.Data["text"], &v)
	return v
}

// voice is the voice name sent, and whether a voice was sent at all.
func (s wySeen) voice() (string, bool) {
	raw, ok := s.Data["voice"]
	if !ok {
		return "", false
	}
	var v struct {
		Name string `json:"name"`
	}
	json.Unmarshal(raw, &v)
	return v.Name, true
}

// wyFake is a Wyoming TTS server on loopback: per connection it reads one
// event, records it, and runs answer, which writes the server's side.
type wyFake struct {
	ln     net.Listener
	answer func(conn net.Conn)
	mu     sync.Mutex
	seen   []wySeen
	wg     sync.WaitGroup
	closed chan struct{} // receives when a handler sees the client hang up
}

func newWyFake(t *testing.T, answer func(conn net.Conn)) *wyFake {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &wyFake{ln: ln, answer: answer, closed: make(chan struct{}, 16)}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(func() {
		ln.Close()
		done := make(chan struct{})
		go func() { f.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(wyWait):
			t.Error("fake Wyoming server handlers did not end")
		}
	})
	return f
}

func (f *wyFake) addr() string { return "tcp://" + f.ln.Addr().String() }

func (f *wyFake) accept() {
	defer f.wg.Done()
	for {
		conn, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go f.serve(conn)
	}
}

func (f *wyFake) serve(conn net.Conn) {
	defer f.wg.Done()
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(wyWait)) // a handler never outlives a test by much
	ev, err := newWyomingReader(conn).next()
	if err != nil {
		return
	}
	f.mu.Lock()
	f.seen = append(f.seen, wySeen{Type: ev.Type, Data: ev.Data})
	f.mu.Unlock()
	f.answer(conn)
}

func (f *wyFake) requests() []wySeen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]wySeen(nil), f.seen...)
}

// wyReplay answers with fixed bytes and closes, as wyoming-piper does after
// audio-stop or an error event.
func wyReplay(b ...[]byte) func(net.Conn) {
	return func(conn net.Conn) { conn.Write(bytes.Join(b, nil)) }
}

// hold answers with b, then keeps the connection open until the client
// closes it, and reports that on f.closed.
func (f *wyFake) hold(b ...[]byte) func(net.Conn) {
	return func(conn net.Conn) {
		conn.Write(bytes.Join(b, nil))
		if _, err := io.Copy(io.Discard, conn); !wyIsTimeout(err) {
			select {
			case f.closed <- struct{}{}:
			default:
			}
		}
	}
}

func wyIsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func newWyTTS(t *testing.T, f *wyFake, mod func(*WyomingConfig)) Synthesizer {
	t.Helper()
	cfg := WyomingConfig{Address: f.addr()}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewWyoming(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wyReadAll drains rc and returns what it read and how it ended.
func wyReadAll(t *testing.T, rc io.ReadCloser) ([]byte, error) {
	t.Helper()
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(io.LimitReader(rc, 64<<20))
		ch <- result{b, err}
	}()
	select {
	case r := <-ch:
		return r.b, r.err
	case <-time.After(wyWait):
		rc.Close()
		t.Fatal("reading the stream did not end")
		return nil, nil
	}
}

// wyWantErr checks err is the provider's error and mentions want.
func wyWantErr(t *testing.T, err error, want string) {
	t.Helper()
	var pe *Error
	if err == nil || !errors.As(err, &pe) || pe.Provider != "wyoming" || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want a tts wyoming error mentioning %q", err, want)
	}
}

// wyNoGoroutines waits until no goroutine of a Wyoming call is left.
func wyNoGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(wyWait)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		left := 0
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "tts.(*wyomingCall)") || strings.Contains(g, "tts.newWyomingCall") {
				left++
			}
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d Wyoming call goroutine(s) left:\n%s", left, stacks)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWyomingSynthesize(t *testing.T) {
	f := newWyFake(t, wyReplay(wyFixture(t, "piper_hello.events")))
	s := newWyTTS(t, f, nil)
	if s.Name() != "wyoming" {
		t.Errorf("Name() = %q", s.Name())
	}
	rc, err := s.Synthesize(context.Background(), Request{Text: "Hello from Nexy."})
	if err != nil {
		t.Fatal(err)
	}
	pcm := provReadAll(t, rc)
	// 22050 → 48000 Hz is ×320/147; the resampler emits ceil(n·L/M) samples.
	want := 2 * ((wyHelloSamples*320 + 146) / 147)
	if len(pcm) != want {
		t.Errorf("got %d bytes of 48 kHz PCM, want %d (%d samples at 22050 Hz)", len(pcm), want, wyHelloSamples)
	}
	provCheckSpeech(t, pcm, 1263*time.Millisecond)
	ref, err := io.ReadAll(wyDecode(t, wyHelloPCM(t), 1))
	if err != nil || !bytes.Equal(pcm, ref) {
		t.Errorf("stream differs from decoding the fixture's PCM in one piece (%v)", err)
	}
	reqs := f.requests()
	if len(reqs) != 1 || reqs[0].Type != "synthesize" || reqs[0].text() != "Hello from Nexy." {
		t.Fatalf("server saw %+v", reqs)
	}
	if _, ok := reqs[0].voice(); ok {
		t.Error("a voice was sent although none is configured")
	}
	wyNoGoroutines(t)
}

func wyDecode(t *testing.T, pcm []byte, channels int) io.Reader {
	t.Helper()
	r, err := audio.Decode(bytes.NewReader(pcm), audio.PCM16, audio.Format{SampleRate: 22050, Channels: channels})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestWyomingVoice(t *testing.T) {
	f := newWyFake(t, wyReplay(wyFixture(t, "piper_hello.events")))
	s := newWyTTS(t, f, func(c *WyomingConfig) { c.Voice = "en_US-lessac-medium" })
	for _, voice := range []string{"", "de_DE-thorsten-high"} {
		rc, err := s.Synthesize(context.Background(), Request{Text: "Line one.\nLine \"two\" <b>.", Voice: voice})
		if err != nil {
			t.Fatal(err)
		}
		provReadAll(t, rc)
	}
	reqs := f.requests()
	if len(reqs) != 2 {
		t.Fatalf("server saw %d requests", len(reqs))
	}
	for i, want := range []string{"en_US-lessac-medium", "de_DE-thorsten-high"} {
		if got, ok := reqs[i].voice(); !ok || got != want {
			t.Errorf("request %d: voice %q (sent %v), want %q", i, got, ok, want)
		}
		if got := reqs[i].text(); got != "Line one.\nLine \"two\" <b>." {
			t.Errorf("request %d: text %q", i, got)
		}
	}
	for _, req := range []Request{{Text: "Hi.", Voice: "bad\nvoice"}, {Text: " \n "}} {
		if _, err := s.Synthesize(context.Background(), req); KindOf(err) != fault.BadRequest {
			t.Errorf("%+v: err %v, want a bad_request error", req, err)
		}
	}
}

func TestWyomingServerError(t *testing.T) {
	f := newWyFake(t, wyReplay(wyFixture(t, "piper_voice_not_found.events")))
	s := newWyTTS(t, f, nil)
	_, err := s.Synthesize(context.Background(), Request{Text: "Hello.", Voice: "xx_XX-nobody-medium"})
	wyWantErr(t, err, "server error VoiceNotFoundError: xx_XX-nobody-medium")
	wyNoGoroutines(t)
}

func TestWyomingErrorAfterAudio(t *testing.T) {
	evs := wyFixture(t, "piper_hello.events")
	cut := wyEventEnd(t, evs, 4) // audio-start and three chunks
	f := newWyFake(t, wyReplay(evs[:cut], wyEvent(t, "error", map[string]string{"text": "CUDA out of memory", "code": "RuntimeError"}, nil)))
	rc, err := newWyTTS(t, f, nil).Synthesize(context.Background(), Request{Text: "Hello."})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	pcm, err := wyReadAll(t, rc)
	wyWantErr(t, err, "server error RuntimeError: CUDA out of memory")
	if len(pcm) == 0 {
		t.Error("no audio before the error; the test should fail mid-stream")
	}
}

// wyEventEnd is the offset just after the first n events of stream.
func wyEventEnd(t *testing.T, stream []byte, n int) int {
	t.Helper()
	cr := &countReader{r: bytes.NewReader(stream)}
	r := newWyomingReader(cr)
	for i := 0; i < n; i++ {
		if _, err := r.next(); err != nil {
			t.Fatal(err)
		}
	}
	return int(cr.n) - r.br.Buffered()
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestWyomingConnectionDropped(t *testing.T) {
	evs := wyFixture(t, "piper_hello.events")
	for _, tc := range []struct {
		name string
		cut  int
		want string
	}{
		{"between events", wyEventEnd(t, evs, 10), "closed the connection before audio-stop"},
		{"inside a payload", wyEventEnd(t, evs, 10) + 200, "payload cut short"},
		{"inside a header", wyEventEnd(t, evs, 10) + 20, "header cut short"},
		{"inside the data", wyEventEnd(t, evs, 10) + 90, "data cut short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newWyFake(t, wyReplay(evs[:tc.cut]))
			rc, err := newWyTTS(t, f, nil).Synthesize(context.Background(), Request{Text: "Hello."})
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			pcm, err := wyReadAll(t, rc)
			wyWantErr(t, err, tc.want)
			if len(pcm) == 0 {
				t.Error("no audio before the failure")
			}
		})
	}
	wyNoGoroutines(t)
}

func TestWyomingNoAudio(t *testing.T) {
	start := wyEvent(t, "audio-start", wyFormat(22050, 2, 1), nil)
	stop := wyFixture(t, "piper_no_sentence.events")
	for _, tc := range []struct {
		name    string
		answer  []byte
		atStart bool // refused by Synthesize rather than by Read
		want    string
	}{
		{"audio-stop only", stop, true, "provider returned no audio"},
		{"hang-up", nil, true, "without sending audio"},
		{"start and stop", append(append([]byte(nil), start...), stop...), false, "provider returned no audio"},
		{"empty chunks", bytes.Join([][]byte{start, wyEvent(t, "audio-chunk", wyFormat(22050, 2, 1), nil), stop}, nil), false, "provider returned no audio"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newWyFake(t, wyReplay(tc.answer))
			rc, err := newWyTTS(t, f, nil).Synthesize(context.Background(), Request{Text: "Hello."})
			if tc.atStart {
				wyWantErr(t, err, tc.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			_, err = wyReadAll(t, rc)
			wyWantErr(t, err, tc.want)
		})
	}
}

func TestWyomingLimits(t *testing.T) {
	big := func(n int) []byte { return bytes.Repeat([]byte("x"), n) }
	start := wyEvent(t, "audio-start", wyFormat(22050, 2, 1), nil)
	for _, tc := range []struct {
		name   string
		answer []byte
		want   string
	}{
		{"header line", append([]byte(`{"type": "audio-start", "pad": "`), big(70<<10)...), "longer than 65536 bytes"},
		{"payload", []byte(`{"type": "audio-chunk", "payload_length": 2097152}` + "\n"), "payload_length 2097152 out of range"},
		{"data", []byte(`{"type": "audio-start", "data_length": 1048576}` + "\n"), "data_length 1048576 out of range"},
		{"negative", []byte(`{"type": "audio-start", "payload_length": -1}` + "\n"), "payload_length -1 out of range"},
		{"not JSON", []byte("hello\n"), "malformed event header"},
		{"no type", []byte(`{"data": {"rate": 22050}}` + "\n"), "without a type"},
		{"data not an object", append([]byte(`{"type": "audio-start", "data_length": 2}`+"\n"), "[]"...), "not a JSON object"},
		{"format not numbers", []byte(`{"type": "audio-start", "data": {"rate": "fast", "width": 2, "channels": 1}}` + "\n"), "bad data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newWyFake(t, wyReplay(tc.answer))
			_, err := newWyTTS(t, f, nil).Synthesize(context.Background(), Request{Text: "Hello."})
			wyWantErr(t, err, tc.want)
		})
	}
	t.Run("oversized payload mid-stream", func(t *testing.T) {
		f := newWyFake(t, wyReplay(start, wyEvent(t, "audio-chunk", wyFormat(22050, 2, 1), make([]byte, 2048)),
			[]byte(`{"type": "audio-chunk", "data": {"rate": 22050, "width": 2, "channels": 1}, "payload_length": 1048577}`+"\n")))
		rc, err := newWyTTS(t, f, nil).Synthesize(context.Background(), Request{Text: "Hello."})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		_, err = wyReadAll(t, rc)
		wyWantErr(t, err, "payload_length 1048577 out of range")
	})
	t.Run("MaxAudioBytes", func(t *testing.T) {
		f := newWyFake(t, wyReplay(wyFixture(t, "piper_hello.events")))
		s := newWyTTS(t, f, func(c *WyomingConfig) { c.MaxAudioBytes = 10000 })
		rc, err := s.Synthesize(context.Background(), Request{Text: "Hello."})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		pcm, err := wyReadAll(t, rc)
		wyWantErr(t, err, "audio exceeds MaxAudioBytes (10000)")
		if len(pcm) == 0 || len(pcm) > 10000*48000/22050+4096 {
			t.Errorf("%d bytes before the limit", len(pcm))
		}
	})
	wyNoGoroutines(t)
}

func TestWyomingCancelWhileStreaming(t *testing.T) {
	evs := wyFixture(t, "piper_hello.events")
	f := newWyFake(t, nil)
	f.answer = f.hold(evs[:wyEventEnd(t, evs, 3)])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc, err := newWyTTS(t, f, nil).Synthesize(ctx, Request{Text: "Hello."})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 1000)); err != nil {
		t.Fatalf("first PCM: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, rc) // blocks: the server holds the stream open
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Read after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(wyWait):
		t.Fatal("Read did not return after cancel")
	}
	wyNoGoroutines(t) // the producer is gone even before Close
	provWait(t, f.closed, "the server seeing the connection closed")
	wyClose(t, rc)
}

// wyClose closes rc, failing if that blocks.
func wyClose(t *testing.T, rc io.Closer) {
	t.Helper()
	done := make(chan struct{})
	go func() { rc.Close(); close(done) }()
	provWait(t, done, "Close returning")
}

func TestWyomingCancelBeforeAudio(t *testing.T) {
	f := newWyFake(t, nil)
	f.answer = f.hold() // reads the request, never answers
	ctx, cancel := context.WithCancel(context.Background())
	s := newWyTTS(t, f, nil)
	done := make(chan error, 1)
	go func() {
		rc, err := s.Synthesize(ctx, Request{Text: "Hello."})
		if rc != nil {
			rc.Close()
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Synthesize after cancel: %v, want context.Canceled", err)
		}
		wyWantErr(t, err, "context canceled")
	case <-time.After(wyWait):
		t.Fatal("Synthesize did not return after cancel")
	}
	wyNoGoroutines(t)
	provWait(t, f.closed, "the server seeing the connection closed")
}

func TestWyomingTimeout(t *testing.T) {
	evs := wyFixture(t, "piper_hello.events")
	f := newWyFake(t, nil)
	f.answer = f.hold(evs[:wyEventEnd(t, evs, 2)])
	s := newWyTTS(t, f, func(c *WyomingConfig) { c.Timeout = 300 * time.Millisecond })
	rc, err := s.Synthesize(context.Background(), Request{Text: "Hello."})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	pcm, err := wyReadAll(t, rc)
	wyWantErr(t, err, "timed out after 300ms")
	if !errors.Is(err, context.DeadlineExceeded) || KindOf(err) != fault.Timeout || len(pcm) == 0 {
		t.Errorf("err %v after %d bytes, want DeadlineExceeded after some audio", err, len(pcm))
	}
	wyNoGoroutines(t)
}

func TestWyomingCloseStopsProducer(t *testing.T) {
	evs := wyFixture(t, "piper_hello.events")
	f := newWyFake(t, nil)
	f.answer = f.hold(evs[:len(evs)-100]) // most of the audio, then silence on the wire
	rc, err := newWyTTS(t, f, nil).Synthesize(context.Background(), Request{Text: "Hello."})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	// The producer is blocked writing the next chunk to the pipe.
	wyClose(t, rc)
	wyNoGoroutines(t)
	provWait(t, f.closed, "the server seeing the connection closed")
	if _, err := rc.Read(make([]byte, 10)); err == nil {
		t.Error("Read after Close succeeded")
	}
}

func TestWyomingStereo(t *testing.T) {
	mono := wyHelloPCM(t)
	stereo := make([]byte, 0, 2*len(mono))
	for i := 0; i+1 < len(mono); i += 2 {
		stereo = append(stereo, mono[i], mono[i+1], mono[i], mono[i+1])
	}
	answer := [][]byte{wyEvent(t, "audio-start", wyFormat(22050, 2, 2), nil)}
	for len(stereo) > 0 {
		n := min(len(stereo), 4096+2) // chunks that split a frame
		answer = append(answer, wyEvent(t, "audio-chunk", wyFormat(22050, 2, 2), stereo[:n]))
		stereo = stereo[n:]
	}
	answer = append(answer, wyEvent(t, "audio-stop", nil, nil))
	f := newWyFake(t, wyReplay(answer...))
	rc, err := newWyTTS(t, f, nil).Synthesize(context.Background(), Request{Text: "Hello."})
	if err != nil {
		t.Fatal(err)
	}
	got := provReadAll(t, rc)
	want, err := io.ReadAll(wyDecode(t, mono, 1))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("stereo with equal channels gave %d bytes unlike mono's %d", len(got), len(want))
	}
}

func TestWyomingFormats(t *testing.T) {
	chunk := func(rate, width, ch int) []byte {
		return wyEvent(t, "audio-chunk", wyFormat(rate, width, ch), make([]byte, 4*width*ch))
	}
	stop := wyEvent(t, "audio-stop", nil, nil)
	for _, tc := range []struct {
		name    string
		answer  [][]byte
		atStart bool
		want    string
	}{
		{"width 4", [][]byte{wyEvent(t, "audio-start", wyFormat(22050, 4, 1), nil)}, true, "width 4; only 16-bit PCM (width 2)"},
		{"width 1", [][]byte{chunk(16000, 1, 1)}, true, "width 1"},
		{"3 channels", [][]byte{wyEvent(t, "audio-start", wyFormat(22050, 2, 3), nil)}, true, "3 channels"},
		{"no rate", [][]byte{wyEvent(t, "audio-start", map[string]int{"width": 2, "channels": 1}, nil)}, true, "rate 0"},
		{"unsupported rate", [][]byte{wyEvent(t, "audio-start", wyFormat(12345, 2, 1), nil)}, true, "12345"},
		{"format change", [][]byte{chunk(22050, 2, 1), chunk(16000, 2, 1), stop}, false, "format change"},
		{"width change", [][]byte{chunk(22050, 2, 1), chunk(22050, 4, 1), stop}, false, "width 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newWyFake(t, wyReplay(tc.answer...))
			rc, err := newWyTTS(t, f, nil).Synthesize(context.Background(), Request{Text: "Hello."})
			if tc.atStart {
				wyWantErr(t, err, tc.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			_, err = wyReadAll(t, rc)
			wyWantErr(t, err, tc.want)
		})
	}
	wyNoGoroutines(t)
}

// Events the provider does not know are skipped; a server may also omit
// audio-start and repeat it unchanged.
func TestWyomingTolerance(t *testing.T) {
	var answer [][]byte
	for i, ev := range wyEvents(t, wyFixture(t, "piper_hello.events")) {
		if ev.Type == "audio-start" {
			answer = append(answer, wyEvent(t, "ping", map[string]string{"text": "x"}, []byte{1, 2, 3}))
			continue // the first chunk sets the format
		}
		if i == 5 {
			answer = append(answer, wyEvent(t, "audio-start", wyFormat(22050, 2, 1), nil),
				wyEvent(t, "synthesize-stopped", nil, nil), wyEvent(t, "info", nil, make([]byte, 5000)))
		}
		answer = append(answer, wyEvent(t, ev.Type, ev.Data, ev.Payload))
	}
	f := newWyFake(t, wyReplay(answer...))
	rc, err := newWyTTS(t, f, nil).Synthesize(context.Background(), Request{Text: "Hello."})
	if err != nil {
		t.Fatal(err)
	}
	got := provReadAll(t, rc)
	want, err := io.ReadAll(wyDecode(t, wyHelloPCM(t), 1))
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("got %d bytes, want the fixture's %d (%v)", len(got), len(want), err)
	}
}

func TestWyomingConnectRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s, err := NewWyoming(WyomingConfig{Address: "tcp://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Synthesize(context.Background(), Request{Text: "Hello."})
	wyWantErr(t, err, "connect:")
	if KindOf(err) != fault.Unavailable {
		t.Errorf("kind %v, want unavailable (retryable)", KindOf(err))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err = s.Synthesize(ctx, Request{Text: "Hello."}); !errors.Is(err, context.Canceled) {
		t.Errorf("dial with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestNewWyoming(t *testing.T) {
	for _, tc := range []struct {
		cfg  WyomingConfig
		want string // "" = accepted
	}{
		{WyomingConfig{Address: "tcp://127.0.0.1:10200"}, ""},
		{WyomingConfig{Address: "tcp://piper:10200", Voice: "en_US-lessac-medium", Timeout: time.Second, MaxAudioBytes: 1 << 20}, ""},
		{WyomingConfig{Address: ""}, "Address"},
		{WyomingConfig{Address: "127.0.0.1:10200"}, `want "tcp://host:port"`},
		{WyomingConfig{Address: "tcp://127.0.0.1:10200", Voice: "a\x00b"}, "Voice"},
		{WyomingConfig{Address: "tcp://127.0.0.1:10200", Voice: strings.Repeat("v", 300)}, "at most 256 bytes"},
		{WyomingConfig{Address: "tcp://127.0.0.1:10200", Timeout: -time.Second}, "Timeout"},
		{WyomingConfig{Address: "tcp://127.0.0.1:10200", MaxAudioBytes: -1}, "MaxAudioBytes"},
	} {
		s, err := NewWyoming(tc.cfg)
		if tc.want == "" {
			if err != nil || s == nil {
				t.Errorf("%+v: %v", tc.cfg, err)
			}
			continue
		}
		if s != nil {
			t.Errorf("%+v: got a provider with the error", tc.cfg)
		}
		wyWantErr(t, err, tc.want)
	}
	s, _ := NewWyoming(WyomingConfig{Address: "tcp://[::1]:10200"})
	if w := s.(*wyomingTTS); w.cfg.Timeout != defaultTimeout || w.cfg.MaxAudioBytes != defaultMaxAudioBytes || w.addr != "[::1]:10200" {
		t.Errorf("defaults not filled: %+v %q", w.cfg, w.addr)
	}
}

func TestCheckWyomingAddress(t *testing.T) {
	for _, ok := range []string{
		"tcp://127.0.0.1:10200", "tcp://localhost:10200", "tcp://wyoming-piper:10200", "tcp://piper_1.lan:1",
		"tcp://[::1]:10200", "tcp://[fe80::1%eth0]:65535",
	} {
		if err := CheckWyomingAddress(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"", "127.0.0.1:10200", "tcp://", "tcp://host", "tcp://host:", "tcp://:10200", "tcp://host:0", "tcp://host:65536",
		"tcp://host:010200", "tcp://host:+10", "tcp://host:port", "tcp://::1:10200", "tcp://[127.0.0.1]:10200",
		"tcp://[host]:10200", "tcp://host:10200/", "tcp://user@host:10200", "tcp://ho st:10200", "unix:///run/piper.sock",
		"stdio://", "http://host:10200", "TCP://host:10200", "tcp://-host:10200",
	} {
		err := CheckWyomingAddress(bad)
		if err == nil || !strings.Contains(err.Error(), `want "tcp://host:port"`) {
			t.Errorf("%q: err %v, want a message saying what is wanted", bad, err)
		}
	}
}

// The fixture is what wyoming-piper writes: audio-start, 28 chunks of at
// most 1024 samples with the same format, audio-stop.
func TestWyomingReaderGolden(t *testing.T) {
	evs := wyEvents(t, wyFixture(t, "piper_hello.events"))
	if len(evs) != wyHelloChunks+2 || evs[0].Type != "audio-start" || evs[len(evs)-1].Type != "audio-stop" {
		t.Fatalf("%d events, first %q", len(evs), evs[0].Type)
	}
	total := 0
	for i, ev := range evs {
		if i == 0 || i == len(evs)-1 {
			if len(ev.Payload) != 0 {
				t.Errorf("event %d (%s) has a payload", i, ev.Type)
			}
			if string(ev.Data["timestamp"]) != "null" {
				t.Errorf("event %d: timestamp %s", i, ev.Data["timestamp"])
			}
			continue
		}
		if ev.Type != "audio-chunk" || (len(ev.Payload) != 2048 && i != len(evs)-2) {
			t.Errorf("event %d: %s with %d bytes", i, ev.Type, len(ev.Payload))
		}
		if f, err := ev.format(); err != nil || f != (wyomingFormat{22050, 2, 1}) {
			t.Errorf("event %d: format %v %v", i, f, err)
		}
		total += len(ev.Payload)
	}
	if total != 2*wyHelloSamples {
		t.Errorf("%d payload bytes, want %d", total, 2*wyHelloSamples)
	}
	if f, err := evs[0].format(); err != nil || f != (wyomingFormat{22050, 2, 1}) {
		t.Errorf("audio-start format %v %v", f, err)
	}
	errEv := wyEvents(t, wyFixture(t, "piper_voice_not_found.events"))
	if len(errEv) != 1 || errEv[0].serverError().Error() != "server error VoiceNotFoundError: xx_XX-nobody-medium" {
		t.Errorf("error fixture: %+v", errEv)
	}
}

// Data may sit in the header, in the data section, or both; the section's
// keys win, as in the reference reader.
func TestWyomingReaderMergesData(t *testing.T) {
	stream := `{"type": "audio-chunk", "data": {"rate": 16000, "width": 2}, "data_length": 30, "payload_length": 4}` + "\n" +
		`{"rate": 22050, "channels": 2}` + "\x01\x02\x03\x04" +
		`{"type":"audio-stop"}` + "\n"
	r := newWyomingReader(strings.NewReader(stream))
	ev, err := r.next()
	if err != nil {
		t.Fatal(err)
	}
	if f, err := ev.format(); err != nil || f != (wyomingFormat{22050, 2, 2}) || !bytes.Equal(ev.Payload, []byte{1, 2, 3, 4}) {
		t.Errorf("merged %v %v payload %v", f, err, ev.Payload)
	}
	if ev, err = r.next(); err != nil || ev.Type != "audio-stop" || ev.Data != nil {
		t.Errorf("second event %+v %v", ev, err)
	}
	if _, err = r.next(); err != io.EOF {
		t.Errorf("at the end: %v, want io.EOF", err)
	}
}

// The writer frames as the reference writer does: header line with
// data_length and payload_length, then the data, then the payload.
func TestWyomingWriter(t *testing.T) {
	got := string(wyEvent(t, "synthesize", synthesizeData("Hi.", "en_US-lessac-medium"), nil))
	want := `{"type":"synthesize","data_length":53}` + "\n" + `{"text":"Hi.","voice":{"name":"en_US-lessac-medium"}}`
	if got != want {
		t.Errorf("synthesize framed as\n%q\nwant\n%q", got, want)
	}
	if got := string(wyEvent(t, "synthesize", synthesizeData("Hi.", ""), nil)); !strings.HasSuffix(got, "\n"+`{"text":"Hi."}`) {
		t.Errorf("without a voice: %q", got)
	}
	if got := string(wyEvent(t, "audio-chunk", nil, []byte{9})); got != `{"type":"audio-chunk","payload_length":1}`+"\n\x09" {
		t.Errorf("payload only: %q", got)
	}
	// A text longer than a server's 64 KiB line limit travels in the data
	// section, so the header line stays short.
	long := strings.Repeat("Long text. ", 20000)
	line, data, _ := bytes.Cut(wyEvent(t, "synthesize", synthesizeData(long, ""), nil), []byte("\n"))
	var v struct {
		Text string `json:"text"`
	}
	if len(line) > 100 || json.Unmarshal(data, &v) != nil || v.Text != long {
		t.Errorf("a long text: header %q, text survived %v", line, v.Text == long)
	}
}

func TestWyomingPCMStreamsBeforeStop(t *testing.T) {
	// The first chunk must reach the reader while the server is still
	// "synthesizing" the rest (held open), i.e. nothing waits for audio-stop.
	evs := wyFixture(t, "piper_hello.events")
	f := newWyFake(t, nil)
	f.answer = f.hold(evs[:wyEventEnd(t, evs, 2)])
	rc, err := newWyTTS(t, f, nil).Synthesize(context.Background(), Request{Text: "Hello."})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 1)
	go func() {
		buf := make([]byte, 8192)
		n, _ := rc.Read(buf)
		got <- n
	}()
	select {
	case n := <-got:
		if n == 0 {
			t.Error("first Read returned nothing")
		}
	case <-time.After(wyWait):
		t.Fatal("no PCM while the server holds the rest of the stream")
	}
	wyClose(t, rc)
	wyNoGoroutines(t)
}
