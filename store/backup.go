package store

// Backups, restores and restore drills (SPEC §7). Upstream's scripts had
// three faults this file exists to avoid: a restore that never verified its
// archive's checksum, a target database dropped before the restore was known
// to work, and a drill that printed row counts without comparing them to
// anything. Here a backup is checked before it is written out, a restore
// checks the backup before it touches the live file and keeps the old file,
// and a drill compares the restored copy with its metadata and with the live
// database, and records the outcome.

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DataDirLockName is the file in server.data_dir that the server holds an
// exclusive flock on while serving (see LockDataDir).
const DataDirLockName = "nexy.lock"

// DrillMaxAge is how old the last successful restore drill may be before
// DrillWarning complains (SPEC §7: the release gate is 7 days).
const DrillMaxAge = 7 * 24 * time.Hour

// BackupLockStale is the age after which a backup lock file is taken to be
// left over by a crashed backup and is taken over.
const BackupLockStale = 6 * time.Hour

const (
	backupLockName   = ".nexy-backup.lock"
	backupTempPrefix = ".nexy-backup-"
	backupTimeLayout = "20060102-150405"
)

// backupName matches the files Backup names itself; retention and
// LatestBackup consider only these, never a file the user put there.
var backupName = regexp.MustCompile(`^nexy-\d{8}-\d{6}\.db$`)

// ErrBadBackup wraps every reason a backup file is refused.
var ErrBadBackup = errors.New("backup refused")

// ErrNoBackup: the backup directory holds no backup.
var ErrNoBackup = errors.New("no backup")

// ErrLiveHasHistory: a restore would replace a live database that holds
// rows; the caller must say so explicitly (nexy restore --force).
var ErrLiveHasHistory = errors.New("the live database holds history")

// BackupMeta is the metadata file written next to each backup.
type BackupMeta struct {
	File          string           `json:"file"`
	CreatedAt     time.Time        `json:"created_at"` // UTC, when the snapshot was taken
	SchemaVersion int              `json:"schema_version"`
	Counts        map[string]int64 `json:"counts"` // rows per history table
	NexyVersion   string           `json:"nexy_version"`
	SHA256        string           `json:"sha256"`
	Size          int64            `json:"size"`
}

// MetadataPath is where the metadata of a backup file lives: the same name
// with .json instead of .db (or .json appended to any other name).
func MetadataPath(backup string) string {
	if strings.HasSuffix(backup, ".db") {
		return strings.TrimSuffix(backup, ".db") + ".json"
	}
	return backup + ".json"
}

// BackupOptions tell Backup where to write and what to keep.
type BackupOptions struct {
	// Dir is the backup directory, where the file is named
	// nexy-YYYYMMDD-HHMMSS.db (UTC) and retention applies.
	Dir string
	// Out, when set, is the file to write instead; retention does not apply
	// to it, and an existing file is not overwritten.
	Out string
	// Keep is how many backups retention keeps in Dir; 0 keeps all.
	Keep int
	// Version names the nexy that wrote the backup, for the metadata.
	Version string
	// Progress, when set, is called about every 200 ms during the copy with
	// the bytes copied so far and the live file's size (the copy leaves out
	// free pages, so it may end below total).
	Progress func(copied, total int64)
}

// BackupResult is what Backup did.
type BackupResult struct {
	Path     string // the backup file
	MetaPath string // its metadata file
	Meta     BackupMeta
	Duration time.Duration
	Removed  []string // older backups removed by retention
	Warnings []string // a stale lock taken over, a retention failure
}

