package main

// nexy doctor: one command that checks what a working server needs (the
// configuration, the data directory, the database and its backups, one real
// call to each provider, the TLS certificate, the public port as a client
// reaches it, and the keepalive limit the app relies on) and prints one row
// per check. It reads the same configuration as serve and works while serve
// runs: it takes no lock and never creates the database.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/ingress"
	"github.com/nexy-server/nexy/internal/providers"
	"github.com/nexy-server/nexy/llm"
	"github.com/nexy-server/nexy/store"
	"github.com/nexy-server/nexy/tts"
)

const doctorUsage = `usage: nexy doctor [-config nexy.toml] [--json] [--timeout 20s]

Checks everything a working server needs and prints one row per check:
  config       nexy.toml and NEXY_* load and validate
  data dir     server.data_dir exists (or can be created), is writable, has free space
  database     integrity_check, schema version, last backup and restore drill
  llm          one tiny prompt to each configured model, [[llm.fallbacks]] too
  tts          speaks "OK" with [tts] and [tts.fallback] (latency, audio length)
  tls          the certificate of tls.mode: expiry, key, fingerprint
  public port  TLS handshake and GET /health on the address a client uses
  keepalive    limits.keepalive_min_time allows the app's 120 s pings
The checks after config run at once, each within --timeout. Exit 1 when a
check fails; a warning does not. Safe while nexy serve runs (no lock taken).
`

// Check outcomes, worst last.
const (
	statusSkip = "skip"
	statusOK   = "ok"
	statusWarn = "warn"
	statusFail = "fail"
)

func doctorStatusRank(s string) int {
	switch s {
	case statusOK:
		return 1
	case statusWarn:
		return 2
	case statusFail:
		return 3
	}
	return 0
}

// The thresholds of the checks.
const (
	// doctorDiskWarn and doctorDiskFail: free space in server.data_dir.
	doctorDiskWarn = 1 << 30
	doctorDiskFail = 100 << 20
	// doctorCertWarn: a certificate expiring sooner is a warning.
	doctorCertWarn = 14 * 24 * time.Hour
	// doctorClientPing is how often the shipped app pings during a call; a
	// keepalive_min_time above it makes the server drop the app's calls.
	doctorClientPing = 120 * time.Second
	// doctorGrace is how long a check that overran --timeout gets to say
	// what it was doing before the row just says it timed out.
	doctorGrace = time.Second
)

// The prompt of the llm check: one word back, a few tokens each way.
const (
	doctorLLMSystem = "Answer with one word."
	doctorLLMUser   = "Say OK."
)

// errDiskFreeUnknown: this system has no statfs (doctor_disk_other.go).
var errDiskFreeUnknown = errors.New("free space unknown on this system")

// checkRow is one line of the report (and one element of --json's checks).
type checkRow struct {
	Name      string `json:"name"`
	Status    string `json:"status"`
	Detail    string `json:"detail"`
	LatencyMS int64  `json:"latency_ms"`
}

// doctorReport is what --json prints.
type doctorReport struct {
	OK     bool       `json:"ok"`
	Checks []checkRow `json:"checks"`
}

// checkResult is a check's verdict; the runner adds the name and latency.
type checkResult struct {
	status string
	detail string
}

// doctorOK, doctorWarn, doctorFail and doctorSkip make a verdict.
func doctorOK(format string, a ...any) checkResult {
	return checkResult{statusOK, fmt.Sprintf(format, a...)}
}

func doctorWarn(format string, a ...any) checkResult {
	return checkResult{statusWarn, fmt.Sprintf(format, a...)}
}

func doctorFail(format string, a ...any) checkResult {
	return checkResult{statusFail, fmt.Sprintf(format, a...)}
}

func doctorSkip(format string, a ...any) checkResult {
	return checkResult{statusSkip, fmt.Sprintf(format, a...)}
}

// joinChecks is the worst status of parts, their details joined by "; ".
func joinChecks(parts ...checkResult) checkResult {
	var out checkResult
	var details []string
	for _, p := range parts {
		if doctorStatusRank(p.status) > doctorStatusRank(out.status) || out.status == "" {
			out.status = p.status
		}
		if p.detail != "" {
			details = append(details, p.detail)
		}
	}
	out.detail = strings.Join(details, "; ")
	return out
}

