package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// openTest opens a store on a temp file, closed when the test ends.
func openTest(tb testing.TB) *DB {
	tb.Helper()
	db, err := Open(filepath.Join(tb.TempDir(), FileName), Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func testTurn(hw, session string, at time.Time) Turn {
	return Turn{HardwareID: hw, SessionID: session, At: at, Prompt: "what time is it", Response: "It is noon.",
		Model: "gemini-test", Status: StatusComplete, InputTokens: 120, OutputTokens: 8, Segments: 1, AudioChunks: 12,
		Timings: Timings{Admitted: time.Millisecond, LLMFirstToken: 300 * time.Millisecond, FirstSegment: 320 * time.Millisecond,
			TTSFirstByte: 450 * time.Millisecond, FirstAudioSent: 451 * time.Millisecond, LastChunkSent: 900 * time.Millisecond, Total: 901 * time.Millisecond}}
}

func TestSaveTurnRecordsEveryTable(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	turn := testTurn("HW-1", "s1", time.Now())
	turn.Screenshot = &Screenshot{Format: "png", SizeBytes: 1234, Width: 640, Height: 480}
	turn.Action = `{"command":"open_app","args":{"app_name":"Safari"}}`
	if err := db.SaveTurn(ctx, turn); err != nil {
		t.Fatal(err)
	}
	failed := testTurn("HW-1", "s2", time.Now())
	failed.Status, failed.ErrorKind, failed.Response = StatusInterrupted, "cancelled_by_user", "It is"
	if err := db.SaveTurn(ctx, failed); err != nil {
		t.Fatal(err)
	}
	n, err := db.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"users": 1, "sessions": 2, "commands": 2, "llm_answers": 2, "screenshots": 1, "token_usage": 2, "memories": 0, "drills": 0}
	for table, w := range want {
		if n[table] != w {
			t.Errorf("%s: %d rows, want %d", table, n[table], w)
		}
	}
	var status, kind, resp string
	var first float64
	err = db.r.QueryRow(`SELECT status, error_kind, response, llm_first_token_ms FROM llm_answers ORDER BY id DESC LIMIT 1`).Scan(&status, &kind, &resp, &first)
	if err != nil {
		t.Fatal(err)
	}
	if status != StatusInterrupted || kind != "cancelled_by_user" || resp != "It is" || first != 300 {
		t.Errorf("interrupted turn stored as %q %q %q %v", status, kind, resp, first)
	}
	var hw, source string
	var total int
	if err := db.r.QueryRow(`SELECT hardware_id, source, total_tokens FROM token_usage LIMIT 1`).Scan(&hw, &source, &total); err != nil {
		t.Fatal(err)
	}
	if hw != "HW-1" || source != SourceMain || total != 128 {
		t.Errorf("usage row %q %q %d", hw, source, total)
	}
}

func TestSaveTurnRefusesBadRecord(t *testing.T) {
	db := openTest(t)
	bad := testTurn("", "s", time.Now())
	if err := db.SaveTurn(context.Background(), bad); err == nil {
		t.Fatal("a turn without a hardware id was accepted")
	}
}

// A record that fails inside a batch fails alone: the others commit.
func TestWriterBadRecordFailsAlone(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := testTurn(fmt.Sprintf("HW-%d", i%3), fmt.Sprintf("s%d", i), time.Now())
			if i == 7 {
				tr.Action = "{not json" // the CHECK constraint refuses it
			}
			errs[i] = db.SaveTurn(ctx, tr)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (err != nil) != (i == 7) {
			t.Errorf("turn %d: %v", i, err)
		}
	}
	n, _ := db.Counts(ctx)
	if n["llm_answers"] != 19 || n["commands"] != 19 {
		t.Errorf("after one bad record: %v, want 19 turns", n)
	}
}