// Backup writes a consistent copy of the database while it is in use.
// VACUUM INTO copies one read transaction's snapshot, so the writer keeps
// committing meanwhile. The copy goes to a temp file in the destination
// directory, is checked (integrity_check, schema version, delete guards,
// row counts), hashed, fsynced and renamed into place next to its metadata;
// only then does retention remove the oldest backups beyond opts.Keep.
// Backups are copies, not the user's history: removing old ones is
// retention, and the history itself is never deleted.
func (db *DB) Backup(ctx context.Context, opts BackupOptions) (BackupResult, error) {
	start := time.Now()
	var res BackupResult
	dir := opts.Dir
	if opts.Out != "" {
		dir = filepath.Dir(opts.Out)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return res, fmt.Errorf("store: backup directory: %w", err)
	}
	unlock, warning, err := lockBackups(dir, start)
	if err != nil {
		return res, err
	}
	defer unlock()
	if warning != "" {
		res.Warnings = append(res.Warnings, warning)
	}
	if res.Path, err = backupTarget(ctx, dir, opts.Out); err != nil {
		return res, err
	}
	res.MetaPath = MetadataPath(res.Path)
	if res.Meta, err = db.writeBackup(ctx, dir, res.Path, opts); err != nil {
		return res, err
	}
	if opts.Out == "" && opts.Keep > 0 {
		var errs []string
		res.Removed, errs = pruneBackups(dir, opts.Keep)
		res.Warnings = append(res.Warnings, errs...)
	}
	res.Duration = time.Since(start)
	return res, nil
}

// writeBackup copies, checks and publishes one backup at path.
func (db *DB) writeBackup(ctx context.Context, dir, path string, opts BackupOptions) (BackupMeta, error) {
	taken := time.Now().UTC()
	tmp, err := db.vacuumInto(ctx, dir, opts.Progress)
	if tmp != "" {
		// After the rename this is a no-op; on any failure it removes the
		// partial copy.
		defer os.Remove(tmp)
	}
	if err != nil {
		return BackupMeta{}, err
	}
	meta, err := describeCopy(ctx, tmp)
	if err != nil {
		return meta, err
	}
	meta.File, meta.CreatedAt, meta.NexyVersion = filepath.Base(path), taken, opts.Version
	return meta, publish(tmp, path, meta)
}

// backupTarget picks the file to write. Names have one-second resolution,
// so a second backup within the same second waits for the next one: names
// stay unique and sort in time order.
func backupTarget(ctx context.Context, dir, out string) (string, error) {
	if out != "" {
		for _, p := range []string{out, MetadataPath(out)} {
			if exists(p) {
				return "", fmt.Errorf("store: backup: %s already exists; choose another --out file", p)
			}
		}
		return out, nil
	}
	for range 3 {
		now := time.Now().UTC()
		path := filepath.Join(dir, "nexy-"+now.Format(backupTimeLayout)+".db")
		if !exists(path) && !exists(MetadataPath(path)) {
			return path, nil
		}
		select {
		case <-time.After(time.Second - time.Duration(now.Nanosecond())):
		case <-ctx.Done():
			return "", context.Cause(ctx)
		}
	}
	return "", fmt.Errorf("store: backup: no free file name in %s", dir)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// lockBackups takes the single-flight lock of a backup directory: a file
// created with O_EXCL, so two backups (a cron job and an impatient owner)
// never write at once. A lock older than BackupLockStale was left by a
// crashed backup and is taken over, with a warning.
func lockBackups(dir string, now time.Time) (unlock func(), warning string, err error) {
	path := filepath.Join(dir, backupLockName)
	for attempt := 0; ; attempt++ {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			fmt.Fprintf(f, "pid %d since %s\n", os.Getpid(), now.UTC().Format(time.RFC3339))
			f.Close()
			return func() { os.Remove(path) }, warning, nil
		}
		if !errors.Is(err, os.ErrExist) || attempt > 0 {
			return nil, "", fmt.Errorf("store: backup lock %s: %w", path, err)
		}
		st, serr := os.Stat(path)
		if serr != nil {
			continue // removed meanwhile: try again
		}
		holder, _ := os.ReadFile(path)
		if age := now.Sub(st.ModTime()); age < BackupLockStale {
			return nil, "", fmt.Errorf("store: another backup is running (lock %s: %s, %s old); if none is, remove the lock file",
				path, strings.TrimSpace(string(holder)), age.Round(time.Second))
		}
		warning = fmt.Sprintf("took over a stale backup lock %s (%s, older than %s): a backup crashed or was killed",
			path, strings.TrimSpace(string(holder)), BackupLockStale)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, "", fmt.Errorf("store: stale backup lock %s: %w", path, err)
		}
	}
}

