package main

// The owner's commands on the history: memory, usage, backup, restore and
// drill. Each reads the same configuration as serve and opens the same
// SQLite file, which works beside a running server (WAL, busy_timeout);
// only restore refuses to run while the server holds the data directory.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/internal/buildinfo"
	"github.com/nexy-server/nexy/store"
)

const configFlagHelp = "config file (default $NEXY_CONFIG, else ./nexy.toml when present)"

// errPrinted ends a command with exit 1 when it has already said why.
var errPrinted = errors.New("reported")

// commandFlags is a command's flag set with the -config flag every command
// shares.
func commandFlags(name, synopsis string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	path := fs.String("config", "", configFlagHelp)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), synopsis, "\n")
		fs.PrintDefaults()
	}
	return fs, path
}

// parseArgs parses flags wherever they are among the arguments, so both
// "nexy restore --force FILE" and "nexy restore FILE --force" work, and
// returns the other arguments in order; after "--" everything is one.
func parseArgs(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (pos []string, code int, ok bool) {
	for {
		if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
			return nil, code, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, 0, true
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), 0, true
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// usageError reports a bad invocation with the command's usage (exit 2).
func usageError(fs *flag.FlagSet, stderr io.Writer, format string, a ...any) int {
	fmt.Fprintf(stderr, "nexy %s: %s\n\n", fs.Name(), fmt.Sprintf(format, a...))
	fs.SetOutput(stderr)
	fs.Usage()
	return 2
}

// loadConfig reads the configuration exactly as serve does.
func loadConfig(path string, stderr io.Writer) (*config.Loaded, error) {
	cfg, err := config.Load(path, os.Environ())
	if err != nil {
		return nil, err
	}
	for _, name := range cfg.UnknownEnv {
		fmt.Fprintf(stderr, "nexy: warning: unknown environment setting %s ignored (typo?)\n", name)
	}
	return cfg, nil
}

// livePath is the history database of a configuration.
func livePath(cfg *config.Loaded) string {
	return filepath.Join(cfg.Server.DataDir, store.FileName)
}

// openLive opens the existing history database. A missing file is an
// error, not a new empty database: the owner is asking about a history,
// and an empty one usually means the wrong config or data_dir.
func openLive(cfg *config.Loaded) (*store.DB, error) {
	path := livePath(cfg)
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no database at %s (server.data_dir = %q): the server has recorded nothing there yet, or this is not its config", path, cfg.Server.DataDir)
		}
		return nil, err
	}
	return store.Open(path, store.Options{})
}

// withStore loads the config, opens the live database and runs fn; an
// error fn returns is printed (unless already reported) and exits 1.
// Ctrl-C or SIGTERM cancels fn's context, so a long backup stops cleanly.
func withStore(name, cfgPath string, stderr io.Writer, fn func(ctx context.Context, cfg *config.Loaded, db *store.DB) error) int {
	cfg, err := loadConfig(cfgPath, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "nexy:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	db, err := openLive(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "nexy %s: %v\n", name, err)
		return 1
	}
	defer db.Close()
	if err := fn(ctx, cfg, db); err != nil {
		if !errors.Is(err, errPrinted) {
			fmt.Fprintf(stderr, "nexy %s: %v\n", name, err)
		}
		return 1
	}
	return 0
}

