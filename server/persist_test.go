package server

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nexy-server/nexy/llm/llmtest"
	pb "github.com/nexy-server/nexy/proto"
	"github.com/nexy-server/nexy/store"
	"github.com/nexy-server/nexy/tts"
)

// readDB opens the test server's database file read-side, as `nexy` CLI
// commands do while a server runs.
func readDB(t *testing.T, h *harness) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(h.srv.cfg.Server.DataDir, store.FileName)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

type storedTurn struct {
	hardwareID, sessionID, prompt, response, status, model string
	action, errorKind                                      sql.NullString
	firstToken, firstAudio                                 sql.NullFloat64
	total                                                  float64
}

func storedTurns(t *testing.T, db *sql.DB) []storedTurn {
	t.Helper()
	rows, err := db.Query(`SELECT u.hardware_id, s.session_id, c.prompt, a.response, a.status, a.model, a.action, a.error_kind,
		a.llm_first_token_ms, a.first_audio_sent_ms, a.total_ms
		FROM llm_answers a JOIN commands c ON c.id = a.command_id JOIN sessions s ON s.id = c.session_id JOIN users u ON u.id = s.user_id
		ORDER BY a.id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []storedTurn
	for rows.Next() {
		var r storedTurn
		if err := rows.Scan(&r.hardwareID, &r.sessionID, &r.prompt, &r.response, &r.status, &r.model, &r.action, &r.errorKind,
			&r.firstToken, &r.firstAudio, &r.total); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

type usageRow struct {
	hardwareID, source, model string
	input, output, total      int
}

func storedUsage(t *testing.T, db *sql.DB) []usageRow {
	t.Helper()
	rows, err := db.Query(`SELECT hardware_id, source, model, input_tokens, output_tokens, total_tokens FROM token_usage ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []usageRow
	for rows.Next() {
		var r usageRow
		if err := rows.Scan(&r.hardwareID, &r.source, &r.model, &r.input, &r.output, &r.total); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// A finished turn is committed before its end_message: the moment the
// client has the answer, the record is on disk, with the text as sent, the
// action, the timings and the tokens under the real hardware id.
func TestFinishedTurnIsRecordedBeforeEndMessage(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: actionReply, Usage: llmtest.Usage{InputTokens: 321, OutputTokens: 45, Model: "llama3.2"}})
	h := startServer(t, testConfig(t, "openai", fake.URL, newSpeechFake(t).URL))
	sid := newSession()
	msgs, err := h.call(t, commitReq(sid, "open safari"))
	if err != nil {
		t.Fatal(err)
	}
	a := checkAnswer(t, msgs)
	db := readDB(t, h)
	turns := storedTurns(t, db) // no waiting: committed before end_message
	if len(turns) != 1 {
		t.Fatalf("%d turns stored, want 1", len(turns))
	}
	r := turns[0]
	if r.hardwareID != testHW || r.sessionID != sid || r.prompt != "open safari" || r.status != store.StatusComplete {
		t.Errorf("stored %+v", r)
	}
	if r.response != strings.Join(a.texts, "") {
		t.Errorf("stored response %q, sent %q", r.response, strings.Join(a.texts, ""))
	}
	if !r.action.Valid || r.action.String != a.action.GetActionJson() {
		t.Errorf("stored action %v, sent %q", r.action, a.action.GetActionJson())
	}
	if !r.firstToken.Valid || !r.firstAudio.Valid || r.firstAudio.Float64 < r.firstToken.Float64 || r.total < r.firstAudio.Float64 {
		t.Errorf("timings: first token %v, first audio %v, total %v", r.firstToken, r.firstAudio, r.total)
	}
	usage := storedUsage(t, db)
	if len(usage) != 1 || usage[0] != (usageRow{testHW, store.SourceMain, "llama3.2", 321, 45, 366}) {
		t.Errorf("usage %+v", usage)
	}
}

// A failed turn is recorded too, with its error kind and the tokens spent.
func TestFailedTurnIsRecorded(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Status: 401})
	h := startServer(t, testConfig(t, "openai", fake.URL, newSpeechFake(t).URL))
	_, err := h.call(t, commitReq(newSession(), "hello"))
	if status.Code(err) == codes.OK {
		t.Fatal("turn succeeded against a 401")
	}
	db := readDB(t, h)
	var turns []storedTurn
	waitFor(t, "the failed turn's record", func() bool { turns = storedTurns(t, db); return len(turns) == 1 })
	if r := turns[0]; r.status != store.StatusFailed || !r.errorKind.Valid || r.errorKind.String == "" || r.response != "" {
		t.Errorf("failed turn stored as %+v", r)
	}
}

// An interrupted turn is recorded with only what the client actually got.
func TestInterruptedTurnRecordsWhatWasSent(t *testing.T) {
	deltas := []string{`{"text": "First sentence is here. `, `Second one follows now. `, `And a third. `, `The last never arrives."}`}
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: deltas, Hang: true, HangAfter: 3, Usage: llmtest.Usage{InputTokens: 50, OutputTokens: 5}})
	h := startServer(t, testConfig(t, "openai", fake.URL, newSpeechFake(t).URL))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := h.client.StreamAudio(ctx, commitReq(newSession(), "tell me three things"))
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("stream ended before the first audio: %v", err)
		}
		got.WriteString(m.GetTextChunk())
		if m.GetAudioChunk() != nil {
			break
		}
	}
	if _, err := h.client.InterruptSession(ctx, &pb.InterruptRequest{HardwareId: testHW}); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			break
		}
		got.WriteString(m.GetTextChunk())
	}
	db := readDB(t, h)
	var turns []storedTurn
	waitFor(t, "the interrupted turn's record", func() bool { turns = storedTurns(t, db); return len(turns) == 1 })
	r := turns[0]
	if r.status != store.StatusInterrupted || r.errorKind.String != "cancelled_by_user" {
		t.Errorf("interrupted turn stored as %+v", r)
	}
	if r.response != got.String() || strings.Contains(r.response, "last") {
		t.Errorf("stored response %q, the client got %q", r.response, got.String())
	}
}