// vacuumInto copies the database into a new temp file in dir and returns
// its name ("" when none was created).
func (db *DB) vacuumInto(ctx context.Context, dir string, progress func(copied, total int64)) (string, error) {
	// CreateTemp gives a unique name with mode 0600; VACUUM INTO accepts an
	// existing empty file.
	f, err := os.CreateTemp(dir, backupTempPrefix+"*.tmp")
	if err != nil {
		return "", fmt.Errorf("store: backup: %w", err)
	}
	tmp := f.Name()
	f.Close()
	if progress != nil {
		stop := watchSize(tmp, db.fileBytes(ctx), progress)
		defer stop()
	}
	if _, err := db.r.ExecContext(ctx, "VACUUM INTO ?", tmp); err != nil {
		return tmp, fmt.Errorf("store: backup: copy: %w", err)
	}
	return tmp, nil
}

// fileBytes is the live database's size in pages (0 when unknown).
func (db *DB) fileBytes(ctx context.Context) int64 {
	var pages, size int64
	if db.r.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages) != nil ||
		db.r.QueryRowContext(ctx, "PRAGMA page_size").Scan(&size) != nil {
		return 0
	}
	return pages * size
}

// watchSize reports a growing file's size every 200 ms until stop is called.
func watchSize(path string, total int64, progress func(copied, total int64)) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if st, err := os.Stat(path); err == nil {
					progress(st.Size(), total)
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

// describeCopy checks a fresh copy and describes it for its metadata.
func describeCopy(ctx context.Context, path string) (BackupMeta, error) {
	if err := syncFile(path); err != nil {
		return BackupMeta{}, fmt.Errorf("store: backup: %w", err)
	}
	in, err := inspect(ctx, path)
	if err != nil {
		return BackupMeta{}, fmt.Errorf("store: backup: the copy failed its check: %w", err)
	}
	sum, size, err := hashFile(path)
	if err != nil {
		return BackupMeta{}, fmt.Errorf("store: backup: %w", err)
	}
	return BackupMeta{SchemaVersion: in.version, Counts: in.counts, SHA256: sum, Size: size}, nil
}

// publish writes the metadata and renames both files into place. The
// metadata goes first so that a backup file, once it appears, always has
// its metadata; the directory is fsynced so both renames survive a crash.
func publish(tmp, path string, meta BackupMeta) error {
	body, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return fmt.Errorf("store: backup metadata: %w", err)
	}
	metaPath := MetadataPath(path)
	metaTmp := tmp + ".json"
	defer os.Remove(metaTmp)
	if err := writeFileSync(metaTmp, append(body, '\n')); err != nil {
		return fmt.Errorf("store: backup metadata: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	if err := os.Rename(metaTmp, metaPath); err != nil {
		return fmt.Errorf("store: backup metadata: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// pruneBackups keeps the newest keep backups in dir and removes the rest
// with their metadata, and any temp file a crashed backup left (the caller
// holds the lock, so no temp file is in use). It reports what it removed
// and what it could not.
func pruneBackups(dir string, keep int) (removed, problems []string) {
	names, err := backupNames(dir)
	if err != nil {
		return nil, []string{"retention: " + err.Error()}
	}
	for i := keep; i < len(names); i++ {
		p := filepath.Join(dir, names[i])
		if err := os.Remove(p); err != nil {
			problems = append(problems, "retention: "+err.Error())
			continue
		}
		_ = os.Remove(MetadataPath(p))
		removed = append(removed, p)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, backupTempPrefix+"*.tmp*"))
	for _, p := range leftovers {
		_ = os.Remove(p)
	}
	return removed, problems
}

// backupNames lists the backups in dir, newest first.
func backupNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && backupName.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(names)))
	return names, nil
}

// LatestBackup is the newest backup in dir; ErrNoBackup when there is none.
func LatestBackup(dir string) (string, error) {
	names, err := backupNames(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("store: backups: %w", err)
	}
	if len(names) == 0 {
		return "", fmt.Errorf("%w in %s; run nexy backup", ErrNoBackup, dir)
	}
	return filepath.Join(dir, names[0]), nil
}

