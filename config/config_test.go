package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func samplePath() string { return filepath.Join("..", "nexy.toml") }

func TestSampleMatchesDefaults(t *testing.T) {
	got, err := Load(samplePath(), nil)
	if err != nil {
		t.Fatalf("sample nexy.toml does not load: %v", err)
	}
	want := Default("dev")
	if !reflect.DeepEqual(got.Config, want) {
		t.Errorf("nexy.toml differs from Default(\"dev\"):\n got %+v\nwant %+v", got.Config, want)
	}
}

func TestSampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile(samplePath())
	if err != nil {
		t.Fatal(err)
	}
	section := ""
	present := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[]")
			continue
		}
		if k, _, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			present[section+"."+strings.TrimSpace(k)] = true
		}
	}
	cfg := Default("dev")
	for _, f := range Fields(&cfg) {
		if !present[f.Key] {
			t.Errorf("nexy.toml does not document %s", f.Key)
		}
	}
}

func TestNoFileRunsOnDefaults(t *testing.T) {
	t.Chdir(t.TempDir())
	got, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Path != "" || got.Listen.GRPCPlain != "127.0.0.1:50051" || got.Server.DataDir != "./data" {
		t.Errorf("fresh machine defaults wrong: %+v", got)
	}
}

func TestCanonicalEnvNames(t *testing.T) {
	cfg := Default("dev")
	envs := map[string]bool{}
	for _, f := range Fields(&cfg) {
		envs[f.Env] = true
	}
	// SPEC §10: names operators' scripts rely on.
	for _, name := range []string{
		"NEXY_SERVER_PROFILE", "NEXY_SERVER_DATA_DIR", "NEXY_LISTEN_GRPC_PLAIN", "NEXY_LISTEN_ADDRESS",
		"NEXY_LISTEN_HTTP_PLAIN", "NEXY_TLS_MODE", "NEXY_LLM_PROVIDER", "NEXY_LLM_MODEL", "NEXY_LLM_BASE_URL",
		"NEXY_LLM_API_KEY", "NEXY_LLM_API_KEY_FILE", "NEXY_LLM_TIMEOUT", "NEXY_TTS_PROVIDER", "NEXY_TTS_VOICE",
		"NEXY_TTS_BASE_URL", "NEXY_TTS_API_KEY", "NEXY_TTS_COMMAND", "NEXY_FEATURES_FORWARD_ASSISTANT_ACTIONS",
		"NEXY_FEATURES_MESSAGES", "NEXY_FEATURES_WHATSAPP", "NEXY_FEATURES_BROWSER", "NEXY_FEATURES_SUBSCRIPTION",
		"NEXY_KILL_SWITCHES_DISABLE_FORWARD_ASSISTANT_ACTIONS", "NEXY_LIMITS_MAX_CONCURRENT_STREAMS",
		"NEXY_LIMITS_MAX_RATE_PER_SECOND", "NEXY_LIMITS_IDLE_TIMEOUT", "NEXY_LIMITS_GRACE_PERIOD",
	} {
		if !envs[name] {
			t.Errorf("missing canonical env %s", name)
		}
	}
}

func TestEnvOverridesFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nexy.toml")
	writeFile(t, path, "[llm]\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\nmodel = \"llama3\"\n")
	got, err := Load(path, []string{
		"NEXY_LLM_MODEL=qwen", "NEXY_LIMITS_IDLE_TIMEOUT=5s", "NEXY_FEATURES_BROWSER=true",
		"NEXY_LIMITS_MAX_RATE_PER_SECOND=2.5", "NEXY_LLM_APIKEY=typo", "PATH=/bin",
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.LLM.Model != "qwen" || got.LLM.Provider != "openai" || got.Limits.IdleTimeout.Duration != 5*time.Second ||
		!got.Features.Browser || got.Limits.MaxRatePerSecond != 2.5 {
		t.Errorf("overrides not applied: %+v", got.Config)
	}
	if !reflect.DeepEqual(got.UnknownEnv, []string{"NEXY_LLM_APIKEY"}) {
		t.Errorf("UnknownEnv = %v", got.UnknownEnv)
	}
}

func TestSecretFile(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "key")
	writeFile(t, keyPath, "generated-test-key-123\n")
	got, err := Load("", []string{"NEXY_LLM_API_KEY_FILE=" + keyPath})
	if err != nil {
		t.Fatal(err)
	}
	if got.LLM.APIKey != "generated-test-key-123" {
		t.Errorf("APIKey = %q", got.LLM.APIKey)
	}
	if s := got.Secrets(); len(s) != 1 || s[0] != "generated-test-key-123" {
		t.Errorf("Secrets() = %v", s)
	}
	_, err = Load("", []string{"NEXY_LLM_API_KEY_FILE=" + keyPath, "NEXY_LLM_API_KEY=x"})
	wantErr(t, err, "llm.api_key_file")
	_, err = Load("", []string{"NEXY_LLM_API_KEY_FILE=" + filepath.Join(dir, "missing")})
	wantErr(t, err, "llm.api_key_file")
}

func TestErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ file, env, key string }{
		{"[llm]\nmodle = \"x\"\n", "", "llm.modle"},
		{"[llm]\ntimeout = \"soon\"\n", "", "llm.timeout"},
		{"[limits]\nmax_concurrent_streams = \"many\"\n", "", "limits.max_concurrent_streams"},
		{"", "NEXY_LIMITS_MAX_CONCURRENT_STREAMS=0", "limits.max_concurrent_streams"},
		{"", "NEXY_LIMITS_IDLE_TIMEOUT=forever", "limits.idle_timeout"},
		{"", "NEXY_FEATURES_BROWSER=maybe", "features.browser"},
		{"", "NEXY_LLM_PROVIDER=anthropic", "llm.provider"},
		{"", "NEXY_LLM_PROVIDER=openai", "llm.base_url"},
		{"", "NEXY_TTS_PROVIDER=openai", "tts.base_url"},
		{"", "NEXY_TTS_PROVIDER=azure", "tts.region"},
		{"", "NEXY_TTS_LOOKAHEAD=0", "tts.lookahead"},
		{"", "NEXY_LISTEN_GRPC_PLAIN=0.0.0.0:50051", "listen.grpc_plain"},
		{"", "NEXY_TLS_MODE=letsencrypt", "tls.mode"},
		{"", "NEXY_LISTEN_ADDRESS=:8443\nNEXY_TLS_MODE=acme", "tls.domains"},
		{"", "NEXY_SERVER_PROFILE=staging", "server.profile"},
		{"", "NEXY_LOG_LEVEL=loud", "log.level"},
	}
	for _, c := range cases {
		path := ""
		if c.file != "" {
			path = filepath.Join(dir, "c.toml")
			writeFile(t, path, c.file)
		}
		var env []string
		if c.env != "" {
			env = strings.Split(c.env, "\n")
		}
		t.Chdir(dir)
		_, err := Load(path, env)
		wantErr(t, err, c.key)
		if c.key != "llm.modle" {
			wantErr(t, err, c.key+" ("+EnvName(c.key)+")")
		}
	}
}

// TestValueMessages: a value of the wrong kind, in the file or the
// environment, is named by key and env variable and says how to write it.
func TestValueMessages(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	cases := []struct{ file, env, want string }{
		{"[limits]\nidle_timeout = 30\n", "",
			`config: nexy.toml: limits.idle_timeout (NEXY_LIMITS_IDLE_TIMEOUT): 30 is not a duration; write it like "30s"`},
		{"[limits]\nidle_timeout = \"soon\"\n", "",
			`config: nexy.toml: limits.idle_timeout (NEXY_LIMITS_IDLE_TIMEOUT): "soon" is not a duration; write it like "30s"`},
		{"[limits]\nidle_timeout = \"30\"\n", "", `"30" is not a duration; write it like "30s"`},
		{"[limits]\nidle_timeout = 2024-01-01\n", "", `limits.idle_timeout (NEXY_LIMITS_IDLE_TIMEOUT): 2024-01-01 is not a duration`},
		{"", "NEXY_LIMITS_IDLE_TIMEOUT=forever",
			`config: environment: limits.idle_timeout (NEXY_LIMITS_IDLE_TIMEOUT): "forever" is not a duration; write it like "30s"`},
		{"[limits]\nmax_concurrent_streams = \"many\"\n", "",
			`limits.max_concurrent_streams (NEXY_LIMITS_MAX_CONCURRENT_STREAMS): "many" is not an integer`},
		{"[limits]\nmax_concurrent_streams = 1.5\n", "", `1.5 is not an integer`},
		{"[limits]\nmax_concurrent_streams = 99999999999999999999\n", "",
			`line 2 column 26: limits.max_concurrent_streams (NEXY_LIMITS_MAX_CONCURRENT_STREAMS): `},
		{"[limits]\nmax_rate_per_second = \"2\"\n", "", `limits.max_rate_per_second (NEXY_LIMITS_MAX_RATE_PER_SECOND): "2" is not a number`},
		{"[features]\nbrowser = 1\n", "", `features.browser (NEXY_FEATURES_BROWSER): 1 is not true or false`},
		{"[llm]\nmodel = 3\n", "", `llm.model (NEXY_LLM_MODEL): 3 is not a string`},
		{"limits = 3\n", "", `limits: 3 is not a table`},
		{"[llm]\nmodle = \"x\"\nfoo = 1\n", "", `unknown keys llm.foo, llm.modle (did you mean llm.model?)`},
		{"[limits\n", "", `nexy.toml: line 1 column 8: `},
		{"", "NEXY_LIMITS_MAX_CONCURRENT_STREAMS=lots", `config: environment: limits.max_concurrent_streams (NEXY_LIMITS_MAX_CONCURRENT_STREAMS): "lots" is not an integer`},
	}
	for _, c := range cases {
		os.Remove("nexy.toml")
		if c.file != "" {
			writeFile(t, "nexy.toml", c.file)
		}
		var env []string
		if c.env != "" {
			env = []string{c.env}
		}
		_, err := Load("", env)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q %q:\n got %v\nwant %s", c.file, c.env, err, c.want)
		}
	}
}

