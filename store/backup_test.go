package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fillTurns saves n turns over a few devices, plus a fact and a digest.
func fillTurns(tb testing.TB, db *DB, n int) {
	tb.Helper()
	ctx := context.Background()
	for i := range n {
		tr := testTurn(fmt.Sprintf("HW-%d", i%5), fmt.Sprintf("fill-%d", i), time.Now())
		tr.Prompt = strings.Repeat("a longer question to spread the rows over pages ", 4)
		if err := db.QueueTurn(ctx, tr); err != nil {
			tb.Fatal(err)
		}
	}
	// The writer is FIFO: once this commits, every queued turn has.
	if err := db.ApplyMemory(ctx, MemoryChange{HardwareID: "HW-0", Add: []Fact{{Slot: "name", Text: "Anna"}},
		Digest: &Digest{Day: "2026-12-01", Text: "asked the time"}}); err != nil {
		tb.Fatal(err)
	}
}

func backupTest(t *testing.T, db *DB, dir string) BackupResult {
	t.Helper()
	res, err := db.Backup(context.Background(), BackupOptions{Dir: dir, Keep: 14, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBackupRestoreRoundTrip(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	fillTurns(t, db, 50)
	want, _ := db.Counts(ctx)
	dir := filepath.Join(t.TempDir(), "backups")
	res := backupTest(t, db, dir)

	if !backupName.MatchString(filepath.Base(res.Path)) || res.MetaPath != strings.TrimSuffix(res.Path, ".db")+".json" {
		t.Errorf("backup named %s, %s", res.Path, res.MetaPath)
	}
	for path, mode := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, res.Path: 0o600, res.MetaPath: 0o600} {
		if st, err := os.Stat(path); err != nil || st.Mode() != mode {
			t.Errorf("%s: mode %v, %v; want %v", path, st.Mode(), err, mode)
		}
	}
	var meta BackupMeta
	if err := json.Unmarshal(mustRead(t, res.MetaPath), &meta); err != nil {
		t.Fatal(err)
	}
	sum, size, _ := hashFile(res.Path)
	if meta.SHA256 != sum || meta.Size != size || meta.SchemaVersion != latestVersion || meta.NexyVersion != "test" ||
		meta.CreatedAt.Location() != time.UTC || fmt.Sprint(meta.Counts) != fmt.Sprint(want) {
		t.Errorf("metadata %+v; want sha %s size %d counts %v", meta, sum, size, want)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("backup dir holds %d files, want the backup and its metadata (lock and temp files gone)", len(ents))
	}

	// Into a fresh data directory: no force needed.
	live := filepath.Join(t.TempDir(), "data", FileName)
	got, err := Restore(ctx, res.Path, live, RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.Counts) != fmt.Sprint(want) || got.SchemaVersion != latestVersion || len(got.Kept) != 0 || got.Check.Meta == nil {
		t.Errorf("restored %+v, want counts %v", got, want)
	}
	restored := reopen(t, live)
	m, err := restored.Memory(ctx, "HW-0", MemoryQuery{RecentTurns: 3})
	if err != nil || len(m.Facts) != 1 || m.Facts[0].Text != "Anna" || len(m.Recent) != 3 {
		t.Errorf("restored memory %+v, %v", m, err)
	}
}

// Restoring over a database with history needs Force, and keeps the old
// file (its WAL checkpointed into it) as .pre-restore-<time>.
func TestRestoreKeepsTheOldDatabase(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	fillTurns(t, db, 10)
	res := backupTest(t, db, filepath.Join(t.TempDir(), "b"))
	fillTurns(t, db, 5) // the live file now has more than the backup
	newer, _ := db.Counts(ctx)
	db.Close()
	live := db.Path()

	if _, err := Restore(ctx, res.Path, live, RestoreOptions{}); !errors.Is(err, ErrLiveHasHistory) {
		t.Fatalf("restore over history without force: %v", err)
	}
	got, err := Restore(ctx, res.Path, live, RestoreOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if got.Counts["commands"] != 10 || got.LiveRows <= 0 || len(got.Kept) == 0 {
		t.Errorf("restore: %+v", got)
	}
	for _, k := range got.Kept {
		if !strings.Contains(k, FileName+".pre-restore-") || strings.HasSuffix(k, "-wal") {
			t.Errorf("kept %s (a checkpointed database leaves no WAL to keep)", k)
		}
	}
	old := reopen(t, got.Kept[0])
	if n, _ := old.Counts(ctx); fmt.Sprint(n) != fmt.Sprint(newer) {
		t.Errorf("the kept database has %v, want %v", n, newer)
	}
	if exists(live + ".restore-tmp") {
		t.Error("the restore's temp copy was left behind")
	}
}

// A backup taken while turns are being written is one consistent snapshot.
func TestBackupWhileWriting(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	fillTurns(t, db, 200)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errc := make(chan error, 8)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := db.SaveTurn(ctx, testTurn(fmt.Sprintf("W-%d", w), fmt.Sprintf("w%d-%d", w, i), time.Now())); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	dir := t.TempDir()
	var results []BackupResult
	for range 2 {
		results = append(results, backupTest(t, db, dir))
	}
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	live, _ := db.Counts(ctx)
	for _, res := range results {
		c, err := CheckBackup(ctx, res.Path)
		if err != nil {
			t.Fatal(err)
		}
		n := c.Counts
		// Each turn is one transaction: a snapshot has all of it or none.
		if n["commands"] != n["llm_answers"] || n["commands"] != n["sessions"] || n["commands"] != n["token_usage"] || n["commands"] < 200 {
			t.Errorf("inconsistent snapshot %v", n)
		}
		if n["commands"] > live["commands"] {
			t.Errorf("backup has %d turns, live %d", n["commands"], live["commands"])
		}
	}
	t.Logf("backups: %d and %d turns, live %d", results[0].Meta.Counts["commands"], results[1].Meta.Counts["commands"], live["commands"])
}

// damage overwrites one page in the middle of a file with garbage.
func damage(t *testing.T, path string) {
	t.Helper()
	b := mustRead(t, path)
	mid := (len(b) / 2) &^ 4095
	copy(b[mid:mid+4096], bytes.Repeat([]byte{0xA5, 0x5A, 0xFF, 0x00}, 1024))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A damaged backup is refused and the live file stays byte for byte.
func TestRestoreRefusesDamagedBackup(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		spoil    func(t *testing.T, backup string)
		withMeta bool
		want     string
	}{
		{"flipped_with_metadata", damage, true, "SHA-256"},
		{"flipped_without_metadata", damage, false, ""},
		{"truncated_without_metadata", func(t *testing.T, p string) {
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()/2)
		}, false, ""},
		{"checksum_mismatch", func(t *testing.T, p string) {
			var m BackupMeta
			json.Unmarshal(mustRead(t, MetadataPath(p)), &m)
			m.SHA256 = strings.Repeat("0", 64)
			b, _ := json.Marshal(m)
			os.WriteFile(MetadataPath(p), b, 0o600)
		}, true, "differs from its metadata"},
		{"fewer_rows_than_metadata", func(t *testing.T, p string) {
			var m BackupMeta
			json.Unmarshal(mustRead(t, MetadataPath(p)), &m)
			m.Counts["commands"]++
			b, _ := json.Marshal(m)
			os.WriteFile(MetadataPath(p), b, 0o600)
		}, true, "its metadata recorded"},
		{"not_a_database", func(t *testing.T, p string) {
			os.WriteFile(p, bytes.Repeat([]byte("not sqlite "), 1000), 0o600)
		}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openTest(t)
			fillTurns(t, db, 100)
			res := backupTest(t, db, t.TempDir())
			db.Close()
			live := db.Path()
			before := mustRead(t, live)
			tc.spoil(t, res.Path)
			if !tc.withMeta {
				os.Remove(res.MetaPath)
			}
			_, err := Restore(ctx, res.Path, live, RestoreOptions{Force: true})
			if !errors.Is(err, ErrBadBackup) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("restore: %v; want a refusal mentioning %q", err, tc.want)
			}
			if !bytes.Equal(mustRead(t, live), before) {
				t.Error("the live file changed")
			}
			if ents, _ := filepath.Glob(live + ".*"); len(ents) != 0 {
				t.Errorf("restore left %v", ents)
			}
			t.Log(err)
		})
	}
}