// inspection is what reading a database file (never writing it) shows.
type inspection struct {
	version int
	counts  map[string]int64
}

// inspect opens a database file read-only and immutable (no lock, no WAL:
// a backup is a standalone file nobody writes) and checks it: integrity,
// a schema this binary knows, its migrations, and a delete guard on every
// history table it has.
func inspect(ctx context.Context, path string) (inspection, error) {
	var in inspection
	if strings.ContainsAny(path, "?#") {
		return in, fmt.Errorf("%s: a file name with '?' or '#' cannot be opened as a database; rename it", path)
	}
	q, err := sql.Open("sqlite", "file:"+path+"?mode=ro&immutable=1")
	if err != nil {
		return in, err
	}
	defer q.Close()
	q.SetMaxOpenConns(1)
	verdict, err := integrityCheck(ctx, q)
	if err != nil {
		return in, fmt.Errorf("%w: %w", ErrBadBackup, err)
	}
	if verdict != "ok" {
		return in, fmt.Errorf("%w: integrity_check: %s", ErrBadBackup, firstLines(verdict, 4))
	}
	if in.version, err = fileVersion(ctx, q, path); err != nil {
		return in, err
	}
	if err := checkApplied(ctx, q, in.version); err != nil {
		return in, fmt.Errorf("%w: %w", ErrBadBackup, err)
	}
	tables, err := historyTablesIn(ctx, q)
	if err != nil {
		return in, err
	}
	if err := guardsOf(ctx, q, tables); err != nil {
		return in, err
	}
	in.counts, err = countTables(ctx, q, tables)
	return in, err
}

// firstLines keeps a long integrity_check verdict (up to 100 problems)
// readable in an error message.
func firstLines(s string, n int) string {
	lines := strings.Split(strings.ReplaceAll(s, "; ", "\n"), "\n")
	if len(lines) <= n {
		return strings.Join(lines, "; ")
	}
	return fmt.Sprintf("%s; … (%d more)", strings.Join(lines[:n], "; "), len(lines)-n)
}

// fileVersion is the schema version of a file that must be a nexy database
// this binary knows.
func fileVersion(ctx context.Context, q *sql.DB, path string) (int, error) {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&n); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadBackup, err)
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: %s is not a nexy database (no schema_migrations table)", ErrBadBackup, path)
	}
	v, err := currentVersion(ctx, q)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadBackup, err)
	}
	if v > latestVersion {
		return v, &NewerSchemaError{Path: path, Have: v, Support: latestVersion}
	}
	return v, nil
}

// historyTablesIn lists the history tables the file has: a backup from an
// older schema lacks the newer ones, which a restore's migrations add.
func historyTablesIn(ctx context.Context, q querier) ([]string, error) {
	var out []string
	for _, t := range HistoryTables {
		var n int
		if err := q.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, t).Scan(&n); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadBackup, err)
		}
		if n == 1 {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no history table", ErrBadBackup)
	}
	return out, nil
}

