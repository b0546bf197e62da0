// Package config holds the server's typed configuration: defaults per profile,
// nexy.toml, NEXY_* environment overrides, *_file secrets, and validation with
// messages that name the offending key. No other package reads the environment.
package config

import (
	"fmt"
	"net"
	"time"
)

// Config is the whole server configuration. TOML keys are the canonical names
// of SPEC §10; the env override of key a.b is NEXY_A_B.
type Config struct {
	Server       Server       `toml:"server"`
	Listen       Listen       `toml:"listen"`
	TLS          TLS          `toml:"tls"`
	LLM          LLM          `toml:"llm"`
	TTS          TTS          `toml:"tts"`
	Speech       Speech       `toml:"speech"`
	Features     Features     `toml:"features"`
	KillSwitches KillSwitches `toml:"kill_switches"`
	Limits       Limits       `toml:"limits"`
	Log          Log          `toml:"log"`
}

// Server is process-wide identity and storage.
type Server struct {
	Profile string `toml:"profile"`
	DataDir string `toml:"data_dir"`
}

// Listen holds the listener addresses; an empty address turns a listener off.
type Listen struct {
	GRPCPlain        string `toml:"grpc_plain"`
	Address          string `toml:"address"`
	HTTPPlain        string `toml:"http_plain"`
	AllowPublicPlain bool   `toml:"allow_public_plain"`
}

// TLS selects how the public listener gets its certificate.
type TLS struct {
	Mode string `toml:"mode"`
}

// LLM configures the main language model.
type LLM struct {
	Provider          string   `toml:"provider"`
	Model             string   `toml:"model"`
	BaseURL           string   `toml:"base_url"`
	APIKey            string   `toml:"api_key"`
	APIKeyFile        string   `toml:"api_key_file"`
	Timeout           Duration `toml:"timeout"`
	FirstTokenTimeout Duration `toml:"first_token_timeout"`
	Temperature       float64  `toml:"temperature"`
	MaxOutputTokens   int      `toml:"max_output_tokens"`
	GoogleSearch      bool     `toml:"google_search"`
	ThinkingBudget    int      `toml:"thinking_budget"`
	Retries           int      `toml:"retries"`
	RetryBackoff      Duration `toml:"retry_backoff"`
}

// TTS configures speech synthesis.
type TTS struct {
	Provider          string   `toml:"provider"`
	Voice             string   `toml:"voice"`
	BaseURL           string   `toml:"base_url"`
	APIKey            string   `toml:"api_key"`
	APIKeyFile        string   `toml:"api_key_file"`
	Model             string   `toml:"model"`
	Format            string   `toml:"format"`
	SampleRate        int      `toml:"sample_rate"`
	Region            string   `toml:"region"`
	Rate              string   `toml:"rate"`
	Pitch             string   `toml:"pitch"`
	Volume            string   `toml:"volume"`
	Command           string   `toml:"command"`
	Timeout           Duration `toml:"timeout"`
	Retries           int      `toml:"retries"`
	RetryBackoff      Duration `toml:"retry_backoff"`
	Lookahead         int      `toml:"lookahead"`
	HonorClientVoice  bool     `toml:"honor_client_voice"`
	WelcomeText       string   `toml:"welcome_text"`
	MaxWelcomeSeconds int      `toml:"max_welcome_seconds"`
}

// Speech tunes how the answer is cut into spoken segments.
type Speech struct {
	FirstMinWords int `toml:"first_min_words"`
	MinWords      int `toml:"min_words"`
	MinChars      int `toml:"min_chars"`
	MaxChars      int `toml:"max_chars"`
}

// Features are product feature flags (SPEC §10).
type Features struct {
	ForwardAssistantActions bool `toml:"forward_assistant_actions"`
	Messages                bool `toml:"messages"`
	WhatsApp                bool `toml:"whatsapp"`
	Browser                 bool `toml:"browser"`
	Subscription            bool `toml:"subscription"`
}

// KillSwitches win over features.
type KillSwitches struct {
	DisableForwardAssistantActions bool `toml:"disable_forward_assistant_actions"`
}

