package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Device statuses.
const (
	DevicePending  = "pending"  // seen, not approved (refused under devices.pairing = "approve")
	DeviceApproved = "approved" // the owner approved it
	DeviceRevoked  = "revoked"  // refused until approved again
)

// Device is one row of devices.
type Device struct {
	HardwareID  string
	Name        string
	Status      string
	FirstSeen   time.Time
	FirstPrompt string
	ApprovedAt  time.Time // zero = never
	RevokedAt   time.Time // zero = never
	// TokenSHA256 is the hex SHA-256 of the device's bearer token; "" = none.
	TokenSHA256 string
	// DailyTurns and DailyTokens override quotas.*; nil = the default, 0 = unlimited.
	DailyTurns, DailyTokens *int64
	Version                 int64
}

// ErrNoDevice: the hardware id has never been seen or approved.
var ErrNoDevice = errors.New("no such device")

const deviceColumns = `hardware_id, name, status, first_seen_at, first_prompt, coalesce(approved_at, ''), coalesce(revoked_at, ''),
	coalesce(token_sha256, ''), daily_turns, daily_tokens, version`

func scanDevice(row interface{ Scan(...any) error }) (Device, error) {
	var d Device
	var first, approved, revoked string
	var turns, tokens sql.NullInt64
	if err := row.Scan(&d.HardwareID, &d.Name, &d.Status, &first, &d.FirstPrompt, &approved, &revoked,
		&d.TokenSHA256, &turns, &tokens, &d.Version); err != nil {
		return Device{}, err
	}
	d.FirstSeen, d.ApprovedAt, d.RevokedAt = parseTS(first), parseTS(approved), parseTS(revoked)
	if turns.Valid {
		d.DailyTurns = &turns.Int64
	}
	if tokens.Valid {
		d.DailyTokens = &tokens.Int64
	}
	return d, nil
}

// Devices lists every device, oldest first.
func (db *DB) Devices(ctx context.Context) ([]Device, error) {
	return db.queryDevices(ctx, `SELECT `+deviceColumns+` FROM devices ORDER BY first_seen_at, id`)
}

// DevicesChangedSince lists the devices added or changed after a change
// number (one range of the version index), oldest change first.
func (db *DB) DevicesChangedSince(ctx context.Context, version int64) ([]Device, error) {
	return db.queryDevices(ctx, `SELECT `+deviceColumns+` FROM devices WHERE version > ? ORDER BY version`, version)
}

func (db *DB) queryDevices(ctx context.Context, query string, args ...any) ([]Device, error) {
	rows, err := db.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: devices: %w", err)
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("store: devices: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Device returns one device, or ErrNoDevice.
func (db *DB) Device(ctx context.Context, hardwareID string) (Device, error) {
	d, err := scanDevice(db.r.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE hardware_id = ?`, hardwareID))
	if errors.Is(err, sql.ErrNoRows) {
		return Device{}, fmt.Errorf("store: device %s: %w", hardwareID, ErrNoDevice)
	}
	if err != nil {
		return Device{}, fmt.Errorf("store: device: %w", err)
	}
	return d, nil
}

// DevicesVersion is the highest change number of the devices table: it
// changes whenever any device is added or changed, by any process.
func (db *DB) DevicesVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := db.read(sqlDevicesVersion).QueryRowContext(ctx).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: devices version: %w", err)
	}
	return v, nil
}

var sqlDevicesVersion = readSQL(`SELECT coalesce(max(version), 0) FROM devices`)

const nextVersion = `(SELECT coalesce(max(version), 0) + 1 FROM devices)`

// SeeDevice records a device the first time it asks something, as pending,
// with its first prompt. It is queued (nobody waits for the commit) and does
// nothing for a device already known.
func (db *DB) SeeDevice(ctx context.Context, hardwareID, prompt string, at time.Time) error {
	return db.writer.submit(ctx, job{what: "record new device", fn: func(ctx context.Context, tx *wtx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO devices(hardware_id, status, first_seen_at, first_prompt, version, updated_at)
			VALUES (?, 'pending', ?, ?, `+nextVersion+`, ?) ON CONFLICT(hardware_id) DO NOTHING`,
			hardwareID, ts(at), prompt, ts(at))
		return err
	}})
}

// DeviceChange is what `nexy devices` changes; nil fields stay as they are.
type DeviceChange struct {
	Status *string
	Name   *string
	// TokenSHA256: a pointer to "" removes the token.
	TokenSHA256 *string
	// Limits: SetLimits applies DailyTurns and DailyTokens (nil = the default).
	SetLimits               bool
	DailyTurns, DailyTokens *int64
}