func TestPublicPlainNeedsForce(t *testing.T) {
	t.Chdir(t.TempDir())
	got, err := Load("", []string{"NEXY_LISTEN_GRPC_PLAIN=0.0.0.0:50051", "NEXY_LISTEN_ALLOW_PUBLIC_PLAIN=true"})
	if err != nil || got.Listen.GRPCPlain != "0.0.0.0:50051" {
		t.Fatalf("forced public plain: %v", err)
	}
	if _, err := Load("", []string{"NEXY_LISTEN_GRPC_PLAIN=[::1]:50051"}); err != nil {
		t.Errorf("IPv6 loopback refused: %v", err)
	}
}

func TestExplicitMissingFileFails(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"), nil)
	wantErr(t, err, "nope.toml")
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err error, key string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error naming %s, got nil", key)
	}
	if !strings.Contains(err.Error(), key) {
		t.Errorf("error %q does not name %s", err, key)
	}
}

// FuzzDecodeTOML: any file content gives a config or an error, never a panic,
// and an accepted file always validates or names a key.
func FuzzDecodeTOML(f *testing.F) {
	data, _ := os.ReadFile(samplePath())
	f.Add(string(data))
	f.Add("[llm]\ntimeout = \"5s\"\n")
	f.Add("[limits]\nmax_concurrent_streams = -1\n")
	f.Fuzz(func(t *testing.T, s string) {
		cfg := Default("dev")
		if err := decodeTOML([]byte(s), &cfg); err != nil {
			return
		}
		if err := cfg.Validate(); err != nil && !strings.Contains(err.Error(), "config: ") {
			t.Fatalf("validation error without a key: %v", err)
		}
	})
}

func TestAbuseLimitDefaults(t *testing.T) {
	for _, profile := range []string{"dev", "prod"} {
		l := Default(profile).Limits
		inFlight := 64 << 20
		if profile == "prod" {
			inFlight = 256 << 20
		}
		if l.SendTimeout.Duration != 15*time.Second || l.MaxTurnsPerDevice != 3 || l.CollectPerDevice != 8 ||
			l.CollectPerDeviceBytes != 16<<20 || l.MaxStreamsPerConn != 32 || l.RequestBytesInFlight != inFlight ||
			l.ReceiveTimeout.Duration != 30*time.Second {
			t.Errorf("%s limits: %+v", profile, l)
		}
	}
	// The prod defaults validate once the domain is set (acme needs it).
	c := Default("prod")
	c.TLS.Domains = "nexy.example.com"
	if err := c.Validate(); err != nil {
		t.Errorf("prod defaults: %v", err)
	}
}