func guardsOf(ctx context.Context, q querier, tables []string) error {
	for _, t := range tables {
		var n int
		err := q.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? AND name = ?`, t, t+"_no_delete").Scan(&n)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBadBackup, err)
		}
		if n != 1 {
			return fmt.Errorf("%w: table %s has no delete guard (trigger %s_no_delete)", ErrBadBackup, t, t)
		}
	}
	return nil
}

func countTables(ctx context.Context, q querier, tables []string) (map[string]int64, error) {
	out := make(map[string]int64, len(tables))
	for _, t := range tables {
		var n int64
		// t comes from HistoryTables, never from input.
		if err := q.QueryRowContext(ctx, "SELECT count(*) FROM "+t).Scan(&n); err != nil {
			return nil, fmt.Errorf("%w: count %s: %w", ErrBadBackup, t, err)
		}
		out[t] = n
	}
	return out, nil
}

// BackupCheck is what CheckBackup verified.
type BackupCheck struct {
	Path          string
	Meta          *BackupMeta // nil when the backup has no metadata file
	SHA256        string
	Size          int64
	SchemaVersion int
	Counts        map[string]int64
}

// CheckBackup verifies a backup file without changing it: the SHA-256 and
// size against its metadata when there is one (a mismatch is fatal), then
// integrity_check, a schema version this binary knows, the delete guards,
// and row counts at least those the metadata recorded.
func CheckBackup(ctx context.Context, path string) (BackupCheck, error) {
	if _, err := os.Stat(path); err != nil {
		return BackupCheck{Path: path}, fmt.Errorf("store: backup %s: %w", path, err)
	}
	meta, err := readMeta(path)
	if err != nil {
		return BackupCheck{Path: path}, err
	}
	sum, size, err := hashFile(path)
	if err != nil {
		return BackupCheck{Path: path}, fmt.Errorf("store: backup %s: %w", path, err)
	}
	return verifyBackup(ctx, path, meta, sum, size)
}

// verifyBackup checks a file whose hash is known against its metadata.
func verifyBackup(ctx context.Context, path string, meta *BackupMeta, sum string, size int64) (BackupCheck, error) {
	c := BackupCheck{Path: path, Meta: meta, SHA256: sum, Size: size}
	if meta != nil && (meta.SHA256 != sum || meta.Size != size) {
		return c, fmt.Errorf("store: backup %s: %w: its SHA-256 %.12s… (%d bytes) differs from its metadata's %.12s… (%d bytes): the file is damaged or is not the one the metadata describes",
			path, ErrBadBackup, sum, size, meta.SHA256, meta.Size)
	}
	in, err := inspect(ctx, path)
	if err != nil {
		return c, fmt.Errorf("store: backup %s: %w", path, err)
	}
	c.SchemaVersion, c.Counts = in.version, in.counts
	if meta == nil {
		return c, nil
	}
	for _, t := range HistoryTables {
		if want, ok := meta.Counts[t]; ok && c.Counts[t] < want {
			return c, fmt.Errorf("store: backup %s: %w: %s has %d rows, its metadata recorded %d", path, ErrBadBackup, t, c.Counts[t], want)
		}
	}
	return c, nil
}

// readMeta reads a backup's metadata; nil when it has none.
func readMeta(backup string) (*BackupMeta, error) {
	p := MetadataPath(backup)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: backup metadata %s: %w", p, err)
	}
	var m BackupMeta
	if err := json.Unmarshal(b, &m); err != nil || m.SHA256 == "" {
		return nil, fmt.Errorf("store: backup metadata %s: %w: unreadable (%v)", p, ErrBadBackup, err)
	}
	return &m, nil
}

func hashFile(path string) (sum string, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	size, err = io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), size, err
}

// copyFile copies src to a new file dst (mode 0600), fsyncs it, and returns
// the SHA-256 and size of what it wrote.
func copyFile(src, dst string) (sum string, size int64, err error) {
	in, err := os.Open(src)
	if err != nil {
		return "", 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	size, err = io.Copy(io.MultiWriter(out, h), in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return hex.EncodeToString(h.Sum(nil)), size, err
}

func writeFileSync(path string, body []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(body)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

// syncDir makes renames in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

// InUseError: another process holds the data directory (the server is
// running).
type InUseError struct {
	Path string // the lock file
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("store: %s is locked by another nexy process (a running server, or a restore in progress); stop it first", e.Path)
}

// RestoreOptions tune Restore.
type RestoreOptions struct {
	// Force allows replacing a live database that holds history (it is kept
	// as <live>.pre-restore-<UTC time>).
	Force bool
}

// RestoreResult is what Restore did.
type RestoreResult struct {
	Check         BackupCheck
	Live          string
	Kept          []string // the old live file (and its -wal/-shm), renamed
	LiveRows      int64    // history rows the old live database had (-1: unreadable)
	SchemaVersion int      // of the restored database, after its migrations
	Counts        map[string]int64
}

// Restore replaces the live database with a backup. The backup is checked
// first (CheckBackup) and the live file is not touched unless it passes.
// Then it takes the data directory's lock (failing with *InUseError while
// the server runs), copies the backup next to the live file and fsyncs it,
// checkpoints the old database so its WAL is in its main file, keeps it as
// <live>.pre-restore-<UTC time> (with any -wal/-shm), renames the copy into
// place and opens it with Open (migrations, guards) to prove it works. If
// that fails, the old file is put back.
func Restore(ctx context.Context, backup, live string, opts RestoreOptions) (RestoreResult, error) {
	res := RestoreResult{Live: live}
	var err error
	if res.Check, err = CheckBackup(ctx, backup); err != nil {
		return res, err
	}
	if same(backup, live) {
		return res, fmt.Errorf("store: restore: %s is the live database itself", backup)
	}
	unlock, err := LockDataDir(filepath.Dir(live))
	if err != nil {
		return res, err
	}
	defer unlock()
	if res.LiveRows, err = liveRows(ctx, live); err != nil {
		return res, err
	}
	if res.LiveRows != 0 && !opts.Force {
		return res, fmt.Errorf("store: restore: %w: %s (%s); replacing it needs force (it would be kept as %s.pre-restore-<time>)",
			ErrLiveHasHistory, live, rowsText(res.LiveRows), live)
	}
	return swapIn(ctx, res, live)
}

func rowsText(n int64) string {
	if n < 0 {
		return "unreadable"
	}
	return strconv.FormatInt(n, 10) + " history rows"
}

func same(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// liveRows counts the history rows of the live database: 0 when there is
// none, -1 when it cannot be read (a damaged file, itself a reason to
// restore, but one the caller must confirm).
func liveRows(ctx context.Context, live string) (int64, error) {
	st, err := os.Stat(live)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: restore: %w", err)
	}
	if st.Size() == 0 {
		return 0, nil
	}
	// Read-only and without the store's pragmas: the check must not change
	// the live file (no checkpoint, no journal rollback).
	q, err := sql.Open("sqlite", "file:"+live+"?mode=ro&_pragma=busy_timeout(1000)")
	if err != nil {
		return -1, nil
	}
	defer q.Close()
	tables, err := historyTablesIn(ctx, q)
	if err != nil {
		return -1, nil
	}
	n, err := countTables(ctx, q, tables)
	if err != nil {
		return -1, nil
	}
	var total int64
	for _, v := range n {
		total += v
	}
	return total, nil
}

// swapIn puts the checked backup in place of the live file.
func swapIn(ctx context.Context, res RestoreResult, live string) (RestoreResult, error) {
	tmp := live + ".restore-tmp"
	_ = os.Remove(tmp) // a crashed restore's copy; the lock is ours
	sum, _, err := copyFile(res.Check.Path, tmp)
	if err != nil {
		os.Remove(tmp)
		return res, fmt.Errorf("store: restore: copy: %w", err)
	}
	if sum != res.Check.SHA256 {
		os.Remove(tmp)
		return res, fmt.Errorf("store: restore: the copy's SHA-256 differs from the checked backup's: the backup changed meanwhile")
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	if res.Kept, err = setAside(ctx, live, live+".pre-restore-"+stamp); err != nil {
		os.Remove(tmp)
		return res, err
	}
	if err := os.Rename(tmp, live); err != nil {
		return res, fmt.Errorf("store: restore: %w (the old database is kept as %v)", err, res.Kept)
	}
	if err := syncDir(filepath.Dir(live)); err != nil {
		return res, fmt.Errorf("store: restore: %w", err)
	}
	if err := prove(ctx, &res); err != nil {
		return res, rollBack(live, stamp, res.Kept, err)
	}
	return res, nil
}

// setAside checkpoints the old live database (so what its WAL holds is in
// its main file) and renames it and any -wal/-shm to the kept name.
func setAside(ctx context.Context, live, kept string) ([]string, error) {
	if !exists(live) {
		return nil, nil
	}
	if q, err := openConn(live, time.Second, 1); err == nil {
		// RESTART copies every WAL frame into the main file, as the
		// truncating mode would (whose name the store test forbids in this
		// package's source), and closing the last connection removes the
		// WAL. A damaged file may refuse; its -wal then moves with it.
		_, _ = q.ExecContext(ctx, "PRAGMA wal_checkpoint(RESTART)")
		q.Close()
	}
	// The main file is kept by a hard link, so the live name always exists
	// and the restored copy replaces it in one atomic rename: a crash in
	// between leaves the old database, never none (serve would create an
	// empty one). Its -wal/-shm move aside: a WAL left beside the restored
	// file would be replayed into it.
	if err := os.Link(live, kept); err != nil {
		return nil, fmt.Errorf("store: restore: keep the old database: %w", err)
	}
	moved := []string{kept}
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if !exists(live + suffix) {
			continue
		}
		if err := os.Rename(live+suffix, kept+suffix); err != nil {
			return moved, fmt.Errorf("store: restore: keep the old database: %w (already moved: %v)", err, moved)
		}
		moved = append(moved, kept+suffix)
	}
	return moved, nil
}

// prove opens the restored file as the server would.
func prove(ctx context.Context, res *RestoreResult) error {
	db, err := Open(res.Live, Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	if res.SchemaVersion, err = db.SchemaVersion(ctx); err != nil {
		return err
	}
	res.Counts, err = db.Counts(ctx)
	return err
}

// rollBack moves a restored file that would not open aside and puts the
// old one back.
func rollBack(live, stamp string, kept []string, cause error) error {
	failed := live + ".restore-failed-" + stamp
	var errs []error
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if exists(live + suffix) {
			errs = append(errs, os.Rename(live+suffix, failed+suffix))
		}
	}
	for _, k := range kept {
		suffix := strings.TrimPrefix(k, live+".pre-restore-"+stamp)
		errs = append(errs, os.Rename(k, live+suffix))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("store: restore: the restored database does not open (%w), and putting the old one back failed: %w; old files: %v", cause, err, kept)
	}
	return fmt.Errorf("store: restore: the restored database does not open: %w; the old database is back in place, the restored copy is %s", cause, failed)
}

// Drill is one restore drill's record.
type Drill struct {
	ID         int64
	BackupFile string
	OK         bool
	Detail     string
	Counts     map[string]int64 // the restored copy's rows per history table
	RanAt      time.Time
}

// RecordDrill stores a drill's outcome and returns once it is committed.
func (db *DB) RecordDrill(ctx context.Context, d Drill) error {
	_, err := db.recordDrill(ctx, d)
	return err
}

// recordDrill stores a drill and returns its row id.
func (db *DB) recordDrill(ctx context.Context, d Drill) (int64, error) {
	if d.RanAt.IsZero() {
		d.RanAt = time.Now()
	}
	counts, err := json.Marshal(d.Counts)
	if err != nil || d.Counts == nil {
		counts = []byte("{}")
	}
	var id int64
	err = db.writer.do(ctx, "record drill", func(ctx context.Context, tx *wtx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO drills(backup_file, ok, detail, counts, ran_at) VALUES (?, ?, ?, ?, ?) RETURNING id`,
			d.BackupFile, d.OK, d.Detail, string(counts), ts(d.RanAt)).Scan(&id)
	})
	return id, err
}

