package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/llm/llmtest"
	"github.com/nexy-server/nexy/store"
)

// doctorRows are the rows every full run prints, in order.
var doctorRows = []string{"config", "data dir", "database", "llm", "tts", "tls", "public port", "keepalive"}

// doctorChild runs `nexy doctor args...` in a child process with env on
// top of the test's environment, and returns its output and exit code.
func doctorChild(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], append([]string{"doctor"}, args...)...)
	cmd.Dir = t.TempDir() // no stray ./nexy.toml
	cmd.Env = append(append(os.Environ(), "NEXY_TEST_RUN_MAIN=1"), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("nexy doctor %q did not finish in time\nstdout:\n%s\nstderr:\n%s", args, out.String(), errOut.String())
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// doctorJSON runs doctor --json and decodes its report.
func doctorJSON(t *testing.T, env []string, args ...string) (doctorReport, int) {
	t.Helper()
	stdout, stderr, code := doctorChild(t, env, append([]string{"--json"}, args...)...)
	var rep doctorReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("--json output does not parse: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	return rep, code
}

// doctorRowsByName indexes a report's rows, checking every expected row is there once.
func doctorRowsByName(t *testing.T, rep doctorReport, want []string) map[string]checkRow {
	t.Helper()
	rows := map[string]checkRow{}
	var names []string
	for _, r := range rep.Checks {
		rows[r.Name] = r
		names = append(names, r.Name)
	}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("rows %q, want %q", names, want)
	}
	return rows
}

// doctorFreeAddr is a loopback address nothing listens on (until someone binds it).
func doctorFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// doctorWAVCommand is a `command` TTS that prints a recorded WAV, whatever the text.
func doctorWAVCommand(t *testing.T) string {
	t.Helper()
	wav, err := filepath.Abs(filepath.Join("testdata", "tts", "openai_hello_24k.wav"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(wav); err != nil {
		t.Fatal(err)
	}
	return "cat '" + wav + "'"
}

// TestDoctorAllGood: against a running `nexy serve` (self-signed TLS on a
// fixed loopback port, a fake OpenAI-compatible LLM, a command TTS), every
// check passes, the table names every check, and --json says ok.
func TestDoctorAllGood(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{"O", "K"}})
	addr := doctorFreeAddr(t)
	env := []string{
		"NEXY_SERVER_DATA_DIR=" + t.TempDir(),
		"NEXY_LISTEN_ADDRESS=" + addr, "NEXY_TLS_MODE=self-signed",
		"NEXY_LISTEN_GRPC_PLAIN=", "NEXY_LISTEN_HTTP_PLAIN=",
		"NEXY_LLM_PROVIDER=openai", "NEXY_LLM_BASE_URL=" + fake.URL, "NEXY_LLM_MODEL=llama3.2",
		"NEXY_TTS_PROVIDER=command", "NEXY_TTS_COMMAND=" + doctorWAVCommand(t),
	}
	c := startServe(t, env...)
	if got := c.attr(t, "address"); got != addr {
		t.Fatalf("serve listens on %s, want %s", got, addr)
	}
	fp := c.attr(t, "fingerprint_sha256")

	stdout, stderr, code := doctorChild(t, env)
	if code != 0 {
		t.Fatalf("doctor exited %d\nstdout:\n%s\nstderr:\n%s\nserve log:\n%s", code, stdout, stderr, c.log.String())
	}
	t.Logf("nexy doctor against a running server:\n%s", stdout)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != len(doctorRows)+2 || !strings.HasPrefix(lines[0], "CHECK") || !strings.HasPrefix(lines[len(lines)-1], "all checks passed") {
		t.Fatalf("table:\n%s", stdout)
	}
	for i, name := range doctorRows {
		if !strings.HasPrefix(lines[i+1], name+"  ") {
			t.Errorf("row %d is %q, want the %s check", i+1, lines[i+1], name)
		}
	}

	rep, code := doctorJSON(t, env)
	if code != 0 || !rep.OK {
		t.Fatalf("--json: exit %d, ok %v: %+v", code, rep.OK, rep.Checks)
	}
	rows := doctorRowsByName(t, rep, doctorRows)
	for _, name := range []string{"database", "llm", "tts", "tls", "public port", "keepalive"} {
		if rows[name].Status != statusOK {
			t.Errorf("%s: %s %q, want ok", name, rows[name].Status, rows[name].Detail)
		}
	}
	for _, name := range []string{"config", "data dir"} { // an unknown NEXY_* in CI, or a full disk, warns
		if s := rows[name].Status; s != statusOK && s != statusWarn {
			t.Errorf("%s: %s %q", name, s, rows[name].Detail)
		}
	}
	for name, want := range map[string][]string{
		"database":    {"integrity ok", "schema version"},
		"llm":         {"openai llama3.2", "first token", `answer "OK"`},
		"tts":         {"command", "first audio", "s of audio"},
		"tls":         {"valid until", "fingerprint " + fp},
		"public port": {addr, "h2", "fingerprint " + fp, "GET /health", "200 status OK"},
		"keepalive":   {"limits.keepalive_min_time = 20s"},
	} {
		for _, w := range want {
			if !strings.Contains(rows[name].Detail, w) {
				t.Errorf("%s detail %q lacks %q", name, rows[name].Detail, w)
			}
		}
	}
	if r := fake.Requests(); len(r) != 2 || r[0].System != doctorLLMSystem || r[0].User != doctorLLMUser {
		t.Errorf("the LLM saw %d requests: %+v", len(r), r)
	}
}

// TestDoctorFailures: a rejected LLM key, a failing TTS program and nothing
// on listen.address each fail their row with a useful reason, and the
// API key never shows.
func TestDoctorFailures(t *testing.T) {
	key := "sk-doctor-" + strings.Repeat("k", 12) // built at run time: not a real-looking credential
	fake := llmtest.NewOpenAI(t, llmtest.Script{Status: 401, Raw: llmtest.OpenAIError(401, "Incorrect API key provided: "+key)})
	addr := doctorFreeAddr(t)
	env := []string{
		"NEXY_SERVER_DATA_DIR=" + t.TempDir(),
		"NEXY_LISTEN_ADDRESS=" + addr, "NEXY_TLS_MODE=self-signed",
		"NEXY_LISTEN_GRPC_PLAIN=", "NEXY_LISTEN_HTTP_PLAIN=",
		"NEXY_LLM_PROVIDER=openai", "NEXY_LLM_BASE_URL=" + fake.URL, "NEXY_LLM_MODEL=llama3.2", "NEXY_LLM_API_KEY=" + key,
		// The program's stderr says the key: doctor must still not print it.
		"NEXY_TTS_PROVIDER=command", "NEXY_TTS_COMMAND=sh -c 'echo synthesizer exploded, key $NEXY_LLM_API_KEY >&2; exit 1'",
	}
	rep, code := doctorJSON(t, env)
	if code != 1 || rep.OK {
		t.Fatalf("exit %d, ok %v, want 1 and false: %+v", code, rep.OK, rep.Checks)
	}
	rows := doctorRowsByName(t, rep, doctorRows)
	for name, want := range map[string]struct {
		status string
		detail []string
	}{
		"llm":         {statusFail, []string{"auth", "HTTP 401", "Incorrect API key provided", "llm.api_key"}},
		"tts":         {statusFail, []string{"exit status 1", "synthesizer exploded, key ****"}},
		"public port": {statusFail, []string{addr, "is nexy serve running? is the port open in the firewall?"}},
		"database":    {statusWarn, []string{"no database yet (created on first serve)"}},
		"tls":         {statusWarn, []string{"no self-signed certificate yet"}},
		"keepalive":   {statusOK, []string{"20s"}},
	} {
		r := rows[name]
		if r.Status != want.status {
			t.Errorf("%s: %s %q, want %s", name, r.Status, r.Detail, want.status)
		}
		for _, w := range want.detail {
			if !strings.Contains(r.Detail, w) {
				t.Errorf("%s detail %q lacks %q", name, r.Detail, w)
			}
		}
	}
	stdout, _, code := doctorChild(t, env)
	t.Logf("nexy doctor with failing providers and no server:\n%s", stdout)
	if code != 1 || !strings.Contains(stdout, "3 checks failed") {
		t.Errorf("table: exit %d\n%s", code, stdout)
	}
	if all := stdout + fmt.Sprint(rep); strings.Contains(all, key) {
		t.Errorf("the API key was printed:\n%s", all)
	}
}

// TestDoctorBadConfig: a configuration that does not load is the only row,
// naming the key, and the exit is 1.
func TestDoctorBadConfig(t *testing.T) {
	stdout, _, code := doctorChild(t, []string{"NEXY_TLS_MODE=bogus"})
	if code != 1 || !strings.Contains(stdout, "tls.mode (NEXY_TLS_MODE)") || !strings.Contains(stdout, "1 check failed") {
		t.Errorf("exit %d\n%s", code, stdout)
	}
	cfgFile := filepath.Join(t.TempDir(), "nexy.toml")
	if err := os.WriteFile(cfgFile, []byte("[limits]\nidle_timeout = \"soon\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, code := doctorJSON(t, nil, "-config", cfgFile)
	rows := doctorRowsByName(t, rep, []string{"config"})
	if code != 1 || rep.OK || rows["config"].Status != statusFail || !strings.Contains(rows["config"].Detail, "limits.idle_timeout") {
		t.Errorf("exit %d: %+v", code, rep)
	}
	// A keepalive the app's pings would break is refused by name, by the
	// config check or, if config ever allows it, by the keepalive check.
	stdout, _, code = doctorChild(t, []string{"NEXY_LIMITS_KEEPALIVE_MIN_TIME=5m"})
	if code != 1 || !strings.Contains(stdout, "limits.keepalive_min_time") {
		t.Errorf("keepalive 5m: exit %d\n%s", code, stdout)
	}
	// Usage errors exit 2.
	if _, stderr, code := doctorChild(t, nil, "extra"); code != 2 || !strings.Contains(stderr, `unexpected argument "extra"`) {
		t.Errorf("extra argument: exit %d, %q", code, stderr)
	}
}

// TestDoctorTimeout: a provider that never answers is cut off at --timeout.
func TestDoctorTimeout(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{HangBeforeHeaders: true})
	env := []string{"NEXY_SERVER_DATA_DIR=" + t.TempDir(), "NEXY_LISTEN_HTTP_PLAIN=", "NEXY_LISTEN_GRPC_PLAIN=" + doctorFreeAddr(t),
		"NEXY_LLM_PROVIDER=openai", "NEXY_LLM_BASE_URL=" + fake.URL, "NEXY_LLM_MODEL=llama3.2",
		"NEXY_TTS_PROVIDER=command", "NEXY_TTS_COMMAND=" + doctorWAVCommand(t)}
	start := time.Now()
	rep, code := doctorJSON(t, env, "--timeout", "1s")
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("doctor took %s with --timeout 1s", took)
	}
	rows := doctorRowsByName(t, rep, doctorRows)
	if code != 1 || rows["llm"].Status != statusFail || !strings.Contains(rows["llm"].Detail, "--timeout") {
		t.Errorf("exit %d, llm %+v", code, rows["llm"])
	}
	if r := rows["public port"]; r.Status != statusFail || !strings.Contains(r.Detail, "listen.grpc_plain") {
		t.Errorf("public port without listen.address: %+v", r)
	}
	if r := rows["tls"]; r.Status != statusSkip {
		t.Errorf("tls without listen.address: %+v", r)
	}
}

// doctorWithConfig is a doctor over a default dev config edited by edit.
func doctorWithConfig(t *testing.T, edit func(c *config.Config)) *doctor {
	t.Helper()
	cfg := config.Default("dev")
	cfg.Server.DataDir = t.TempDir()
	edit(&cfg)
	return &doctor{cfg: &config.Loaded{Config: cfg}, secrets: cfg.Secrets()}
}

// TestDoctorKeepalive: the app pings every 120 s, so a longer minimum fails.
func TestDoctorKeepalive(t *testing.T) {
	for v, want := range map[time.Duration]string{20 * time.Second: statusOK, 120 * time.Second: statusOK, 121 * time.Second: statusFail, 5 * time.Minute: statusFail} {
		d := doctorWithConfig(t, func(c *config.Config) { c.Limits.KeepaliveMinTime.Duration = v })
		res := d.checkKeepalive(context.Background())
		if res.status != want || !strings.Contains(res.detail, "limits.keepalive_min_time") {
			t.Errorf("%s: %+v, want %s", v, res, want)
		}
		if want == statusFail && !strings.Contains(res.detail, "NEXY_LIMITS_KEEPALIVE_MIN_TIME") {
			t.Errorf("%s: %q does not name the env variable", v, res.detail)
		}
	}
}

// doctorCert writes a self-signed certificate for names valid until
// notAfter, and its key, as PEM files.
func doctorCert(t *testing.T, dir, name string, notAfter time.Time, names ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: notAfter.Add(-90 * 24 * time.Hour), NotAfter: notAfter, DNSNames: names,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := errors.Join(os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644),
		os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestDoctorTLSFiles: tls.mode files reports the expiry, warns near it,
// and fails an expired, unparsable or mismatched pair.
func TestDoctorTLSFiles(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	good, goodKey := doctorCert(t, dir, "good", now.Add(60*24*time.Hour), "nexy.example.com")
	soon, soonKey := doctorCert(t, dir, "soon", now.Add(5*24*time.Hour), "nexy.example.com")
	old, oldKey := doctorCert(t, dir, "old", now.Add(-time.Hour), "nexy.example.com")
	junk := filepath.Join(dir, "junk.crt")
	if err := os.WriteFile(junk, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, cert, key, domains, status, detail string
	}{
		{"valid", good, goodKey, "nexy.example.com", statusOK, "valid until"},
		{"expiring", soon, soonKey, "nexy.example.com", statusWarn, "expires on"},
		{"expired", old, oldKey, "nexy.example.com", statusFail, "expired on"},
		{"key mismatch", good, soonKey, "nexy.example.com", statusFail, "does not go with tls.cert_file"},
		{"unparsable", junk, goodKey, "nexy.example.com", statusFail, "unparsable"},
		{"missing", filepath.Join(dir, "none.crt"), goodKey, "", statusFail, "no such file"},
		{"other name", good, goodKey, "other.example.com", statusWarn, "not valid for tls.domains other.example.com"},
	}
	for _, c := range cases {
		d := doctorWithConfig(t, func(cfg *config.Config) {
			cfg.Listen.Address, cfg.TLS.Mode, cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.Domains = "127.0.0.1:8443", "files", c.cert, c.key, c.domains
		})
		res := d.checkTLS(context.Background())
		if res.status != c.status || !strings.Contains(res.detail, c.detail) {
			t.Errorf("%s: %+v, want %s with %q", c.name, res, c.status, c.detail)
		}
	}
}

// TestDoctorTLSACME: tls.mode acme finds each domain's certificate where
// certmagic stores it under the data dir, and warns about one not issued.
func TestDoctorTLSACME(t *testing.T) {
	d := doctorWithConfig(t, func(cfg *config.Config) {
		cfg.Listen.Address, cfg.TLS.Mode, cfg.TLS.Domains = ":443", "acme", "nexy.example.com, second.example.com"
		cfg.TLS.CAURL = "https://acme.test:14000/dir"
	})
	res := d.checkTLS(context.Background())
	if res.status != statusWarn || strings.Count(res.detail, "not issued yet") != 2 {
		t.Fatalf("nothing issued: %+v", res)
	}
	storage := certmagic.FileStorage{Path: filepath.Join(d.cfg.Server.DataDir, "tls")}
	issuer := (&certmagic.ACMEIssuer{CA: d.cfg.TLS.CAURL}).IssuerKey()
	for _, domain := range []string{"nexy.example.com", "second.example.com"} {
		path := storage.Filename(certmagic.StorageKeys.SiteCert(issuer, domain))
		doctorCert(t, filepath.Dir(path), strings.TrimSuffix(filepath.Base(path), ".crt"), time.Now().Add(60*24*time.Hour), domain)
	}
	res = d.checkTLS(context.Background())
	if res.status != statusOK || strings.Count(res.detail, "valid until") != 2 || !strings.Contains(res.detail, "second.example.com") {
		t.Errorf("both issued: %+v", res)
	}
}

// TestDoctorLocalTarget: an unspecified listen host is dialled on loopback.
func TestDoctorLocalTarget(t *testing.T) {
	for in, want := range map[string]string{":443": "127.0.0.1:443", "0.0.0.0:8443": "127.0.0.1:8443", "[::]:443": "127.0.0.1:443",
		"192.0.2.7:443": "192.0.2.7:443", "nexy.lan:443": "nexy.lan:443"} {
		if got := doctorLocalTarget(in); got != want {
			t.Errorf("localTarget(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDoctorDatabase: a database with history and no backup warns; a
// backup and a recent successful drill make it ok; a drill older than 7
// days warns again.
func TestDoctorDatabase(t *testing.T) {
	ctx := context.Background()
	d := doctorWithConfig(t, func(*config.Config) {})
	if res := d.checkDatabase(ctx); res.status != statusWarn || !strings.Contains(res.detail, "no database yet (created on first serve)") {
		t.Fatalf("no file: %+v", res)
	}
	if _, err := os.Stat(livePath(d.cfg)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the check created the database: %v", err)
	}
	db, err := store.Open(livePath(d.cfg), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res := d.checkDatabase(ctx); res.status != statusOK || !strings.Contains(res.detail, "integrity ok, schema version") {
		t.Errorf("empty history: %+v", res)
	}
	populate(t, db)
	if res := d.checkDatabase(ctx); res.status != statusWarn || !strings.Contains(res.detail, "run nexy backup") || !strings.Contains(res.detail, "run nexy drill") {
		t.Errorf("history without backup: %+v", res)
	}
	backup, err := db.Backup(ctx, store.BackupOptions{Dir: d.cfg.BackupDirectory(), Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.RecordDrill(ctx, store.Drill{BackupFile: backup.Path, OK: true, RanAt: time.Now().Add(-8 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if res := d.checkDatabase(ctx); res.status != statusWarn || !strings.Contains(res.detail, "last backup") || !strings.Contains(res.detail, "more than 7 days") {
		t.Errorf("old drill: %+v", res)
	}
	if _, err := db.RunDrill(ctx, d.cfg.BackupDirectory()); err != nil {
		t.Fatal(err)
	}
	res := d.checkDatabase(ctx) // beside the open store, as beside a running server
	t.Logf("database row: %s", res.detail)
	if res.status != statusOK || !regexp.MustCompile(`last backup \d+s ago \(`+regexp.QuoteMeta(filepath.Base(backup.Path))+`\)`).MatchString(res.detail) ||
		!regexp.MustCompile(`last restore drill \d+s ago ok`).MatchString(res.detail) {
		t.Errorf("backed up and drilled: %+v", res)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDoctorFallbacks: each [[llm.fallbacks]] model and [tts.fallback] is
// checked on its own, so a broken one shows even when the main one works.
func TestDoctorFallbacks(t *testing.T) {
	good := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{"OK"}})
	refused := llmtest.NewOpenAI(t, llmtest.Script{Status: 401})
	d := doctorWithConfig(t, func(c *config.Config) {
		c.LLM.Provider, c.LLM.BaseURL, c.LLM.Model = "openai", good.URL, "main-model"
		c.LLM.Fallbacks = []config.LLMFallback{{Provider: "openai", BaseURL: refused.URL, Model: "spare-model"}}
		c.TTS.Provider, c.TTS.Command = "command", doctorWAVCommand(t)
		c.TTS.Fallback = config.Speaker{Provider: "command", Command: "sh -c 'echo no voice >&2; exit 3'"}
	})
	ctx := context.Background()
	res := d.checkLLM(ctx)
	for _, w := range []string{`llm (openai main-model): first token`, `answer "OK"`, "llm.fallbacks[0] (openai spare-model): auth: HTTP 401", "check llm.fallbacks[0].api_key"} {
		if res.status != statusFail || !strings.Contains(res.detail, w) {
			t.Errorf("llm: %+v lacks %q", res, w)
		}
	}
	res = d.checkTTS(ctx)
	for _, w := range []string{"tts (command): first audio", "tts.fallback: unavailable: tts command:", "exit status 3: no voice"} {
		if res.status != statusFail || !strings.Contains(res.detail, w) {
			t.Errorf("tts: %+v lacks %q", res, w)
		}
	}
}

// TestDoctorFilesModeByName: in tls.mode files the public port is dialled
// by the first tls.domains name, as a client resolves it, and verified
// against tls.ca_roots; without that root the handshake fails by name.
func TestDoctorFilesModeByName(t *testing.T) {
	certFile, keyFile := doctorCert(t, t.TempDir(), "pair", time.Now().Add(60*24*time.Hour), "localhost")
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{"OK"}})
	addr := doctorFreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	env := []string{
		"NEXY_SERVER_DATA_DIR=" + t.TempDir(),
		"NEXY_LISTEN_ADDRESS=" + addr, "NEXY_TLS_MODE=files", "NEXY_TLS_DOMAINS=localhost",
		"NEXY_TLS_CERT_FILE=" + certFile, "NEXY_TLS_KEY_FILE=" + keyFile,
		"NEXY_LISTEN_GRPC_PLAIN=", "NEXY_LISTEN_HTTP_PLAIN=",
		"NEXY_LLM_PROVIDER=openai", "NEXY_LLM_BASE_URL=" + fake.URL, "NEXY_LLM_MODEL=llama3.2",
		"NEXY_TTS_PROVIDER=command", "NEXY_TTS_COMMAND=" + doctorWAVCommand(t),
	}
	startServe(t, env...)
	rep, code := doctorJSON(t, append(env, "NEXY_TLS_CA_ROOTS="+certFile))
	rows := doctorRowsByName(t, rep, doctorRows)
	if code != 0 || rows["public port"].Status != statusOK || !strings.Contains(rows["public port"].Detail, "localhost:"+port+": TLS") ||
		rows["tls"].Status != statusOK || !strings.Contains(rows["tls"].Detail, "valid until") {
		t.Errorf("with tls.ca_roots: exit %d, tls %+v, public port %+v", code, rows["tls"], rows["public port"])
	}
	t.Logf("public port with tls.ca_roots: %s", rows["public port"].Detail)
	rep, code = doctorJSON(t, env)
	rows = doctorRowsByName(t, rep, doctorRows)
	t.Logf("public port without it: %s", rows["public port"].Detail)
	if code != 1 || rows["public port"].Status != statusFail || !strings.Contains(rows["public port"].Detail, "TLS handshake") {
		t.Errorf("without the root: exit %d, public port %+v", code, rows["public port"])
	}
}
