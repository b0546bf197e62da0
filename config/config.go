// Package config holds the server's typed configuration: defaults per profile,
// nexy.toml, NEXY_* environment overrides, *_file secrets, and validation with
// messages that name the offending key. No other package reads the environment.
package config

import "time"

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
	v, err := parseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
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