// shortID shows a hardware id as the server's log does: the first 8
// characters and 6 hex digits of the SHA-256 of the whole id (ids of up to
// 16 characters whole). It repeats server's unexported helper so the
// usage table and the log name a device the same way.
func shortID(id string) string {
	if len(id) <= 16 {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return id[:8] + "~" + hex.EncodeToString(sum[:3])
}

func unknownDevice(id string) error {
	return fmt.Errorf("%s: unknown device: nothing was recorded for this hardware id (nexy usage --since 365d lists the devices)", id)
}

// rowsLine lists row counts in HistoryTables order.
func rowsLine(n map[string]int64) string {
	parts := make([]string, 0, len(store.HistoryTables))
	for _, t := range store.HistoryTables {
		if v, ok := n[t]; ok {
			parts = append(parts, fmt.Sprintf("%s %d", t, v))
		}
	}
	return strings.Join(parts, ", ")
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// ---- nexy memory ----

const memoryUsage = `usage: nexy memory show|export|forget [-config nexy.toml] HARDWARE_ID

  show    what the assistant would remember in the device's next turn: active
          facts, recent daily digests (memory.digest_days) and short-term memory
          (the last memory.recent_turns turns within memory.recent_window)
  export  everything stored about the device's memory as JSON, retired facts included
  forget  retire every fact and digest and end short-term memory now; the rows
          stay in the database (history is never deleted), only marked retired
`

func memoryCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "nexy memory: say show, export or forget\n\n", memoryUsage)
		return 2
	}
	action := args[0]
	switch action {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, memoryUsage)
		return 0
	case "show", "export", "forget":
	default:
		fmt.Fprintf(stderr, "nexy memory: unknown action %q (show, export or forget)\n\n%s", action, memoryUsage)
		return 2
	}
	fs, cfgPath := commandFlags("memory "+action, memoryUsage)
	pos, code, ok := parseArgs(fs, args[1:], stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 || pos[0] == "" {
		return usageError(fs, stderr, "needs exactly one HARDWARE_ID")
	}
	id := pos[0]
	return withStore(fs.Name(), *cfgPath, stderr, func(ctx context.Context, cfg *config.Loaded, db *store.DB) error {
		exp, err := db.ExportMemory(ctx, id)
		if errors.Is(err, store.ErrUnknownDevice) {
			return unknownDevice(id)
		}
		if err != nil {
			return err
		}
		switch action {
		case "show":
			return memoryShow(ctx, stdout, cfg, db, exp)
		case "export":
			return memoryExport(ctx, stdout, cfg, db, exp)
		}
		return memoryForget(ctx, stdout, db, exp)
	})
}

// serverQuery is what the server loads for a turn now (as server/memory.go).
func serverQuery(cfg *config.Loaded, now time.Time) store.MemoryQuery {
	m := cfg.Memory
	return store.MemoryQuery{RecentTurns: m.RecentTurns, RecentSince: now.Add(-m.RecentWindow.Duration),
		DigestSince: now.UTC().AddDate(0, 0, -m.DigestDays).Format(time.DateOnly)}
}

func memoryShow(ctx context.Context, w io.Writer, cfg *config.Loaded, db *store.DB, exp store.DeviceMemory) error {
	mem, err := db.Memory(ctx, exp.HardwareID, serverQuery(cfg, time.Now()))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "device %s: first seen %s, last seen %s\n", exp.HardwareID, when(exp.FirstSeen), when(exp.LastSeen))
	if !exp.MemoryClearedAt.IsZero() {
		fmt.Fprintf(w, "memory forgotten at %s: earlier turns are not short-term memory\n", when(exp.MemoryClearedAt))
	}
	fmt.Fprintf(w, "\nfacts (%d active):\n", len(mem.Facts))
	for _, f := range mem.Facts {
		fmt.Fprintf(w, "  %-12s %s   (since %s)\n", f.Slot+":", f.Text, when(f.CreatedAt))
	}
	fmt.Fprintf(w, "\ndaily digests (%d, last %d days):\n", len(mem.Digests), cfg.Memory.DigestDays)
	for _, d := range mem.Digests {
		fmt.Fprintf(w, "  %s  %s\n", d.Day, d.Text)
	}
	fmt.Fprintf(w, "\nshort-term memory (%d turns; at most %d, within %s):\n", len(mem.Recent), cfg.Memory.RecentTurns, cfg.Memory.RecentWindow.Duration)
	for _, t := range mem.Recent {
		fmt.Fprintf(w, "  %s  user: %s\n  %s  nexy: %s\n", when(t.At), oneLine(t.User), strings.Repeat(" ", len(when(t.At))), oneLine(t.Assistant))
	}
	return nil
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 200 {
		return string(r[:200]) + "…"
	}
	return s
}

// memoryJSON is the export's shape: stable snake_case keys.
type memoryJSON struct {
	HardwareID      string       `json:"hardware_id"`
	FirstSeen       time.Time    `json:"first_seen"`
	LastSeen        time.Time    `json:"last_seen"`
	MemoryClearedAt *time.Time   `json:"memory_cleared_at,omitempty"`
	Facts           []factJSON   `json:"facts"`
	Digests         []digestJSON `json:"digests"`
	ShortTerm       []turnJSON   `json:"short_term"`
}