// ChangeDevice applies a change and returns the device as it now is. A
// device never seen can be approved (or given a token or limits) ahead of
// its first request; it is created then.
func (db *DB) ChangeDevice(ctx context.Context, hardwareID string, c DeviceChange, at time.Time) (Device, error) {
	if c.Status != nil && *c.Status != DevicePending && *c.Status != DeviceApproved && *c.Status != DeviceRevoked {
		return Device{}, fmt.Errorf("store: device status %q", *c.Status)
	}
	err := db.writer.do(ctx, "change device", func(ctx context.Context, tx *wtx) error {
		now := ts(at)
		if _, err := tx.ExecContext(ctx, `INSERT INTO devices(hardware_id, status, first_seen_at, version, updated_at)
			VALUES (?, 'pending', ?, `+nextVersion+`, ?) ON CONFLICT(hardware_id) DO NOTHING`, hardwareID, now, now); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE devices SET
			status = coalesce(?1, status),
			approved_at = CASE WHEN ?1 = 'approved' THEN ?2 ELSE approved_at END,
			revoked_at = CASE WHEN ?1 = 'revoked' THEN ?2 ELSE revoked_at END,
			name = coalesce(?3, name),
			token_sha256 = CASE WHEN ?4 IS NULL THEN token_sha256 ELSE nullif(?4, '') END,
			daily_turns = CASE WHEN ?5 THEN ?6 ELSE daily_turns END,
			daily_tokens = CASE WHEN ?5 THEN ?7 ELSE daily_tokens END,
			version = `+nextVersion+`, updated_at = ?2
			WHERE hardware_id = ?8`,
			nullable(c.Status), now, nullable(c.Name), nullable(c.TokenSHA256), c.SetLimits, nullInt(c.DailyTurns), nullInt(c.DailyTokens), hardwareID)
		return err
	})
	if err != nil {
		return Device{}, fmt.Errorf("store: change device: %w", err)
	}
	return db.Device(ctx, hardwareID)
}

func nullable(s *string) sql.NullString {
	if s == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: *s, Valid: true}
}

func nullInt(n *int64) sql.NullInt64 {
	if n == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: *n, Valid: true}
}

// DayUse is what a device used since a time (local midnight, for quotas):
// turns started (every recorded COMMIT, answered or not) and tokens of every
// source (the answers, memory analysis, what the client reported).
type DayUse struct {
	Turns, Tokens int64
}

var sqlUseSince = readSQL(`SELECT
	(SELECT count(*) FROM commands c JOIN users u ON u.id = c.user_id WHERE u.hardware_id = ?1 AND c.created_at >= ?2),
	(SELECT coalesce(sum(total_tokens), 0) FROM token_usage WHERE hardware_id = ?1 AND created_at >= ?2)`)

// UseSince returns a device's use since a time.
func (db *DB) UseSince(ctx context.Context, hardwareID string, since time.Time) (DayUse, error) {
	var u DayUse
	err := db.read(sqlUseSince).QueryRowContext(ctx, hardwareID, ts(since)).Scan(&u.Turns, &u.Tokens)
	if err != nil {
		return DayUse{}, fmt.Errorf("store: use since: %w", err)
	}
	return u, nil
}

// UseSinceByDevice returns every device's use since a time, for `nexy usage`.
func (db *DB) UseSinceByDevice(ctx context.Context, since time.Time) (map[string]DayUse, error) {
	out := map[string]DayUse{}
	add := func(query string, set func(*DayUse, int64)) error {
		rows, err := db.r.QueryContext(ctx, query, ts(since))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var hw string
			var n int64
			if err := rows.Scan(&hw, &n); err != nil {
				return err
			}
			u := out[hw]
			set(&u, n)
			out[hw] = u
		}
		return rows.Err()
	}
	if err := add(`SELECT u.hardware_id, count(*) FROM commands c JOIN users u ON u.id = c.user_id WHERE c.created_at >= ? GROUP BY u.hardware_id`,
		func(u *DayUse, n int64) { u.Turns = n }); err != nil {
		return nil, fmt.Errorf("store: use by device: %w", err)
	}
	if err := add(`SELECT hardware_id, sum(total_tokens) FROM token_usage WHERE created_at >= ? GROUP BY hardware_id`,
		func(u *DayUse, n int64) { u.Tokens = n }); err != nil {
		return nil, fmt.Errorf("store: use by device: %w", err)
	}
	return out, nil
}
