package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Status is what the server's /status says about the database: how big it
// is, and whether the history is protected (the newest backup, the last
// restore drill). It names files, never directories: /status is public.
type Status struct {
	// SizeBytes is nexy.db's size; WALBytes its write-ahead log's (the
	// changes not yet checkpointed into it).
	SizeBytes int64 `json:"size_bytes"`
	WALBytes  int64 `json:"wal_bytes"`
	// LastBackup is the newest backup in the backup directory; nil = none.
	LastBackup *BackupStatus `json:"last_backup"`
	// LastDrill is the newest restore drill, whatever its outcome, and
	// LastGoodDrill the newest that succeeded; nil = none.
	LastDrill     *DrillStatus `json:"last_drill"`
	LastGoodDrill *DrillStatus `json:"last_successful_drill"`
	// Warning says what to do when no drill has succeeded lately ("" = fine).
	Warning string `json:"warning,omitempty"`
}

// BackupStatus describes one backup file.
type BackupStatus struct {
	File      string    `json:"file"`
	CreatedAt time.Time `json:"created_at"`
	SizeBytes int64     `json:"size_bytes"`
	// HasMetadata is false when the metadata file is missing or
	// unreadable: then CreatedAt is the file's modification time, and a
	// drill will refuse the backup.
	HasMetadata bool `json:"has_metadata"`
	Schema      int  `json:"schema_version,omitempty"`
}

// DrillStatus describes one restore drill. Its detail is left out: a failed
// drill's names directories, and `nexy drill` says it again anyway.
type DrillStatus struct {
	RanAt      time.Time `json:"ran_at"`
	BackupFile string    `json:"backup_file"`
	OK         bool      `json:"ok"`
}

// Status reports the database's size, the newest backup in backupDir and
// the last restore drills. A missing backup directory means no backup, not
// an error.
func (db *DB) Status(ctx context.Context, backupDir string) (Status, error) {
	var st Status
	st.SizeBytes = fileSize(db.path)
	st.WALBytes = fileSize(db.path + "-wal")
	last, found, err := db.LastDrill(ctx, false)
	if err != nil {
		return st, err
	}
	if found {
		st.LastDrill = drillStatus(last)
		st.LastGoodDrill = st.LastDrill
		if !last.OK {
			good, found, err := db.LastDrill(ctx, true)
			if err != nil {
				return st, err
			}
			st.LastGoodDrill = nil
			if found {
				st.LastGoodDrill = drillStatus(good)
			}
		}
	}
	st.Warning = drillWarning(st.LastGoodDrill, time.Now())
	if st.LastBackup, err = latestBackupStatus(backupDir); err != nil {
		return st, err
	}
	return st, nil
}

func drillStatus(d Drill) *DrillStatus {
	return &DrillStatus{RanAt: d.RanAt.UTC(), BackupFile: filepath.Base(d.BackupFile), OK: d.OK}
}

// drillWarning is DrillWarning's verdict on an already read drill.
func drillWarning(good *DrillStatus, now time.Time) string {
	switch {
	case good == nil:
		return "no restore drill has succeeded yet: run nexy drill (and nexy backup first if there is none)"
	case now.Sub(good.RanAt) > DrillMaxAge:
		return fmt.Sprintf("the last successful restore drill is more than %d days old: run nexy drill", int(DrillMaxAge.Hours()/24))
	}
	return ""
}

// latestBackupStatus describes the newest backup in dir; nil when there is none.
func latestBackupStatus(dir string) (*BackupStatus, error) {
	path, err := LatestBackup(dir)
	if errors.Is(err, ErrNoBackup) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		// Retention removed it between the listing and now.
		return nil, nil
	}
	b := &BackupStatus{File: filepath.Base(path), CreatedAt: fi.ModTime().UTC(), SizeBytes: fi.Size()}
	if meta, err := readMeta(path); err == nil && meta != nil {
		b.HasMetadata, b.CreatedAt, b.Schema = true, meta.CreatedAt.UTC(), meta.SchemaVersion
	}
	return b, nil
}

// fileSize is a file's size, 0 when it does not exist.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