func doctorCmd(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := commandFlags("doctor", doctorUsage)
	asJSON := fs.Bool("json", false, "print JSON {\"ok\", \"checks\": [{\"name\", \"status\", \"detail\", \"latency_ms\"}]} instead of a table")
	timeout := fs.Duration("timeout", 20*time.Second, "time each check may take")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	}
	if *timeout <= 0 {
		return usageError(fs, stderr, "--timeout must be positive, not %s", *timeout)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep := runDoctor(ctx, *cfgPath, os.Environ(), *timeout)
	var err error
	if *asJSON {
		err = printJSON(stdout, rep)
	} else {
		err = printDoctor(stdout, rep)
	}
	if err != nil {
		fmt.Fprintln(stderr, "nexy doctor:", err)
		return 1
	}
	if !rep.OK {
		return 1
	}
	return 0
}

// doctor is one run: the loaded configuration and what must never be printed.
type doctor struct {
	cfg     *config.Loaded
	secrets []string
}

// runDoctor loads the configuration, then runs the other checks at once,
// each within timeout, and returns the rows in a fixed order.
func runDoctor(ctx context.Context, cfgPath string, env []string, timeout time.Duration) doctorReport {
	start := time.Now()
	cfg, err := config.Load(cfgPath, env)
	if err != nil {
		row := checkRow{Name: "config", Status: statusFail, Detail: doctorDetail(err.Error(), doctorEnvSecrets(env)), LatencyMS: millis(time.Since(start))}
		return doctorReport{OK: false, Checks: []checkRow{row}}
	}
	d := &doctor{cfg: cfg, secrets: cfg.Secrets()}
	rows := []checkRow{d.row("config", time.Since(start), d.checkConfig())}
	checks := []struct {
		name string
		fn   func(context.Context) checkResult
	}{
		{"data dir", d.checkDataDir},
		{"database", d.checkDatabase},
		{"llm", d.checkLLM},
		{"tts", d.checkTTS},
		{"tls", d.checkTLS},
		{"public port", d.checkPublicPort},
		{"keepalive", d.checkKeepalive},
	}
	out := make([]checkRow, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { out[i] = d.run(ctx, timeout, c.name, c.fn) })
	}
	wg.Wait()
	rows = append(rows, out...)
	rep := doctorReport{OK: true, Checks: rows}
	for _, r := range rows {
		if r.Status == statusFail {
			rep.OK = false
		}
	}
	return rep
}

// run runs one check within timeout. A check that ignores its context is
// abandoned (the process ends soon anyway) and reported as timed out.
func (d *doctor) run(ctx context.Context, timeout time.Duration, name string, fn func(context.Context) checkResult) checkRow {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	done := make(chan checkResult, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- doctorFail("the check panicked: %v", p)
			}
		}()
		done <- fn(cctx)
	}()
	var res checkResult
	select {
	case res = <-done:
	case <-cctx.Done():
		t := time.NewTimer(doctorGrace)
		defer t.Stop()
		select {
		case res = <-done:
		case <-t.C:
			if ctx.Err() != nil {
				res = doctorFail("interrupted")
			} else {
				res = doctorFail("no answer within %s (--timeout)", timeout)
			}
		}
	}
	return d.row(name, time.Since(start), res)
}

func (d *doctor) row(name string, took time.Duration, res checkResult) checkRow {
	return checkRow{Name: name, Status: res.status, Detail: doctorDetail(res.detail, d.secrets), LatencyMS: millis(took)}
}

// doctorURLQuery matches the query of a URL quoted in an error: tokens and
// signatures live there, and they only make a line unreadable.
var doctorURLQuery = regexp.MustCompile(`((?:https?|wss?)://[^\s"?]*)\?[^\s"]*`)

// doctorDetail is a detail fit to print: secrets masked, URL queries
// dropped, on one line.
func doctorDetail(s string, secrets []string) string {
	return oneLineText(doctorURLQuery.ReplaceAllString(maskSecrets(s, secrets), "$1?…"))
}

