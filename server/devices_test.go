package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/nexy-server/nexy/llm/llmtest"
	pb "github.com/nexy-server/nexy/proto"
	"github.com/nexy-server/nexy/store"
)

// changeDevice changes a device the way `nexy devices` does: in the store,
// from outside the server, which notices within devices.poll_interval.
func changeDevice(t *testing.T, h *harness, hw string, c store.DeviceChange) store.Device {
	t.Helper()
	d, err := h.db.ChangeDevice(context.Background(), hw, c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the server to read the device change", func() bool {
		h.srv.svc.devices.mu.Lock()
		defer h.srv.svc.devices.mu.Unlock()
		return h.srv.svc.devices.version >= d.Version
	})
	return d
}

// spokenRefusal checks a refusal answer: exactly the sentence, its audio, end_message.
func spokenRefusal(t *testing.T, msgs []*pb.StreamResponse, err error, want string) {
	t.Helper()
	if err != nil {
		t.Fatalf("a spoken refusal ends OK, got %v", err)
	}
	a := checkAnswer(t, msgs)
	if len(a.texts) != 1 || a.texts[0] != want {
		t.Fatalf("refusal text %q, want %q", a.texts, want)
	}
	if a.chunks == 0 {
		t.Fatal("the refusal has no audio")
	}
}

// TestPairingApproveThenRevoke: under pairing "approve" an unknown device is
// refused (spoken) and listed as pending with its first prompt; once
// approved it is answered; revoked mid-answer, that answer stops at once and
// the next request is refused.
func TestPairingApproveThenRevoke(t *testing.T) {
	fake := llmtest.NewOpenAI(t,
		llmtest.Script{Deltas: []string{`{"text": "Hello there."}`}},
		llmtest.Script{Deltas: []string{`{"text": "A long story begins here. And `, `it goes on."}`}, Hang: true, HangAfter: 2},
		llmtest.Script{HangBeforeHeaders: true})
	speech := newSpeechFake(t)
	cfg := testConfig(t, "openai", fake.URL, speech.URL)
	cfg.Devices.Pairing = "approve"
	cfg.Devices.PollInterval.Duration = 20 * time.Millisecond
	h := startServer(t, cfg)

	msgs, err := h.call(t, commitReq(newSession(), "what is the weather in Lisbon"))
	spokenRefusal(t, msgs, err, notApprovedText)
	// A second refusal is spoken from memory: no new synthesis.
	before := len(speech.requests())
	msgs, err = h.call(t, commitReq(newSession(), "hello?"))
	spokenRefusal(t, msgs, err, notApprovedText)
	if n := len(speech.requests()); n != before {
		t.Errorf("a repeated refusal called the speech provider (%d → %d requests)", before, n)
	}
	if n := len(fake.Requests()); n != 0 {
		t.Fatalf("the model was asked %d times for an unapproved device", n)
	}
	// InterruptSession and ReportUsage obey pairing too.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if _, err := h.client.InterruptSession(ctx, &pb.InterruptRequest{HardwareId: testHW}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("InterruptSession from an unapproved device: %v, want Unauthenticated", err)
	}
	if _, err := h.client.ReportUsage(ctx, &pb.UsageRequest{HardwareId: testHW, Source: "browser_agent", InputTokens: 1}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ReportUsage from an unapproved device: %v, want Unauthenticated", err)
	}
	waitFor(t, "the device to be listed", func() bool {
		d, err := h.db.Device(context.Background(), testHW)
		return err == nil && d.Status == store.DevicePending && d.FirstPrompt == "what is the weather in Lisbon"
	})

	changeDevice(t, h, testHW, store.DeviceChange{Status: ptr(store.DeviceApproved)})
	msgs, err = h.call(t, commitReq(newSession(), "hello"))
	if err != nil {
		t.Fatal(err)
	}
	if a := checkAnswer(t, msgs); strings.Join(a.texts, "") != "Hello there." {
		t.Fatalf("approved device answered %q", a.texts)
	}

	stream, err := h.client.StreamAudio(ctx, commitReq(newSession(), "tell me a story"))
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv() // the answer has started: the revoke cuts it short
	if err != nil || first.GetTextChunk() == "" {
		t.Fatalf("first message %v, %v", first, err)
	}
	changeDevice(t, h, testHW, store.DeviceChange{Status: ptr(store.DeviceRevoked)})
	msgs, err = readAll(stream)
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("revoked mid-answer: %v, want Unauthenticated", err)
	}
	for _, m := range msgs {
		if m.GetEndMessage() != "" {
			t.Fatal("a revoked answer must not end with end_message")
		}
	}
	waitClosed(t, fake.Disconnected(), "the revoked turn's LLM request to be aborted")
	msgs, err = h.call(t, commitReq(newSession(), "hello again"))
	spokenRefusal(t, msgs, err, revokedText)

	// Revoked before anything was said: the turn ends with the same spoken
	// refusal instead of an error sound.
	changeDevice(t, h, testHW, store.DeviceChange{Status: ptr(store.DeviceApproved)})
	stream, err = h.client.StreamAudio(ctx, commitReq(newSession(), "and another story"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the third LLM request", func() bool { return len(fake.Requests()) == 3 })
	changeDevice(t, h, testHW, store.DeviceChange{Status: ptr(store.DeviceRevoked)})
	msgs, err = readAll(stream)
	spokenRefusal(t, msgs, err, revokedText)
	if !strings.Contains(h.log.String(), "decision=device_refused") || !strings.Contains(h.log.String(), "reason=revoked") {
		t.Error("the refusal is not logged as a decision")
	}
	// Two spoken refusals, InterruptSession and ReportUsage; then the revoked ones.
	if c := h.srv.svc.metrics.tally().refusals; c[reasonNotApproved] != 4 || c[reasonRevoked] != 2 {
		t.Errorf("refusal counts %v", c)
	}
}

// TestPairingStatusRefusal: with devices.refusal = "status" the refusal is a
// gRPC status with one error_message.
func TestPairingStatusRefusal(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Hi."}`}})
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.Devices.Pairing, cfg.Devices.Refusal = "approve", "status"
	h := startServer(t, cfg)
	msgs, err := h.call(t, commitReq(newSession(), "hello"))
	if status.Code(err) != codes.Unauthenticated || len(msgs) != 1 || !strings.Contains(msgs[0].GetErrorMessage(), "nexy devices approve") {
		t.Fatalf("got %v, %v; want one error_message naming the command and Unauthenticated", msgs, err)
	}
}

// TestDailyTurnQuota: a quota of 2 lets 2 turns through and refuses the
// 3rd, spoken and as a status, with the exact texts; the count survives a
// restart because it comes from the history.
func TestDailyTurnQuota(t *testing.T) {
	for _, mode := range []string{"spoken", "status"} {
		t.Run(mode, func(t *testing.T) {
			fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Sure."}`}})
			cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
			cfg.Quotas.DailyTurns = 2
			cfg.Devices.Refusal = mode
			h := startServer(t, cfg)
			for i := range 2 {
				msgs, err := h.call(t, commitReq(newSession(), fmt.Sprintf("question %d", i)))
				if err != nil {
					t.Fatalf("turn %d: %v", i, err)
				}
				checkAnswer(t, msgs)
			}
			checkQuotaRefused(t, h, mode)
			if err := h.stop(); err != nil {
				t.Fatal(err)
			}
			// A new server on the same data dir counts the turns already recorded.
			h = startServer(t, cfg)
			checkQuotaRefused(t, h, mode)
			if n := len(fake.Requests()); n != 2 {
				t.Errorf("the model was asked %d times, want 2", n)
			}
		})
	}
}

func checkQuotaRefused(t *testing.T, h *harness, mode string) {
	t.Helper()
	msgs, err := h.call(t, commitReq(newSession(), "one more"))
	if mode == "spoken" {
		spokenRefusal(t, msgs, err, "You have used today's 2 questions. The limit resets at midnight.")
		return
	}
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "daily limit exceeded") ||
		len(msgs) != 1 || msgs[0].GetErrorMessage() != "daily limit exceeded: 2 questions a day on this device; it resets at midnight" {
		t.Fatalf("got %v, %v; want PERMISSION_DENIED with \"daily limit exceeded\"", msgs, err)
	}
}