func TestReportUsageRecords(t *testing.T) {
	h := startServer(t, testConfig(t, "openai", "http://127.0.0.1:1/v1", newSpeechFake(t).URL))
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	resp, err := h.client.ReportUsage(ctx, &pb.UsageRequest{HardwareId: testHW, SessionId: "s", Source: "browser_agent",
		InputTokens: 1000, OutputTokens: 200, Model: "gemini-2.5-flash"})
	if err != nil || !resp.GetSuccess() {
		t.Fatalf("ReportUsage: %v %v", resp, err)
	}
	// success=true means committed: the row is there without waiting.
	usage := storedUsage(t, readDB(t, h))
	if len(usage) != 1 || usage[0] != (usageRow{testHW, "client:browser_agent", "gemini-2.5-flash", 1000, 200, 1200}) {
		t.Errorf("usage %+v", usage)
	}
}

// failingStore refuses every write, as a full disk would.
type failingStore struct{ Store }

var errDiskFull = errors.New("database or disk is full")

func (failingStore) RecordUsage(context.Context, store.Usage) error { return errDiskFull }
func (failingStore) SaveTurn(context.Context, store.Turn) error     { return errDiskFull }
func (failingStore) QueueTurn(context.Context, store.Turn) error    { return errDiskFull }
func (failingStore) ApplyMemory(context.Context, store.MemoryChange) error {
	return errDiskFull
}

// A store that fails costs the user nothing but the record: ReportUsage
// says success=false with a reason, turns are still answered, the server
// stays up.
func TestStoreFailureKeepsServing(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Still here."}`}})
	h := startServer(t, testConfig(t, "openai", fake.URL, newSpeechFake(t).URL), func(d *Deps) { d.Store = failingStore{d.Store} })
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	resp, err := h.client.ReportUsage(ctx, &pb.UsageRequest{HardwareId: testHW, Source: "x", InputTokens: 1})
	if err != nil || resp.GetSuccess() || !strings.Contains(resp.GetMessage(), "not recorded") {
		t.Fatalf("ReportUsage on a failing store: %v %v", resp, err)
	}
	msgs, err := h.call(t, commitReq(newSession(), "hello"))
	if err != nil {
		t.Fatal(err)
	}
	checkAnswer(t, msgs)
	if !strings.Contains(h.log.String(), "decision=save_failed") {
		t.Error("the lost turn record was not logged")
	}
}

// A repeated welcome is served from the audio cache: the provider is called once.
func TestWelcomeServedFromCache(t *testing.T) {
	speech := newSpeechFake(t)
	h := startServer(t, testConfig(t, "openai", "http://127.0.0.1:1/v1", speech.URL))
	var first []byte
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		stream, err := h.client.GenerateWelcomeAudio(ctx, &pb.WelcomeRequest{Text: "Welcome back to Nexy.", SessionId: "w"})
		if err != nil {
			t.Fatal(err)
		}
		var pcm []byte
		for {
			m, err := stream.Recv()
			if err != nil {
				break
			}
			pcm = append(pcm, m.GetAudioChunk().GetAudioData()...)
			if m.GetErrorMessage() != "" {
				t.Fatalf("welcome %d: %s", i, m.GetErrorMessage())
			}
		}
		cancel()
		if len(pcm) == 0 {
			t.Fatalf("welcome %d: no audio", i)
		}
		if i == 0 {
			first = pcm
			// The cache is filled after the stream ends; wait for it.
			waitFor(t, "the phrase to be cached", func() bool { return h.srv.svc.speech.welcome.(*tts.Cached).Stats().Misses == 1 && cacheLen(h) == 1 })
		} else if string(pcm) != string(first) {
			t.Fatalf("welcome %d: cached audio differs from the first", i)
		}
	}
	if n := len(speech.requests()); n != 1 {
		t.Errorf("TTS provider called %d times for one phrase, want 1", n)
	}
}

func cacheLen(h *harness) int {
	if h.cache == nil {
		return -1
	}
	return h.cache.Len()
}

// store.commit_timeout = 0: end_message does not wait for the commit; the
// record is still written.
func TestCommitTimeoutZeroOnlyQueues(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Quick answer here."}`}})
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.Store.CommitTimeout.Duration = 0
	h := startServer(t, cfg)
	msgs, err := h.call(t, commitReq(newSession(), "hello"))
	if err != nil {
		t.Fatal(err)
	}
	checkAnswer(t, msgs)
	db := readDB(t, h)
	waitFor(t, "the queued record", func() bool { return len(storedTurns(t, db)) == 1 })
	if r := storedTurns(t, db)[0]; r.status != store.StatusComplete || r.response != "Quick answer here." {
		t.Errorf("stored %+v", r)
	}
}