// printDoctor prints the table and the verdict line.
func printDoctor(w io.Writer, rep doctorReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tLATENCY\tDETAIL")
	failed, warned := 0, 0
	for _, r := range rep.Checks {
		lat := "-"
		if r.Status != statusSkip {
			lat = latencyMSText(r.LatencyMS)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Status, lat, r.Detail)
		switch r.Status {
		case statusFail:
			failed++
		case statusWarn:
			warned++
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var err error
	switch {
	case failed > 0:
		_, err = fmt.Fprintf(w, "%d %s failed\n", failed, pluralWord(failed, "check", "checks"))
	case warned > 0:
		_, err = fmt.Fprintf(w, "all checks passed (%d %s)\n", warned, pluralWord(warned, "warning", "warnings"))
	default:
		_, err = fmt.Fprintln(w, "all checks passed")
	}
	return err
}

// ---- config ----

func (d *doctor) checkConfig() checkResult {
	src := "built-in defaults (no nexy.toml)"
	if d.cfg.Path != "" {
		src = d.cfg.Path
		if abs, err := filepath.Abs(src); err == nil {
			src = abs
		}
	}
	res := doctorOK("%s, profile %s, tls.mode %s", src, d.cfg.Server.Profile, d.cfg.TLS.Mode)
	if n := d.cfg.UnknownEnv; len(n) > 0 {
		return joinChecks(res, doctorWarn("unknown environment %s ignored (typo?): %s", pluralWord(len(n), "setting", "settings"), strings.Join(n, ", ")))
	}
	return res
}

// ---- data dir ----

func (d *doctor) checkDataDir(ctx context.Context) checkResult {
	dir := d.cfg.Server.DataDir
	shown := dir
	if abs, err := filepath.Abs(dir); err == nil {
		shown = abs
	}
	var notes []checkResult
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return doctorFail("server.data_dir %s is not a directory", shown)
	case errors.Is(err, fs.ErrNotExist):
		// Prove it can be created, as serve would, then leave no trace.
		created := doctorMissingDirs(dir)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return doctorFail("server.data_dir %s does not exist and cannot be created: %v", shown, err)
		}
		defer func() {
			for _, c := range created {
				_ = os.Remove(c) // deepest first; fails harmlessly if something appeared in it
			}
		}()
		notes = append(notes, doctorOK("does not exist yet but can be created (nexy serve creates it)"))
	case err != nil:
		return doctorFail("server.data_dir %s: %v", shown, err)
	}
	f, err := os.CreateTemp(dir, ".nexy-doctor-*")
	if err != nil {
		return doctorFail("server.data_dir %s is not writable: %v (it must belong to the user nexy serve runs as)", shown, err)
	}
	name := f.Name()
	werr := errors.Join(f.Close(), os.Remove(name))
	if werr != nil {
		return doctorFail("server.data_dir %s: writing a test file: %v", shown, werr)
	}
	var res checkResult
	free, err := diskFree(dir)
	switch {
	case errors.Is(err, errDiskFreeUnknown):
		res = doctorOK("%s writable, %v", shown, err)
	case err != nil:
		res = doctorWarn("%s writable, but the free space is unknown: %v", shown, err)
	case free < doctorDiskFail:
		res = doctorFail("%s: only %s free (at least %s needed; the history and backups live here)", shown, humanBytes(free), humanBytes(doctorDiskFail))
	case free < doctorDiskWarn:
		res = doctorWarn("%s writable, only %s free (below %s)", shown, humanBytes(free), humanBytes(doctorDiskWarn))
	default:
		res = doctorOK("%s writable, %s free", shown, humanBytes(free))
	}
	return joinChecks(append(notes, res)...)
}

// doctorMissingDirs lists dir and its missing parents, deepest first.
func doctorMissingDirs(dir string) []string {
	var out []string
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			return out
		}
		out = append(out, p)
		if filepath.Dir(p) == p {
			return out
		}
	}
}

// ---- database ----

