package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStatus follows a data directory from nothing protected to a verified
// backup: sizes, the newest backup with its metadata, the last drill and the
// last successful one, and the warning until a drill has succeeded.
func TestStatus(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "backups") // does not exist yet

	st, err := db.Status(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.SizeBytes <= 0 || st.LastBackup != nil || st.LastDrill != nil || st.LastGoodDrill != nil || !strings.Contains(st.Warning, "nexy drill") {
		t.Fatalf("fresh store: %+v", st)
	}

	fillTurns(t, db, 20)
	res := backupTest(t, db, dir)
	st, err = db.Status(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	b := st.LastBackup
	if b == nil || b.File != filepath.Base(res.Path) || !b.HasMetadata || b.SizeBytes != res.Meta.Size ||
		!b.CreatedAt.Equal(res.Meta.CreatedAt) || b.Schema != res.Meta.SchemaVersion {
		t.Fatalf("last backup = %+v, wrote %+v", b, res.Meta)
	}

	// A drill that succeeds, then one that fails: the last drill is the
	// failure, the last successful one is still the first.
	good, err := db.RunDrill(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.RecordDrill(ctx, Drill{BackupFile: "/somewhere/nexy-x.db", OK: false, Detail: "broken", RanAt: good.RanAt.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	st, err = db.Status(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.LastDrill == nil || st.LastDrill.OK || st.LastDrill.BackupFile != "nexy-x.db" {
		t.Fatalf("last drill = %+v", st.LastDrill)
	}
	if g := st.LastGoodDrill; g == nil || !g.OK || g.BackupFile != filepath.Base(res.Path) || st.Warning != "" {
		t.Fatalf("last good drill = %+v, warning %q", g, st.Warning)
	}

	// A backup without metadata is still reported, as unverified, with the
	// file's own time.
	name := filepath.Join(dir, "nexy-29990101-000000.db")
	if err := os.WriteFile(name, []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err = db.Status(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if b := st.LastBackup; b == nil || b.File != filepath.Base(name) || b.HasMetadata || b.SizeBytes != int64(len("not a database")) {
		t.Fatalf("backup without metadata = %+v", b)
	}
}

func TestDrillWarningAge(t *testing.T) {
	now := time.Now()
	if w := drillWarning(&DrillStatus{RanAt: now.Add(-DrillMaxAge - time.Hour), OK: true}, now); !strings.Contains(w, "7 days") {
		t.Fatalf("old drill: %q", w)
	}
	if w := drillWarning(&DrillStatus{RanAt: now.Add(-time.Hour), OK: true}, now); w != "" {
		t.Fatalf("recent drill: %q", w)
	}
}