func TestRestoreRefusesMissingFileAndNewerSchema(t *testing.T) {
	ctx := context.Background()
	live := filepath.Join(t.TempDir(), FileName)
	if _, err := Restore(ctx, filepath.Join(t.TempDir(), "none.db"), live, RestoreOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing backup: %v", err)
	}
	// A file from a newer nexy: Backup itself refuses to copy one, so the
	// "backup" is the closed database file, copied.
	db := openTest(t)
	if _, err := db.w.Exec(`INSERT INTO schema_migrations(version, name, checksum, applied_at) VALUES (?, 'future', 'x', 'x')`, latestVersion+1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	backup := filepath.Join(t.TempDir(), "future.db")
	if _, _, err := copyFile(db.Path(), backup); err != nil {
		t.Fatal(err)
	}
	var newer *NewerSchemaError
	if _, err := Restore(ctx, backup, live, RestoreOptions{}); !errors.As(err, &newer) {
		t.Errorf("newer backup: %v", err)
	}
	if exists(live) {
		t.Error("a refused restore created the live file")
	}
}

func TestRestoreRefusedWhileDataDirLocked(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	fillTurns(t, db, 5)
	res := backupTest(t, db, t.TempDir())
	data := t.TempDir()
	unlock, err := LockDataDir(data)
	if err != nil {
		t.Fatal(err)
	}
	var inUse *InUseError
	if _, err := LockDataDir(data); !errors.As(err, &inUse) {
		t.Fatalf("second lock: %v", err)
	}
	_, err = Restore(ctx, res.Path, filepath.Join(data, FileName), RestoreOptions{Force: true})
	if !errors.As(err, &inUse) || !strings.Contains(err.Error(), "a running server, or a restore in progress") {
		t.Fatalf("restore while locked: %v", err)
	}
	if exists(filepath.Join(data, FileName)) {
		t.Error("restore wrote while the data directory was locked")
	}
	unlock()
	if _, err := Restore(ctx, res.Path, filepath.Join(data, FileName), RestoreOptions{}); err != nil {
		t.Fatalf("restore after unlock: %v", err)
	}
}

func TestBackupRetentionAndOut(t *testing.T) {
	db := openTest(t)
	fillTurns(t, db, 5)
	dir := t.TempDir()
	for _, name := range []string{"nexy-20200101-000000", "nexy-20200102-000000", "nexy-20200103-000000"} {
		os.WriteFile(filepath.Join(dir, name+".db"), []byte("old"), 0o600)
		os.WriteFile(filepath.Join(dir, name+".json"), []byte("{}"), 0o600)
	}
	os.WriteFile(filepath.Join(dir, "mine.db"), []byte("the owner's"), 0o600)
	os.WriteFile(filepath.Join(dir, backupTempPrefix+"123.tmp"), []byte("crashed"), 0o600)
	res, err := db.Backup(context.Background(), BackupOptions{Dir: dir, Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		left = append(left, e.Name())
	}
	want := []string{"mine.db", "nexy-20200103-000000.db", "nexy-20200103-000000.json", filepath.Base(res.Path), filepath.Base(res.MetaPath)}
	if fmt.Sprint(left) != fmt.Sprint(want) || len(res.Removed) != 2 {
		t.Errorf("after retention: %v (removed %v), want %v", left, res.Removed, want)
	}

	out := filepath.Join(t.TempDir(), "copy.db")
	if _, err := db.Backup(context.Background(), BackupOptions{Out: out}); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckBackup(context.Background(), out); err != nil || !exists(filepath.Join(filepath.Dir(out), "copy.json")) {
		t.Errorf("--out backup: %v", err)
	}
	if _, err := db.Backup(context.Background(), BackupOptions{Out: out}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("backup over an existing file: %v", err)
	}
}

// Two backups in one second get distinct names, in time order.
func TestBackupNamesAreUnique(t *testing.T) {
	db := openTest(t)
	dir := t.TempDir()
	a, b := backupTest(t, db, dir), backupTest(t, db, dir)
	if a.Path == b.Path || b.Path < a.Path {
		t.Errorf("names %s then %s", a.Path, b.Path)
	}
}

func TestBackupLock(t *testing.T) {
	db := openTest(t)
	dir := t.TempDir()
	lock := filepath.Join(dir, backupLockName)
	os.WriteFile(lock, []byte("pid 1 since then"), 0o600)
	_, err := db.Backup(context.Background(), BackupOptions{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "another backup is running") {
		t.Fatalf("backup while locked: %v", err)
	}
	old := time.Now().Add(-BackupLockStale - time.Minute)
	os.Chtimes(lock, old, old)
	res, err := db.Backup(context.Background(), BackupOptions{Dir: dir})
	if err != nil || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "stale backup lock") {
		t.Fatalf("backup over a stale lock: %+v, %v", res, err)
	}
	if exists(lock) {
		t.Error("lock left behind")
	}
}

func TestDrill(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := db.RunDrill(ctx, dir); !errors.Is(err, ErrNoBackup) || !strings.Contains(err.Error(), "run nexy backup") {
		t.Fatalf("drill without a backup: %v", err)
	}
	fillTurns(t, db, 20)
	res := backupTest(t, db, dir)
	fillTurns(t, db, 3)
	d, err := db.RunDrill(ctx, dir)
	if err != nil || !d.OK || d.Counts["commands"] != 20 {
		t.Fatalf("drill: %+v, %v", d, err)
	}
	last, found, err := db.LastDrill(ctx, true)
	if err != nil || !found || last.BackupFile != res.Path || !last.OK || last.Counts["commands"] != 20 {
		t.Fatalf("last drill: %+v %v %v", last, found, err)
	}
	if scratch, _ := filepath.Glob(filepath.Join(os.TempDir(), "nexy-drill-*")); len(scratch) != 0 {
		t.Logf("scratch directories in %s (maybe other runs'): %v", os.TempDir(), scratch)
	}

	// A damaged backup fails the drill, which is recorded as failed.
	damage(t, res.Path)
	d, err = db.RunDrill(ctx, dir)
	if err == nil || d.OK || !strings.Contains(d.Detail, "SHA-256") {
		t.Fatalf("drill of a damaged backup: %+v, %v", d, err)
	}
	failed, _, _ := db.LastDrill(ctx, false)
	ok, _, _ := db.LastDrill(ctx, true)
	if failed.OK || failed.ID == ok.ID || ok.ID != last.ID {
		t.Errorf("after a failed drill: last %+v, last ok %+v", failed, ok)
	}
}

// A backup that holds more than the live database (the wrong one, or live
// rows lost) fails the drill.
func TestDrillComparesWithLive(t *testing.T) {
	big := openTest(t)
	fillTurns(t, big, 30)
	dir := t.TempDir()
	backupTest(t, big, dir)
	small := openTest(t)
	fillTurns(t, small, 3)
	d, err := small.RunDrill(context.Background(), dir)
	if err == nil || d.OK || !strings.Contains(d.Detail, "more than the live database") {
		t.Fatalf("drill against a smaller live database: %+v, %v", d, err)
	}
}

func TestDrillWarning(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	now := time.Now()
	if w := DrillWarning(ctx, db, now); !strings.Contains(w, "no restore drill has succeeded") {
		t.Errorf("no drill: %q", w)
	}
	if err := db.RecordDrill(ctx, Drill{BackupFile: "b.db", OK: true, Detail: "ok", RanAt: now.Add(-8 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// A recent failure does not make the backups proven.
	if err := db.RecordDrill(ctx, Drill{BackupFile: "c.db", OK: false, Detail: "bad", RanAt: now.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if w := DrillWarning(ctx, db, now); !strings.Contains(w, "more than 7 days") || !strings.Contains(w, "b.db") {
		t.Errorf("old drill: %q", w)
	}
	if err := db.RecordDrill(ctx, Drill{BackupFile: "d.db", OK: true, Detail: "ok", RanAt: now.Add(-6 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if w := DrillWarning(ctx, db, now); w != "" {
		t.Errorf("fresh drill: %q", w)
	}
}

// BenchmarkBackup20kTurns measures a backup of a store with 20,000 turns:
//
//	go test ./store -run '^$' -bench Backup20k -benchtime 3x
func BenchmarkBackup20kTurns(b *testing.B) {
	db, err := Open(filepath.Join(b.TempDir(), FileName), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	fillTurns(b, db, 20000)
	dir := b.TempDir()
	var size int64
	for b.Loop() {
		res, err := db.Backup(context.Background(), BackupOptions{Dir: dir, Keep: 1})
		if err != nil {
			b.Fatal(err)
		}
		size = res.Meta.Size
	}
	b.ReportMetric(float64(size)/(1<<20), "MiB")
}