// TestLimitRanges: every limit names its key, its env variable and the range.
func TestLimitRanges(t *testing.T) {
	cases := []struct {
		env  string
		want string
	}{
		{"NEXY_LIMITS_MAX_CONCURRENT_STREAMS=0", "limits.max_concurrent_streams (NEXY_LIMITS_MAX_CONCURRENT_STREAMS): 0 is outside 1..100000"},
		{"NEXY_LIMITS_SEND_TIMEOUT=500ms", "limits.send_timeout (NEXY_LIMITS_SEND_TIMEOUT): 500ms is outside 1s..10m"},
		{"NEXY_LIMITS_SEND_TIMEOUT=11m", "limits.send_timeout (NEXY_LIMITS_SEND_TIMEOUT): 11m is outside 1s..10m"},
		{"NEXY_LIMITS_RECEIVE_TIMEOUT=6m", "limits.receive_timeout (NEXY_LIMITS_RECEIVE_TIMEOUT): 6m is outside 1s..5m"},
		{"NEXY_LIMITS_MAX_TURNS_PER_DEVICE=51", "limits.max_turns_per_device (NEXY_LIMITS_MAX_TURNS_PER_DEVICE): 51 is outside 1..50 (limits.max_concurrent_streams)"},
		{"NEXY_LIMITS_MAX_TURNS_PER_DEVICE=0", "limits.max_turns_per_device (NEXY_LIMITS_MAX_TURNS_PER_DEVICE): 0 is outside 1..50"},
		{"NEXY_LIMITS_COLLECT_PER_DEVICE=1025", "limits.collect_per_device (NEXY_LIMITS_COLLECT_PER_DEVICE): 1025 is outside 1..1024 (limits.collect_max_sessions)"},
		{"NEXY_LIMITS_COLLECT_PER_DEVICE_BYTES=3000000", "limits.collect_per_device_bytes (NEXY_LIMITS_COLLECT_PER_DEVICE_BYTES): 3000000 is outside 3177728 (limits.max_screenshot_bytes + 4 × limits.max_prompt_chars)..268435456 (256 MiB, limits.collect_max_bytes)"},
		{"NEXY_LIMITS_COLLECT_PER_DEVICE_BYTES=268435457", "is outside 3177728"},
		{"NEXY_LIMITS_MAX_STREAMS_PER_CONN=10001", "limits.max_streams_per_conn (NEXY_LIMITS_MAX_STREAMS_PER_CONN): 10001 is outside 1..10000"},
		{"NEXY_LIMITS_REQUEST_BYTES_IN_FLIGHT=1048576", "limits.request_bytes_in_flight (NEXY_LIMITS_REQUEST_BYTES_IN_FLIGHT): 1048576 is outside 4194304 (4 MiB, limits.max_message_bytes)..68719476736 (64 GiB)"},
		{"NEXY_LIMITS_MAX_RATE_PER_SECOND=-1", "limits.max_rate_per_second (NEXY_LIMITS_MAX_RATE_PER_SECOND): -1 is outside 0..1000"},
		{"NEXY_LIMITS_MAX_RATE_PER_SECOND=NaN", "NaN is outside 0..1000"},
		{"NEXY_LIMITS_MAX_SCREENSHOT_BYTES=4194304", "limits.max_screenshot_bytes (NEXY_LIMITS_MAX_SCREENSHOT_BYTES): 4194304 is outside 0..4194303 (limits.max_message_bytes - 1)"},
		{"NEXY_LIMITS_KEEPALIVE_MIN_TIME=0s", "limits.keepalive_min_time (NEXY_LIMITS_KEEPALIVE_MIN_TIME): 0s is outside 1s..1m"},
	}
	t.Chdir(t.TempDir())
	for _, c := range cases {
		_, err := Load("", []string{c.env})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want it to contain %q", c.env, err, c.want)
		}
	}
}

