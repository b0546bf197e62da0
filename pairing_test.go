package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/nexy-server/nexy/llm/llmtest"
	pb "github.com/nexy-server/nexy/proto"
)

// TestPairingAcrossProcesses: `nexy serve` with pairing "approve" and the
// owner's `nexy devices` commands in other processes, as on a real host. An
// unknown Mac hears that it is not approved and is listed as pending with
// its first question; approved, it is answered; revoked in the middle of an
// answer, that answer stops and the next question is refused.
func TestPairingAcrossProcesses(t *testing.T) {
	fake := llmtest.NewOpenAI(t,
		llmtest.Script{Deltas: []string{`{"text": "Hello over TLS."}`}},
		llmtest.Script{Deltas: []string{`{"text": "A long story begins here. And `, `it goes on."}`}, Hang: true, HangAfter: 2})
	e := newAdminEnv(t)
	c := startServe(t, "NEXY_SERVER_DATA_DIR="+e.data, "NEXY_LISTEN_ADDRESS=127.0.0.1:0", "NEXY_TLS_MODE=self-signed",
		"NEXY_DEVICES_PAIRING=approve", "NEXY_DEVICES_POLL_INTERVAL=100ms",
		"NEXY_LLM_PROVIDER=openai", "NEXY_LLM_BASE_URL="+fake.URL, "NEXY_LLM_MODEL=llama3.2",
		"NEXY_TTS_PROVIDER=openai", "NEXY_TTS_BASE_URL="+newSpeechServer(t))
	addr, conf := c.attr(t, "address"), pinned(c.attr(t, "fingerprint_sha256"))
	const hw = "PUBLIC-TEST-DEVICE-0001"

	if got := turnOverTLS(t, addr, conf); got != "This Mac is not approved on this server yet. Ask its owner to approve it." {
		t.Fatalf("an unknown device heard %q", got)
	}
	env := []string{"NEXY_DEVICES_PAIRING=approve"}
	list := e.mustNexyEnv(t, env, "devices", "list")
	mustContain(t, "devices list", list, hw, "pending", `"hello there"`)
	e.mustNexyEnv(t, env, "devices", "approve", hw)
	if got := turnOverTLS(t, addr, conf); got != "Hello over TLS." {
		t.Fatalf("the approved device heard %q", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ended := make(chan error, 1)
	started := make(chan struct{})
	go func() { ended <- longTurnOverTLS(ctx, addr, conf, hw, started) }()
	select {
	case <-started: // the answer has begun: the revoke cuts it short
	case err := <-ended:
		t.Fatalf("the long answer ended before it began: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the long answer never began")
	}
	e.mustNexyEnv(t, env, "devices", "revoke", hw)
	select {
	case err := <-ended:
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("the answer running at the revoke ended with %v, want Unauthenticated", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the revoked device's answer did not stop")
	}
	if got := turnOverTLS(t, addr, conf); !strings.HasPrefix(got, "This Mac is no longer allowed on this server.") {
		t.Fatalf("the revoked device heard %q", got)
	}
	mustContain(t, "serve log", c.stop(t), "decision=device_refused", "reason=not_approved", "reason=revoked")
}

// longTurnOverTLS asks as the device, closes started at the first message,
// and returns how the stream ended.
func longTurnOverTLS(ctx context.Context, addr string, conf *tls.Config, hw string, started chan<- struct{}) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		return err
	}
	defer conn.Close()
	empty := ""
	stream, err := pb.NewStreamingServiceClient(conn).StreamAudio(ctx, &pb.StreamRequest{Prompt: "tell me a story",
		HardwareId: hw, SessionId: "7b1c7a52-52a4-4c59-9b1e-3f4d5e6a7b8d",
		Phase: pb.RequestPhase_REQUEST_PHASE_COMMIT, Screenshot: &empty, ChunkText: &empty})
	if err != nil {
		return err
	}
	for first := true; ; first = false {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if first {
			close(started)
		}
		if m.GetEndMessage() != "" {
			return errors.New("the revoked answer ended with end_message")
		}
	}
}