// Limits bound admission, inputs, buffers and shutdown.
type Limits struct {
	MaxConcurrentStreams int      `toml:"max_concurrent_streams"`
	MaxRatePerSecond     float64  `toml:"max_rate_per_second"`
	IdleTimeout          Duration `toml:"idle_timeout"`
	GracePeriod          Duration `toml:"grace_period"`
	MaxMessageBytes      int      `toml:"max_message_bytes"`
	MaxPromptChars       int      `toml:"max_prompt_chars"`
	MaxScreenshotBytes   int      `toml:"max_screenshot_bytes"`
	MaxIDLength          int      `toml:"max_id_length"`
	CollectTTL           Duration `toml:"collect_ttl"`
	CollectMaxSessions   int      `toml:"collect_max_sessions"`
	CollectMaxBytes      int      `toml:"collect_max_bytes"`
	KeepaliveMinTime     Duration `toml:"keepalive_min_time"`
	// SendTimeout ends a turn whose sender makes no progress (the client
	// stops reading) for this long, with DEADLINE_EXCEEDED, freeing its slot.
	SendTimeout Duration `toml:"send_timeout"`
	// MaxTurnsPerDevice is how many turns one hardware id may run at once.
	MaxTurnsPerDevice int `toml:"max_turns_per_device"`
	// CollectPerDevice is how many COLLECT sessions one device may have buffered.
	CollectPerDevice int `toml:"collect_per_device"`
	// CollectPerDeviceBytes bounds the COLLECT bytes one device may have buffered.
	CollectPerDeviceBytes int `toml:"collect_per_device_bytes"`
	// MaxStreamsPerConn is the HTTP/2 concurrent-stream limit per client connection.
	MaxStreamsPerConn int `toml:"max_streams_per_conn"`
	// RequestBytesInFlight bounds the request bytes being received or held at
	// once by StreamAudio and GenerateWelcomeAudio.
	RequestBytesInFlight int `toml:"request_bytes_in_flight"`
	// ReceiveTimeout refuses a request message that does not arrive in full within it.
	ReceiveTimeout Duration `toml:"receive_timeout"`
}

// Log configures the structured log.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// Duration is a time.Duration written as "30s", "2m" in TOML and env.
type Duration struct{ time.Duration }

// UnmarshalText parses Go duration syntax.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration like \"30s\": %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText prints Go duration syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

func dur(d time.Duration) Duration { return Duration{d} }

// Default returns the defaults of a profile ("dev" or "prod").
func Default(profile string) Config {
	c := Config{
		Server: Server{Profile: "dev", DataDir: "./data"},
		Listen: Listen{GRPCPlain: "127.0.0.1:50051", HTTPPlain: "127.0.0.1:8080"},
		TLS:    TLS{Mode: "off"},
		LLM: LLM{
			Provider: "gemini", Model: "gemini-2.5-flash-lite", Timeout: dur(60 * time.Second), FirstTokenTimeout: dur(30 * time.Second),
			Temperature: 0.4, MaxOutputTokens: 1024, ThinkingBudget: -1,
			Retries: 1, RetryBackoff: dur(500 * time.Millisecond),
		},
		TTS: TTS{
			Provider: "edge", Command: "espeak-ng --stdout", Timeout: dur(30 * time.Second),
			Retries: 1, RetryBackoff: dur(250 * time.Millisecond),
			Lookahead: 2, WelcomeText: "Hi! Nexy is here. How can I help you today?", MaxWelcomeSeconds: 60,
		},
		Speech:   Speech{FirstMinWords: 2, MinWords: 3, MinChars: 15, MaxChars: 250},
		Features: Features{ForwardAssistantActions: true, Messages: true},
		Limits: Limits{
			MaxConcurrentStreams: 50, IdleTimeout: dur(60 * time.Second), GracePeriod: dur(30 * time.Second),
			MaxMessageBytes: 4 << 20, MaxPromptChars: 8000, MaxScreenshotBytes: 3 << 20, MaxIDLength: 128,
			CollectTTL: dur(2 * time.Minute), CollectMaxSessions: 1024, CollectMaxBytes: 256 << 20,
			KeepaliveMinTime: dur(20 * time.Second), SendTimeout: dur(15 * time.Second), ReceiveTimeout: dur(30 * time.Second),
			MaxTurnsPerDevice: 3, CollectPerDevice: 8, CollectPerDeviceBytes: 16 << 20,
			MaxStreamsPerConn: 32, RequestBytesInFlight: 64 << 20,
		},
		Log: Log{Level: "info", Format: "text"},
	}
	if profile == "prod" {
		c.Server.Profile = "prod"
		c.Server.DataDir = "/var/lib/nexy"
		c.Listen = Listen{Address: ":443"}
		c.TLS.Mode = "acme"
		c.Limits.MaxConcurrentStreams = 200
		c.Limits.MaxRatePerSecond = 1
		c.Limits.RequestBytesInFlight = 256 << 20
	}
	return c
}

