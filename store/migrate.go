package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one embedded file, migrations/NNNN_name.sql.
type migration struct {
	version  int
	name     string
	sql      string
	checksum string
}

var migrations = mustLoadMigrations()

// latestVersion is the schema this binary writes.
var latestVersion = migrations[len(migrations)-1].version

func mustLoadMigrations() []migration {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil || len(names) == 0 {
		panic("store: no embedded migrations")
	}
	sort.Strings(names)
	out := make([]migration, 0, len(names))
	for i, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "migrations/"), ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v != i+1 {
			panic(fmt.Sprintf("store: migration %s: want %04d_name.sql", n, i+1))
		}
		body, _ := migrationFiles.ReadFile(n)
		sum := sha256.Sum256(body)
		out = append(out, migration{version: v, name: name, sql: string(body), checksum: hex.EncodeToString(sum[:])})
	}
	return out
}

// NewerSchemaError: the file was written by a newer nexy. Opening it could
// lose what the newer version stores, so the server refuses.
type NewerSchemaError struct {
	Path          string
	Have, Support int
}

func (e *NewerSchemaError) Error() string {
	return fmt.Sprintf("store: %s has schema version %d, but this nexy knows only up to %d: it was written by a newer nexy; run that version (or restore a backup made by this one)",
		e.Path, e.Have, e.Support)
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TEXT NOT NULL
)`

// migrate applies the embedded migrations above the database's version, up
// to target, each in its own transaction together with its record.
func migrate(ctx context.Context, db *sql.DB, target int) error {
	if _, err := db.ExecContext(ctx, createMigrationsTable); err != nil {
		return fmt.Errorf("store: migrations table: %w", err)
	}
	have, err := currentVersion(ctx, db)
	if err != nil {
		return err
	}
	if have > latestVersion {
		return &NewerSchemaError{Path: dbFile(ctx, db), Have: have, Support: latestVersion}
	}
	if err := checkApplied(ctx, db, have); err != nil {
		return err
	}
	for _, m := range migrations {
		if m.version <= have || m.version > target {
			continue
		}
		if err := apply(ctx, db, m); err != nil {
			return err
		}
	}
	return nil
}

func apply(ctx context.Context, db *sql.DB, m migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: migration %04d_%s: %w", m.version, m.name, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return fmt.Errorf("store: migration %04d_%s: %w", m.version, m.name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, name, checksum, applied_at) VALUES (?, ?, ?, ?)`,
		m.version, m.name, m.checksum, ts(time.Now())); err != nil {
		return fmt.Errorf("store: record migration %04d: %w", m.version, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: migration %04d_%s: %w", m.version, m.name, err)
	}
	return nil
}

// checkApplied refuses a database whose recorded migrations differ from the
// embedded ones: a schema edited after release would silently diverge.
func checkApplied(ctx context.Context, db *sql.DB, have int) error {
	rows, err := db.QueryContext(ctx, `SELECT version, checksum FROM schema_migrations ORDER BY version`)
	if err != nil {
		return fmt.Errorf("store: read migrations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int
		var sum string
		if err := rows.Scan(&v, &sum); err != nil {
			return fmt.Errorf("store: read migrations: %w", err)
		}
		if v >= 1 && v <= len(migrations) && migrations[v-1].checksum != sum {
			return fmt.Errorf("store: migration %04d_%s in the database differs from this binary's (checksum %s…, want %s…)",
				v, migrations[v-1].name, sum[:min(8, len(sum))], migrations[v-1].checksum[:8])
		}
	}
	return rows.Err()
}

func currentVersion(ctx context.Context, q querier) (int, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	return int(v.Int64), nil
}

func dbFile(ctx context.Context, q querier) string {
	var seq int
	var name, file string
	if err := q.QueryRowContext(ctx, `PRAGMA database_list`).Scan(&seq, &name, &file); err != nil {
		return "the database"
	}
	return file
}

// checkGuards refuses to run without a delete guard on every history table:
// a file restored from elsewhere, or edited by hand, must not quietly lose
// its protection.
func checkGuards(ctx context.Context, q querier) error {
	for _, t := range HistoryTables {
		var n int
		err := q.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? AND name = ?`,
			t, t+"_no_delete").Scan(&n)
		if err != nil {
			return fmt.Errorf("store: check delete guards: %w", err)
		}
		if n != 1 {
			return fmt.Errorf("store: table %s has no delete guard (trigger %s_no_delete): refusing to run on a database that can lose history", t, t)
		}
	}
	return nil
}