// TestProviderSettingErrors: every llm.* and tts.* setting with a bad value is
// refused by validation (before any provider constructor sees it) with a
// message naming its TOML key and env variable.
func TestProviderSettingErrors(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	writeFile(t, keyFile, "a key with spaces\n")
	long := strings.Repeat("x", 201)
	azure := []string{"NEXY_TTS_PROVIDER=azure", "NEXY_TTS_REGION=westeurope", "NEXY_TTS_API_KEY=k"}
	openai := []string{"NEXY_TTS_PROVIDER=openai", "NEXY_TTS_BASE_URL=http://localhost:8880/v1"}
	command := []string{"NEXY_TTS_PROVIDER=command", "NEXY_TTS_COMMAND=cat"}
	llmOpenAI := []string{"NEXY_LLM_PROVIDER=openai", "NEXY_LLM_BASE_URL=http://localhost:11434/v1", "NEXY_LLM_MODEL=llama3.2"}
	with := func(base []string, kv ...string) []string { return append(append([]string(nil), base...), kv...) }
	cases := []struct {
		key  string
		env  []string
		want string // more of the message, optional
	}{
		{"llm.provider", []string{"NEXY_LLM_PROVIDER=anthropic"}, `"gemini" or "openai"`},
		{"llm.model", []string{"NEXY_LLM_MODEL=gemini/2.5"}, "letters, digits"},
		{"llm.model", []string{"NEXY_LLM_MODEL= "}, "must not be empty"},
		{"llm.model", with(llmOpenAI, "NEXY_LLM_MODEL=llama\x01"), "control characters"},
		{"llm.base_url", []string{"NEXY_LLM_BASE_URL=ftp://example.com"}, "http:// or https://"},
		{"llm.base_url", []string{"NEXY_LLM_PROVIDER=openai"}, "required"},
		{"llm.base_url", with(llmOpenAI, "NEXY_LLM_BASE_URL=localhost:11434/v1"), "absolute"},
		{"llm.base_url", with(llmOpenAI, "NEXY_LLM_BASE_URL=http://localhost:11434/v1?x=1"), "query"},
		{"llm.base_url", with(llmOpenAI, "NEXY_LLM_BASE_URL=http://u:p@localhost/v1"), "credentials"},
		{"llm.api_key", []string{"NEXY_LLM_API_KEY=two words"}, "spaces"},
		{"llm.api_key_file", []string{"NEXY_LLM_API_KEY_FILE=" + keyFile}, "spaces"},
		{"llm.api_key_file", []string{"NEXY_LLM_API_KEY_FILE=" + filepath.Join(dir, "missing")}, "no such file"},
		{"llm.timeout", []string{"NEXY_LLM_TIMEOUT=0s"}, "0s is outside 1s..1h"},
		{"llm.first_token_timeout", []string{"NEXY_LLM_FIRST_TOKEN_TIMEOUT=2h"}, "2h is outside 1s..1h"},
		{"llm.temperature", []string{"NEXY_LLM_TEMPERATURE=2.5"}, "2.5 is outside 0..2"},
		{"llm.max_output_tokens", []string{"NEXY_LLM_MAX_OUTPUT_TOKENS=0"}, "0 is outside 1..1000000"},
		{"llm.google_search", []string{"NEXY_LLM_GOOGLE_SEARCH=maybe"}, "not true or false"},
		{"llm.thinking_budget", []string{"NEXY_LLM_THINKING_BUDGET=-2"}, "-2 is outside -1..32768"},
		{"llm.retries", []string{"NEXY_LLM_RETRIES=6"}, "6 is outside 0..5"},
		{"llm.retry_backoff", []string{"NEXY_LLM_RETRY_BACKOFF=11s"}, "11s is outside 0s..10s"},

		{"llm.breaker_failures", []string{"NEXY_LLM_BREAKER_FAILURES=-1"}, "-1 is outside 0..1000"},
		{"llm.breaker_cooldown", []string{"NEXY_LLM_BREAKER_COOLDOWN=0s"}, "0s is outside 1s..1h"},

		{"tts.provider", []string{"NEXY_TTS_PROVIDER=piper"}, `"edge", "azure", "openai", "wyoming" or "command"`},
		{"tts.base_url", []string{"NEXY_TTS_PROVIDER=wyoming"}, "tcp://127.0.0.1:10200"},
		{"tts.base_url", []string{"NEXY_TTS_PROVIDER=wyoming", "NEXY_TTS_BASE_URL=http://127.0.0.1:10200"}, "tcp://"},
		{"tts.voice", []string{"NEXY_TTS_VOICE=Aria' onload='x"}, "Edge voice"},
		{"tts.voice", with(azure, "NEXY_TTS_VOICE=x' y='1"), "en-US-AriaNeural"},
		{"tts.voice", with(openai, "NEXY_TTS_VOICE="+long), "at most 200"},
		{"tts.voice", with(command, "NEXY_TTS_COMMAND=cat -- {voice}"), "uses {voice}"},
		{"tts.voice", with(command, "NEXY_TTS_COMMAND=cat -- {voice}", "NEXY_TTS_VOICE=--evil"), "letters, digits"},
		{"tts.base_url", []string{"NEXY_TTS_BASE_URL=https://example.com/x"}, "ws:// or wss://"},
		{"tts.base_url", with(azure, "NEXY_TTS_BASE_URL=ftp://x"), "http:// or https://"},
		{"tts.base_url", []string{"NEXY_TTS_PROVIDER=openai"}, "required"},
		{"tts.base_url", with(openai, "NEXY_TTS_BASE_URL=http://u:p@localhost:8880/v1"), "credentials"},
		{"tts.api_key", []string{"NEXY_TTS_PROVIDER=azure", "NEXY_TTS_REGION=westeurope"}, "Azure Speech key is required"},
		{"tts.api_key", with(openai, "NEXY_TTS_API_KEY=line\nbreak"), "line breaks"},
		{"tts.api_key_file", with(azure[:2], "NEXY_TTS_API_KEY_FILE="+filepath.Join(dir, "missing")), "no such file"},
		{"tts.model", with(openai, "NEXY_TTS_MODEL="+long), "at most 200"},
		{"tts.format", []string{"NEXY_TTS_FORMAT=wav"}, `not used by provider "edge"`},
		{"tts.format", with(azure, "NEXY_TTS_FORMAT=pcm"), `not used by provider "azure"`},
		{"tts.format", with(openai, "NEXY_TTS_FORMAT=raw"), `"wav" or "pcm"`},
		{"tts.format", with(command, "NEXY_TTS_FORMAT=pcm"), `"wav" or "raw"`},
		{"tts.sample_rate", []string{"NEXY_TTS_SAMPLE_RATE=100"}, "100 is outside 8000..192000"},
		{"tts.sample_rate", with(command, "NEXY_TTS_FORMAT=raw"), "required"},
		{"tts.region", []string{"NEXY_TTS_PROVIDER=azure", "NEXY_TTS_API_KEY=k"}, "required"},
		{"tts.region", with(azure, "NEXY_TTS_REGION=West Europe"), "westeurope"},
		{"tts.rate", []string{"NEXY_TTS_RATE=fast"}, "signed percentage"},
		{"tts.rate", with(azure, "NEXY_TTS_RATE='/><x"), "x-fast"},
		{"tts.pitch", []string{"NEXY_TTS_PITCH=+5%"}, "signed hertz"},
		{"tts.volume", []string{"NEXY_TTS_VOLUME=loud"}, "signed percentage"},
		{"tts.command", with(command, "NEXY_TTS_COMMAND=no-such-tts-program-xyz --stdout"), `program "no-such-tts-program-xyz" is not installed or not in PATH (e.g. apt-get install espeak-ng)`},
		{"tts.command", with(command, "NEXY_TTS_COMMAND=/nonexistent/espeak-ng"), "cannot be run"},
		{"tts.command", with(command, `NEXY_TTS_COMMAND=espeak-ng "oops`), "unterminated"},
		{"tts.command", with(command, "NEXY_TTS_COMMAND=espeak-ng --stdout | sox"), "shell operator"},
		{"tts.command", with(command, "NEXY_TTS_COMMAND={voice} --stdout"), "placeholder"},
		{"tts.command", with(command, "NEXY_TTS_COMMAND= "), "required"},
		{"tts.timeout", []string{"NEXY_TTS_TIMEOUT=0s"}, "0s is outside 1s..10m"},
		{"tts.retries", []string{"NEXY_TTS_RETRIES=-1"}, "-1 is outside 0..5"},
		{"tts.retry_backoff", []string{"NEXY_TTS_RETRY_BACKOFF=-1s"}, "-1s is outside 0s..10s"},
		{"tts.lookahead", []string{"NEXY_TTS_LOOKAHEAD=9"}, "9 is outside 1..8"},
		{"tts.honor_client_voice", []string{"NEXY_TTS_HONOR_CLIENT_VOICE=sometimes"}, "not true or false"},
		{"tts.welcome_text", []string{"NEXY_TTS_WELCOME_TEXT= "}, "must not be empty"},
		{"tts.max_welcome_seconds", []string{"NEXY_TTS_MAX_WELCOME_SECONDS=601"}, "601 is outside 1..600"},

		// [tts.fallback] is checked with the same rules as [tts], under its own keys.
		{"tts.fallback.provider", []string{"NEXY_TTS_FALLBACK_PROVIDER=piper"}, `"wyoming" or "command"`},
		{"tts.fallback.provider", []string{"NEXY_TTS_FALLBACK_PROVIDER=edge", "NEXY_TTS_FALLBACK_COMMAND=espeak-ng --stdout"}, "same as [tts]"},
		{"tts.fallback.voice", []string{"NEXY_TTS_FALLBACK_PROVIDER=edge", "NEXY_TTS_FALLBACK_VOICE=Aria' onload='x"}, "Edge voice"},
		{"tts.fallback.base_url", []string{"NEXY_TTS_FALLBACK_PROVIDER=openai"}, "required"},
		{"tts.fallback.api_key", []string{"NEXY_TTS_FALLBACK_PROVIDER=azure", "NEXY_TTS_FALLBACK_REGION=westeurope"}, "Azure Speech key is required"},
		{"tts.fallback.api_key_file", []string{"NEXY_TTS_FALLBACK_PROVIDER=azure", "NEXY_TTS_FALLBACK_REGION=westeurope", "NEXY_TTS_FALLBACK_API_KEY_FILE=" + filepath.Join(dir, "missing")}, "no such file"},
		{"tts.fallback.model", []string{"NEXY_TTS_FALLBACK_PROVIDER=openai", "NEXY_TTS_FALLBACK_BASE_URL=http://localhost:8880/v1", "NEXY_TTS_FALLBACK_MODEL=" + long}, "at most 200"},
		{"tts.fallback.format", []string{"NEXY_TTS_FALLBACK_PROVIDER=edge", "NEXY_TTS_FALLBACK_FORMAT=wav"}, `not used by provider "edge"`},
		{"tts.fallback.sample_rate", []string{"NEXY_TTS_FALLBACK_PROVIDER=edge", "NEXY_TTS_FALLBACK_SAMPLE_RATE=100"}, "100 is outside"},
		{"tts.fallback.region", []string{"NEXY_TTS_FALLBACK_PROVIDER=azure", "NEXY_TTS_FALLBACK_API_KEY=k"}, "required"},
		{"tts.fallback.rate", []string{"NEXY_TTS_FALLBACK_PROVIDER=edge", "NEXY_TTS_FALLBACK_RATE=fast"}, "signed percentage"},
		{"tts.fallback.pitch", []string{"NEXY_TTS_FALLBACK_PROVIDER=edge", "NEXY_TTS_FALLBACK_PITCH=+5%"}, "signed hertz"},
		{"tts.fallback.volume", []string{"NEXY_TTS_FALLBACK_PROVIDER=edge", "NEXY_TTS_FALLBACK_VOLUME=loud"}, "signed percentage"},
		{"tts.fallback.command", []string{"NEXY_TTS_FALLBACK_PROVIDER=command", "NEXY_TTS_FALLBACK_COMMAND=no-such-tts-program-xyz"}, "not installed"},
		{"tts.fallback.timeout", []string{"NEXY_TTS_FALLBACK_PROVIDER=edge", "NEXY_TTS_FALLBACK_TIMEOUT=11m"}, "11m is outside 1s..10m"},
	}
	t.Chdir(dir)
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.key] = true
		_, err := Load("", c.env)
		if err == nil {
			t.Errorf("%s %q: accepted", c.key, c.env)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.key+" ("+EnvName(c.key)+")") || !strings.Contains(msg, c.want) {
			t.Errorf("%s %q:\n got %s\nwant the key, %s and %q", c.key, c.env, msg, EnvName(c.key), c.want)
		}
	}
	cfg := Default("dev")
	for _, f := range Fields(&cfg) {
		if (strings.HasPrefix(f.Key, "llm.") || strings.HasPrefix(f.Key, "tts.")) && !covered[f.Key] {
			t.Errorf("no bad-value case for %s", f.Key)
		}
	}
}