// Both ways the writer commits: a lone record (no savepoint: its failure
// rolls back the transaction) and a batch (one savepoint per record, the
// prepared SAVEPOINT/ROLLBACK TO/RELEASE). A bad record leaves no trace.
func TestWriterBadRecordLoneAndInBatch(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	bad := testTurn("HW-BAD", "s", time.Now())
	bad.Action = "{not json"
	if err := db.SaveTurn(ctx, bad); err == nil {
		t.Fatal("lone bad record: no error")
	}
	jobs := make([]job, 3)
	for i := range jobs {
		tr := testTurn("HW-OK", fmt.Sprintf("s%d", i), time.Now())
		if i == 1 {
			tr = bad
		}
		jobs[i] = job{what: "save turn", fn: func(ctx context.Context, tx *wtx) error { return insertTurn(ctx, tx, &tr) }, done: make(chan error, 1)}
	}
	db.writer.commit(jobs) // waits for the writer's connection
	for i, j := range jobs {
		if err := <-j.done; (err != nil) != (i == 1) {
			t.Errorf("batch record %d: %v", i, err)
		}
	}
	if err := db.SaveTurn(ctx, testTurn("HW-OK", "s9", time.Now())); err != nil {
		t.Fatal(err)
	}
	n, _ := db.Counts(ctx)
	if n["users"] != 1 || n["commands"] != 3 || n["llm_answers"] != 3 || n["token_usage"] != 3 {
		t.Errorf("counts %v, want 1 user and 3 turns", n)
	}
}

func TestWriterConcurrentTurns(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	const devices, perDevice = 16, 25
	var wg sync.WaitGroup
	errc := make(chan error, devices*perDevice)
	for d := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perDevice {
				errc <- db.SaveTurn(ctx, testTurn(fmt.Sprintf("HW-%d", d), fmt.Sprintf("s-%d-%d", d, i), time.Now()))
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Fatal(err)
		}
	}
	n, _ := db.Counts(ctx)
	if n["users"] != devices || n["llm_answers"] != devices*perDevice || n["token_usage"] != devices*perDevice {
		t.Errorf("counts %v", n)
	}
}