type factJSON struct {
	ID            int64      `json:"id"`
	Slot          string     `json:"slot"`
	Text          string     `json:"text"`
	Active        bool       `json:"active"`
	CreatedAt     time.Time  `json:"created_at"`
	RetiredAt     *time.Time `json:"retired_at,omitempty"`
	RetiredReason string     `json:"retired_reason,omitempty"`
}

type digestJSON struct {
	ID        int64      `json:"id"`
	Day       string     `json:"day"`
	Text      string     `json:"text"`
	Active    bool       `json:"active"`
	RetiredAt *time.Time `json:"retired_at,omitempty"`
}

type turnJSON struct {
	At        time.Time `json:"at"`
	User      string    `json:"user"`
	Assistant string    `json:"assistant"`
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func memoryExport(ctx context.Context, w io.Writer, cfg *config.Loaded, db *store.DB, exp store.DeviceMemory) error {
	mem, err := db.Memory(ctx, exp.HardwareID, serverQuery(cfg, time.Now()))
	if err != nil {
		return err
	}
	out := memoryJSON{HardwareID: exp.HardwareID, FirstSeen: exp.FirstSeen, LastSeen: exp.LastSeen,
		MemoryClearedAt: timeOrNil(exp.MemoryClearedAt), Facts: []factJSON{}, Digests: []digestJSON{}, ShortTerm: []turnJSON{}}
	for _, f := range exp.Facts {
		out.Facts = append(out.Facts, factJSON{ID: f.ID, Slot: f.Slot, Text: f.Text, Active: f.RetiredAt.IsZero(),
			CreatedAt: f.CreatedAt, RetiredAt: timeOrNil(f.RetiredAt), RetiredReason: f.RetiredReason})
	}
	for _, d := range exp.Digests {
		out.Digests = append(out.Digests, digestJSON{ID: d.ID, Day: d.Day, Text: d.Text, Active: d.RetiredAt.IsZero(), RetiredAt: timeOrNil(d.RetiredAt)})
	}
	for _, t := range mem.Recent {
		out.ShortTerm = append(out.ShortTerm, turnJSON{At: t.At, User: t.User, Assistant: t.Assistant})
	}
	return printJSON(w, out)
}

func memoryForget(ctx context.Context, w io.Writer, db *store.DB, exp store.DeviceMemory) error {
	active, digests := 0, 0
	for _, f := range exp.Facts {
		if f.RetiredAt.IsZero() {
			active++
		}
	}
	for _, d := range exp.Digests {
		if d.RetiredAt.IsZero() {
			digests++
		}
	}
	if err := db.ForgetAll(ctx, exp.HardwareID, "forgotten by the owner (nexy memory forget)"); err != nil {
		return err
	}
	fmt.Fprintf(w, "device %s: retired %d facts and %d digests; short-term memory starts afresh now.\n", exp.HardwareID, active, digests)
	fmt.Fprintln(w, "The rows stay in the database, marked retired (history is never deleted); nexy memory export shows them.")
	return nil
}

// ---- nexy usage ----

const usageUsage = `usage: nexy usage [--since 7d] [--device ID] [--json] [-config nexy.toml]

Tokens and estimated cost per device, source and model, then today's turns
and tokens of each device against its daily limits (since midnight in
quotas.timezone, as the server counts its quotas). --since takes Nd
(days), Nh or any Go duration (90m), or a date YYYY-MM-DD (UTC midnight).
Costs use usage.prices (USD per million tokens); a model without a price
shows "-". The table shortens hardware ids as the server log does; --json
gives them whole.
`

func usageCmd(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := commandFlags("usage", usageUsage)
	since := fs.String("since", "7d", "report usage since `WHEN`: Nd, Nh, a Go duration, or YYYY-MM-DD")
	device := fs.String("device", "", "only this hardware `ID`")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	}
	from, err := parseSince(*since, time.Now())
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	return withStore("usage", *cfgPath, stderr, func(ctx context.Context, cfg *config.Loaded, db *store.DB) error {
		prices, err := config.ParsePrices(cfg.Usage.Prices)
		if err != nil {
			return fmt.Errorf("usage.prices: %w", err)
		}
		if *device != "" {
			if known, err := db.KnownDevice(ctx, *device); err != nil || !known {
				return errors.Join(err, unknownDevice(*device))
			}
		}
		rows, err := db.UsageReport(ctx, from, *device)
		if err != nil {
			return err
		}
		rep := buildUsage(rows, prices, from, *device)
		since, loc, today, err := usageToday(ctx, cfg, db, *device, time.Now())
		if err != nil {
			return err
		}
		rep.TodaySince, rep.Today = since, today
		if *asJSON {
			return printJSON(stdout, rep)
		}
		if err := printUsage(stdout, rep); err != nil {
			return err
		}
		return printToday(stdout, since, loc, today)
	})
}

