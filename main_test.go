package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/internal/providers"
	"github.com/nexy-server/nexy/llm/llmtest"
	"github.com/nexy-server/nexy/server"
)

// TestMain lets the tests run this binary as `nexy` in a child process.
func TestMain(m *testing.M) {
	if os.Getenv("NEXY_TEST_RUN_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestServeOnFreshMachine starts `nexy serve` with no config file and no key:
// it must come up on loopback, say what is missing, and stop cleanly on SIGTERM.
func TestServeOnFreshMachine(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "serve")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NEXY_TEST_RUN_MAIN=1", "NEXY_LISTEN_GRPC_PLAIN=127.0.0.1:0", "NEXY_LISTEN_HTTP_PLAIN=127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "decision=degraded") {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve exited with %v\n%s", err, log.String())
	}
	out := log.String()
	for _, want := range []string{"built-in defaults", "Server started", "grpc=127.0.0.1:", "NEXY_LLM_API_KEY", "signal=terminated", "Shutting down", "Server stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("serve log lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err != nil {
		t.Errorf("data dir not created: %v", err)
	}
}

func TestServeRejectsBadConfig(t *testing.T) {
	var stderr bytes.Buffer
	t.Setenv("NEXY_LIMITS_IDLE_TIMEOUT", "soon")
	if code := run([]string{"serve"}, &bytes.Buffer{}, &stderr); code != 1 || !strings.Contains(stderr.String(), "limits.idle_timeout") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

// TestAsk drives a real server with `nexy ask` and checks what it prints and saves.
func TestAsk(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Opening Notes for you.", "command": "open_app", "args": {"app_name": "Notes"}}`}})
	speech := newSpeechServer(t)
	cfg := config.Default("dev")
	cfg.Server.DataDir = t.TempDir()
	cfg.Listen.GRPCPlain, cfg.Listen.HTTPPlain = "127.0.0.1:0", ""
	cfg.LLM.Provider, cfg.LLM.BaseURL, cfg.LLM.Model = "openai", fake.URL, "llama3.2"
	cfg.TTS.Provider, cfg.TTS.BaseURL = "openai", speech
	cfg.Memory.Analyzer = "heuristic" // one model call per turn: the check below counts them
	log := server.NewLogger(&bytes.Buffer{}, cfg.Log, nil)
	closeDeps, deps, err := wire(&cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer closeDeps()
	srv, err := server.New(&cfg, log, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Error("Serve did not return after shutdown")
		}
	}()

	wav := filepath.Join(t.TempDir(), "answer.wav")
	var stdout, stderr bytes.Buffer
	code := ask(context.Background(), []string{"-addr", srv.GRPCAddr().String(), "-out", wav, "open", "notes"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("ask exited %d: %s %s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"text: Opening Notes for you.", `"command":"open_app"`, `end_message: "`, "(the server's end-of-answer marker)", "timings: collect_ack", "answer.wav"} {
		if !strings.Contains(out, want) {
			t.Errorf("ask output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "BAD AUDIO CHUNK") {
		t.Errorf("wire format violated:\n%s", out)
	}
	if r := fake.Requests(); len(r) != 1 || r[0].User != "open notes" {
		t.Errorf("LLM saw %+v", r)
	}
	b, err := os.ReadFile(wav)
	if err != nil || len(b) < 44+48000 || string(b[:4]) != "RIFF" {
		t.Fatalf("WAV not written: %d bytes, %v", len(b), err)
	}

	// The welcome RPC through the same client.
	stdout.Reset()
	if code := ask(context.Background(), []string{"-addr", srv.GRPCAddr().String(), "-out", "", "-welcome"}, &stdout, &stderr); code != 0 {
		t.Fatalf("ask -welcome exited %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "method=openai") || !strings.Contains(stdout.String(), `end_message: "Welcome audio generation completed" (the server's end-of-answer marker)`) {
		t.Errorf("welcome output:\n%s", stdout.String())
	}
}

func TestAskReportsServerErrors(t *testing.T) {
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if code := ask(ctx, []string{"-addr", "127.0.0.1:1", "-timeout", "2s", "hello"}, &stdout, &stderr); code != 1 || stderr.Len() == 0 {
		t.Fatalf("unreachable server: exit %d, stderr %q", code, stderr.String())
	}
}

// TestCommandLine: help goes to stdout with exit 0; usage errors go to
// stderr with exit 2 and say what is wrong.
func TestCommandLine(t *testing.T) {
	cases := []struct {
		args   []string
		code   int
		stdout string // expected in stdout ("" = stdout must be empty)
		stderr string // expected in stderr ("" = stderr must be empty)
	}{
		{[]string{"serve", "--help"}, 0, "usage: nexy serve [-config nexy.toml]", ""},
		{[]string{"serve", "-h"}, 0, "-config", ""},
		{[]string{"ask", "--help"}, 0, `usage: nexy ask [flags] "question"`, ""},
		{[]string{"ask", "-h"}, 0, "-hardware-id", ""},
		{[]string{"help"}, 0, "nexy serve", ""},
		{[]string{"ask"}, 2, "", "nexy ask: a question is required\n\nusage: nexy ask"},
		{[]string{"ask", "-out", "x.wav", "  "}, 2, "", "a question is required"},
		{[]string{"serve", "extra"}, 2, "", `nexy serve: unexpected argument "extra"`},
		{[]string{"serve", "-config", "nexy.toml", "extra"}, 2, "", `unexpected argument "extra"`},
		{[]string{"serve", "-bogus"}, 2, "", "nexy serve: flag provided but not defined: -bogus\nusage: nexy serve"},
		{[]string{"ask", "-bogus", "hi"}, 2, "", "nexy ask: flag provided but not defined: -bogus\nusage: nexy ask"},
		{[]string{"ask", "-timeout", "soon", "hi"}, 2, "", `invalid value "soon" for flag -timeout`},
		{[]string{"version", "extra"}, 2, "", `unexpected argument "extra"`},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{nil, 2, "", "usage:"},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := run(c.args, &stdout, &stderr)
		if code != c.code {
			t.Errorf("nexy %q: exit %d, want %d\nstdout %q\nstderr %q", c.args, code, c.code, stdout.String(), stderr.String())
		}
		for _, out := range []struct {
			name, got, want string
		}{{"stdout", stdout.String(), c.stdout}, {"stderr", stderr.String(), c.stderr}} {
			if (out.want == "" && out.got != "") || !strings.Contains(out.got, out.want) {
				t.Errorf("nexy %q: %s %q, want %q", c.args, out.name, out.got, out.want)
			}
		}
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"version"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if got := stdout.String(); !strings.HasPrefix(got, "nexy dev") || !strings.Contains(got, runtime.Version()) {
		t.Errorf("version printed %q", got)
	}
}

// TestVersionOfBuiltBinary builds nexy from this checkout with VCS stamping
// and checks `nexy version` names the commit and honours the -ldflags version.
func TestVersionOfBuiltBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "nexy")
	build := exec.Command("go", "build", "-buildvcs=true", "-ldflags", "-X github.com/nexy-server/nexy/internal/buildinfo.Version=v9.8.7", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Skipf("cannot build with VCS stamping here: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "nexy v9.8.7 (commit " + string(head[:12])
	if got := string(out); !strings.HasPrefix(got, want) || !strings.Contains(got, runtime.Version()) {
		t.Errorf("version printed %q, want it to start with %q and name %s", got, want, runtime.Version())
	}
}

// TestValidatedProvidersConstruct: a configuration config.Validate accepts is
// one the provider constructors accept, so their "config: llm/tts: …" errors
// in providers.LLM/TTS stay unreachable. Each provider setting is tried with good
// and bad values, one at a time, on top of a valid base for every provider.
func TestValidatedProvidersConstruct(t *testing.T) {
	long := strings.Repeat("x", 201)
	values := map[string][]any{
		"llm.model":       {"", "gemini-2.5-flash", "models/gemini-2.5-flash", " gemini-2.5-flash ", "a/b", "llama3.2:3b", "x\x01", "модель"},
		"llm.base_url":    {"", "http://127.0.0.1:1", "https://example.com/v1/", "ftp://x", "http://x?q=1", "http://x?", "http://x#f", "http://u:p@x", "localhost:1", "http://", " http://x"},
		"llm.api_key":     {"", "k", " k ", "a b", "k\n", "k\x7f"},
		"llm.temperature": {0.0, 2.0, 2.1, -0.1},
		"tts.voice": {"", "en-US-AriaNeural", "zh-CN-liaoning-XiaobeiNeural", "Microsoft Server Speech Text to Speech Voice (en-US, AriaNeural)",
			"en-us", "bob", "--evil", "a..b", long, "x' y='1", "en-US-Aria-Neural"},
		"tts.base_url": {"", "ws://127.0.0.1:1/e", "wss://x", "http://127.0.0.1:1/v1", "https://x/v1/", "ftp://x", "http://u:p@x/v1", "http://x/v1?q=1", "localhost:8880", "http://", "ws://",
			"tcp://127.0.0.1:10200", "tcp://[::1]:10200", "tcp://piper:10200", "tcp://x", "tcp://:10200", "tcp://x:0", "tcp://x:99999", "tcp://u@x:1"},
		"tts.format":      {"", "wav", "pcm", "raw", "mp3"},
		"tts.sample_rate": {0, 100, 8000, 22050, 192000, 192001},
		"tts.region":      {"", "westeurope", "West Europe", "a"},
		"tts.rate":        {"", "+10%", "-5%", "1.2", "fast", "x-slow", "loud", "+1000%"},
		"tts.pitch":       {"", "+5Hz", "+5%"},
		"tts.volume":      {"", "+0%", "loud"},
		"tts.command":     {"cat", "cat -- {voice}", "cat {text}", "{voice}", "no-such-tts-program-xyz", "", "sh -c 'cat'", "cat | x", `cat "x`},
		"tts.api_key":     {"", "k", "a b", "line\nbreak"},
		"tts.model":       {"", "kokoro", long},
	}
	base := config.Default("dev")
	base.Server.DataDir = t.TempDir()
	bases := map[string]func(c *config.Config){
		"gemini": func(c *config.Config) { c.LLM.APIKey = "k" },
		"llm openai": func(c *config.Config) {
			c.LLM.Provider, c.LLM.BaseURL, c.LLM.Model = "openai", "http://127.0.0.1:1/v1", "llama3.2"
		},
		"edge":       func(c *config.Config) {},
		"azure":      func(c *config.Config) { c.TTS.Provider, c.TTS.Region, c.TTS.APIKey = "azure", "westeurope", "k" },
		"tts openai": func(c *config.Config) { c.TTS.Provider, c.TTS.BaseURL = "openai", "http://127.0.0.1:1/v1" },
		"command":    func(c *config.Config) { c.TTS.Provider, c.TTS.Command = "command", "cat" },
		"command voice": func(c *config.Config) {
			c.TTS.Provider, c.TTS.Command, c.TTS.Voice = "command", "cat -- {voice}", "en-us"
		},
		"command raw": func(c *config.Config) {
			c.TTS.Provider, c.TTS.Command, c.TTS.Format, c.TTS.SampleRate = "command", "cat", "raw", 22050
		},
		"tts openai pcm": func(c *config.Config) {
			c.TTS.Provider, c.TTS.BaseURL, c.TTS.Format = "openai", "http://127.0.0.1:1/v1", "pcm"
		},
		"wyoming": func(c *config.Config) { c.TTS.Provider, c.TTS.BaseURL = "wyoming", "tcp://127.0.0.1:10200" },
		"fallback": func(c *config.Config) {
			c.TTS.Fallback = config.Speaker{Provider: "wyoming", BaseURL: "tcp://127.0.0.1:10200", Voice: "en_US-lessac-medium"}
			c.LLM.APIKey = "k"
			c.LLM.Fallbacks = []config.LLMFallback{{Provider: "openai", Model: "llama3.2", BaseURL: "http://127.0.0.1:1/v1"}}
		},
	}
	accepted, refused := 0, 0
	for name, setup := range bases {
		for key, vs := range values {
			for _, v := range vs {
				cfg := base
				setup(&cfg)
				for _, f := range config.Fields(&cfg) {
					if f.Key == key {
						f.Value.Set(reflect.ValueOf(v))
					}
				}
				if err := cfg.Validate(); err != nil {
					refused++
					if !strings.Contains(err.Error(), " (NEXY_") {
						t.Errorf("%s, %s = %q: message names no env variable: %v", name, key, v, err)
					}
					continue
				}
				accepted++
				_, _, errLLM := providers.LLM(&cfg, nil)
				_, errTTS := providers.TTS(&cfg)
				_, errFallback := providers.TTSFallback(&cfg)
				if err := errors.Join(errLLM, errTTS, errFallback); err != nil {
					t.Errorf("%s, %s = %q: validated, but a provider constructor failed: %v", name, key, v, err)
				}
			}
		}
	}
	if accepted < 50 || refused < 50 {
		t.Errorf("corpus too one-sided: %d accepted, %d refused", accepted, refused)
	}
}
