package tts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexy-server/nexy/internal/fault"
)

// needEspeak skips when espeak-ng is missing, unless CI demands it.
func needEspeak(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("espeak-ng"); err != nil {
		if os.Getenv("NEXY_REQUIRE_ESPEAK") == "1" {
			t.Fatal("espeak-ng is not on PATH but NEXY_REQUIRE_ESPEAK=1")
		}
		t.Skip("espeak-ng is not on PATH; install it (apt-get install espeak-ng) or set NEXY_REQUIRE_ESPEAK=1 to make this a failure")
	}
}

func needSh(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no POSIX sh on PATH")
	}
}

func fixturePath(name string) string {
	p, _ := filepath.Abs(filepath.Join("..", "testdata", "tts", name))
	return p
}

func TestCommandEspeakStdin(t *testing.T) {
	needEspeak(t)
	c, err := NewCommand(CommandConfig{Command: "espeak-ng --stdout -v {voice}", Voice: "en-us"})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := c.Synthesize(context.Background(), Request{Text: "Hello from Nexy. This is a test."})
	if err != nil {
		t.Fatal(err)
	}
	pcm := provReadAll(t, rc)
	// espeak-ng's default speed (175 wpm) takes about 2 s for this; be loose,
	// the point is real speech at 48 kHz, not espeak's timing.
	if d := len(pcm) / 96; d < 1000 || d > 5000 {
		t.Errorf("duration %d ms, want 1–5 s", d)
	}
	if rms := provRMS(pcm); rms < 300 {
		t.Errorf("PCM RMS %.0f: silent", rms)
	}
}

func TestCommandEspeakTextArgument(t *testing.T) {
	needEspeak(t)
	c, err := NewCommand(CommandConfig{Command: `espeak-ng --stdout -s 160 {text}`})
	if err != nil {
		t.Fatal(err)
	}
	// Leading "-": must be spoken, not parsed as an option.
	rc, err := c.Synthesize(context.Background(), Request{Text: "-5 degrees; rm -rf / && echo $HOME"})
	if err != nil {
		t.Fatal(err)
	}
	if pcm := provReadAll(t, rc); provRMS(pcm) < 300 {
		t.Error("silent output")
	}
}

func TestCommandEspeakFails(t *testing.T) {
	needEspeak(t)
	// espeak-ng falls back to its default voice for unknown voices (exit 0),
	// but fails on an unreadable text file.
	c, err := NewCommand(CommandConfig{Command: "espeak-ng --stdout -f /nonexistent/nexy-text"})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := c.Synthesize(context.Background(), Request{Text: "Hello"})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	if err == nil || !strings.Contains(err.Error(), "exit status") || !strings.Contains(err.Error(), "nexy-text") {
		t.Fatalf("err %v, want an exit status error quoting stderr", err)
	}
}

func TestCommandRaw(t *testing.T) {
	fixture := fixturePath("azure_hello_48k.pcm")
	c, err := NewCommand(CommandConfig{Command: "cat " + strconv.Quote(fixture), Format: "raw", SampleRate: 48000})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := c.Synthesize(context.Background(), Request{Text: "ignored by cat"})
	if err != nil {
		t.Fatal(err)
	}
	pcm := provReadAll(t, rc)
	if want := provFixture(t, "azure_hello_48k.pcm"); !bytes.Equal(pcm, want) {
		t.Errorf("48 kHz raw output changed: %d vs %d bytes", len(pcm), len(want))
	}
}

func TestCommandRawResampled(t *testing.T) {
	needSh(t)
	// The 24 kHz WAV's data chunk (after the 44-byte header) as raw output.
	c, err := NewCommand(CommandConfig{
		Command: "sh -c 'tail -c +45 \"$0\"' " + strconv.Quote(fixturePath("openai_hello_24k.wav")),
		Format:  "raw", SampleRate: 24000,
	})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := c.Synthesize(context.Background(), Request{Text: "x"})
	if err != nil {
		t.Fatal(err)
	}
	provCheckSpeech(t, provReadAll(t, rc), 1263*time.Millisecond)
}

func TestCommandFailsBeforeAudio(t *testing.T) {
	needSh(t)
	c, err := NewCommand(CommandConfig{Command: `sh -c 'echo "voice model not found: /x.onnx" >&2; exit 3'`})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := c.Synthesize(context.Background(), Request{Text: "Hello"})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "voice model not found") {
		t.Fatalf("err %v, want exit status 3 with stderr", err)
	}
	// A program that ran and failed may succeed next time: retryable.
	if k := KindOf(err); k != fault.Unavailable {
		t.Errorf("exit failure: kind %v, want unavailable", k)
	}
}