// TestFallbacksFromFile: [[llm.fallbacks]] and [tts.fallback] are read from
// nexy.toml, checked under their own names, and their keys are secrets.
func TestFallbacksFromFile(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	writeFile(t, keyFile, "fallback-key-123\n")
	path := filepath.Join(dir, "nexy.toml")
	writeFile(t, path, `
[llm]
provider = "openai"
model = "main"
base_url = "http://127.0.0.1:1/v1"

[[llm.fallbacks]]
provider = "openai"
model = "second"
base_url = "http://127.0.0.1:2/v1"
api_key_file = "`+keyFile+`"
timeout = "5s"

[[llm.fallbacks]]
provider = "gemini"
model = "gemini-2.5-flash-lite"
api_key = "third-key-456"

[tts.fallback]
provider = "command"
command = "espeak-ng --stdout"
`)
	got, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := got.LLM.Fallbacks
	if len(f) != 2 || f[0].Model != "second" || f[0].APIKey != "fallback-key-123" || f[0].Timeout.Duration != 5*time.Second || f[1].Provider != "gemini" {
		t.Fatalf("fallbacks %+v", f)
	}
	if got.TTS.Fallback.Provider != "command" || got.TTS.Fallback.Command != "espeak-ng --stdout" {
		t.Fatalf("tts.fallback %+v", got.TTS.Fallback)
	}
	if s := strings.Join(got.Secrets(), " "); !strings.Contains(s, "fallback-key-123") || !strings.Contains(s, "third-key-456") {
		t.Errorf("fallback keys are not masked secrets: %q", s)
	}
	for _, c := range []struct{ doc, want string }{
		{"[llm]\nfallbacks = 3\n", "not a list of tables"},
		{"[[llm.fallbacks]]\nprovider = \"openai\"\nmodel = \"m\"\nbase_url = \"http://x/v1\"\ncolor = \"red\"\n", "unknown key llm.fallbacks[0].color"},
		{"[[llm.fallbacks]]\nprovider = \"claude\"\n", "llm.fallbacks[0].provider: \"claude\" is not one of"},
		{"[[llm.fallbacks]]\nprovider = \"openai\"\nmodel = \"m\"\n", "llm.fallbacks[0].base_url: is required"},
		{"[[llm.fallbacks]]\nprovider = \"gemini\"\nmodel = \"gemini-2.5-flash\"\n", "llm.fallbacks[0].api_key: a Gemini fallback needs its key"},
		{"[[llm.fallbacks]]\nprovider = \"openai\"\nmodel = \"m\"\nbase_url = \"http://x/v1\"\ntimeout = \"2h\"\n", "llm.fallbacks[0].timeout"},
		{"[tts.fallback]\nprovider = \"command\"\ncomand = \"x\"\n", "unknown key tts.fallback.comand (did you mean tts.fallback.command?)"},
	} {
		writeFile(t, path, c.doc)
		if _, err := Load(path, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.doc, err, c.want)
		}
	}
}