// TestDeviceLimitOverridesAndTokens: a per-device limit wins over the
// default, and a token quota counts the answers' tokens.
func TestDeviceLimitOverridesAndTokens(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Sure."}`}, Usage: llmtest.Usage{InputTokens: 90, OutputTokens: 20}})
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.Quotas.DailyTurns = 1
	cfg.Devices.PollInterval.Duration = 20 * time.Millisecond
	h := startServer(t, cfg)
	changeDevice(t, h, testHW, store.DeviceChange{SetLimits: true, DailyTurns: ptr[int64](0), DailyTokens: ptr[int64](200)})
	for i := range 2 { // 110 tokens each: the second starts under 200
		if _, err := h.call(t, commitReq(newSession(), "question")); err != nil {
			t.Fatalf("turn %d: %v", i, err)
		}
	}
	msgs, err := h.call(t, commitReq(newSession(), "one more"))
	spokenRefusal(t, msgs, err, tokensQuotaText)
}

// TestBearerToken: a device with a token must send it; compared in constant time.
func TestBearerToken(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Sure."}`}})
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.Devices.PollInterval.Duration = 20 * time.Millisecond
	h := startServer(t, cfg)
	token := testKey(t)
	sum := sha256.Sum256([]byte(token))
	changeDevice(t, h, testHW, store.DeviceChange{TokenSHA256: ptr(hex.EncodeToString(sum[:]))})
	msgs, err := h.call(t, commitReq(newSession(), "hello"))
	spokenRefusal(t, msgs, err, badTokenText)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for _, bad := range []string{"Bearer wrong", "Basic " + token} {
		if _, err := h.client.InterruptSession(metadata.AppendToOutgoingContext(ctx, "authorization", bad), &pb.InterruptRequest{HardwareId: testHW}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("InterruptSession with %q: %v", strings.Fields(bad)[0], err)
		}
	}
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	if _, err := h.client.InterruptSession(authed, &pb.InterruptRequest{HardwareId: testHW}); err != nil {
		t.Errorf("InterruptSession with the token: %v", err)
	}
	stream, err := h.client.StreamAudio(authed, commitReq(newSession(), "hello"))
	if err != nil {
		t.Fatal(err)
	}
	msgs, err = readAll(stream)
	if err != nil {
		t.Fatal(err)
	}
	if a := checkAnswer(t, msgs); strings.Join(a.texts, "") != "Sure." {
		t.Fatalf("answer %q", a.texts)
	}
}

func TestTokenMatches(t *testing.T) {
	sum := sha256.Sum256([]byte("s3cret"))
	want := hex.EncodeToString(sum[:])
	for tok, ok := range map[string]bool{"s3cret": true, "s3cre": false, "": false, "s3cret ": false} {
		if tokenMatches(tok, want) != ok {
			t.Errorf("tokenMatches(%q) = %v", tok, !ok)
		}
	}
	if tokenMatches("s3cret", "not-hex") {
		t.Error("a malformed stored hash matched")
	}
}
