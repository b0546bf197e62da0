package store

import (
	"context"
	"fmt"
	"time"
)

// UsageRow is the token usage of one device, source and model.
type UsageRow struct {
	HardwareID   string
	Source       string
	Model        string
	Calls        int64
	InputTokens  int64
	OutputTokens int64
}

// UsageReport sums token usage since a time, per device, source and model,
// the heaviest first; device "" means every device.
func (db *DB) UsageReport(ctx context.Context, since time.Time, device string) ([]UsageRow, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT hardware_id, source, model, count(*), sum(input_tokens), sum(output_tokens)
		FROM token_usage WHERE created_at >= ? AND (? = '' OR hardware_id = ?)
		GROUP BY hardware_id, source, model ORDER BY sum(total_tokens) DESC, hardware_id, source, model`, ts(since), device, device)
	if err != nil {
		return nil, fmt.Errorf("store: usage: %w", err)
	}
	defer rows.Close()
	var out []UsageRow
	for rows.Next() {
		var r UsageRow
		if err := rows.Scan(&r.HardwareID, &r.Source, &r.Model, &r.Calls, &r.InputTokens, &r.OutputTokens); err != nil {
			return nil, fmt.Errorf("store: usage: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// KnownDevice reports whether any turn or usage was recorded for a device.
func (db *DB) KnownDevice(ctx context.Context, hardwareID string) (bool, error) {
	var n int
	err := db.r.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE hardware_id = ?) OR EXISTS (SELECT 1 FROM token_usage WHERE hardware_id = ?)`,
		hardwareID, hardwareID).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("store: device: %w", err)
	}
	return n > 0, nil
}
