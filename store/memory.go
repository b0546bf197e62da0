package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Fact is one long-term fact the user stated.
type Fact struct {
	ID        int64
	Slot      string
	Text      string
	CreatedAt time.Time
	// RetiredAt is zero for an active fact.
	RetiredAt     time.Time
	RetiredReason string
}

// Digest is one day's summary of what the user did.
type Digest struct {
	ID        int64
	Day       string // YYYY-MM-DD, UTC
	Text      string
	RetiredAt time.Time // zero for an active digest
}

// RecentTurn is one earlier exchange, for short-term memory.
type RecentTurn struct {
	At        time.Time
	User      string
	Assistant string
}

// Memory is what is known about one device.
type Memory struct {
	Facts   []Fact       // active facts, oldest first
	Digests []Digest     // newest first
	Recent  []RecentTurn // newest first
}

// MemoryQuery bounds what Memory loads.
type MemoryQuery struct {
	RecentTurns int       // short-term: at most this many turns
	RecentSince time.Time // short-term: only turns after this
	DigestSince string    // medium-term: only days on or after this (YYYY-MM-DD)
}

// ErrUnknownDevice: no turn was ever recorded for the hardware id.
var ErrUnknownDevice = errors.New("store: unknown device (no turn recorded for this hardware id)")

// The queries of Memory, which runs before every turn's model call. The
// active ones spell out retired_at IS NULL so that SQLite reads the partial
// indexes memories_active and memories_one_digest_a_day (a parameter there
// would make it scan every user's memories).
var (
	sqlMemoryUser  = readSQL(`SELECT id, memory_cleared_at FROM users WHERE hardware_id = ?`)
	sqlActiveFacts = readSQL(`SELECT ` + factColumns + ` FROM memories
		WHERE user_id = ? AND kind = 'fact' AND retired_at IS NULL ORDER BY id`)
	sqlActiveDigests = readSQL(`SELECT ` + digestColumns + ` FROM memories
		WHERE user_id = ? AND kind = 'digest' AND retired_at IS NULL AND day >= ? ORDER BY day DESC, id DESC`)
	// Short-term memory is read straight from the history: the last
	// answered turns, so memory can never disagree with what was said.
	// Ordered by commands_user_time's own order (user_id, created_at, id),
	// so SQLite walks the device's newest turns backwards and stops at the
	// limit; ordering by id alone sorted the whole window first (4 ms for a
	// device with a busy day, BenchmarkMemoryBusyDevice).
	sqlRecentTurns = readSQL(`SELECT c.created_at, c.prompt, a.response
		FROM commands c JOIN llm_answers a ON a.command_id = c.id
		WHERE c.user_id = ? AND c.created_at > ? AND a.status <> 'failed' AND a.response <> ''
		ORDER BY c.created_at DESC, c.id DESC LIMIT ?`)
)

const (
	factColumns   = `id, slot, content, created_at, coalesce(retired_at, ''), coalesce(retired_reason, '')`
	digestColumns = `id, day, content, coalesce(retired_at, '')`
)

// Memory loads a device's memory. A device never seen has empty memory.
func (db *DB) Memory(ctx context.Context, hardwareID string, q MemoryQuery) (Memory, error) {
	var m Memory
	var userID int64
	var cleared sql.NullString
	err := db.read(sqlMemoryUser).QueryRowContext(ctx, hardwareID).Scan(&userID, &cleared)
	if errors.Is(err, sql.ErrNoRows) {
		return m, nil
	}
	if err != nil {
		return m, fmt.Errorf("store: memory: %w", err)
	}
	if m.Facts, err = scanFacts(db.read(sqlActiveFacts).QueryContext(ctx, userID)); err != nil {
		return m, err
	}
	if m.Digests, err = scanDigests(db.read(sqlActiveDigests).QueryContext(ctx, userID, q.DigestSince)); err != nil {
		return m, err
	}
	since := ts(q.RecentSince)
	if cleared.Valid && cleared.String > since {
		since = cleared.String
	}
	if q.RecentTurns > 0 {
		m.Recent, err = scanRecentTurns(db.read(sqlRecentTurns).QueryContext(ctx, userID, since, q.RecentTurns))
	}
	return m, err
}