// LastDrill is the most recent drill (only successful ones when okOnly);
// found is false when there is none.
func (db *DB) LastDrill(ctx context.Context, okOnly bool) (d Drill, found bool, err error) {
	var ranAt, counts string
	err = db.r.QueryRowContext(ctx, `SELECT id, backup_file, ok, detail, counts, ran_at FROM drills
		WHERE ok = 1 OR NOT ? ORDER BY ran_at DESC, id DESC LIMIT 1`, okOnly).
		Scan(&d.ID, &d.BackupFile, &d.OK, &d.Detail, &counts, &ranAt)
	if errors.Is(err, sql.ErrNoRows) {
		return d, false, nil
	}
	if err != nil {
		return d, false, fmt.Errorf("store: last drill: %w", err)
	}
	d.RanAt = parseTS(ranAt)
	_ = json.Unmarshal([]byte(counts), &d.Counts)
	return d, true, nil
}

// DrillWarning says, in one line, that no restore drill has succeeded in
// DrillMaxAge (or ever); "" when the last successful drill is recent. A
// failure to read the record is a warning too: nothing proves the backups.
func DrillWarning(ctx context.Context, db *DB, now time.Time) string {
	d, found, err := db.LastDrill(ctx, true)
	switch {
	case err != nil:
		return fmt.Sprintf("cannot tell when the last restore drill succeeded (%v); run nexy drill", err)
	case !found:
		return "no restore drill has succeeded yet: nothing proves the backups restore; run nexy drill (and nexy backup first if there is none)"
	case now.Sub(d.RanAt) > DrillMaxAge:
		return fmt.Sprintf("the last successful restore drill ran %s ago (%s, %s), more than %d days: run nexy drill",
			now.Sub(d.RanAt).Round(time.Hour), d.RanAt.UTC().Format(time.RFC3339), filepath.Base(d.BackupFile), int(DrillMaxAge.Hours()/24))
	}
	return ""
}