func TestCommandFailsAfterAudio(t *testing.T) {
	needSh(t)
	c, err := NewCommand(CommandConfig{
		Command: `sh -c 'cat "$0"; echo "synthesis crashed" >&2; exit 1' ` + strconv.Quote(fixturePath("azure_hello_48k.pcm")),
		Format:  "raw", SampleRate: 48000,
	})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := c.Synthesize(context.Background(), Request{Text: "Hello"})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	n, err := io.Copy(io.Discard, rc)
	if n == 0 || err == nil || !strings.Contains(err.Error(), "synthesis crashed") {
		t.Fatalf("after %d bytes: err %v, want the stderr in a Read error", n, err)
	}
}

func TestCommandStdinText(t *testing.T) {
	needSh(t)
	// The program echoes its stdin as "audio": raw bytes of the text line.
	c, err := NewCommand(CommandConfig{Command: "sh -c 'cat'", Format: "raw", SampleRate: 48000})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := c.Synthesize(context.Background(), Request{Text: "one\ntwo  three"})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(provReadAll(t, rc)); got != "one two three\n" {
		t.Errorf("stdin got %q, want one line", got)
	}
}

// startLongCommand runs a command that writes the fixture, records its pid
// and then sleeps (exec keeps the pid). It returns once all the audio has
// been read, so the process is asleep, with no child, when the test acts.
func startLongCommand(t *testing.T, ctx context.Context, timeout time.Duration) (io.ReadCloser, int) {
	t.Helper()
	needSh(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	c, err := NewCommand(CommandConfig{
		Command: `sh -c 'echo $$ > "$1"; cat "$0"; exec sleep 30' ` + strconv.Quote(fixturePath("azure_hello_48k.pcm")) + " " + strconv.Quote(pidFile),
		Format:  "raw", SampleRate: 48000, Timeout: timeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := c.Synthesize(ctx, Request{Text: "Hello"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, make([]byte, len(provFixture(t, "azure_hello_48k.pcm")))); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return rc, pid
}

func processGone(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return true
	}
	err = p.Signal(syscall.Signal(0))
	return errors.Is(err, syscall.ESRCH) || errors.Is(err, os.ErrProcessDone)
}

func TestCommandCancelKills(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	rc, pid := startLongCommand(t, ctx, 0)
	if processGone(pid) {
		t.Fatal("process gone before cancel")
	}
	cancel()
	_, err := io.Copy(io.Discard, rc)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel: %v, want context.Canceled", err)
	}
	rc.Close() // waits for the process to be reaped
	if !processGone(pid) {
		t.Errorf("process %d still exists after cancel and Close", pid)
	}
}

func TestCommandCloseKills(t *testing.T) {
	rc, pid := startLongCommand(t, context.Background(), 0)
	rc.Close()
	if !processGone(pid) {
		t.Errorf("process %d still exists after Close", pid)
	}
}

func TestCommandTimeout(t *testing.T) {
	rc, pid := startLongCommand(t, context.Background(), 500*time.Millisecond)
	defer rc.Close()
	_, err := io.Copy(io.Discard, rc)
	if err == nil || !strings.Contains(err.Error(), "timed out after 500ms") {
		t.Errorf("err %v, want a timeout", err)
	}
	if k := KindOf(err); k != fault.Timeout {
		t.Errorf("kind %v, want timeout", k)
	}
	if !processGone(pid) {
		t.Errorf("process %d survived the timeout", pid)
	}
}

func TestCommandConfigValidation(t *testing.T) {
	bad := map[string]CommandConfig{
		"Command is empty":        {Command: "  "},
		"Command: unterminated":   {Command: `espeak-ng "oops`},
		"Command: shell operator": {Command: "espeak-ng --stdout | sox"},
		"not found":               {Command: "no-such-tts-program-xyz"},
		"placeholder":             {Command: "{voice} --stdout"},
		"Format":                  {Command: "cat", Format: "mp3"},
		"SampleRate":              {Command: "cat", Format: "raw"},
		"Voice":                   {Command: "cat -v {voice}", Voice: "--evil"},
		"Timeout":                 {Command: "cat", Timeout: -1},
	}
	for want, cfg := range bad {
		if _, err := NewCommand(cfg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: err %v, want %q", cfg, err, want)
		}
	}
	c, err := NewCommand(CommandConfig{Command: "cat -- {voice}", Voice: "en-us"})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"../etc/passwd", "-x", "a b"} {
		if _, err := c.Synthesize(context.Background(), Request{Text: "hi", Voice: v}); err == nil {
			t.Errorf("request voice %q accepted", v)
		}
	}
	if _, err := c.Synthesize(context.Background(), Request{Text: " \n "}); err == nil {
		t.Error("empty text accepted")
	}
	if c.Name() != "command" || c.cfg.Format != "wav" || c.cfg.Timeout != 30*time.Second {
		t.Errorf("defaults %+v", c.cfg)
	}
}

// TestCommandCannotStartKind: a program that is missing or not executable is
// a tts.command the operator must fix, so it is BadRequest (not retried),
// whether found out by NewCommand or by a later Synthesize.
func TestCommandCannotStartKind(t *testing.T) {
	_, err := NewCommand(CommandConfig{Command: "no-such-tts-program-xyz --stdout"})
	if err == nil || KindOf(err) != fault.BadRequest || !strings.Contains(err.Error(), "tts.command") {
		t.Errorf("NewCommand, program not on PATH: kind %v, err %v; want bad_request naming tts.command", KindOf(err), err)
	}
	if runtime.GOOS == "windows" {
		t.Skip("needs a Unix executable bit")
	}
	for _, how := range []string{"removed", "not executable"} {
		prog := filepath.Join(t.TempDir(), "speak")
		if err := os.WriteFile(prog, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		c, err := NewCommand(CommandConfig{Command: strconv.Quote(prog)})
		if err != nil {
			t.Fatal(err)
		}
		if how == "removed" {
			err = os.Remove(prog)
		} else {
			err = os.Chmod(prog, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		rc, err := c.Synthesize(ctx, Request{Text: "Hello"})
		cancel()
		if err == nil {
			rc.Close()
			t.Fatalf("%s: the program started", how)
		}
		if k := KindOf(err); k != fault.BadRequest || !strings.HasPrefix(err.Error(), "tts command: ") || !strings.Contains(err.Error(), "check tts.command") {
			t.Errorf("%s: kind %v, err %v; want bad_request naming tts.command", how, k, err)
		}
		if k := KindOf(fmt.Errorf("speak: %w", err)); k != fault.BadRequest {
			t.Errorf("%s: wrapped: kind %v", how, k)
		}
	}
}

func TestSplitCommand(t *testing.T) {
	cases := map[string][]string{
		`espeak-ng --stdout`:                         {"espeak-ng", "--stdout"},
		`  piper  --model '/my voices/a.onnx' -f - `: {"piper", "--model", "/my voices/a.onnx", "-f", "-"},
		`a "b \"c\" \\ \n" d\ e`:                     {"a", `b "c" \ \n`, "d e"},
		`x ''`:                                       {"x", ""},
		`x --text={text} '|'`:                        {"x", "--text={text}", "|"},
	}
	for in, want := range cases {
		got, err := SplitCommand(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("SplitCommand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{`a 'b`, `a "b`, `a \`, `a; b`, "a `b`", `a > f`} {
		if _, err := SplitCommand(in); err == nil {
			t.Errorf("SplitCommand(%q) accepted", in)
		}
	}
}

func FuzzSplitCommand(f *testing.F) {
	for _, s := range []string{`espeak-ng --stdout -v {voice}`, `a "b \"c\"" 'd e' f\ g`, `x ''`, `"\\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args, err := SplitCommand(s)
		if err != nil {
			return
		}
		// Re-quoting every argument must give the same arguments back.
		var b strings.Builder
		for _, a := range args {
			b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "' ")
		}
		again, err := SplitCommand(b.String())
		if err != nil || !reflect.DeepEqual(args, again) && !(len(args) == 0 && len(again) == 0) {
			t.Fatalf("%q -> %q -> %q (%v)", s, args, again, err)
		}
	})
}

func BenchmarkCommandEspeak(b *testing.B) {
	if _, err := exec.LookPath("espeak-ng"); err != nil {
		b.Skip("espeak-ng not on PATH")
	}
	c, err := NewCommand(CommandConfig{Command: "espeak-ng --stdout"})
	if err != nil {
		b.Fatal(err)
	}
	provBench(b, c, Request{Text: "Hello from Nexy. How can I help you?"})
}