// scanFacts reads the rows of a query of factColumns.
func scanFacts(rows *sql.Rows, err error) ([]Fact, error) {
	if err != nil {
		return nil, fmt.Errorf("store: facts: %w", err)
	}
	defer rows.Close()
	var out []Fact
	for rows.Next() {
		var f Fact
		var created, retired string
		if err := rows.Scan(&f.ID, &f.Slot, &f.Text, &created, &retired, &f.RetiredReason); err != nil {
			return nil, fmt.Errorf("store: facts: %w", err)
		}
		f.CreatedAt, f.RetiredAt = parseTS(created), parseTS(retired)
		out = append(out, f)
	}
	return out, rows.Err()
}

// scanDigests reads the rows of a query of digestColumns.
func scanDigests(rows *sql.Rows, err error) ([]Digest, error) {
	if err != nil {
		return nil, fmt.Errorf("store: digests: %w", err)
	}
	defer rows.Close()
	var out []Digest
	for rows.Next() {
		var d Digest
		var retired string
		if err := rows.Scan(&d.ID, &d.Day, &d.Text, &retired); err != nil {
			return nil, fmt.Errorf("store: digests: %w", err)
		}
		d.RetiredAt = parseTS(retired)
		out = append(out, d)
	}
	return out, rows.Err()
}

func scanRecentTurns(rows *sql.Rows, err error) ([]RecentTurn, error) {
	if err != nil {
		return nil, fmt.Errorf("store: recent turns: %w", err)
	}
	defer rows.Close()
	var out []RecentTurn
	for rows.Next() {
		var t RecentTurn
		var at string
		if err := rows.Scan(&at, &t.User, &t.Assistant); err != nil {
			return nil, fmt.Errorf("store: recent turns: %w", err)
		}
		t.At = parseTS(at)
		out = append(out, t)
	}
	return out, rows.Err()
}

// MemoryChange is what one memory update writes, in one transaction.
type MemoryChange struct {
	HardwareID string
	At         time.Time
	// Basis is when the memory this change was computed from was read. If
	// the device's memory was cleared after it (a forget from the CLI or a
	// later turn), the change adds nothing: it would bring back what was
	// forgotten. Zero = no check.
	Basis  time.Time
	Retire []int64 // fact ids to retire
	Reason string  // why they are retired ("forgotten by the user", "replaced")
	// ClearShortTerm: earlier turns stop being short-term memory (after a
	// "forget": they may quote what was forgotten).
	ClearShortTerm bool
	RetireDigests  bool // retire every digest too ("forget everything")
	RetireFacts    bool // retire every fact, whatever Retire lists
	Add            []Fact
	Digest         *Digest // today's digest, replacing the day's text
	Usage          *Usage  // the analyzer's tokens
}

// ApplyMemory writes a memory change and returns once it is committed.
func (db *DB) ApplyMemory(ctx context.Context, c MemoryChange) error {
	if c.HardwareID == "" {
		return fmt.Errorf("store: memory: no hardware id")
	}
	if c.At.IsZero() {
		c.At = time.Now()
	}
	return db.writer.do(ctx, "update memory", func(ctx context.Context, tx *wtx) error { return applyMemory(ctx, tx, &c) })
}

// The statements of the memory update that follows most turns.
var (
	sqlMemoryCleared = writeSQL(`SELECT memory_cleared_at FROM users WHERE id = ?`)
	sqlAddFact       = writeSQL(`INSERT INTO memories(user_id, kind, slot, content, created_at, updated_at) VALUES (?, 'fact', ?, ?, ?, ?)`)
	sqlDigest        = writeSQL(`INSERT INTO memories(user_id, kind, day, content, created_at, updated_at) VALUES (?, 'digest', ?, ?, ?, ?)
		ON CONFLICT(user_id, day) WHERE kind = 'digest' AND retired_at IS NULL DO UPDATE SET content = excluded.content, updated_at = excluded.updated_at`)
)