func TestDevicesAndQuotasValidation(t *testing.T) {
	for _, c := range []struct {
		env  string
		want string
	}{
		{"NEXY_DEVICES_PAIRING=closed", `devices.pairing (NEXY_DEVICES_PAIRING): "closed" is not one of "open" or "approve"`},
		{"NEXY_DEVICES_REFUSAL=silent", `devices.refusal (NEXY_DEVICES_REFUSAL): "silent" is not one of "spoken" or "status"`},
		{"NEXY_DEVICES_POLL_INTERVAL=10ms", "devices.poll_interval"},
		{"NEXY_QUOTAS_DAILY_TURNS=-1", "quotas.daily_turns"},
		{"NEXY_QUOTAS_DAILY_TOKENS=-5", "quotas.daily_tokens"},
		{"NEXY_QUOTAS_TIMEZONE=Mars/Olympus", `quotas.timezone (NEXY_QUOTAS_TIMEZONE): "Mars/Olympus" is not a time zone`},
	} {
		if _, err := Load("", []string{c.env}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.env, err, c.want)
		}
	}
	got, err := Load("", []string{"NEXY_QUOTAS_TIMEZONE=Europe/Berlin", "NEXY_DEVICES_PAIRING=approve"})
	if err != nil || got.Quotas.Timezone != "Europe/Berlin" || got.Devices.Pairing != "approve" {
		t.Fatalf("valid devices/quotas: %v", err)
	}
}

