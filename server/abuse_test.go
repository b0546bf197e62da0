package server

import (
	"context"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/llm/llmtest"
	pb "github.com/nexy-server/nexy/proto"
)

// longAnswer is several sentences: far more audio than a 64 KB window holds.
var longAnswer = llmtest.Script{Deltas: []string{`{"text": "Here is the first part of a long answer. `,
	`Here is the second part of it. `, `And a third part follows now. `, `The fourth part is here too. `, `Finally the fifth and last part."}`}}

// slowClient is a connection with a fixed 64 KB HTTP/2 flow-control window,
// whose streams the test never reads: the server's Send blocks on it.
func slowClient(t *testing.T, h *harness) (pb.StreamingServiceClient, func()) {
	t.Helper()
	conn, err := grpc.NewClient(h.srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewStreamingServiceClient(conn), func() { conn.Close() }
}

// waitFor polls cond (bounded) and fails with what it waited for.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitLimit, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// scripts repeats one script n times.
func scripts(n int, s llmtest.Script) []llmtest.Script {
	out := make([]llmtest.Script, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// TestSlowReadersCannotHoldSlots: streams that never read fill every slot;
// after limits.send_timeout their turns end, the slots are free, another
// device is answered, and each slow stream ends with DEADLINE_EXCEEDED once
// its client reads again. No goroutine is left.
func TestSlowReadersCannotHoldSlots(t *testing.T) {
	const slow = 4
	fake := llmtest.NewOpenAI(t, scripts(slow+1, longAnswer)...)
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.Limits.MaxConcurrentStreams = slow
	cfg.Limits.MaxTurnsPerDevice = slow
	cfg.Limits.SendTimeout = config.Duration{Duration: 300 * time.Millisecond}
	base := runtime.NumGoroutine()
	h := startServer(t, cfg)
	client, closeSlow := slowClient(t, h)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	streams := make([]grpc.ServerStreamingClient[pb.StreamResponse], slow)
	for i := range streams {
		var err error
		if streams[i], err = client.StreamAudio(ctx, commitReq(newSession(), "tell me a lot")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the slow turns to take every slot", func() bool { return len(fake.Requests()) == slow })
	// The slow turns end by themselves after send_timeout: every slot is free.
	waitFor(t, "the stalled turns to free their slots", func() bool { return h.srv.svc.adm.running() == 0 })
	if !strings.Contains(h.log.String(), "limits.send_timeout") {
		t.Errorf("the log does not say why the turns ended")
	}
	msgs, err := h.call(t, commitReq(newSession(), "hello"))
	if err != nil {
		t.Fatalf("another device after the slow readers: %v", err)
	}
	checkAnswer(t, msgs)
	for i, s := range streams { // reading again: data, then DEADLINE_EXCEEDED, never end_message
		msgs, err := readAll(s)
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("slow stream %d ended with %v, want DeadlineExceeded", i, err)
		}
		for _, m := range msgs {
			if m.GetEndMessage() != "" || m.GetErrorMessage() != "" {
				t.Errorf("slow stream %d: unexpected %v after a stall", i, m)
			}
		}
	}
	closeSlow()
	checkNoLeak(t, h, base)
}

// TestInterruptFreesSlowReaderAtOnce: InterruptSession on a turn blocked on
// a client that does not read frees its session at once: a new COMMIT to the
// same session is answered, and the blocked stream ends with CANCELLED.
func TestInterruptFreesSlowReaderAtOnce(t *testing.T) {
	fake := llmtest.NewOpenAI(t, longAnswer, llmtest.Script{Deltas: []string{`{"text": "Yes?"}`}})
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.Limits.SendTimeout = config.Duration{Duration: time.Minute} // only the interrupt can free it
	base := runtime.NumGoroutine()
	h := startServer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sid := newSession()
	client, closeSlow := slowClient(t, h)
	stream, err := client.StreamAudio(ctx, commitReq(sid, "tell me a lot"))
	if err != nil {
		t.Fatal(err)
	}
	// Blocked: the turn has queued more than the window while the client does not read.
	waitFor(t, "the turn to block on the unread stream", func() bool { return h.srv.svc.adm.running() == 1 && len(fake.Requests()) == 1 })
	time.Sleep(100 * time.Millisecond) // let it fill the window; the test holds either way
	resp, err := h.client.InterruptSession(ctx, &pb.InterruptRequest{HardwareId: testHW})
	if err != nil || len(resp.GetInterruptedSessions()) != 1 || resp.GetInterruptedSessions()[0] != sid {
		t.Fatalf("InterruptSession = %v, %v", resp, err)
	}
	msgs, err := h.call(t, commitReq(sid, "are you there"))
	if err != nil {
		t.Fatalf("a new COMMIT to the interrupted session: %v", err)
	}
	if a := checkAnswer(t, msgs); a.texts[0] != "Yes?" {
		t.Fatalf("answer = %q", a.texts)
	}
	// The interrupted turn's handler ends while its client still does not
	// read (not only after limits.send_timeout, a minute here).
	waitFor(t, "the interrupted turn to end", func() bool { return strings.Contains(h.log.String(), "decision=cancelled") })
	if _, err := readAll(stream); status.Code(err) != codes.Canceled {
		t.Fatalf("the interrupted stream ended with %v, want Canceled", err)
	}
	closeSlow()
	checkNoLeak(t, h, base)
}

// checkNoLeak stops the server and waits (bounded) until the goroutines are
// back to base, printing the server's goroutines if not.
func checkNoLeak(t *testing.T, h *harness, base int) {
	t.Helper()
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	closeIdleProviderConns()
	deadline := time.Now().Add(waitLimit)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines left (baseline %d):\n%s", runtime.NumGoroutine(), base, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOneDeviceCollectFloodDoesNotStarveOthers: 1,024 tiny COLLECTs from one
// device (each a new utterance) never crowd out another device's COLLECT or
// turn, and the flooding device's own latest utterance still works.
func TestOneDeviceCollectFloodDoesNotStarveOthers(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Hello other device."}`}}, llmtest.Script{Deltas: []string{`{"text": "Hello flooder."}`}})
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.Log.Level = "info"
	base := runtime.NumGoroutine()
	h := startServer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var refused []error
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 128 {
				sid := newSession()
				r := collectReq(sid, 1, "flood")
				r.HardwareId = "FLOODER-0001"
				s, err := h.client.StreamAudio(ctx, r)
				if err == nil {
					_, err = readAll(s)
				}
				mu.Lock()
				if err != nil {
					refused = append(refused, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(refused) > 0 {
		t.Fatalf("the flooding device's own COLLECTs were refused %d times (its oldest utterances make room): %v", len(refused), refused[0])
	}
	other := newSession()
	if msgs, err := h.call(t, collectReq(other, 1, "what time is it")); err != nil || msgs[0].GetEndMessage() != collectAccepted {
		t.Fatalf("another device's COLLECT during the flood: %v %v", msgs, err)
	}
	msgs, err := h.call(t, commitReq(other, ""))
	if err != nil {
		t.Fatalf("another device's turn: %v", err)
	}
	checkAnswer(t, msgs)
	if reqs := fake.Requests(); reqs[0].User != "what time is it" {
		t.Fatalf("the other device's transcript was lost: %q", reqs[0].User)
	}
	n, _ := h.srv.svc.collect.stats()
	if n > cfg.Limits.CollectPerDevice {
		t.Fatalf("%d utterances buffered; one device may hold %d", n, cfg.Limits.CollectPerDevice)
	}
	checkNoLeak(t, h, base)
}

// TestDeviceTurnLimit: a device at limits.max_turns_per_device is refused
// with its own label, and another device is still admitted.
func TestDeviceTurnLimit(t *testing.T) {
	fake := llmtest.NewOpenAI(t, hangingScript(), llmtest.Script{Deltas: []string{`{"text": "Other device."}`}})
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.Limits.MaxTurnsPerDevice = 1
	base := runtime.NumGoroutine()
	h := startServer(t, cfg)
	cancel := startHanging(t, h, newSession())
	msgs, err := h.call(t, commitReq(newSession(), "second"))
	if status.Code(err) != codes.ResourceExhausted || len(msgs) != 1 || !strings.Contains(msgs[0].GetErrorMessage(), "device_limit_exceeded") ||
		!strings.Contains(msgs[0].GetErrorMessage(), "limits.max_turns_per_device") {
		t.Fatalf("second turn of the device: %v %v", msgs, err)
	}
	if !strings.Contains(h.log.String(), "error_type=device_limit_exceeded") {
		t.Errorf("the refusal is not labelled in the log")
	}
	other := commitReq(newSession(), "hello")
	other.HardwareId = "OTHER-DEVICE-0001"
	if msgs, err := h.call(t, other); err != nil {
		t.Fatalf("another device: %v", err)
	} else {
		checkAnswer(t, msgs)
	}
	cancel()
	checkNoLeak(t, h, base)
}

// TestSlowWelcomeReaderFreesItsSlot: GenerateWelcomeAudio to a client that
// does not read ends after limits.send_timeout like a turn, freeing its slot.
func TestSlowWelcomeReaderFreesItsSlot(t *testing.T) {
	speech := newSpeechFake(t)
	speech.repeat = 4 // about 480 KB of 48 kHz audio: more than the window holds
	cfg := testConfig(t, "openai", "http://127.0.0.1:1/v1", speech.URL)
	cfg.Limits.SendTimeout = config.Duration{Duration: 300 * time.Millisecond}
	base := runtime.NumGoroutine()
	h := startServer(t, cfg)
	conn, err := grpc.NewClient(h.srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := pb.NewStreamingServiceClient(conn).GenerateWelcomeAudio(ctx, &pb.WelcomeRequest{Text: "Hello there, welcome.", SessionId: "welcome_1"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the welcome to take a slot", func() bool { return len(speech.requests()) == 1 })
	waitFor(t, "the stalled welcome to free its slot", func() bool { return h.srv.svc.adm.running() == 0 })
	var last error
	for {
		m, err := stream.Recv()
		if err != nil {
			last = err
			break
		}
		if m.GetEndMessage() != "" || m.GetErrorMessage() != "" {
			t.Errorf("unexpected %v after a stall", m)
		}
	}
	if status.Code(last) != codes.DeadlineExceeded {
		t.Fatalf("the stalled welcome ended with %v, want DeadlineExceeded", last)
	}
	if !regexp.MustCompile(`method=GenerateWelcomeAudio decision=error .*limits.send_timeout`).MatchString(h.log.String()) {
		t.Errorf("the log does not say why the welcome ended")
	}
	conn.Close()
	checkNoLeak(t, h, base)
}