func applyMemory(ctx context.Context, tx *wtx, c *MemoryChange) error {
	at := ts(c.At)
	userID, err := userRow(ctx, tx, c.HardwareID, at)
	if err != nil {
		return err
	}
	if !c.Basis.IsZero() {
		var cleared sql.NullString
		if err := tx.stmt(ctx, sqlMemoryCleared).QueryRowContext(ctx, userID).Scan(&cleared); err != nil {
			return fmt.Errorf("memory cleared: %w", err)
		}
		if cleared.Valid && cleared.String > ts(c.Basis) {
			c.Add, c.Digest = nil, nil
		}
	}
	for _, id := range c.Retire {
		if _, err := tx.ExecContext(ctx, `UPDATE memories SET retired_at = ?, retired_reason = ?, updated_at = ?
			WHERE id = ? AND user_id = ? AND retired_at IS NULL`, at, c.Reason, at, id, userID); err != nil {
			return fmt.Errorf("retire fact: %w", err)
		}
	}
	for kind, all := range map[string]bool{"digest": c.RetireDigests, "fact": c.RetireFacts} {
		if !all {
			continue
		}
		if _, err := tx.ExecContext(ctx, `UPDATE memories SET retired_at = ?, retired_reason = ?, updated_at = ?
			WHERE user_id = ? AND kind = ? AND retired_at IS NULL`, at, c.Reason, at, userID, kind); err != nil {
			return fmt.Errorf("retire %ss: %w", kind, err)
		}
	}
	if c.ClearShortTerm {
		if _, err := tx.ExecContext(ctx, `UPDATE users SET memory_cleared_at = ? WHERE id = ?`, at, userID); err != nil {
			return fmt.Errorf("clear short-term: %w", err)
		}
	}
	for _, f := range c.Add {
		if _, err := tx.stmt(ctx, sqlAddFact).ExecContext(ctx, userID, f.Slot, f.Text, at, at); err != nil {
			return fmt.Errorf("add fact: %w", err)
		}
	}
	if d := c.Digest; d != nil && d.Text != "" {
		if _, err := tx.stmt(ctx, sqlDigest).ExecContext(ctx, userID, d.Day, d.Text, at, at); err != nil {
			return fmt.Errorf("digest: %w", err)
		}
	}
	if c.Usage != nil && (c.Usage.InputTokens > 0 || c.Usage.OutputTokens > 0) {
		return insertUsage(ctx, tx, *c.Usage)
	}
	return nil
}

// DeviceMemory is everything stored about a device's memory, retired facts
// included, for `nexy memory export`.
type DeviceMemory struct {
	HardwareID      string
	FirstSeen       time.Time
	LastSeen        time.Time
	MemoryClearedAt time.Time
	Facts           []Fact   // active and retired, oldest first
	Digests         []Digest // active and retired, newest first
}

// ExportMemory returns a device's whole memory; ErrUnknownDevice when the
// device never had a turn recorded.
func (db *DB) ExportMemory(ctx context.Context, hardwareID string) (DeviceMemory, error) {
	d := DeviceMemory{HardwareID: hardwareID}
	var userID int64
	var first, last string
	var cleared sql.NullString
	err := db.r.QueryRowContext(ctx, `SELECT id, created_at, last_seen_at, memory_cleared_at FROM users WHERE hardware_id = ?`, hardwareID).
		Scan(&userID, &first, &last, &cleared)
	if errors.Is(err, sql.ErrNoRows) {
		return d, ErrUnknownDevice
	}
	if err != nil {
		return d, fmt.Errorf("store: memory export: %w", err)
	}
	d.FirstSeen, d.LastSeen, d.MemoryClearedAt = parseTS(first), parseTS(last), parseTS(cleared.String)
	if d.Facts, err = scanFacts(db.r.QueryContext(ctx, `SELECT `+factColumns+` FROM memories
		WHERE user_id = ? AND kind = 'fact' ORDER BY id`, userID)); err != nil {
		return d, err
	}
	d.Digests, err = scanDigests(db.r.QueryContext(ctx, `SELECT `+digestColumns+` FROM memories
		WHERE user_id = ? AND kind = 'digest' ORDER BY day DESC, id DESC`, userID))
	return d, err
}

// ForgetAll retires every fact and digest of a device and ends its
// short-term memory; the rows stay (SPEC §7: retire, never delete).
func (db *DB) ForgetAll(ctx context.Context, hardwareID, reason string) error {
	if _, err := db.ExportMemory(ctx, hardwareID); err != nil {
		return err // ErrUnknownDevice
	}
	return db.ApplyMemory(ctx, MemoryChange{HardwareID: hardwareID, Reason: reason, ClearShortTerm: true, RetireDigests: true, RetireFacts: true})
}