// Close commits what was queued before it.
func TestCloseFlushesQueuedTurns(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := db.QueueTurn(context.Background(), testTurn("HW", fmt.Sprintf("s%d", i), time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveTurn(context.Background(), testTurn("HW", "late", time.Now())); !errors.Is(err, ErrClosed) {
		t.Errorf("save after close: %v, want ErrClosed", err)
	}
	db = reopen(t, path)
	n, _ := db.Counts(context.Background())
	if n["llm_answers"] != 100 {
		t.Errorf("%d turns after close, want 100", n["llm_answers"])
	}
}

func reopen(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestRecordUsage(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	u := Usage{HardwareID: "HW", SessionID: "", Source: SourceClientPrefix + "browser_agent", Model: "m", InputTokens: 5, OutputTokens: 7}
	if err := db.RecordUsage(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordUsage(ctx, Usage{HardwareID: "HW", Source: "x", InputTokens: -1}); err == nil {
		t.Error("negative tokens accepted")
	}
	rows, err := db.UsageReport(ctx, time.Now().Add(-time.Hour), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Source != "client:browser_agent" || rows[0].InputTokens != 5 || rows[0].OutputTokens != 7 {
		t.Errorf("report %+v", rows)
	}
}

// Every history table refuses DELETE, with or without WHERE, and through
// INSERT OR REPLACE; the rows remain.
func TestDeleteGuards(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	turn := testTurn("HW-1", "s1", time.Now())
	turn.Screenshot = &Screenshot{Format: "webp", SizeBytes: 10}
	if err := db.SaveTurn(ctx, turn); err != nil {
		t.Fatal(err)
	}
	if err := db.ApplyMemory(ctx, MemoryChange{HardwareID: "HW-1", Add: []Fact{{Slot: "name", Text: "Anna"}},
		Digest: &Digest{Day: "2026-12-01", Text: "asked the time"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.w.Exec(`INSERT INTO drills(backup_file, ok, detail, ran_at) VALUES ('b', 1, 'ok', '2026-12-01T00:00:00.000Z')`); err != nil {
		t.Fatal(err)
	}
	name := "Anna's Mac"
	if _, err := db.ChangeDevice(ctx, "HW-1", DeviceChange{Name: &name}, time.Now()); err != nil {
		t.Fatal(err)
	}
	before, _ := db.Counts(ctx)
	for _, table := range HistoryTables {
		for _, stmt := range []string{"DELETE FROM " + table, "DELETE FROM " + table + " WHERE id = 1"} {
			_, err := db.w.Exec(stmt)
			if err == nil || !strings.Contains(err.Error(), "hard delete forbidden for table "+table) {
				t.Errorf("%s: %v, want the guard's message", stmt, err)
			}
		}
	}
	// REPLACE deletes the conflicting row first; recursive_triggers makes
	// that fire the guard.
	if _, err := db.w.Exec(`INSERT OR REPLACE INTO users(id, hardware_id, created_at, last_seen_at) VALUES (1, 'HW-1', 'x', 'x')`); err == nil {
		t.Error("INSERT OR REPLACE over a user row succeeded")
	}
	if _, err := db.w.Exec(`REPLACE INTO token_usage(id, hardware_id, source, created_at) VALUES (1, 'HW-1', 'main', 'x')`); err == nil {
		t.Error("REPLACE over a usage row succeeded")
	}
	after, _ := db.Counts(ctx)
	for _, table := range HistoryTables {
		if after[table] != before[table] || before[table] == 0 {
			t.Errorf("%s: %d rows before, %d after", table, before[table], after[table])
		}
	}
}

// No code path issues DELETE or REPLACE: the package's source and its
// migrations hold no such statement.
func TestNoDeleteStatementInStore(t *testing.T) {
	forbidden := regexp.MustCompile(`(?i)\b(DELETE\s+FROM|REPLACE\s+INTO|OR\s+REPLACE|ON\s+DELETE\s+CASCADE|DROP\s+TABLE|TRUNCATE)\b`)
	files, _ := filepath.Glob("*.go")
	sqls, _ := filepath.Glob("migrations/*.sql")
	checked := 0
	for _, f := range append(files, sqls...) {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if forbidden.MatchString(line) {
				t.Errorf("%s:%d: %s", f, i+1, strings.TrimSpace(line))
			}
		}
		checked++
	}
	if checked < 5 {
		t.Fatalf("checked only %d files", checked)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.w.Exec(`INSERT INTO schema_migrations(version, name, checksum, applied_at) VALUES (?, 'future', 'x', 'x')`, latestVersion+1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(path, Options{})
	var newer *NewerSchemaError
	if !errors.As(err, &newer) || newer.Have != latestVersion+1 || !strings.Contains(err.Error(), "newer nexy") {
		t.Fatalf("open: %v, want a NewerSchemaError", err)
	}
}

func TestOpenRefusesMissingGuard(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.w.Exec(`DROP TRIGGER commands_no_delete`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "commands has no delete guard") {
		t.Fatalf("open: %v", err)
	}
}

// Migrating from every earlier version keeps the data written at that version.
func TestMigrateFromEveryVersion(t *testing.T) {
	for v := 0; v < latestVersion; v++ {
		t.Run(fmt.Sprintf("from_%d", v), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			raw, err := openConn(path, time.Second, 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := migrate(context.Background(), raw, v); err != nil {
				t.Fatal(err)
			}
			if v >= 1 {
				if _, err := raw.Exec(`INSERT INTO users(hardware_id, created_at, last_seen_at) VALUES ('OLD', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')`); err != nil {
					t.Fatal(err)
				}
			}
			raw.Close()
			db := reopen(t, path)
			got, err := db.SchemaVersion(context.Background())
			if err != nil || got != latestVersion {
				t.Fatalf("version %d, %v; want %d", got, err, latestVersion)
			}
			var n int
			db.r.QueryRow(`SELECT count(*) FROM users WHERE hardware_id = 'OLD'`).Scan(&n)
			if want := min(v, 1); n != want {
				t.Errorf("%d old users after migrating, want %d", n, want)
			}
			if err := db.SaveTurn(context.Background(), testTurn("OLD", "s", time.Now())); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPragmas(t *testing.T) {
	db := openTest(t)
	for pragma, want := range map[string]string{"journal_mode": "wal", "foreign_keys": "1", "synchronous": "1", "recursive_triggers": "1", "busy_timeout": "5000", "temp_store": "2"} {
		for _, conn := range []*sql.DB{db.w, db.r} {
			var got string
			if err := conn.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
			}
		}
	}
}

// Forgetting retires facts and digests (the rows stay, exported as retired)
// and does not count as the device being seen.
func TestForgetAllRetiresAndKeepsRows(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	seen := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	if err := db.SaveTurn(ctx, testTurn("HW", "s", seen)); err != nil {
		t.Fatal(err)
	}
	if err := db.ApplyMemory(ctx, MemoryChange{HardwareID: "HW", Add: []Fact{{Slot: "name", Text: "Anna"}}, Digest: &Digest{Day: "2026-11-01", Text: "asked the time"}}); err != nil {
		t.Fatal(err)
	}
	if err := db.ForgetAll(ctx, "HW", "test"); err != nil {
		t.Fatal(err)
	}
	exp, err := db.ExportMemory(ctx, "HW")
	if err != nil {
		t.Fatal(err)
	}
	if len(exp.Facts) != 1 || exp.Facts[0].RetiredAt.IsZero() || len(exp.Digests) != 1 || exp.Digests[0].RetiredAt.IsZero() {
		t.Fatalf("export after forget: %+v", exp)
	}
	if !exp.LastSeen.Equal(seen) || exp.MemoryClearedAt.IsZero() {
		t.Errorf("last seen %v (want %v), memory cleared at %v", exp.LastSeen, seen, exp.MemoryClearedAt)
	}
	mem, err := db.Memory(ctx, "HW", MemoryQuery{RecentTurns: 5})
	if err != nil || len(mem.Facts)+len(mem.Digests)+len(mem.Recent) != 0 {
		t.Fatalf("memory after forget: %+v %v", mem, err)
	}
	if _, err := db.ExportMemory(ctx, "NOPE"); !errors.Is(err, ErrUnknownDevice) {
		t.Errorf("unknown device: %v", err)
	}
}

// A memory update computed before a forget adds nothing after it: it would
// bring back what was forgotten.
func TestMemoryChangeFromBeforeAForgetAddsNothing(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	basis := time.Now()
	if err := db.SaveTurn(ctx, testTurn("HW", "s", basis)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // stored times have millisecond precision
	if err := db.ForgetAll(ctx, "HW", "test"); err != nil {
		t.Fatal(err)
	}
	stale := MemoryChange{HardwareID: "HW", Basis: basis, Add: []Fact{{Slot: "name", Text: "Anna"}}, Digest: &Digest{Day: "2026-12-01", Text: "Anna said hi"}}
	if err := db.ApplyMemory(ctx, stale); err != nil {
		t.Fatal(err)
	}
	exp, _ := db.ExportMemory(ctx, "HW")
	if len(exp.Facts)+len(exp.Digests) != 0 {
		t.Fatalf("a stale update brought memory back: %+v", exp)
	}
	stale.Basis = time.Now()
	if err := db.ApplyMemory(ctx, stale); err != nil {
		t.Fatal(err)
	}
	if exp, _ = db.ExportMemory(ctx, "HW"); len(exp.Facts) != 1 {
		t.Fatalf("an update after the forget was not applied: %+v", exp)
	}
}

func TestAmendTurn(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	turn := testTurn("HW", "s", time.Now())
	if err := db.SaveTurn(ctx, turn); err != nil {
		t.Fatal(err)
	}
	turn.Status, turn.ErrorKind, turn.Response = StatusInterrupted, "cancelled_by_user", "It is"
	if err := db.AmendTurn(ctx, turn); err != nil {
		t.Fatal(err)
	}
	db.Close() // flushes the queued amendment
	db = reopen(t, db.Path())
	var status, kind, resp, session string
	err := db.r.QueryRow(`SELECT a.status, a.error_kind, a.response, s.status FROM llm_answers a JOIN commands c ON c.id = a.command_id JOIN sessions s ON s.id = c.session_id`).
		Scan(&status, &kind, &resp, &session)
	if err != nil || status != StatusInterrupted || kind != "cancelled_by_user" || resp != "It is" || session != StatusInterrupted {
		t.Fatalf("amended turn: %q %q %q %q %v", status, kind, resp, session, err)
	}
}

// A record whose caller's deadline has already passed is never queued, so
// the caller knows it was not written.
func TestExpiredContextIsNotQueued(t *testing.T) {
	db := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 50 { // select would pick the ready queue half the time
		if err := db.SaveTurn(ctx, testTurn("HW", "s", time.Now())); !errors.Is(err, ErrNotQueued) {
			t.Fatalf("save with an ended context: %v", err)
		}
	}
	db.Close()
	db = reopen(t, db.Path())
	if n, _ := db.Counts(context.Background()); n["llm_answers"] != 0 {
		t.Errorf("%d turns written with an ended context", n["llm_answers"])
	}
}

func TestHasHistory(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	if has, err := db.HasHistory(ctx); err != nil || has {
		t.Fatalf("empty store: %v %v", has, err)
	}
	if err := db.SaveTurn(ctx, testTurn("HW", "s", time.Now())); err != nil {
		t.Fatal(err)
	}
	if has, err := db.HasHistory(ctx); err != nil || !has {
		t.Fatalf("after a turn: %v %v", has, err)
	}
}