func (d *doctor) checkDatabase(ctx context.Context) checkResult {
	path := livePath(d.cfg)
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return doctorWarn("no database yet (created on first serve): %s", path)
	} else if err != nil {
		return doctorFail("%s: %v", path, err)
	}
	// Opened as nexy usage and nexy backup open it: beside a running server
	// (WAL, busy timeout), without the data directory's lock.
	db, err := store.Open(path, store.Options{})
	if err != nil {
		return doctorFail("%v", err)
	}
	defer db.Close()
	verdict, err := db.IntegrityCheck(ctx)
	if err != nil {
		return doctorFail("%v", err)
	}
	if verdict != "ok" {
		return doctorFail("%s: integrity_check: %s (restore a checked backup: nexy restore)", path, clipText(verdict, 300))
	}
	version, err := db.SchemaVersion(ctx)
	if err != nil {
		return doctorFail("%v", err)
	}
	st, err := db.Status(ctx, d.cfg.BackupDirectory())
	if err != nil {
		return doctorFail("%v", err)
	}
	has, err := db.HasHistory(ctx)
	if err != nil {
		return doctorFail("%v", err)
	}
	now := time.Now()
	parts := []checkResult{doctorOK("integrity ok, schema version %d, %s", version, humanBytes(st.SizeBytes+st.WALBytes))}
	// As serve: a fresh install has nothing to back up yet, so only a
	// database with history warns about missing backups and drills.
	switch b := st.LastBackup; {
	case b == nil && !has:
		parts = append(parts, doctorOK("no history yet, so no backup needed"))
	case b == nil:
		parts = append(parts, doctorWarn("no backup in %s: run nexy backup", d.cfg.BackupDirectory()))
	case !b.HasMetadata:
		parts = append(parts, doctorWarn("last backup %s ago (%s) has no metadata file: a drill will refuse it; run nexy backup", agoText(now, b.CreatedAt), b.File))
	default:
		parts = append(parts, doctorOK("last backup %s ago (%s)", agoText(now, b.CreatedAt), b.File))
	}
	switch dr := st.LastDrill; {
	case dr == nil: // st.Warning says so when it matters
	case dr.OK:
		parts = append(parts, doctorOK("last restore drill %s ago ok", agoText(now, dr.RanAt)))
	default:
		parts = append(parts, doctorWarn("last restore drill %s ago FAILED (nexy drill says why)", agoText(now, dr.RanAt)))
	}
	if st.Warning != "" && has {
		parts = append(parts, doctorWarn("%s", st.Warning))
	}
	return joinChecks(parts...)
}

// ---- llm ----

// checkLLM asks every configured model (the main one and each
// [[llm.fallbacks]] entry, built on its own rather than as the server's
// chain, so a fallback cannot hide a broken main model) at once.
func (d *doctor) checkLLM(ctx context.Context) checkResult {
	entries, missing, err := providers.Models(&d.cfg.Config)
	if err != nil {
		return doctorFail("%v", err)
	}
	if missing != "" {
		return doctorFail("%s", missing)
	}
	parts := make([]checkResult, len(entries))
	var wg sync.WaitGroup
	for i, e := range entries {
		what := e.Provider.Name() + " " + e.Model
		if len(entries) > 1 {
			what = e.Label + " (" + what + ")"
		}
		label := e.Label
		if label == "" {
			label = "llm"
		}
		wg.Go(func() { parts[i] = askModel(ctx, e.Provider, what, label) })
	}
	wg.Wait()
	return joinChecks(parts...)
}

// askModel sends the one-word prompt and reads the answer to its end;
// label is the model's config section, for the hint of a failure.
func askModel(ctx context.Context, p llm.Provider, what, label string) checkResult {
	start := time.Now()
	stream, err := p.Stream(ctx, llm.Request{System: doctorLLMSystem, User: doctorLLMUser})
	if err != nil {
		return llmFailure(ctx, what, label, err)
	}
	defer stream.Close()
	var answer strings.Builder
	var first time.Duration
	for {
		delta, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return llmFailure(ctx, what, label, err)
		}
		if first == 0 {
			first = time.Since(start)
		}
		answer.WriteString(delta)
	}
	total := time.Since(start)
	text := strings.TrimSpace(answer.String())
	if text == "" {
		return doctorWarn("%s: the model answered nothing (total %s)", what, latencyText(total))
	}
	return doctorOK("%s: first token %s, total %s, answer %q", what, latencyText(first), latencyText(total), clipText(text, 40))
}