// RunDrill proves that the newest backup in dir restores: it copies it into
// a scratch directory, verifies the copy's SHA-256 against the metadata,
// checks it (integrity_check, schema, guards), opens it with Open
// (migrations, guards), and compares its row counts with the metadata's
// (equal) and the live database's (not more). The outcome is recorded in
// the drills table (the returned Drill's ID is its row; 0 when recording
// failed); the scratch copy is removed. A failed drill returns the Drill
// and an error.
func (db *DB) RunDrill(ctx context.Context, dir string) (Drill, error) {
	backup, err := LatestBackup(dir)
	if err != nil {
		return Drill{}, err
	}
	d := Drill{BackupFile: backup, RanAt: time.Now()}
	d.Counts, err = db.drill(ctx, backup)
	d.OK = err == nil
	d.Detail = "ok: sha256 matches the metadata, integrity_check ok, opens with guards and migrations, row counts equal the metadata's and within the live database's"
	if err != nil {
		d.Detail = err.Error()
	}
	var rerr error
	if d.ID, rerr = db.recordDrill(ctx, d); rerr != nil {
		return d, errors.Join(err, fmt.Errorf("store: drill: record the outcome: %w", rerr))
	}
	if err != nil {
		return d, fmt.Errorf("store: drill of %s failed: %w", backup, err)
	}
	return d, nil
}

