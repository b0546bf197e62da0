// Package config holds the server's typed configuration: defaults per profile,
// nexy.toml, NEXY_* environment overrides, *_file secrets, and validation with
// messages that name the offending key. No other package reads the environment.
package config

import (
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"
	_ "time/tzdata" // quotas.timezone works in a static binary on a machine without zoneinfo
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
	Devices      Devices      `toml:"devices"`
	Quotas       Quotas       `toml:"quotas"`
	Preempt      Preempt      `toml:"preempt"`
	Store        Store        `toml:"store"`
	Memory       Memory       `toml:"memory"`
	Usage        Usage        `toml:"usage"`
	Updates      Updates      `toml:"updates"`
	Metrics      Metrics      `toml:"metrics"`
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
	// HTTPRedirect is the plaintext port that answers ACME HTTP-01
	// challenges and redirects everything else to HTTPS ("" = off).
	HTTPRedirect string `toml:"http_redirect"`
	// HandshakeTimeout bounds a new connection's TLS handshake and HTTP/2
	// preface on listen.address.
	HandshakeTimeout Duration `toml:"handshake_timeout"`
	// FirstRequestTimeout bounds how long a connection on listen.address may
	// stay open before its first request (apps connect ahead and wait).
	FirstRequestTimeout Duration `toml:"first_request_timeout"`
}

// TLS selects how the public listener (listen.address) gets its certificate.
type TLS struct {
	Mode string `toml:"mode"`
	// Domains the certificate is for, comma-separated (acme: required;
	// self-signed: added to localhost and the machine's addresses).
	Domains string `toml:"domains"`
	// Email is the ACME account contact (expiry notices).
	Email string `toml:"email"`
	// CAURL is the ACME directory; "" = Let's Encrypt.
	CAURL string `toml:"ca_url"`
	// CARoots is a PEM file of roots that sign the ACME server's own HTTPS
	// certificate (a local ACME server); "" = the system roots.
	CARoots string `toml:"ca_roots"`
	// CertFile and KeyFile are the PEM files of mode "files", reloaded when
	// they change and on SIGHUP.
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// AllowPlaintextPublic lets mode "off" serve listen.address on a
	// non-loopback address (behind your own TLS proxy).
	AllowPlaintextPublic bool `toml:"allow_plaintext_public"`
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
	// BreakerFailures consecutive failures of one provider open its circuit
	// breaker: the chain skips it for BreakerCooldown (0 = never skip).
	BreakerFailures int      `toml:"breaker_failures"`
	BreakerCooldown Duration `toml:"breaker_cooldown"`
	// Fallbacks ([[llm.fallbacks]]) are tried in order when the provider
	// fails before any text was sent.
	Fallbacks []LLMFallback `toml:"fallbacks"`
}

// LLMFallback is one further model: its own endpoint and key; the rest
// (temperature, token limits) is the main model's.
type LLMFallback struct {
	Provider   string   `toml:"provider"`
	Model      string   `toml:"model"`
	BaseURL    string   `toml:"base_url"`
	APIKey     string   `toml:"api_key"`
	APIKeyFile string   `toml:"api_key_file"`
	Timeout    Duration `toml:"timeout"` // 0 = llm.timeout
}

// TTS configures speech synthesis: the provider (Speaker), how turns use
// it, and an optional second provider for when the first fails.
type TTS struct {
	Speaker
	Retries           int      `toml:"retries"`
	RetryBackoff      Duration `toml:"retry_backoff"`
	Lookahead         int      `toml:"lookahead"`
	HonorClientVoice  bool     `toml:"honor_client_voice"`
	WelcomeText       string   `toml:"welcome_text"`
	MaxWelcomeSeconds int      `toml:"max_welcome_seconds"`
	// Fallback ([tts.fallback]) speaks when the provider fails before any
	// audio; its provider "" = no fallback.
	Fallback Speaker `toml:"fallback"`
}