// llmFailure names the provider's failure kind (classified by type, never
// by the text) and its message, with what to do about it.
func llmFailure(ctx context.Context, what, label string, err error) checkResult {
	kind := llm.KindOf(err)
	msg := err.Error()
	var e *llm.Error
	if errors.As(err, &e) {
		var parts []string
		if e.Status != 0 {
			parts = append(parts, fmt.Sprintf("HTTP %d", e.Status))
		}
		if e.Message != "" {
			parts = append(parts, e.Message)
		}
		if e.Err != nil {
			parts = append(parts, e.Err.Error())
		}
		msg = strings.Join(parts, ": ")
	}
	var hint string
	switch {
	case ctx.Err() != nil:
		hint = "no answer within --timeout"
	case kind == llm.KindAuth:
		hint = fmt.Sprintf("check %s.api_key or %s.api_key_file", label, label)
	case kind == llm.KindRateLimited:
		hint = "the provider's rate limit or quota"
	case kind == llm.KindBadRequest:
		hint = fmt.Sprintf("check %s.model and %s.base_url", label, label)
	case kind == llm.KindTimeout:
		hint = fmt.Sprintf("%s.timeout expired", label)
	default:
		hint = fmt.Sprintf("is %s.base_url reachable from here?", label)
	}
	return doctorFail("%s: %s: %s (%s)", what, kind, msg, hint)
}

// ---- tts ----

// checkTTS speaks "OK" with [tts] and, when configured, [tts.fallback].
func (d *doctor) checkTTS(ctx context.Context) checkResult {
	main, err := providers.TTS(&d.cfg.Config)
	if err != nil {
		return doctorFail("%v", err)
	}
	fallback, err := providers.TTSFallback(&d.cfg.Config)
	if err != nil {
		return joinChecks(speakOK(ctx, main, ""), doctorFail("%v", err))
	}
	if fallback == nil {
		return speakOK(ctx, main, "")
	}
	parts := make([]checkResult, 2)
	var wg sync.WaitGroup
	wg.Go(func() { parts[0] = speakOK(ctx, main, "tts") })
	wg.Go(func() { parts[1] = speakOK(ctx, fallback, "tts.fallback") })
	wg.Wait()
	return joinChecks(parts...)
}

// speakOK synthesizes "OK" and reads all of it; label names the config
// section when there are two.
func speakOK(ctx context.Context, s tts.Synthesizer, label string) checkResult {
	what := s.Name()
	if label != "" {
		what = label + " (" + what + ")"
	}
	start := time.Now()
	rc, err := s.Synthesize(ctx, tts.Request{Text: "OK"})
	if err != nil {
		return ttsFailure(ctx, label, err)
	}
	defer rc.Close()
	var first time.Duration
	var n int64
	buf := make([]byte, 32<<10)
	for {
		k, err := rc.Read(buf)
		if k > 0 && n == 0 {
			first = time.Since(start)
		}
		n += int64(k)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return ttsFailure(ctx, label, err)
		}
	}
	total := time.Since(start)
	if n == 0 {
		return doctorFail("%s: no audio", what)
	}
	// 48 kHz mono 16-bit: 96000 bytes a second.
	return doctorOK("%s: first audio %s, total %s, %.2f s of audio", what, latencyText(first), latencyText(total), float64(n)/96000)
}

// ttsFailure names the speech failure's kind (by type, as for the llm) and
// the provider's message, which names the provider ("tts command: …").
func ttsFailure(ctx context.Context, label string, err error) checkResult {
	note := ""
	if ctx.Err() != nil {
		note = " (no audio within --timeout)"
	}
	if label != "" {
		label += ": "
	}
	return doctorFail("%s%s: %v%s", label, tts.KindOf(err), err, note)
}

// ---- tls ----

func (d *doctor) checkTLS(ctx context.Context) checkResult {
	c := &d.cfg.Config
	if c.Listen.Address == "" {
		return doctorSkip("listen.address is not set: no TLS port")
	}
	switch c.TLS.Mode {
	case "off":
		if !doctorLoopback(c.Listen.Address) {
			return doctorWarn("tls.mode = off on the public address %s: plaintext, only behind your own TLS proxy", c.Listen.Address)
		}
		return doctorSkip("tls.mode = off (listen.address %s is loopback)", c.Listen.Address)
	case "files":
		return d.checkCertFiles(time.Now())
	case "self-signed":
		return d.checkSelfSigned(time.Now())
	case "acme":
		return d.checkACME(time.Now())
	}
	return doctorFail("tls.mode %q is not one of acme, files, self-signed, off", c.TLS.Mode)
}