// parseSince reads --since: Nd, a Go duration (Nh, 90m), or a date.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.ParseInLocation(time.DateOnly, s, time.UTC); err == nil {
		return t, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days > 0 {
			return now.AddDate(0, 0, -days), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: write a number of days (7d), hours (12h) or a Go duration (90m), or a date YYYY-MM-DD", s)
}

// usageReport is the report, as printed by --json.
type usageReport struct {
	Since  time.Time   `json:"since"`
	Device string      `json:"device,omitempty"`
	Rows   []usageLine `json:"rows"`
	Total  usageTotal  `json:"total"`
	// Today is each device's use since local midnight in quotas.timezone
	// against its daily limits (0 = unlimited).
	TodaySince time.Time   `json:"today_since"`
	Today      []todayLine `json:"today"`
}

type usageLine struct {
	HardwareID   string   `json:"hardware_id"`
	Source       string   `json:"source"`
	Model        string   `json:"model"`
	Calls        int64    `json:"calls"`
	InputTokens  int64    `json:"input_tokens"`
	OutputTokens int64    `json:"output_tokens"`
	TotalTokens  int64    `json:"total_tokens"`
	CostUSD      *float64 `json:"cost_usd"` // estimate; null: the model has no price
}

type usageTotal struct {
	Calls          int64    `json:"calls"`
	InputTokens    int64    `json:"input_tokens"`
	OutputTokens   int64    `json:"output_tokens"`
	TotalTokens    int64    `json:"total_tokens"`
	CostUSD        float64  `json:"cost_usd"`                  // of the priced rows
	UnpricedModels []string `json:"unpriced_models,omitempty"` // left out of cost_usd
}

func buildUsage(rows []store.UsageRow, prices config.Prices, since time.Time, device string) usageReport {
	rep := usageReport{Since: since.UTC(), Device: device, Rows: []usageLine{}}
	seen := map[string]bool{}
	for _, r := range rows {
		l := usageLine{HardwareID: r.HardwareID, Source: r.Source, Model: r.Model, Calls: r.Calls,
			InputTokens: r.InputTokens, OutputTokens: r.OutputTokens, TotalTokens: r.InputTokens + r.OutputTokens}
		if c, ok := prices.Cost(r.Model, r.InputTokens, r.OutputTokens); ok {
			l.CostUSD = &c
			rep.Total.CostUSD += c
		} else if !seen[r.Model] {
			seen[r.Model] = true
			rep.Total.UnpricedModels = append(rep.Total.UnpricedModels, r.Model)
		}
		rep.Rows = append(rep.Rows, l)
		rep.Total.Calls += l.Calls
		rep.Total.InputTokens += l.InputTokens
		rep.Total.OutputTokens += l.OutputTokens
		rep.Total.TotalTokens += l.TotalTokens
	}
	return rep
}

func cost(c *float64) string {
	if c == nil {
		return "-"
	}
	return fmt.Sprintf("$%.4f", *c)
}

func modelName(m string) string {
	if m == "" {
		return "(none)"
	}
	return m
}

