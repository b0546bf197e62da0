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
		{"", "NEXY_TLS_MODE=acme", "tls.mode"},
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
			env = []string{c.env}
		}
		t.Chdir(dir)
		_, err := Load(path, env)
		wantErr(t, err, c.key)
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
	// The prod defaults validate once TLS is left to a proxy (SPEC §9 note in nexy.toml).
	c := Default("prod")
	c.TLS.Mode, c.Listen.Address, c.Listen.GRPCPlain = "off", "", "127.0.0.1:50051"
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
