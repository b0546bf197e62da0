package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Turn statuses.
const (
	StatusComplete    = "complete"
	StatusInterrupted = "interrupted"
	StatusFailed      = "failed"
)

// Usage sources.
const (
	SourceMain   = "main"
	SourceMemory = "memory"
	// SourceSpeculative is what a preemptive answer spent that its COMMIT
	// did not use (preempt.*).
	SourceSpeculative = "speculative"
	// SourceClientPrefix prefixes what the client reports through ReportUsage.
	SourceClientPrefix = "client:"
)

// Screenshot is what is kept of a screenshot: never the image.
type Screenshot struct {
	Format        string // "webp", "png", "jpeg"
	SizeBytes     int    // decoded size
	Width, Height int    // 0 = unknown
}

// Timings are the per-stage times of a turn since it started; 0 = the stage
// was not reached.
type Timings struct {
	Admitted, LLMFirstToken, FirstSegment, TTSFirstByte, FirstAudioSent, LastChunkSent, Total time.Duration
}

// Turn is one COMMIT and its answer, as the client experienced it.
type Turn struct {
	HardwareID, SessionID string
	At                    time.Time // when the COMMIT arrived
	Prompt                string
	Screenshot            *Screenshot
	Response              string // the text actually sent, in order
	Action                string // the action_message JSON sent, "" = none
	Model                 string
	Status                string // StatusComplete, StatusInterrupted, StatusFailed
	ErrorKind             string // the taxonomy kind when not complete
	Timings               Timings
	Segments, AudioChunks int
	InputTokens           int
	OutputTokens          int
}

// Usage is one token_usage row.
type Usage struct {
	HardwareID, SessionID string
	Source, Model         string
	InputTokens           int
	OutputTokens          int
	At                    time.Time
}

func (t *Turn) check() error {
	switch {
	case t.HardwareID == "":
		return fmt.Errorf("turn without hardware id")
	case t.Status != StatusComplete && t.Status != StatusInterrupted && t.Status != StatusFailed:
		return fmt.Errorf("turn status %q", t.Status)
	case t.InputTokens < 0 || t.OutputTokens < 0:
		return fmt.Errorf("negative token count")
	}
	return nil
}

// SaveTurn records a turn and returns once it is committed (or ctx ends;
// the record is then still written). Turns are committed in batches with
// whatever else is waiting.
func (db *DB) SaveTurn(ctx context.Context, t Turn) error {
	if err := t.check(); err != nil {
		return fmt.Errorf("store: save turn: %w", err)
	}
	return db.writer.do(ctx, "save turn", func(ctx context.Context, tx *wtx) error { return insertTurn(ctx, tx, &t) })
}

// QueueTurn records a turn without waiting for the commit; a failure is
// logged by the writer. It waits only while the writer's queue is full.
func (db *DB) QueueTurn(ctx context.Context, t Turn) error {
	if err := t.check(); err != nil {
		return fmt.Errorf("store: save turn: %w", err)
	}
	return db.writer.submit(ctx, job{what: "save turn", fn: func(ctx context.Context, tx *wtx) error { return insertTurn(ctx, tx, &t) }})
}

// AmendTurn corrects the outcome of a turn recorded as complete whose end
// never reached the client (it was cancelled or failed after its record was
// committed): its status, error kind, and the text and action actually
// sent. The turn is found by device, session and start time; it is queued
// after the record it corrects, and nobody waits for the commit.
func (db *DB) AmendTurn(ctx context.Context, t Turn) error {
	if err := t.check(); err != nil {
		return fmt.Errorf("store: amend turn: %w", err)
	}
	return db.writer.submit(ctx, job{what: "amend turn", fn: func(ctx context.Context, tx *wtx) error { return amendTurn(ctx, tx, &t) }})
}

func amendTurn(ctx context.Context, tx *wtx, t *Turn) error {
	var commandID, sessionID int64
	err := tx.QueryRowContext(ctx, `SELECT c.id, c.session_id FROM commands c JOIN users u ON u.id = c.user_id JOIN sessions s ON s.id = c.session_id
		WHERE u.hardware_id = ? AND s.session_id = ? AND c.created_at = ? ORDER BY c.id DESC LIMIT 1`,
		t.HardwareID, t.SessionID, ts(t.At)).Scan(&commandID, &sessionID)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("no recorded turn to amend (its record failed)")
	}
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE llm_answers SET status = ?, error_kind = ?, response = ?, action = ? WHERE command_id = ?`,
		t.Status, nullString(t.ErrorKind), t.Response, nullString(t.Action), commandID); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE sessions SET status = ? WHERE id = ?`, t.Status, sessionID)
	return err
}

// RecordUsage records token usage and returns once it is committed.
func (db *DB) RecordUsage(ctx context.Context, u Usage) error {
	if u.HardwareID == "" || u.Source == "" || u.InputTokens < 0 || u.OutputTokens < 0 {
		return fmt.Errorf("store: record usage: needs a hardware id, a source and non-negative counts")
	}
	return db.writer.do(ctx, "record usage", func(ctx context.Context, tx *wtx) error { return insertUsage(ctx, tx, u) })
}

