package server

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nexy-server/nexy/llm/llmtest"
	pb "github.com/nexy-server/nexy/proto"
	"github.com/nexy-server/nexy/store"
)

// TestCrashKeepsAcknowledgedTurns kills a server with SIGKILL while clients
// are mid-turn. After restart the database passes integrity_check, and every
// turn whose end_message a client received is in it: the record is committed
// before end_message is sent, and a WAL commit survives the process.
func TestCrashKeepsAcknowledgedTurns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child server")
	}
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Noted, all good."}`}, Usage: llmtest.Usage{InputTokens: 10, OutputTokens: 3}})
	speech := newSpeechFake(t)
	c := startChild(t, fmt.Sprintf("[llm]\nprovider = \"openai\"\nbase_url = %q\nmodel = \"llama3.2\"\n[tts]\nprovider = \"openai\"\nbase_url = %q\n[memory]\nanalyzer = \"heuristic\"\n",
		fake.URL, speech.URL), 100)
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewStreamingServiceClient(conn)

	const clients, maxTurns = 32, 20 // bounded: each client stops by itself
	var mu sync.Mutex
	var acked []string
	var killOnce sync.Once
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hw := fmt.Sprintf("CRASH-DEVICE-%02d", i)
			for range maxTurns {
				sid := newSession()
				req := commitReq(sid, strings.Repeat("remember the milk and the bread. ", 200)) // large records: deeper write batches
				req.HardwareId = hw
				if !endReceived(ctx, client, req) {
					return // the server is gone
				}
				mu.Lock()
				acked = append(acked, sid)
				n := len(acked)
				mu.Unlock()
				if n >= 3*clients {
					// Kill the moment an end_message arrives, while the
					// other clients are mid-turn: a record not yet
					// committed at this instant would be lost.
					killOnce.Do(c.kill)
				}
			}
		}()
	}
	wg.Wait()
	killOnce.Do(c.kill) // every client stopped by itself (maxTurns): still crash it

	db, err := store.Open(filepath.Join(c.dataDir, store.FileName), store.Options{})
	if err != nil {
		t.Fatalf("reopening after the crash: %v", err)
	}
	defer db.Close()
	if ok, err := db.IntegrityCheck(context.Background()); err != nil || ok != "ok" {
		t.Fatalf("integrity_check after the crash: %q %v", ok, err)
	}
	stored := map[string]bool{}
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(c.dataDir, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rows, err := raw.Query(`SELECT s.session_id FROM sessions s JOIN commands c ON c.session_id = s.id JOIN llm_answers a ON a.command_id = c.id WHERE a.status = 'complete'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var sid string
		_ = rows.Scan(&sid)
		stored[sid] = true
	}
	rows.Close()
	missing := 0
	for _, sid := range acked {
		if !stored[sid] {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged turns are missing after the crash", missing, len(acked))
	}
	t.Logf("%d acknowledged turns, all present; %d complete turns stored", len(acked), len(stored))
}

// endReceived runs one COMMIT and reports whether its end_message arrived.
func endReceived(ctx context.Context, client pb.StreamingServiceClient, req *pb.StreamRequest) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := client.StreamAudio(ctx, req)
	if err != nil {
		return false
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return false
		}
		if m.GetEndMessage() != "" {
			return true
		}
	}
}
