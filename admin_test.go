package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexy-server/nexy/store"
)

// adminEnv is a data directory and a config file naming it; everything
// else is the default.
type adminEnv struct {
	dir, config, data string
}

func newAdminEnv(t *testing.T) *adminEnv {
	t.Helper()
	dir := t.TempDir()
	e := &adminEnv{dir: dir, config: filepath.Join(dir, "nexy.toml"), data: filepath.Join(dir, "data")}
	if err := os.WriteFile(e.config, fmt.Appendf(nil, "[server]\ndata_dir = %q\n", e.data), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *adminEnv) live() string { return filepath.Join(e.data, store.FileName) }

func (e *adminEnv) open(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(e.live(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// nexy runs this test binary as `nexy` in a child process (see TestMain),
// with the test's config, in the env's directory, without the caller's
// NEXY_* settings.
func (e *adminEnv) nexy(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append(args, "-config", e.config)...)
	cmd.Dir = e.dir
	cmd.Env = []string{"NEXY_TEST_RUN_MAIN=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NEXY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// mustNexy runs nexy and fails the test unless it exits 0.
func (e *adminEnv) mustNexy(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	stdout, stderr, code := e.nexy(t, args...)
	if code != 0 {
		t.Fatalf("nexy %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, stdout, stderr)
	}
	return stdout, stderr
}

// testDevice is longer than 16 characters, so the usage table shortens it.
const testDevice = "HW-ABCDEFGH-0123456789"

// populate records 10 priced turns (gemini-2.5-flash-lite, 1000 in / 100
// out each), one unpriced client report, a fact and a digest.
func populate(t *testing.T, db *store.DB) {
	t.Helper()
	ctx := context.Background()
	for i := range 10 {
		err := db.SaveTurn(ctx, store.Turn{HardwareID: testDevice, SessionID: fmt.Sprintf("s%d", i), At: time.Now(),
			Prompt: fmt.Sprintf("question %d", i), Response: fmt.Sprintf("answer %d", i), Model: "gemini-2.5-flash-lite",
			Status: store.StatusComplete, InputTokens: 1000, OutputTokens: 100, Timings: store.Timings{Total: time.Second}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := db.RecordUsage(ctx, store.Usage{HardwareID: testDevice, Source: "client:browser", Model: "llama3.2", InputTokens: 50, OutputTokens: 5}); err != nil {
		t.Fatal(err)
	}
	if err := db.ApplyMemory(ctx, store.MemoryChange{HardwareID: testDevice, Add: []store.Fact{{Slot: "name", Text: "Anna"}},
		Digest: &store.Digest{Day: time.Now().UTC().Format(time.DateOnly), Text: "asked ten questions"}}); err != nil {
		t.Fatal(err)
	}
}

func populated(t *testing.T) *adminEnv {
	t.Helper()
	e := newAdminEnv(t)
	db := e.open(t)
	populate(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestAdminUsage(t *testing.T) {
	e := populated(t)
	out, _ := e.mustNexy(t, "usage", "--json")
	var rep usageReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rep.Rows) != 2 {
		t.Fatalf("rows %+v", rep.Rows)
	}
	main, client := rep.Rows[0], rep.Rows[1]
	if main.HardwareID != testDevice || main.Source != "main" || main.Model != "gemini-2.5-flash-lite" || main.Calls != 10 ||
		main.InputTokens != 10000 || main.OutputTokens != 1000 || main.TotalTokens != 11000 || main.CostUSD == nil || fmt.Sprintf("%.6f", *main.CostUSD) != "0.001400" {
		t.Errorf("main row %+v (cost %v), want 10 calls, 10000/1000 tokens, $0.0014", main, main.CostUSD)
	}
	if client.Source != "client:browser" || client.CostUSD != nil {
		t.Errorf("client row %+v: llama3.2 has no default price", client)
	}
	if tot := rep.Total; tot.Calls != 11 || tot.TotalTokens != 11055 || fmt.Sprintf("%.6f", tot.CostUSD) != "0.001400" || fmt.Sprint(tot.UnpricedModels) != "[llama3.2]" {
		t.Errorf("total %+v", tot)
	}

	table, _ := e.mustNexy(t, "usage", "--since", "2000-01-01")
	for _, want := range []string{shortID(testDevice), "HW-ABCDE~", "$0.0014", "TOTAL", "11055", "$0.0014 *", "no price in usage.prices for llama3.2"} {
		if !strings.Contains(table, want) {
			t.Errorf("usage table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, testDevice) {
		t.Errorf("the table shows the whole hardware id:\n%s", table)
	}
	if out, _ := e.mustNexy(t, "usage", "--since", "1h", "--device", testDevice); !strings.Contains(out, "$0.0014") {
		t.Errorf("usage --device:\n%s", out)
	}
	if _, stderr, code := e.nexy(t, "usage", "--device", "HW-NOBODY"); code != 1 || !strings.Contains(stderr, "HW-NOBODY: unknown device") {
		t.Errorf("unknown device: exit %d, %s", code, stderr)
	}
	if _, stderr, code := e.nexy(t, "usage", "--since", "lately"); code != 2 || !strings.Contains(stderr, `--since "lately"`) {
		t.Errorf("bad --since: exit %d, %s", code, stderr)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"7d":         now.AddDate(0, 0, -7),
		"36h":        now.Add(-36 * time.Hour),
		"90m":        now.Add(-90 * time.Minute),
		"2026-11-01": time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
	} {
		if got, err := parseSince(in, now); err != nil || !got.Equal(want) {
			t.Errorf("%s: %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0d", "-3h", "d", "7 days", "2026-13-01"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestAdminMemory(t *testing.T) {
	e := populated(t)
	show, _ := e.mustNexy(t, "memory", "show", testDevice)
	for _, want := range []string{testDevice, "facts (1 active)", "Anna", "asked ten questions", "question 9", "answer 9"} {
		if !strings.Contains(show, want) {
			t.Errorf("memory show lacks %q:\n%s", want, show)
		}
	}
	out, _ := e.mustNexy(t, "memory", "forget", testDevice)
	if !strings.Contains(out, "retired 1 facts and 1 digests") {
		t.Errorf("forget said:\n%s", out)
	}
	out, _ = e.mustNexy(t, "memory", "export", testDevice)
	var exp memoryJSON
	if err := json.Unmarshal([]byte(out), &exp); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(exp.Facts) != 1 || exp.Facts[0].Active || exp.Facts[0].RetiredAt == nil || exp.Facts[0].Text != "Anna" ||
		exp.MemoryClearedAt == nil || len(exp.ShortTerm) != 0 {
		t.Errorf("export after forget: %s", out)
	}
	show, _ = e.mustNexy(t, "memory", "show", testDevice)
	if strings.Contains(show, "Anna") || !strings.Contains(show, "facts (0 active)") {
		t.Errorf("show after forget:\n%s", show)
	}
	// Forgetting retires; the rows stay.
	db := e.open(t)
	defer db.Close()
	if n, _ := db.Counts(context.Background()); n["memories"] != 2 || n["commands"] != 10 {
		t.Errorf("rows after forget: %v", n)
	}

	if _, stderr, code := e.nexy(t, "memory", "show", "HW-NOBODY"); code != 1 || !strings.Contains(stderr, "HW-NOBODY: unknown device") {
		t.Errorf("unknown device: exit %d, %s", code, stderr)
	}
	if _, _, code := e.nexy(t, "memory", "show"); code != 2 {
		t.Errorf("memory show without an id: exit %d", code)
	}
	if _, _, code := e.nexy(t, "memory", "erase", testDevice); code != 2 {
		t.Errorf("memory erase: exit %d", code)
	}
}

// Each command: -h prints its usage to stdout (exit 0), a bad flag exits 2.
func TestAdminUsageErrors(t *testing.T) {
	e := newAdminEnv(t)
	for _, cmd := range [][]string{{"memory", "show"}, {"memory"}, {"usage"}, {"backup"}, {"restore"}, {"drill"}} {
		out, _, code := e.nexy(t, append(cmd, "-h")...)
		if code != 0 || !strings.Contains(out, "usage: nexy "+cmd[0]) {
			t.Errorf("%v -h: exit %d, stdout %q", cmd, code, out)
		}
		if _, stderr, code := e.nexy(t, append(cmd, "--no-such-flag")...); code != 2 || stderr == "" {
			t.Errorf("%v with a bad flag: exit %d, %q", cmd, code, stderr)
		}
	}
	// No database yet: a clear failure, and none is created.
	if _, stderr, code := e.nexy(t, "usage"); code != 1 || !strings.Contains(stderr, "no database at") {
		t.Errorf("usage without a database: exit %d, %s", code, stderr)
	}
	if _, stderr, code := e.nexy(t, "drill"); code != 1 || !strings.Contains(stderr, "no database at") {
		t.Errorf("drill without a database: exit %d, %s", code, stderr)
	}
	if _, err := os.Stat(e.live()); err == nil {
		t.Error("a read-only command created the database")
	}
}

func damageFile(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mid := (len(b) / 2) &^ 4095
	copy(b[mid:mid+4096], bytes.Repeat([]byte{0xA5}, 4096))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func copyTo(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestAdminBackupDrillRestore(t *testing.T) {
	e := populated(t)
	if _, stderr, code := e.nexy(t, "drill"); code != 1 || !strings.Contains(stderr, "no backup in "+filepath.Join(e.data, "backups")+"; run nexy backup") {
		t.Errorf("drill without a backup: exit %d, %s", code, stderr)
	}
	out, stderr := e.mustNexy(t, "backup")
	backups, _ := filepath.Glob(filepath.Join(e.data, "backups", "nexy-*.db"))
	if len(backups) != 1 || !strings.Contains(out, backups[0]) || !strings.Contains(out, "commands 10") || !strings.Contains(out, "took") {
		t.Fatalf("backup printed:\n%s\nfiles %v", out, backups)
	}
	good := backups[0]
	if _, err := os.Stat(store.MetadataPath(good)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "no restore drill has succeeded") {
		t.Errorf("backup did not warn about the missing drill: %s", stderr)
	}

	out, _ = e.mustNexy(t, "drill")
	if !strings.Contains(out, "drill ok") {
		t.Errorf("drill printed:\n%s", out)
	}
	db := e.open(t)
	d, found, err := db.LastDrill(context.Background(), true)
	db.Close()
	if err != nil || !found || d.BackupFile != good || d.Counts["commands"] != 10 {
		t.Fatalf("drill record %+v %v %v", d, found, err)
	}
	if _, stderr := e.mustNexy(t, "backup"); strings.Contains(stderr, "drill") {
		t.Errorf("backup warned after a fresh drill: %s", stderr)
	}

	// A damaged backup is refused and the live file is untouched.
	bad := filepath.Join(e.dir, "bad.db")
	copyTo(t, good, bad)
	copyTo(t, store.MetadataPath(good), store.MetadataPath(bad))
	damageFile(t, bad)
	before, _ := os.ReadFile(e.live())
	if _, stderr, code := e.nexy(t, "restore", bad, "--force"); code != 1 || !strings.Contains(stderr, "refused") || !strings.Contains(stderr, "not touched") {
		t.Errorf("restore of a damaged backup: exit %d, %s", code, stderr)
	}
	if after, _ := os.ReadFile(e.live()); !bytes.Equal(before, after) {
		t.Error("the live file changed")
	}

	// Over a live database with history: --force is required.
	if _, stderr, code := e.nexy(t, "restore", good); code != 1 || !strings.Contains(stderr, "--force") {
		t.Errorf("restore without --force: exit %d, %s", code, stderr)
	}
	// While the server holds the data directory: refused.
	unlock, err := store.LockDataDir(e.data)
	if err != nil {
		t.Fatal(err)
	}
	_, stderr, code := e.nexy(t, "restore", "--force", good)
	unlock()
	if code != 1 || !strings.Contains(stderr, "the server is running") {
		t.Errorf("restore while locked: exit %d, %s", code, stderr)
	}

	out, _ = e.mustNexy(t, "restore", good, "--force")
	kept, _ := filepath.Glob(e.live() + ".pre-restore-*")
	if len(kept) != 1 || !strings.Contains(out, "kept the old database file as "+kept[0]) || !strings.Contains(out, "commands 10") {
		t.Errorf("restore printed:\n%s\nkept %v", out, kept)
	}
	// The restored database predates the drill: its drills table is empty.
	db = e.open(t)
	defer db.Close()
	if n, _ := db.Counts(context.Background()); n["commands"] != 10 || n["drills"] != 0 {
		t.Errorf("restored counts %v", n)
	}
}

// The server keeps writing turns (and holds the data directory lock, as
// serve does) while `nexy backup` and `nexy drill` run beside it.
func TestAdminBackupWhileServing(t *testing.T) {
	e := populated(t)
	unlock, err := store.LockDataDir(e.data)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	db := e.open(t)
	defer db.Close()
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var written int
	var werr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 100000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if werr = db.SaveTurn(ctx, store.Turn{HardwareID: "HW-SERVING", SessionID: fmt.Sprintf("live-%d", i), At: time.Now(),
				Prompt: "q", Response: "a", Status: store.StatusComplete, InputTokens: 10, OutputTokens: 1}); werr != nil {
				return
			}
			written++
		}
	}()
	time.Sleep(100 * time.Millisecond)
	backupOut, _ := e.mustNexy(t, "backup")
	drillOut, _ := e.mustNexy(t, "drill")
	close(stop)
	wg.Wait()
	if werr != nil {
		t.Fatal(werr)
	}
	if !strings.Contains(drillOut, "drill ok") || written == 0 {
		t.Errorf("wrote %d turns; backup:\n%s\ndrill:\n%s", written, backupOut, drillOut)
	}
	d, found, _ := db.LastDrill(ctx, true)
	live, _ := db.Counts(ctx)
	if !found || d.Counts["commands"] < 10 || d.Counts["commands"] > live["commands"] {
		t.Errorf("drill %+v, live %v", d, live)
	}
	t.Logf("the server wrote %d turns meanwhile; the backup holds %d commands, live %d", written, d.Counts["commands"], live["commands"])
}