// Validate checks every value and names the key of the first bad one.
func (c *Config) Validate() error {
	checks := []func() error{c.validateServer, c.validateListen, c.validateLLM, c.validateTTS, c.validateSpeech, c.validateLimits, c.validateLog}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateServer() error {
	if err := oneOf("server.profile", c.Server.Profile, "dev", "prod"); err != nil {
		return err
	}
	if c.Server.DataDir == "" {
		return keyErr("server.data_dir", "must not be empty")
	}
	return nil
}

func (c *Config) validateListen() error {
	if err := oneOf("tls.mode", c.TLS.Mode, "acme", "files", "self-signed", "off"); err != nil {
		return err
	}
	if c.TLS.Mode != "off" || c.Listen.Address != "" {
		return keyErr("tls.mode", "TLS termination (listen.address with tls.mode %q) is not built into this version yet; "+
			"set tls.mode = \"off\", leave listen.address empty and put a TLS proxy in front of listen.grpc_plain", c.TLS.Mode)
	}
	if c.Listen.GRPCPlain == "" {
		return keyErr("listen.grpc_plain", "must be set while the TLS listener is not available")
	}
	for key, addr := range map[string]string{"listen.grpc_plain": c.Listen.GRPCPlain, "listen.http_plain": c.Listen.HTTPPlain} {
		if addr == "" {
			continue
		}
		if err := checkPlainAddr(addr, c.Listen.AllowPublicPlain); err != nil {
			return keyErr(key, "%v", err)
		}
	}
	return nil
}

// checkPlainAddr allows plaintext only on loopback unless forced (SPEC §9).
func checkPlainAddr(addr string, force bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %v", addr, err)
	}
	if port == "" {
		return fmt.Errorf("%q has no port", addr)
	}
	if force || host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address; plaintext is allowed only on loopback unless listen.allow_public_plain = true", addr)
	}
	return nil
}

func (c *Config) validateLLM() error {
	if err := oneOf("llm.provider", c.LLM.Provider, "gemini", "openai"); err != nil {
		return err
	}
	if c.LLM.Model == "" {
		return keyErr("llm.model", "must not be empty")
	}
	if c.LLM.Provider == "openai" && c.LLM.BaseURL == "" {
		return keyErr("llm.base_url", "is required for provider \"openai\" (the /v1 root, e.g. http://localhost:11434/v1)")
	}
	if c.LLM.Timeout.Duration <= 0 {
		return keyErr("llm.timeout", "must be positive")
	}
	if c.LLM.FirstTokenTimeout.Duration <= 0 {
		return keyErr("llm.first_token_timeout", "must be positive")
	}
	if c.LLM.Temperature < 0 || c.LLM.Temperature > 2 {
		return keyErr("llm.temperature", "%v is outside 0..2", c.LLM.Temperature)
	}
	if c.LLM.MaxOutputTokens < 1 {
		return keyErr("llm.max_output_tokens", "must be at least 1")
	}
	if c.LLM.Retries < 0 || c.LLM.Retries > 5 {
		return keyErr("llm.retries", "%d is outside 0..5", c.LLM.Retries)
	}
	if c.LLM.RetryBackoff.Duration < 0 || c.LLM.RetryBackoff.Duration > 10*time.Second {
		return keyErr("llm.retry_backoff", "must be between 0s and 10s")
	}
	if c.LLM.ThinkingBudget < -1 || c.LLM.ThinkingBudget > 32768 {
		return keyErr("llm.thinking_budget", "%d is outside -1..32768", c.LLM.ThinkingBudget)
	}
	return nil
}

