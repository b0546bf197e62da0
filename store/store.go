// Package store keeps everything the server must not lose, in one SQLite
// file (modernc.org/sqlite, no cgo): users, sessions, every turn and its
// answer, screenshot metadata, token usage, and the user's memory. It also
// holds the bbolt phrase-audio cache, backups and restore drills.
//
// Rows that hold a user's history are never deleted: a BEFORE DELETE trigger
// on each such table aborts any DELETE, recursive_triggers makes REPLACE fire
// it too, and nothing in this package issues DELETE (a test checks). Facts
// the user asks to forget are retired with UPDATE.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver (writer.go also uses its error type)
)

// FileName is the database file inside server.data_dir.
const FileName = "nexy.db"

// AudioCacheFile is the bbolt phrase-audio cache inside server.data_dir.
const AudioCacheFile = "audio.bolt"

// timeFormat is how every time is stored: UTC, fixed width, so text order is
// time order.
const timeFormat = "2006-01-02T15:04:05.000Z"

func ts(t time.Time) string { return t.UTC().Format(timeFormat) }

func parseTS(s string) time.Time {
	t, _ := time.Parse(timeFormat, s)
	return t
}

// Options tune Open; the zero value is sane.
type Options struct {
	// BusyTimeout is how long a statement waits for another connection's
	// lock (a CLI command, the server) before failing. Default 5 s.
	BusyTimeout time.Duration
	// QueueSize bounds the records waiting for the writer. Default 1024.
	QueueSize int
	// BatchSize is the most records one transaction commits. Default 256.
	BatchSize int
	// Log receives the writer's failures (records it could not commit).
	Log *slog.Logger
}

func (o *Options) defaults() {
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 5 * time.Second
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 1024
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 256
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// DB is the open store. All writes go through one connection (SQLite has one
// writer anyway, and this way no write waits on SQLITE_BUSY from its own
// process); reads use a small pool that WAL lets run beside the writer.
type DB struct {
	path   string
	w      *sql.DB
	r      *sql.DB
	rs     []*sql.Stmt // prepared on r, by readStmt
	writer *writer
	log    *slog.Logger
}

// Errors of work submitted to the writer.
var (
	// ErrClosed: submitted after Close; nothing was written.
	ErrClosed = errors.New("store: closed")
	// ErrNotQueued: the caller's deadline ended while the writer's queue was
	// full; nothing will be written.
	ErrNotQueued = errors.New("not queued")
	// ErrNotConfirmed: queued, so it will still be written, but the commit
	// did not happen within the caller's deadline.
	ErrNotConfirmed = errors.New("commit not confirmed in time")
)

// Open opens (creating if needed) the database at path, applies the embedded
// migrations, checks the delete guards, and starts the writer. It refuses a
// database written by a newer version of nexy.
func Open(path string, opts Options) (*DB, error) {
	opts.defaults()
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("store: database path %q must not contain '?' or '#'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	w, err := openConn(path, opts.BusyTimeout, 1)
	if err != nil {
		return nil, err
	}
	if err := migrate(context.Background(), w, latestVersion); err != nil {
		w.Close()
		return nil, err
	}
	if err := checkGuards(context.Background(), w); err != nil {
		w.Close()
		return nil, err
	}
	// The file is the user's history: only the service user may read it.
	_ = os.Chmod(path, 0o600)
	r, err := openConn(path, opts.BusyTimeout, 4)
	if err != nil {
		w.Close()
		return nil, err
	}
	rs, err := prepareAll(r, readSQLs)
	if err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	ws, err := prepareAll(w, writeSQLs)
	if err != nil {
		closeAll(rs)
		r.Close()
		w.Close()
		return nil, err
	}
	db := &DB{path: path, w: w, r: r, rs: rs, log: opts.Log}
	db.writer = newWriter(w, ws, opts.QueueSize, opts.BatchSize, opts.Log)
	return db, nil
}

// dsn sets every pragma in one place. WAL lets readers (the CLI, backups)
// run beside the writer; synchronous=NORMAL in WAL survives a process crash
// (the commit is in the WAL before the call returns) and skips an fsync per
// commit; recursive_triggers makes a REPLACE conflict fire the delete guards;
// temp_store=MEMORY keeps the statement and savepoint journals (rolled back
// within a transaction, never needed after a crash) out of temp files, where
// every turn's inserts paid a pwrite per page.
func dsn(path string, busy time.Duration) string {
	q := url.Values{}
	for _, p := range []string{
		"journal_mode(WAL)",
		"synchronous(NORMAL)",
		"foreign_keys(ON)",
		fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()),
		"recursive_triggers(ON)",
		"temp_store(MEMORY)",
	} {
		q.Add("_pragma", p)
	}
	// Write transactions take the lock when they begin, so two processes
	// never deadlock upgrading a read lock.
	q.Set("_txlock", "immediate")
	return "file:" + path + "?" + q.Encode()
}

func openConn(path string, busy time.Duration, conns int) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn(path, busy))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	db.SetConnMaxIdleTime(0)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return db, nil
}

// Path is the database file.
func (db *DB) Path() string { return db.path }

// Close flushes the writer (every record submitted before Close is committed
// or reported), then closes the database.
func (db *DB) Close() error {
	db.writer.close()
	return errors.Join(closeAll(db.rs), closeAll(db.writer.stmts), db.r.Close(), db.w.Close())
}

// SchemaVersion is the highest migration applied to the open database.
func (db *DB) SchemaVersion(ctx context.Context) (int, error) {
	return currentVersion(ctx, db.r)
}

// IntegrityCheck runs PRAGMA integrity_check and returns its verdict ("ok"
// when the file is sound).
func (db *DB) IntegrityCheck(ctx context.Context) (string, error) {
	return integrityCheck(ctx, db.r)
}

func integrityCheck(ctx context.Context, q querier) (string, error) {
	rows, err := q.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return "", fmt.Errorf("store: integrity check: %w", err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return "", fmt.Errorf("store: integrity check: %w", err)
		}
		lines = append(lines, s)
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("store: integrity check: %w", err)
	}
	return strings.Join(lines, "; "), nil
}

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// HistoryTables are the tables that hold a user's history, each guarded
// against DELETE, in the order a restore drill compares them.
var HistoryTables = []string{"users", "sessions", "commands", "llm_answers", "screenshots", "token_usage", "memories", "drills", "devices"}

// HasHistory reports whether any device has been recorded: one index probe,
// not a count (start-up must not scan a large history).
func (db *DB) HasHistory(ctx context.Context) (bool, error) {
	var ok bool
	if err := db.r.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM users)`).Scan(&ok); err != nil {
		return false, fmt.Errorf("store: history: %w", err)
	}
	return ok, nil
}

// Counts returns the row count of every history table.
func (db *DB) Counts(ctx context.Context) (map[string]int64, error) {
	return counts(ctx, db.r)
}

func counts(ctx context.Context, q querier) (map[string]int64, error) {
	out := make(map[string]int64, len(HistoryTables))
	for _, t := range HistoryTables {
		var n int64
		// t comes from the fixed list above, never from input.
		if err := q.QueryRowContext(ctx, "SELECT count(*) FROM "+t).Scan(&n); err != nil {
			return nil, fmt.Errorf("store: count %s: %w", t, err)
		}
		out[t] = n
	}
	return out, nil
}
