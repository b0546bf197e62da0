package loadgen

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/llm"
	pb "github.com/nexy-server/nexy/proto"
	"github.com/nexy-server/nexy/tts"
)

func msd(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	cases := []struct {
		name    string
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", msd(7), 50, 7 * time.Millisecond},
		{"one p99", msd(7), 99, 7 * time.Millisecond},
		{"two p50 is the lower", msd(1, 2), 50, 1 * time.Millisecond},
		{"four p50", msd(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"four p90", msd(1, 2, 3, 4), 90, 4 * time.Millisecond},
		{"hundred p50", msd(hundred...), 50, 50 * time.Millisecond},
		{"hundred p90", msd(hundred...), 90, 90 * time.Millisecond},
		{"hundred p99", msd(hundred...), 99, 99 * time.Millisecond},
		{"hundred p100", msd(hundred...), 100, 100 * time.Millisecond},
		{"ten p99 is the max", msd(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
	}
	for _, c := range cases {
		if got := Percentile(c.samples, c.p); got != c.want {
			t.Errorf("%s: p%g = %s, want %s", c.name, c.p, got, c.want)
		}
	}
	// Summarize sorts first, and reports milliseconds.
	s := Summarize(msd(30, 10, 20, 40, 1000))
	if s.N != 5 || s.P50 != 30 || s.P90 != 1000 || s.Max != 1000 {
		t.Errorf("Summarize = %+v", s)
	}
	if s := Summarize([]time.Duration{1500 * time.Microsecond}); s.P50 != 1.5 {
		t.Errorf("1.5 ms reported as %v", s.P50)
	}
}

func TestCheckChunk(t *testing.T) {
	good := func() *pb.AudioChunk {
		return &pb.AudioChunk{AudioData: make([]byte, 4096), Dtype: "int16", SampleRate: 48000, Channels: 1}
	}
	cases := []struct {
		name   string
		change func(c *pb.AudioChunk)
		want   string
	}{
		{"good, full size", func(*pb.AudioChunk) {}, ""},
		{"good, short", func(c *pb.AudioChunk) { c.AudioData = c.AudioData[:2] }, ""},
		{"empty", func(c *pb.AudioChunk) { c.AudioData = nil }, "empty"},
		{"odd length", func(c *pb.AudioChunk) { c.AudioData = c.AudioData[:4095] }, "odd length"},
		{"over 4096", func(c *pb.AudioChunk) { c.AudioData = make([]byte, 4098) }, "over 4096 bytes"},
		{"float32", func(c *pb.AudioChunk) { c.Dtype = "float32" }, "dtype not int16"},
		{"dtype unset", func(c *pb.AudioChunk) { c.Dtype = "" }, "dtype not int16"},
		{"wrong rate", func(c *pb.AudioChunk) { c.SampleRate = 24000 }, "sample_rate not 48000"},
		{"rate unset", func(c *pb.AudioChunk) { c.SampleRate = 0 }, "sample_rate not 48000"},
		{"stereo", func(c *pb.AudioChunk) { c.Channels = 2 }, "channels not 1"},
		{"channels unset", func(c *pb.AudioChunk) { c.Channels = 0 }, "channels not 1"},
	}
	for _, c := range cases {
		ch := good()
		c.change(ch)
		if got := CheckChunk(ch); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestTurnGrammar(t *testing.T) {
	text := &pb.StreamResponse{Content: &pb.StreamResponse_TextChunk{TextChunk: "Hi there."}}
	audio := &pb.StreamResponse{Content: &pb.StreamResponse_AudioChunk{AudioChunk: &pb.AudioChunk{
		AudioData: []byte{1, 0, 2, 0}, Dtype: "int16", SampleRate: 48000, Channels: 1}}}
	odd := &pb.StreamResponse{Content: &pb.StreamResponse_AudioChunk{AudioChunk: &pb.AudioChunk{
		AudioData: []byte{1, 0, 2}, Dtype: "int16", SampleRate: 48000, Channels: 1}}}
	action := &pb.StreamResponse{Content: &pb.StreamResponse_ActionMessage{ActionMessage: &pb.ActionMessage{ActionJson: "{}"}}}
	end := &pb.StreamResponse{Content: &pb.StreamResponse_EndMessage{EndMessage: endMessage}}
	errMsg := &pb.StreamResponse{Content: &pb.StreamResponse_ErrorMessage{ErrorMessage: "boom"}}
	cases := []struct {
		name string
		msgs []*pb.StreamResponse
		err  error
		want string
	}{
		{"good", []*pb.StreamResponse{text, audio, audio, text, audio, end}, nil, ""},
		{"good with action", []*pb.StreamResponse{text, audio, action, end}, nil, ""},
		{"audio before text", []*pb.StreamResponse{audio, text, end}, nil, "protocol: audio before its text_chunk"},
		{"odd chunk", []*pb.StreamResponse{text, odd, end}, nil, "protocol: bad audio chunk (odd length)"},
		{"no end", []*pb.StreamResponse{text, audio}, nil, "protocol: missing end_message"},
		{"two ends", []*pb.StreamResponse{text, audio, end, end}, nil, "protocol: message after end_message"},
		{"audio after action", []*pb.StreamResponse{text, action, audio, end}, nil, "protocol: audio_chunk after action_message"},
		{"two actions", []*pb.StreamResponse{text, audio, action, action, end}, nil, "protocol: second action_message"},
		{"empty answer", []*pb.StreamResponse{end}, nil, "protocol: end_message without any text, audio or action"},
		{"text only", []*pb.StreamResponse{text, end}, nil, "no audio"},
		{"refused", []*pb.StreamResponse{errMsg}, status.Error(codes.ResourceExhausted, "stream_limit_exceeded: busy"), "RESOURCE_EXHAUSTED stream_limit_exceeded"},
		{"error after data", []*pb.StreamResponse{text, errMsg}, nil, "protocol: error_message after data"},
		{"broken stream", []*pb.StreamResponse{text, audio}, status.Error(codes.Unavailable, "gone"), "UNAVAILABLE"},
	}
	for _, c := range cases {
		var chk turnCheck
		for i, m := range c.msgs {
			chk.take(m, time.Duration(i+1)*time.Millisecond)
		}
		if got := chk.finish(c.err); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// TestOpenAIStreamGolden pins the fake model's wire format: the recorded
// fixtures' chunk JSON (field order included), LF line ends, a role on
// the first chunk, finish_reason, a usage chunk and [DONE].
func TestOpenAIStreamGolden(t *testing.T) {
	a := NewAnswer(2)
	events, tail := OpenAIStream(a)
	if len(events) != len(a.Deltas) {
		t.Fatalf("%d events for %d deltas", len(events), len(a.Deltas))
	}
	const golden = `data: {"id":"chatcmpl-BNch7kR2sT3uV4wX5yZ6aB7cD8eF9","object":"chat.completion.chunk","created":1745236812,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_b8bc95a0ac","choices":[{"index":0,"delta":{"content":"text"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"xxxx"}` + "\n\n"
	if got := string(events[1]); got != golden {
		t.Errorf("second event:\n%s\nwant\n%s", got, golden)
	}
	if !strings.HasPrefix(string(events[0]), `data: {"id":"chatcmpl-`) || !strings.Contains(string(events[0]), `"delta":{"role":"assistant","content":"","refusal":null}`) {
		t.Errorf("first event has no role chunk: %s", events[0])
	}
	if !strings.Contains(string(tail), `"finish_reason":"stop"`) || !strings.Contains(string(tail), `"choices":[],"usage":{"prompt_tokens":1873`) || !strings.HasSuffix(string(tail), "data: [DONE]\n\n") {
		t.Errorf("tail: %s", tail)
	}
	if strings.Contains(string(bytes.Join(events, nil))+string(tail), "\r") {
		t.Error("CR in an OpenAI stream")
	}
	want := `{"text": "The weather in Berlin is mild and dry today. Tomorrow brings light rain in the late afternoon."}`
	if got := a.Text(); got != want {
		t.Errorf("answer %q", got)
	}
	if a.SentenceEnd[0] >= a.SentenceEnd[1] || !strings.HasSuffix(a.Deltas[a.SentenceEnd[0]], ".") || !strings.HasSuffix(a.Deltas[a.SentenceEnd[1]], ".") {
		t.Errorf("sentence ends %v in %q", a.SentenceEnd, a.Deltas)
	}
}

// TestFakesWithRealClients: the server's own provider clients read the
// fakes: the LLM client gets the answer's text and usage, the speech
// client AudioSec seconds of 48 kHz tone, from 48 kHz and from 24 kHz WAV.
func TestFakesWithRealClients(t *testing.T) {
	for _, rate := range []int{48000, 24000} {
		timing := Timing{Sentences: 3, AudioSec: 0.5, TTSRate: rate, LLMFirstToken: 20 * time.Millisecond, TokensPerSec: 2000}
		f := NewFakes(timing)
		ts := httptest.NewServer(f)
		defer ts.Close()
		model, err := llm.NewOpenAI(llm.OpenAIConfig{BaseURL: ts.URL + "/v1", Model: "bench-model", Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		stream, err := model.Stream(context.Background(), llm.Request{System: "You are Nexy.", User: "hello"})
		if err != nil {
			t.Fatal(err)
		}
		var text strings.Builder
		for {
			d, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if text.Len() == 0 && time.Since(start) < timing.LLMFirstToken {
				t.Errorf("first token after %s, before the configured %s", time.Since(start), timing.LLMFirstToken)
			}
			text.WriteString(d)
		}
		stream.Close()
		if want := NewAnswer(3).Text(); text.String() != want {
			t.Errorf("LLM client read %q, want %q", text.String(), want)
		}
		if u := stream.Usage(); u.InputTokens != 1873 || u.OutputTokens != len(NewAnswer(3).Deltas) {
			t.Errorf("usage %+v", u)
		}

		speech, err := tts.NewOpenAI(tts.OpenAIConfig{BaseURL: ts.URL + "/v1", Model: "bench-tts"})
		if err != nil {
			t.Fatal(err)
		}
		pcm, err := speech.Synthesize(context.Background(), tts.Request{Text: "The weather in Berlin is mild."})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(pcm)
		pcm.Close()
		if err != nil {
			t.Fatal(err)
		}
		if want := 48000; len(b) < 2*want/2-64 || len(b) > 2*want/2+64 { // 0.5 s at 48 kHz, s16
			t.Errorf("%d Hz: %d bytes of 48 kHz PCM, want about %d", rate, len(b), want)
		}
		var peak int16
		for i := 0; i+1 < len(b); i += 2 {
			peak = max(peak, int16(binary.LittleEndian.Uint16(b[i:])))
		}
		if peak < 4000 {
			t.Errorf("%d Hz: the speech is (nearly) silent: peak %d", rate, peak)
		}
		if f.LLMRequests.Load() != 1 || f.TTSRequests.Load() != 1 {
			t.Errorf("counted %d LLM and %d TTS requests", f.LLMRequests.Load(), f.TTSRequests.Load())
		}
	}
}

func TestSchedule(t *testing.T) {
	tm := Timing{LLMFirstToken: 300 * time.Millisecond, TokensPerSec: 50, Sentences: 5, TTSFirstByte: 200 * time.Millisecond, AudioSec: 1, TTSRate: 48000}
	a := NewAnswer(tm.Sentences)
	done, start := tm.Schedule(a)
	if len(done) != 5 || len(start) != 5 {
		t.Fatalf("schedule for %d sentences: %v %v", len(a.Sentences), done, start)
	}
	for k := range done {
		want := 300*time.Millisecond + time.Duration(a.SentenceEnd[k])*20*time.Millisecond
		if done[k] != want || start[k] != want+200*time.Millisecond {
			t.Errorf("sentence %d: text %s audio %s, want %s and %s", k, done[k], start[k], want, want+200*time.Millisecond)
		}
	}
	if got := tm.LLMTime(a); got != 300*time.Millisecond+time.Duration(len(a.Deltas)-1)*20*time.Millisecond {
		t.Errorf("LLM time %s", got)
	}
	// A TTS slower than the text: each sentence waits for the one before.
	slow := tm
	slow.TTSFirstByte = 2 * time.Second
	_, start = slow.Schedule(a)
	for k := 1; k < len(start); k++ {
		if start[k] < start[k-1] {
			t.Errorf("audio %d starts before %d: %v", k, k-1, start)
		}
	}
}

func TestParseProc(t *testing.T) {
	// The command name may hold spaces and parentheses.
	stat := []byte("4242 (nexy (bench) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 130 0 0 20 0 9 0 12345 1000000 5000 18446744073709551615\n")
	cpu, err := parseStatCPU(stat)
	if err != nil || cpu != 3800*time.Millisecond {
		t.Errorf("cpu %s, %v; want 3.8s (380 ticks)", cpu, err)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1")); err == nil {
		t.Error("a short stat line parsed")
	}
	status := []byte("Name:\tnexy\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n")
	if rss, hwm := parseStatusMem(status); rss != 20<<20 || hwm != 50<<20 {
		t.Errorf("rss %d hwm %d", rss, hwm)
	}
	if s, err := ReadProc(os.Getpid()); err == nil && (s.RSS == 0 || s.HWM < s.RSS) {
		t.Errorf("own process: %+v", s)
	}
}

// TestServerConfig: the config the bench writes for its child is one the
// server accepts, with the limits raised for the devices.
func TestServerConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nexy.toml")
	o := ServerOptions{LLMURL: "http://127.0.0.1:1/v1", TTSURL: "http://127.0.0.1:1/v1", Devices: 500}
	if err := os.WriteFile(path, []byte(ServerConfig(o, filepath.Join(dir, "data"))), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatalf("the server refuses the bench's config: %v\n%s", err, ServerConfig(o, "data"))
	}
	l := cfg.Limits
	if cfg.LLM.Provider != "openai" || cfg.TTS.Provider != "openai" || cfg.TLS.Mode != "off" || cfg.Listen.GRPCPlain != "127.0.0.1:0" ||
		l.MaxConcurrentStreams < 1000 || l.MaxStreamsPerConn < 1000 || l.RequestBytesInFlight/l.MaxMessageBytes/4 < 2*o.Devices ||
		l.CollectMaxSessions < 2*o.Devices || l.MaxRatePerSecond != 0 || cfg.Quotas.DailyTurns != 0 || cfg.Memory.Analyzer != "heuristic" {
		t.Errorf("config: %+v", cfg.Config)
	}
	if strings.Contains(ServerConfig(o, "data"), "[preempt]") {
		t.Error("a [preempt] section without --preempt")
	}
	o.Preempt = "on"
	if !strings.Contains(ServerConfig(o, "data"), "[preempt]\nenabled = \"on\"\n") {
		t.Error("--preempt on not written")
	}
}

// startFloor runs a floor server in this process until the test ends.
func startFloor(t *testing.T, timing Timing) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- ServeFloor(ctx, "127.0.0.1:0", timing, pw) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Error("the floor did not stop")
		}
	})
	line := make([]byte, 128)
	n, err := pr.Read(line)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	return strings.TrimSpace(strings.TrimPrefix(string(line[:n]), "floor listening on "))
}

// TestLoadAgainstFloor runs a short load against an in-process floor
// server: every turn is good, every stage measured, every chunk checked.
func TestLoadAgainstFloor(t *testing.T) {
	addr := startFloor(t, Timing{Sentences: 2, AudioSec: 0.2, TTSRate: 48000, LLMFirstToken: time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := RunLoad(ctx, addr, "", Load{Devices: 2, Turns: 6, Collects: 2, CollectInterval: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 6 || res.Failed != 0 || len(res.Errors) != 0 {
		t.Fatalf("ok %d, failed %d: %v %v", res.OK, res.Failed, res.Errors, res.Examples)
	}
	perTurn := int64(2 * ((2*9600 + 4095) / 4096)) // 2 sentences of 0.2 s at 48 kHz in 4096-byte chunks
	if res.Chunks != 6*perTurn || res.BadChunks != 0 {
		t.Errorf("%d chunks (%d bad), want %d", res.Chunks, res.BadChunks, 6*perTurn)
	}
	for _, s := range Stages {
		want := 6
		if s == StageCollectAck {
			want = 12
		}
		if len(res.Samples[s]) != want {
			t.Errorf("stage %s: %d samples, want %d", s, len(res.Samples[s]), want)
		}
	}
}

// TestLoadTimeout: a COMMIT slower than --turn-timeout is a failed turn of
// its own class, and the run still ends.
func TestLoadTimeout(t *testing.T) {
	addr := startFloor(t, Timing{Sentences: 1, AudioSec: 0.1, TTSRate: 48000, LLMFirstToken: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := RunLoad(ctx, addr, "", Load{Devices: 1, Turns: 1, TurnTimeout: 50 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "timeout: COMMIT not finished within --turn-timeout 50ms"
	if res.OK != 0 || res.Failed != 1 || res.Errors[want] != 1 {
		t.Errorf("ok %d, failed %d, errors %v; want one %q", res.OK, res.Failed, res.Errors, want)
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:50051": true, "[::1]:1": true, "localhost:1": true, "127.3.4.5:9": true,
		"10.0.0.1:50051": false, "example.com:443": false, "nexy.local:1": false, "127.0.0.1": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("%s: %v", addr, got)
		}
	}
}