func printUsage(w io.Writer, rep usageReport) error {
	fmt.Fprintf(w, "token usage since %s\n\n", rep.Since.Format("2006-01-02 15:04 UTC"))
	if len(rep.Rows) == 0 {
		_, err := fmt.Fprintln(w, "no token usage recorded in this period")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tSOURCE\tMODEL\tCALLS\tINPUT\tOUTPUT\tTOTAL\tCOST (USD)")
	for _, l := range rep.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", shortID(l.HardwareID), l.Source, modelName(l.Model),
			l.Calls, l.InputTokens, l.OutputTokens, l.TotalTokens, cost(l.CostUSD))
	}
	t := rep.Total
	total := fmt.Sprintf("$%.4f", t.CostUSD)
	if len(t.UnpricedModels) > 0 {
		total += " *"
	}
	fmt.Fprintf(tw, "TOTAL\t\t\t%d\t%d\t%d\t%d\t%s\n", t.Calls, t.InputTokens, t.OutputTokens, t.TotalTokens, total)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(t.UnpricedModels) > 0 {
		names := make([]string, len(t.UnpricedModels))
		for i, m := range t.UnpricedModels {
			names[i] = modelName(m)
		}
		fmt.Fprintf(w, "\n- : no price in usage.prices for %s.\n* the total leaves those rows out; price them with model=input/output (USD per million tokens), or *=input/output for any model.\n",
			strings.Join(names, ", "))
	}
	_, err := fmt.Fprintln(w, "\nCosts are estimates from usage.prices, not a bill.")
	return err
}

// ---- nexy backup ----

const backupUsage = `usage: nexy backup [--out FILE] [-config nexy.toml]

Writes a consistent copy of the history while the server runs (VACUUM INTO),
checks it (integrity_check), and writes its metadata (schema version, row
counts, SHA-256) next to it as JSON. Without --out the copy goes to
store.backup_dir (default <server.data_dir>/backups) as nexy-YYYYMMDD-HHMMSS.db,
and only the newest store.backup_keep backups are kept there: older backup
files are removed (they are copies; the history itself is never deleted).
`

func backupCmd(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := commandFlags("backup", backupUsage)
	out := fs.String("out", "", "write the backup to `FILE` instead (not subject to retention; never overwritten)")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	}
	return withStore("backup", *cfgPath, stderr, func(ctx context.Context, cfg *config.Loaded, db *store.DB) error {
		prog := newProgress(stderr)
		res, err := db.Backup(ctx, store.BackupOptions{Dir: cfg.BackupDirectory(), Out: *out, Keep: cfg.Store.BackupKeep,
			Version: buildinfo.Current().String(), Progress: prog.report})
		for _, w := range res.Warnings {
			fmt.Fprintln(stderr, "nexy backup: warning:", w)
		}
		if err != nil {
			return err
		}
		printBackup(stdout, res, cfg.Store.BackupKeep, *out != "")
		if w := store.DrillWarning(ctx, db, time.Now()); w != "" {
			fmt.Fprintln(stderr, "nexy backup: warning:", w)
		}
		return nil
	})
}

func printBackup(w io.Writer, res store.BackupResult, keep int, custom bool) {
	m := res.Meta
	fmt.Fprintf(w, "backup: %s\n", res.Path)
	fmt.Fprintf(w, "  size %s, took %s, schema version %d, integrity_check ok\n", humanBytes(m.Size), res.Duration.Round(time.Millisecond), m.SchemaVersion)
	fmt.Fprintf(w, "  sha256 %s\n", m.SHA256)
	fmt.Fprintf(w, "  rows: %s\n", rowsLine(m.Counts))
	fmt.Fprintf(w, "  metadata: %s\n", res.MetaPath)
	switch {
	case custom:
		fmt.Fprintln(w, "  retention: not applied (--out)")
	case len(res.Removed) > 0:
		fmt.Fprintf(w, "  retention: kept the newest %d, removed %s\n", keep, strings.Join(res.Removed, ", "))
	}
}

// progress prints the copy's progress on stderr: at once on a terminal,
// otherwise only once the copy has taken a second (a log of a quick backup
// stays short), and at most once a second.
type progress struct {
	w     io.Writer
	tty   bool
	start time.Time
	last  time.Time
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, tty: isTerminal(w), start: time.Now()}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (p *progress) report(copied, total int64) {
	now := time.Now()
	if total <= 0 || (!p.tty && now.Sub(p.start) < time.Second) || now.Sub(p.last) < time.Second {
		return
	}
	p.last = now
	fmt.Fprintf(p.w, "nexy backup: copying %d%% (%s of %s)\n", min(100, copied*100/total), humanBytes(copied), humanBytes(total))
}

// ---- nexy restore ----

const restoreUsage = `usage: nexy restore FILE [--force] [-config nexy.toml]

Replaces the history with a backup. The backup is checked first (SHA-256
against its .json when present, integrity_check, schema version, delete
guards, row counts against the metadata); the live file is not touched
unless it passes. Stop the server first: restore refuses while it runs.
The old database is kept as nexy.db.pre-restore-<UTC time>.
`