func (d *doctor) checkCertFiles(now time.Time) checkResult {
	t := d.cfg.TLS
	leaf, err := readCertLeaf(t.CertFile)
	if err != nil {
		return doctorFail("tls.cert_file %s: %v", t.CertFile, err)
	}
	if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
		return doctorFail("tls.key_file %s does not go with tls.cert_file %s: %v", t.KeyFile, t.CertFile, err)
	}
	res := certExpiry(leaf, now, "tls.cert_file "+t.CertFile)
	if missing := certUncovered(leaf, d.cfg.TLSDomains()); len(missing) > 0 {
		res = joinChecks(res, doctorWarn("not valid for tls.domains %s", strings.Join(missing, ", ")))
	}
	return res
}

// doctorSelfSignedPath is where ingress keeps the self-signed certificate.
func doctorSelfSignedPath(c *config.Config) string {
	return filepath.Join(c.Server.DataDir, "tls", "self-signed.crt")
}

func (d *doctor) checkSelfSigned(now time.Time) checkResult {
	path := doctorSelfSignedPath(&d.cfg.Config)
	leaf, err := readCertLeaf(path)
	if errors.Is(err, fs.ErrNotExist) {
		return doctorWarn("no self-signed certificate yet at %s (nexy serve creates it on first start)", path)
	}
	if err != nil {
		return doctorFail("%s: %v (nexy serve replaces an unusable one at its next start; clients must then pin the new fingerprint)", path, err)
	}
	res := certExpiry(leaf, now, path)
	if res.status == statusFail {
		res.detail += " (restart nexy serve to generate a new one; clients must then pin the new fingerprint)"
	}
	return joinChecks(res, doctorOK("fingerprint %s", ingress.Fingerprint(leaf.Raw)))
}

func (d *doctor) checkACME(now time.Time) checkResult {
	t := d.cfg.TLS
	ca := t.CAURL
	if ca == "" {
		ca = certmagic.LetsEncryptProductionCA
	}
	// certmagic's file storage, as ingress configures it.
	storage := &certmagic.FileStorage{Path: filepath.Join(d.cfg.Server.DataDir, "tls")}
	issuer := (&certmagic.ACMEIssuer{CA: ca}).IssuerKey()
	var parts []checkResult
	for _, domain := range d.cfg.TLSDomains() {
		path := storage.Filename(certmagic.StorageKeys.SiteCert(issuer, domain))
		leaf, err := readCertLeaf(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			parts = append(parts, doctorWarn("%s: not issued yet (nexy serve obtains it from %s)", domain, ca))
		case err != nil:
			parts = append(parts, doctorFail("%s: %s: %v", domain, path, err))
		default:
			parts = append(parts, certExpiry(leaf, now, domain))
		}
	}
	if len(parts) == 0 {
		return doctorFail("tls.domains is empty")
	}
	return joinChecks(parts...)
}

// readCertLeaf parses the first certificate of a PEM file.
func readCertLeaf(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no PEM certificate in it")
		}
		if block.Type == "CERTIFICATE" {
			leaf, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("unparsable certificate: %w", err)
			}
			return leaf, nil
		}
	}
}

// certExpiry judges a certificate's NotAfter: expired fails, close warns.
func certExpiry(leaf *x509.Certificate, now time.Time, what string) checkResult {
	when := leaf.NotAfter.UTC().Format("2006-01-02 15:04 UTC")
	left := leaf.NotAfter.Sub(now)
	switch {
	case left <= 0:
		return doctorFail("%s expired on %s", what, when)
	case left < doctorCertWarn:
		return doctorWarn("%s expires on %s, in %s (renew it)", what, when, spanText(left))
	}
	return doctorOK("%s valid until %s (%s left)", what, when, spanText(left))
}

// certUncovered is the names leaf is not valid for.
func certUncovered(leaf *x509.Certificate, names []string) []string {
	var out []string
	for _, n := range names {
		if leaf.VerifyHostname(n) != nil {
			out = append(out, n)
		}
	}
	return out
}

// ---- public port ----

const doctorDialHint = "is nexy serve running? is the port open in the firewall?"