func TestPreemptSettings(t *testing.T) {
	for _, c := range []struct{ env, want string }{
		{"NEXY_PREEMPT_ENABLED=yes", `preempt.enabled (NEXY_PREEMPT_ENABLED): "yes" is not one of`},
		{"NEXY_PREEMPT_STABLE_AFTER=1ms", "preempt.stable_after"},
		{"NEXY_PREEMPT_MIN_CHARS=0", "preempt.min_chars"},
		{"NEXY_PREEMPT_MAX_SPECULATIONS=0", "preempt.max_speculations"},
		{"NEXY_PREEMPT_HOLD=5h", "preempt.hold"},
	} {
		if _, err := Load("", []string{c.env}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.env, err, c.want)
		}
	}
	// "auto" follows where the model runs: a local OpenAI-compatible server
	// costs nothing but compute when a speculation is wasted; a paid API does.
	for _, c := range []struct {
		env  []string
		want bool
	}{
		{[]string{"NEXY_LLM_API_KEY=k"}, false}, // gemini
		{[]string{"NEXY_LLM_PROVIDER=openai", "NEXY_LLM_BASE_URL=http://127.0.0.1:8000/v1"}, true},
		{[]string{"NEXY_LLM_PROVIDER=openai", "NEXY_LLM_BASE_URL=http://localhost:11434/v1"}, true},
		{[]string{"NEXY_LLM_PROVIDER=openai", "NEXY_LLM_BASE_URL=http://[::1]:8000/v1"}, true},
		{[]string{"NEXY_LLM_PROVIDER=openai", "NEXY_LLM_BASE_URL=https://api.openai.com/v1", "NEXY_LLM_API_KEY=k"}, false},
		{[]string{"NEXY_LLM_PROVIDER=openai", "NEXY_LLM_BASE_URL=https://api.openai.com/v1", "NEXY_LLM_API_KEY=k", "NEXY_PREEMPT_ENABLED=on"}, true},
		{[]string{"NEXY_LLM_PROVIDER=openai", "NEXY_LLM_BASE_URL=http://127.0.0.1:8000/v1", "NEXY_PREEMPT_ENABLED=off"}, false},
	} {
		cfg, err := Load("", c.env)
		if err != nil {
			t.Fatalf("%v: %v", c.env, err)
		}
		if got := cfg.PreemptOn(); got != c.want {
			t.Errorf("%v: PreemptOn = %v, want %v", c.env, got, c.want)
		}
	}
}