func (c *Config) validateTTS() error {
	t := c.TTS
	if err := oneOf("tts.provider", t.Provider, "edge", "azure", "openai", "command"); err != nil {
		return err
	}
	switch {
	case t.Provider == "openai" && t.BaseURL == "":
		return keyErr("tts.base_url", "is required for provider \"openai\" (the /v1 root, e.g. http://localhost:8880/v1)")
	case t.Provider == "azure" && t.Region == "" && t.BaseURL == "":
		return keyErr("tts.region", "is required for provider \"azure\" (e.g. \"westeurope\"), or set tts.base_url")
	case t.Provider == "command" && t.Command == "":
		return keyErr("tts.command", "is required for provider \"command\" (e.g. \"espeak-ng --stdout\")")
	}
	if t.Format != "" {
		if err := oneOf("tts.format", t.Format, "wav", "pcm", "raw"); err != nil {
			return err
		}
	}
	if t.SampleRate < 0 || t.SampleRate > 192000 {
		return keyErr("tts.sample_rate", "%d is outside 0..192000", t.SampleRate)
	}
	if t.Timeout.Duration <= 0 {
		return keyErr("tts.timeout", "must be positive")
	}
	if t.Retries < 0 || t.Retries > 5 {
		return keyErr("tts.retries", "%d is outside 0..5", t.Retries)
	}
	if t.RetryBackoff.Duration < 0 || t.RetryBackoff.Duration > 10*time.Second {
		return keyErr("tts.retry_backoff", "must be between 0s and 10s")
	}
	if t.Lookahead < 1 || t.Lookahead > 8 {
		return keyErr("tts.lookahead", "%d is outside 1..8", t.Lookahead)
	}
	if t.WelcomeText == "" {
		return keyErr("tts.welcome_text", "must not be empty")
	}
	if t.MaxWelcomeSeconds < 1 || t.MaxWelcomeSeconds > 600 {
		return keyErr("tts.max_welcome_seconds", "%d is outside 1..600", t.MaxWelcomeSeconds)
	}
	return nil
}

func (c *Config) validateSpeech() error {
	s := c.Speech
	switch {
	case s.FirstMinWords < 1:
		return keyErr("speech.first_min_words", "must be at least 1")
	case s.MinWords < 1:
		return keyErr("speech.min_words", "must be at least 1")
	case s.MinChars < 1:
		return keyErr("speech.min_chars", "must be at least 1")
	case s.MaxChars < 40 || s.MaxChars < s.MinChars || s.MaxChars > 2000:
		return keyErr("speech.max_chars", "%d must be between 40 (and at least speech.min_chars) and 2000", s.MaxChars)
	}
	return nil
}

func (c *Config) validateLimits() error {
	l := c.Limits
	oneUtterance := l.MaxScreenshotBytes + 4*l.MaxPromptChars // a COLLECT of the largest screenshot and transcript (UTF-8)
	checks := []error{
		intIn("limits.max_concurrent_streams", l.MaxConcurrentStreams, 1, 100000),
		floatIn("limits.max_rate_per_second", l.MaxRatePerSecond, 0, 1000),
		durIn("limits.idle_timeout", l.IdleTimeout, time.Second, time.Hour),
		durIn("limits.grace_period", l.GracePeriod, 0, 10*time.Minute),
		durIn("limits.send_timeout", l.SendTimeout, time.Second, 10*time.Minute),
		durIn("limits.receive_timeout", l.ReceiveTimeout, time.Second, 5*time.Minute),
		bytesIn("limits.max_message_bytes", l.MaxMessageBytes, 64<<10, "", 256<<20, ""),
		intIn("limits.max_prompt_chars", l.MaxPromptChars, 1, 1000000),
		bytesIn("limits.max_screenshot_bytes", l.MaxScreenshotBytes, 0, "", int64(l.MaxMessageBytes)-1, "limits.max_message_bytes - 1"),
		intIn("limits.max_id_length", l.MaxIDLength, 8, 1024),
		durIn("limits.collect_ttl", l.CollectTTL, time.Second, time.Hour),
		intIn("limits.collect_max_sessions", l.CollectMaxSessions, 1, 1000000),
		bytesIn("limits.collect_max_bytes", l.CollectMaxBytes, 1<<20, "", 64<<30, ""),
		intInRef("limits.max_turns_per_device", l.MaxTurnsPerDevice, 1, l.MaxConcurrentStreams, "limits.max_concurrent_streams"),
		intInRef("limits.collect_per_device", l.CollectPerDevice, 1, l.CollectMaxSessions, "limits.collect_max_sessions"),
		bytesIn("limits.collect_per_device_bytes", l.CollectPerDeviceBytes,
			int64(oneUtterance), "limits.max_screenshot_bytes + 4 × limits.max_prompt_chars",
			int64(l.CollectMaxBytes), "limits.collect_max_bytes"),
		intIn("limits.max_streams_per_conn", l.MaxStreamsPerConn, 1, 10000),
		bytesIn("limits.request_bytes_in_flight", l.RequestBytesInFlight, int64(l.MaxMessageBytes), "limits.max_message_bytes", 64<<30, ""),
		durIn("limits.keepalive_min_time", l.KeepaliveMinTime, time.Second, time.Minute),
	}
	return firstErr(checks)
}

func (c *Config) validateLog() error {
	if err := oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error"); err != nil {
		return err
	}
	return oneOf("log.format", c.Log.Format, "text", "json")
}