func restoreCmd(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := commandFlags("restore", restoreUsage)
	force := fs.Bool("force", false, "replace a live database that holds history (it is kept as nexy.db.pre-restore-<time>)")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 || pos[0] == "" {
		return usageError(fs, stderr, "needs exactly one backup FILE")
	}
	cfg, err := loadConfig(*cfgPath, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "nexy:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	live := livePath(cfg)
	res, err := store.Restore(ctx, pos[0], live, store.RestoreOptions{Force: *force})
	if err != nil {
		fmt.Fprintln(stderr, "nexy restore:", restoreError(err, live, res.LiveRows))
		return 1
	}
	printRestore(stdout, res)
	return 0
}

// restoreError explains a refused restore; every refusal before the swap
// leaves the live file as it was, which is what the owner needs to know.
func restoreError(err error, live string, rows int64) string {
	var inUse *store.InUseError
	var newer *store.NewerSchemaError
	switch {
	case errors.As(err, &inUse):
		return fmt.Sprintf("the server is running, or another restore is (%s is held); stop it first, then restore. Nothing was changed.", inUse.Path)
	case errors.Is(err, store.ErrLiveHasHistory):
		what := fmt.Sprintf("holds %d history rows", rows)
		if rows < 0 {
			what = "exists but cannot be read"
		}
		return fmt.Sprintf("%s %s; restoring replaces it. Run again with --force to go ahead (the current file is kept as %s.pre-restore-<UTC time>). Nothing was changed.", live, what, live)
	case errors.Is(err, store.ErrBadBackup), errors.As(err, &newer), errors.Is(err, os.ErrNotExist):
		return fmt.Sprintf("%v\nThe backup was refused; the live database was not touched.", err)
	}
	return err.Error()
}

func printRestore(w io.Writer, res store.RestoreResult) {
	c := res.Check
	if c.Meta != nil {
		fmt.Fprintf(w, "checked %s: sha256 matches %s, integrity_check ok, schema version %d, delete guards present, rows at least the metadata's\n",
			c.Path, store.MetadataPath(c.Path), c.SchemaVersion)
	} else {
		fmt.Fprintf(w, "checked %s: integrity_check ok, schema version %d, delete guards present (no metadata file: sha256 %s not verified)\n",
			c.Path, c.SchemaVersion, c.SHA256)
	}
	for _, k := range res.Kept {
		fmt.Fprintf(w, "kept the old database file as %s\n", k)
	}
	fmt.Fprintf(w, "restored %s to %s; it opens with schema version %d\n", c.Path, res.Live, res.SchemaVersion)
	fmt.Fprintf(w, "  rows: %s\n", rowsLine(res.Counts))
}

// ---- nexy drill ----

const drillUsage = `usage: nexy drill [-config nexy.toml]

Proves that the newest backup in store.backup_dir restores: copies it into a
scratch directory, verifies its SHA-256 against its metadata, runs
integrity_check, opens it as the server would (guards, migrations), and
compares its row counts with the metadata (equal) and the live database
(not more). The result is recorded in the drills table; any failure exits 1.
Run it weekly: the server warns when the last successful drill is older
than 7 days.
`

func drillCmd(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := commandFlags("drill", drillUsage)
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	}
	return withStore("drill", *cfgPath, stderr, func(ctx context.Context, cfg *config.Loaded, db *store.DB) error {
		d, err := db.RunDrill(ctx, cfg.BackupDirectory())
		if err != nil {
			fmt.Fprintln(stderr, "nexy drill: FAILED:", err)
			if d.ID != 0 {
				fmt.Fprintf(stderr, "nexy drill: the failure is recorded in the drills table (row %d)\n", d.ID)
			}
			if w := store.DrillWarning(ctx, db, time.Now()); w != "" {
				fmt.Fprintln(stderr, "nexy drill: warning:", w)
			}
			return errPrinted
		}
		fmt.Fprintf(stdout, "drill ok: %s restores\n  %s\n  rows: %s\n  recorded in the drills table (row %d) at %s\n",
			d.BackupFile, d.Detail, rowsLine(d.Counts), d.ID, when(d.RanAt))
		return nil
	})
}