// Speaker is one speech provider's settings: [tts] and [tts.fallback].
type Speaker struct {
	Provider   string   `toml:"provider"`
	Voice      string   `toml:"voice"`
	BaseURL    string   `toml:"base_url"`
	APIKey     string   `toml:"api_key"`
	APIKeyFile string   `toml:"api_key_file"`
	Model      string   `toml:"model"`
	Format     string   `toml:"format"`
	SampleRate int      `toml:"sample_rate"`
	Region     string   `toml:"region"`
	Rate       string   `toml:"rate"`
	Pitch      string   `toml:"pitch"`
	Volume     string   `toml:"volume"`
	Command    string   `toml:"command"`
	Timeout    Duration `toml:"timeout"`
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

// Devices decides which devices may use the server and how refusals sound.
type Devices struct {
	// Pairing: "open" answers every device; "approve" refuses a device until
	// `nexy devices approve` (it is listed as pending meanwhile).
	Pairing string `toml:"pairing"`
	// Refusal: "spoken" answers a refused device with a short spoken
	// sentence (the shipped client plays it); "status" with a gRPC status.
	Refusal string `toml:"refusal"`
	// PollInterval is how often the server reads device changes made by the
	// CLI (approve, revoke, limits, tokens).
	PollInterval Duration `toml:"poll_interval"`
}

// Quotas are per-device daily limits (0 = none); `nexy devices limit`
// overrides them per device.
type Quotas struct {
	DailyTurns  int `toml:"daily_turns"`
	DailyTokens int `toml:"daily_tokens"`
	// Timezone is where the day ends (IANA name, e.g. "Europe/Berlin");
	// "" = the server's local time.
	Timezone string `toml:"timezone"`
}

// Preempt configures the preemptive answer: while the key is held, a turn
// starts from the COLLECT transcript once it stops changing, and its output
// is held until COMMIT; a matching final prompt streams what is ready.
type Preempt struct {
	// Enabled: "on", "off", or "auto" (on when the model is local: an
	// OpenAI-compatible llm.base_url on a loopback address, where a wasted
	// speculation costs nothing but local compute).
	Enabled string `toml:"enabled"`
	// StableAfter is how long the transcript must stay unchanged before the
	// speculation starts.
	StableAfter Duration `toml:"stable_after"`
	// MinChars: shorter transcripts are not worth a speculation.
	MinChars int `toml:"min_chars"`
	// MaxSpeculations bounds the speculations running at once (one per
	// device at most); none start while admission is over half full.
	MaxSpeculations int `toml:"max_speculations"`
	// Hold is how long a speculation waits for its COMMIT before it is dropped.
	Hold Duration `toml:"hold"`
}

// Store configures the SQLite history, backups and the audio cache.
type Store struct {
	// CommitTimeout is how long a finished turn waits for its record to be
	// committed before its end_message goes out anyway (the record is still
	// written; the wait is what makes an acknowledged turn durable). 0 = do
	// not wait: end_message goes out at once, and a crash can lose the last
	// turns.
	CommitTimeout Duration `toml:"commit_timeout"`
	// Queue bounds the records waiting for the writer; when full, a turn
	// waits for room (nothing is dropped).
	Queue int `toml:"queue"`
	// BackupDir holds `nexy backup` files; "" = <server.data_dir>/backups.
	BackupDir string `toml:"backup_dir"`
	// BackupKeep is how many backups `nexy backup` keeps (oldest go first).
	BackupKeep int `toml:"backup_keep"`
	// AudioCacheBytes bounds the bbolt phrase-audio cache; 0 turns it off.
	AudioCacheBytes int `toml:"audio_cache_bytes"`
}

// Memory configures what the assistant remembers about its user (SPEC §8).
type Memory struct {
	// Analyzer extracts facts after each turn: "llm" (the main model, with
	// the heuristic as fallback), "heuristic" (no model call) or "off".
	Analyzer string `toml:"analyzer"`
	// Timeout bounds one analysis (the model call included).
	Timeout Duration `toml:"timeout"`
	// LoadTimeout bounds how long a turn waits for its memory; a slower
	// store means the turn runs without it.
	LoadTimeout Duration `toml:"load_timeout"`
	// RecentTurns is the short-term memory: at most this many earlier turns.
	RecentTurns int `toml:"recent_turns"`
	// RecentWindow: short-term memory holds only turns this recent.
	RecentWindow Duration `toml:"recent_window"`
	// DigestDays is how many days of daily digests (medium-term) are used.
	DigestDays int `toml:"digest_days"`
}

// Usage configures the token cost report of `nexy usage`.
type Usage struct {
	// Prices in USD per million tokens: "model=input/output" pairs separated
	// by commas; the model "*" prices every model not listed.
	Prices string `toml:"prices"`
}

// Updates configures the app's Sparkle update feed.
type Updates struct {
	// Dir holds the release manifests and downloads; "" = <server.data_dir>/updates.
	Dir string `toml:"dir"`
	// PublicURL is the feed's base URL in the appcast's links, e.g.
	// "https://nexy.example.com"; "" = the scheme and host of each request.
	PublicURL string `toml:"public_url"`
	// BetaEnabled serves /updates/appcast-beta.xml; off, it answers 404.
	BetaEnabled bool `toml:"beta_enabled"`
}

// Metrics configures observability.
type Metrics struct {
	// SummaryInterval is how often the log gets a metrics summary line
	// (also written at shutdown); 0 = only at shutdown.
	SummaryInterval Duration `toml:"summary_interval"`
	// Pprof serves Go's profiler under /debug/pprof/ on listen.http_plain to
	// loopback clients only (never on the public port), for `nexy bench
	// --cpuprofile`.
	Pprof bool `toml:"pprof"`
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
		Listen: Listen{GRPCPlain: "127.0.0.1:50051", HTTPPlain: "127.0.0.1:8080", HandshakeTimeout: dur(10 * time.Second), FirstRequestTimeout: dur(10 * time.Minute)},
		TLS:    TLS{Mode: "off"},
		LLM: LLM{
			Provider: "gemini", Model: "gemini-2.5-flash-lite", Timeout: dur(60 * time.Second), FirstTokenTimeout: dur(30 * time.Second),
			Temperature: 0.4, MaxOutputTokens: 1024, ThinkingBudget: -1,
			Retries: 1, RetryBackoff: dur(500 * time.Millisecond), BreakerFailures: 3, BreakerCooldown: dur(30 * time.Second),
		},
		TTS: TTS{
			Speaker: Speaker{Provider: "edge", Command: "espeak-ng --stdout", Timeout: dur(30 * time.Second)},
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
		Devices: Devices{Pairing: "open", Refusal: "spoken", PollInterval: dur(time.Second)},
		Preempt: Preempt{Enabled: "auto", StableAfter: dur(400 * time.Millisecond), MinChars: 8, MaxSpeculations: 16, Hold: dur(10 * time.Second)},
		Store:   Store{CommitTimeout: dur(2 * time.Second), Queue: 1024, BackupKeep: 14, AudioCacheBytes: 64 << 20},
		Memory:  Memory{Analyzer: "llm", Timeout: dur(15 * time.Second), LoadTimeout: dur(300 * time.Millisecond), RecentTurns: 6, RecentWindow: dur(24 * time.Hour), DigestDays: 30},
		Usage:   Usage{Prices: DefaultPrices},
		Updates: Updates{BetaEnabled: true},
		Metrics: Metrics{SummaryInterval: dur(60 * time.Second)},
		Log:     Log{Level: "info", Format: "text"},
	}
	if profile == "prod" {
		c.Server.Profile = "prod"
		c.Server.DataDir = "/var/lib/nexy"
		c.Listen.GRPCPlain, c.Listen.HTTPPlain, c.Listen.Address, c.Listen.HTTPRedirect = "", "", ":443", ":80"
		c.TLS.Mode = "acme"
		c.Limits.MaxConcurrentStreams = 200
		c.Limits.MaxRatePerSecond = 1
		c.Limits.RequestBytesInFlight = 256 << 20
	}
	return c
}

// UpdatesDirectory is where release manifests and downloads live:
// updates.dir, else <server.data_dir>/updates.
func (c *Config) UpdatesDirectory() string {
	if c.Updates.Dir != "" {
		return c.Updates.Dir
	}
	return filepath.Join(c.Server.DataDir, "updates")
}

// TLSDomains is tls.domains as a list.
func (c *Config) TLSDomains() []string {
	var out []string
	for _, d := range strings.Split(c.TLS.Domains, ",") {
		if d = strings.TrimSpace(d); d != "" {
			out = append(out, d)
		}
	}
	return out
}

// PreemptOn resolves preempt.enabled: "auto" is on only for an
// OpenAI-compatible model at a loopback address (localhost, 127.0.0.0/8, ::1).
func (c *Config) PreemptOn() bool {
	switch c.Preempt.Enabled {
	case "on":
		return true
	case "auto":
		return c.LLM.Provider == "openai" && loopbackURL(c.LLM.BaseURL)
	}
	return false
}

func loopbackURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// BackupDirectory is where backups go: store.backup_dir, else
// <server.data_dir>/backups.
func (c *Config) BackupDirectory() string {
	if c.Store.BackupDir != "" {
		return c.Store.BackupDir
	}
	return filepath.Join(c.Server.DataDir, "backups")
}