var (
	sqlSession = writeSQL(`INSERT INTO sessions(user_id, session_id, status, start_time, end_time) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(user_id, session_id) DO UPDATE SET status = excluded.status, end_time = excluded.end_time
		RETURNING id`)
	sqlCommand = writeSQL(`INSERT INTO commands(user_id, session_id, prompt, has_screenshot, created_at) VALUES (?, ?, ?, ?, ?)`)
	sqlAnswer  = writeSQL(`INSERT INTO llm_answers(command_id, response, action, model, status, error_kind,
		admitted_ms, llm_first_token_ms, first_segment_ms, tts_first_byte_ms, first_audio_sent_ms, last_chunk_sent_ms, total_ms,
		segments, audio_chunks, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	sqlScreenshot = writeSQL(`INSERT INTO screenshots(command_id, format, size_bytes, width, height, created_at) VALUES (?, ?, ?, ?, ?, ?)`)
)

func insertTurn(ctx context.Context, tx *wtx, t *Turn) error {
	at := ts(t.At)
	userID, err := upsertUser(ctx, tx, t.HardwareID, at)
	if err != nil {
		return err
	}
	var sessionID int64
	end := ts(t.At.Add(t.Timings.Total))
	err = tx.stmt(ctx, sqlSession).QueryRowContext(ctx, userID, t.SessionID, t.Status, at, end).Scan(&sessionID)
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	res, err := tx.stmt(ctx, sqlCommand).ExecContext(ctx, userID, sessionID, t.Prompt, t.Screenshot != nil, at)
	if err != nil {
		return fmt.Errorf("command: %w", err)
	}
	commandID, _ := res.LastInsertId()
	tm := t.Timings
	_, err = tx.stmt(ctx, sqlAnswer).ExecContext(ctx, commandID, t.Response, nullString(t.Action), t.Model, t.Status, nullString(t.ErrorKind),
		msOrNull(tm.Admitted), msOrNull(tm.LLMFirstToken), msOrNull(tm.FirstSegment), msOrNull(tm.TTSFirstByte),
		msOrNull(tm.FirstAudioSent), msOrNull(tm.LastChunkSent), ms(tm.Total), t.Segments, t.AudioChunks, at)
	if err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	if s := t.Screenshot; s != nil {
		_, err = tx.stmt(ctx, sqlScreenshot).ExecContext(ctx, commandID, s.Format, s.SizeBytes, intOrNull(s.Width), intOrNull(s.Height), at)
		if err != nil {
			return fmt.Errorf("screenshot: %w", err)
		}
	}
	if t.InputTokens > 0 || t.OutputTokens > 0 {
		return insertUsage(ctx, tx, Usage{HardwareID: t.HardwareID, SessionID: t.SessionID, Source: SourceMain, Model: t.Model,
			InputTokens: t.InputTokens, OutputTokens: t.OutputTokens, At: t.At.Add(tm.Total)})
	}
	return nil
}

var sqlUpsertUser = writeSQL(`INSERT INTO users(hardware_id, created_at, last_seen_at) VALUES (?, ?, ?)
	ON CONFLICT(hardware_id) DO UPDATE SET last_seen_at = max(last_seen_at, excluded.last_seen_at)
	RETURNING id`)

// upsertUser returns the user's id, creating the row on first contact.
func upsertUser(ctx context.Context, tx *wtx, hardwareID, at string) (int64, error) {
	var id int64
	err := tx.stmt(ctx, sqlUpsertUser).QueryRowContext(ctx, hardwareID, at, at).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("user: %w", err)
	}
	return id, nil
}

var sqlUserRow = writeSQL(`INSERT INTO users(hardware_id, created_at, last_seen_at) VALUES (?, ?, ?)
	ON CONFLICT(hardware_id) DO UPDATE SET hardware_id = excluded.hardware_id
	RETURNING id`)

// userRow returns the user's id without marking the device as seen (a
// memory update or a forget from the CLI is not the device talking).
func userRow(ctx context.Context, tx *wtx, hardwareID, at string) (int64, error) {
	var id int64
	err := tx.stmt(ctx, sqlUserRow).QueryRowContext(ctx, hardwareID, at, at).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("user: %w", err)
	}
	return id, nil
}

var sqlUsage = writeSQL(`INSERT INTO token_usage(hardware_id, session_id, source, model, input_tokens, output_tokens, created_at)
	VALUES (?, ?, ?, ?, ?, ?, ?)`)

func insertUsage(ctx context.Context, tx *wtx, u Usage) error {
	if u.At.IsZero() {
		u.At = time.Now()
	}
	_, err := tx.stmt(ctx, sqlUsage).ExecContext(ctx, u.HardwareID, nullString(u.SessionID), u.Source, u.Model, u.InputTokens, u.OutputTokens, ts(u.At))
	if err != nil {
		return fmt.Errorf("token usage: %w", err)
	}
	return nil
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func intOrNull(n int) sql.NullInt64 { return sql.NullInt64{Int64: int64(n), Valid: n > 0} }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func msOrNull(d time.Duration) sql.NullFloat64 { return sql.NullFloat64{Float64: ms(d), Valid: d > 0} }