func (d *doctor) checkPublicPort(ctx context.Context) checkResult {
	c := &d.cfg.Config
	if c.Listen.Address == "" {
		return d.checkPlainPorts(ctx)
	}
	_, port, err := net.SplitHostPort(c.Listen.Address)
	if err != nil {
		return doctorFail("listen.address %q: %v", c.Listen.Address, err)
	}
	// Dial the port where a client would: the certificate's name for acme
	// and files (what the app resolves), else the address itself.
	target, serverName, hint := doctorLocalTarget(c.Listen.Address), "", doctorDialHint
	if domains := c.TLSDomains(); (c.TLS.Mode == "acme" || c.TLS.Mode == "files") && len(domains) > 0 {
		target, serverName = net.JoinHostPort(domains[0], port), domains[0]
		hint += fmt.Sprintf(" does %s resolve to this server?", domains[0])
	}
	if c.TLS.Mode == "off" {
		res := doctorHealth(ctx, "http://"+target+"/health", nil)
		if res.status == statusFail && res.dialErr {
			return doctorFail("listen.address %s: %s (%s)", target, res.detail, hint)
		}
		return checkResult{res.status, fmt.Sprintf("listen.address %s (plaintext, tls.mode off): %s", target, res.detail)}
	}
	conf, err := d.clientTLS(serverName, target)
	if err != nil {
		return doctorFail("%v", err)
	}
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", target)
	if err != nil {
		return doctorFail("%v (%s)", err, hint)
	}
	tc := tls.Client(conn, conf)
	err = tc.HandshakeContext(ctx)
	if err != nil {
		tc.Close()
		return doctorFail("%s: TLS handshake: %v", target, err)
	}
	cs := tc.ConnectionState()
	tc.Close()
	leaf := cs.PeerCertificates[0]
	proto := cs.NegotiatedProtocol
	if proto == "" {
		proto = "no ALPN"
	}
	parts := []checkResult{doctorOK("%s: %s %s", target, tls.VersionName(cs.Version), proto)}
	if c.TLS.Mode == "self-signed" {
		fp := ingress.Fingerprint(leaf.Raw)
		parts = append(parts, doctorOK("serves fingerprint %s", fp))
		if stored, err := readCertLeaf(doctorSelfSignedPath(c)); err == nil && ingress.Fingerprint(stored.Raw) != fp {
			parts = append(parts, doctorWarn("not the certificate in %s: is this the server of this config, or was it regenerated since it started?", doctorSelfSignedPath(c)))
		}
	}
	h := doctorHealth(ctx, "https://"+target+"/health", conf)
	parts = append(parts, h.checkResult)
	return joinChecks(parts...)
}

