package server

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nexy-server/nexy/llm/llmtest"
	pb "github.com/nexy-server/nexy/proto"
)

// TestNoGoroutineOutlivesItsTurns runs finished, cancelled and interrupted
// turns, stops the server, and checks that every goroutine it started is gone.
func TestNoGoroutineOutlivesItsTurns(t *testing.T) {
	fake := llmtest.NewOpenAI(t, hangingScript(), hangingScript(), llmtest.Script{Deltas: actionReply})
	speech := newSpeechFake(t)
	cfg := testConfig(t, "openai", fake.URL, speech.URL)
	base := runtime.NumGoroutine()
	h := startServer(t, cfg)

	cancel := startHanging(t, h, newSession()) // cancelled by the client
	cancel()
	waitIdle(t, h)
	startHanging(t, h, newSession()) // interrupted
	if r, err := h.client.InterruptSession(context.Background(), &pb.InterruptRequest{HardwareId: testHW}); err != nil || len(r.GetInterruptedSessions()) != 1 {
		t.Fatalf("interrupt: %v %v", r, err)
	}
	msgs, err := h.call(t, commitReq(newSession(), "open safari")) // completes
	if err != nil {
		t.Fatal(err)
	}
	checkAnswer(t, msgs)

	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	closeIdleProviderConns()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines left (baseline %d):\n%s", runtime.NumGoroutine(), base, stacksOf(string(buf[:n]), "nexy-server"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stacksOf keeps the goroutine dumps that mention pkg.
func stacksOf(dump, pkg string) string {
	var keep []string
	for _, g := range strings.Split(dump, "\n\n") {
		if strings.Contains(g, pkg) {
			keep = append(keep, g)
		}
	}
	return strings.Join(keep, "\n\n")
}

// TestShutdownCancelsAfterGrace: a turn still running when the grace period
// ends is cancelled, its LLM request aborted, and Serve returns.
func TestShutdownCancelsAfterGrace(t *testing.T) {
	fake := llmtest.NewOpenAI(t, hangingScript())
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.Limits.GracePeriod.Duration = 100 * time.Millisecond
	h := startServer(t, cfg)
	startHanging(t, h, newSession())
	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the grace period")
	}
	waitClosed(t, fake.Disconnected(), "the LLM request to be aborted")
	if n := h.srv.svc.adm.running(); n != 0 {
		t.Fatalf("%d turns still hold a slot", n)
	}
}

func TestHealth(t *testing.T) {
	h := startServer(t, testConfig(t, "openai", "http://127.0.0.1:1/v1", newSpeechFake(t).URL))
	resp, err := http.Get("http://" + h.srv.HTTPAddr().String() + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || body["status"] != "OK" || body["server_version"] == "" || body["latest_build"] != float64(0) ||
		resp.Header.Get("Cache-Control") != "public, max-age=30" {
		t.Fatalf("health = %d %v %v", resp.StatusCode, body, resp.Header)
	}
}

// closeIdleProviderConns drops pooled keep-alive connections to the fakes:
// they are not turns, and their goroutines would count as leaks.
func closeIdleProviderConns() {
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
}