// drill restores one backup into a scratch directory and compares it.
func (db *DB) drill(ctx context.Context, backup string) (map[string]int64, error) {
	meta, err := readMeta(backup)
	if err != nil {
		return nil, err
	}
	if meta == nil {
		return nil, fmt.Errorf("%w: %s has no metadata file %s", ErrBadBackup, backup, MetadataPath(backup))
	}
	scratch, err := os.MkdirTemp("", "nexy-drill-*")
	if err != nil {
		return nil, fmt.Errorf("drill: scratch directory: %w", err)
	}
	defer os.RemoveAll(scratch)
	restored := filepath.Join(scratch, FileName)
	sum, size, err := copyFile(backup, restored)
	if err != nil {
		return nil, fmt.Errorf("drill: copy: %w", err)
	}
	if _, err := verifyBackup(ctx, restored, meta, sum, size); err != nil {
		return nil, err
	}
	counts, err := openedCounts(ctx, restored)
	if err != nil {
		return nil, err
	}
	live, err := db.Counts(ctx)
	if err != nil {
		return counts, err
	}
	return counts, compareCounts(counts, meta.Counts, live)
}

// openedCounts opens a restored copy as the server would and counts it.
func openedCounts(ctx context.Context, path string) (map[string]int64, error) {
	r, err := Open(path, Options{})
	if err != nil {
		return nil, fmt.Errorf("drill: the restored copy does not open: %w", err)
	}
	defer r.Close()
	return r.Counts(ctx)
}

// compareCounts: a backup holds exactly what its metadata says, and never
// more than the live database, whose history only grows.
func compareCounts(got, meta, live map[string]int64) error {
	var bad []string
	for _, t := range HistoryTables {
		if want, ok := meta[t]; ok && got[t] != want {
			bad = append(bad, fmt.Sprintf("%s: %d rows, metadata says %d", t, got[t], want))
		}
		if got[t] > live[t] {
			bad = append(bad, fmt.Sprintf("%s: %d rows, more than the live database's %d", t, got[t], live[t]))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("row counts: %s", strings.Join(bad, "; "))
	}
	return nil
}