// clientTLS verifies the server as a client would, except for a
// self-signed certificate, which the app pins by fingerprint: it is
// accepted and its fingerprint reported.
func (d *doctor) clientTLS(serverName, target string) (*tls.Config, error) {
	t := d.cfg.TLS
	if serverName == "" {
		serverName, _, _ = net.SplitHostPort(target)
	}
	conf := &tls.Config{ServerName: serverName, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
	if t.Mode == "self-signed" {
		conf.InsecureSkipVerify = true // pinned by fingerprint, reported instead
		return conf, nil
	}
	if t.CARoots != "" {
		b, err := os.ReadFile(t.CARoots)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_roots: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("tls.ca_roots: %s holds no PEM certificate", t.CARoots)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}

// checkPlainPorts checks listen.http_plain's /health and that
// listen.grpc_plain accepts connections, when there is no listen.address.
func (d *doctor) checkPlainPorts(ctx context.Context) checkResult {
	l := d.cfg.Listen
	var parts []checkResult
	if l.HTTPPlain != "" {
		target := doctorLocalTarget(l.HTTPPlain)
		h := doctorHealth(ctx, "http://"+target+"/health", nil)
		if h.status == statusFail && h.dialErr {
			h.detail += " (" + doctorDialHint + ")"
		}
		parts = append(parts, checkResult{h.status, "listen.http_plain " + target + ": " + h.detail})
	}
	if l.GRPCPlain != "" {
		target := doctorLocalTarget(l.GRPCPlain)
		var dialer net.Dialer
		conn, err := dialer.DialContext(ctx, "tcp", target)
		if err != nil {
			parts = append(parts, doctorFail("listen.grpc_plain %s: %v (%s)", target, err, doctorDialHint))
		} else {
			conn.Close()
			parts = append(parts, doctorOK("listen.grpc_plain %s accepts connections", target))
		}
	}
	if len(parts) == 0 {
		return doctorSkip("listen.address, listen.http_plain and listen.grpc_plain are all empty")
	}
	return joinChecks(append([]checkResult{doctorOK("listen.address is not set (no public TLS port)")}, parts...)...)
}

// healthResult is GET /health's verdict; dialErr says nothing answered.
type healthResult struct {
	checkResult
	dialErr bool
}

// doctorHealth fetches target (a /health URL) and expects 200 and {"status":"OK"}.
func doctorHealth(ctx context.Context, target string, conf *tls.Config) healthResult {
	tr := &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: true, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return healthResult{checkResult: doctorFail("GET /health: %v", err)}
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is said below
		}
		var op *net.OpError
		return healthResult{checkResult: doctorFail("GET %s: %v", target, err), dialErr: errors.As(err, &op) && op.Op == "dial"}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return healthResult{checkResult: doctorFail("GET /health: %s, reading the body: %v", resp.Status, err)}
	}
	if resp.StatusCode != http.StatusOK {
		return healthResult{checkResult: doctorFail("GET /health: %s %s (is this nexy?)", resp.Status, clipText(string(body), 120))}
	}
	var h struct {
		Status        string `json:"status"`
		ServerVersion string `json:"server_version"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return healthResult{checkResult: doctorFail("GET /health: 200 but not JSON (%v): %s", err, clipText(string(body), 120))}
	}
	if h.Status != "OK" {
		return healthResult{checkResult: doctorFail("GET /health: status %q, want \"OK\"", h.Status)}
	}
	return healthResult{checkResult: doctorOK("GET /health %s 200 status OK, server_version %s", resp.Proto, h.ServerVersion)}
}

// doctorLocalTarget is where to reach a listen address from this machine: an
// unspecified host (":443", "0.0.0.0:443", "[::]:443") is 127.0.0.1.
func doctorLocalTarget(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// doctorLoopback reports whether addr listens on loopback only.
func doctorLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ---- keepalive ----

func (d *doctor) checkKeepalive(context.Context) checkResult {
	const key = "limits.keepalive_min_time"
	v := d.cfg.Limits.KeepaliveMinTime.Duration
	ping := fmt.Sprintf("%ds", int(doctorClientPing.Seconds()))
	if v > doctorClientPing {
		return doctorFail("%s (%s) = %s is longer than the app's %s ping interval: the server would answer its pings with GOAWAY (too_many_pings) and drop the call; set it to %s or less",
			key, config.EnvName(key), config.ShortDuration(v), ping, ping)
	}
	return doctorOK("%s = %s, within the app's %s ping interval; pings without an active stream are permitted", key, config.ShortDuration(v), ping)
}

// ---- helpers ----

// maskSecrets hides every secret in s.
func maskSecrets(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "****")
		}
	}
	return s
}

// doctorEnvSecrets are the API keys set in the environment (NEXY_*_API_KEY),
// masked even when the configuration does not load (config.Secrets needs
// a loaded one).
func doctorEnvSecrets(env []string) []string {
	var out []string
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, config.EnvPrefix) && strings.HasSuffix(k, "_API_KEY") && len(strings.TrimSpace(v)) >= 4 {
			out = append(out, v, strings.TrimSpace(v))
		}
	}
	return out
}

// oneLineText puts a detail on one line (a program's stderr may have several).
func oneLineText(s string) string { return strings.Join(strings.Fields(s), " ") }

// clipText shortens s to n runes.
func clipText(s string, n int) string {
	s = oneLineText(s)
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

func pluralWord(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func millis(d time.Duration) int64 { return d.Milliseconds() }

func latencyMSText(ms int64) string { return latencyText(time.Duration(ms) * time.Millisecond) }

// latencyText prints a latency: "85ms", "1.2s".
func latencyText(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// agoText is how long ago t was, as spanText prints it.
func agoText(now, t time.Time) string { return spanText(now.Sub(t)) }

// spanText prints a span coarsely: "40s", "12m", "5h", "3d 4h".
func spanText(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	days := int(d.Hours()) / 24
	return fmt.Sprintf("%dd %dh", days, int(d.Hours())-days*24)
}
