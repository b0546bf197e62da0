package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/nexy-server/nexy/tts"
)

// Validate checks every value and names the key (and its env variable) of the
// first bad one, with the allowed range or values. Provider settings are
// checked here with the providers' own rules, so a valid configuration is one
// every provider constructor accepts.
func (c *Config) Validate() error {
	checks := []func() error{c.validateServer, c.validateListen, c.validateLLM, c.validateTTS, c.validateSpeech, c.validateLimits, c.validateDevices, c.validatePreempt, c.validateStore, c.validateMemory, c.validateUpdates, c.validateLog}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateUpdates() error {
	if p := c.Updates.PublicURL; p != "" {
		if u, err := url.Parse(p); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return keyErr("updates.public_url", "%q is not a base URL like \"https://nexy.example.com\"", p)
		}
	}
	return nil
}

func (c *Config) validateServer() error {
	if err := oneOf("server.profile", c.Server.Profile, "dev", "prod"); err != nil {
		return err
	}
	if c.Server.DataDir == "" {
		return keyErr("server.data_dir", "must not be empty (a directory, e.g. \"./data\")")
	}
	return nil
}

func (c *Config) validateListen() error {
	if err := oneOf("tls.mode", c.TLS.Mode, "acme", "files", "self-signed", "off"); err != nil {
		return err
	}
	l := c.Listen
	if l.GRPCPlain == "" && l.Address == "" {
		return keyErr("listen.address", "and listen.grpc_plain are both empty: the server would serve nothing; set one")
	}
	for _, key := range []string{"listen.grpc_plain", "listen.http_plain"} {
		addr := l.GRPCPlain
		if key == "listen.http_plain" {
			addr = l.HTTPPlain
		}
		if addr == "" {
			continue
		}
		if err := checkPlainAddr(addr, l.AllowPublicPlain); err != nil {
			return keyErr(key, "%v", err)
		}
	}
	if err := firstErr([]error{
		durIn("listen.handshake_timeout", l.HandshakeTimeout, time.Second, 5*time.Minute),
		durIn("listen.first_request_timeout", l.FirstRequestTimeout, time.Second, 24*time.Hour),
	}); err != nil {
		return err
	}
	if l.HTTPRedirect != "" {
		if _, _, err := net.SplitHostPort(l.HTTPRedirect); err != nil {
			return keyErr("listen.http_redirect", "%q is not host:port (e.g. \":80\")", l.HTTPRedirect)
		}
		if l.Address == "" || c.TLS.Mode == "off" {
			return keyErr("listen.http_redirect", "redirects to HTTPS, so it needs listen.address with a tls.mode other than \"off\"")
		}
	}
	return c.validateTLS()
}

func (c *Config) validateTLS() error {
	t, addr := c.TLS, c.Listen.Address
	if addr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return keyErr("listen.address", "%q is not host:port (e.g. \":443\")", addr)
	}
	switch t.Mode {
	case "off":
		if err := checkPlain(addr, t.AllowPlaintextPublic, "tls.allow_plaintext_public"); err != nil {
			return keyErr("listen.address", "with tls.mode = \"off\": %v (only behind your own TLS proxy)", err)
		}
	case "acme":
		if len(c.TLSDomains()) == 0 {
			return keyErr("tls.domains", "tls.mode = \"acme\" needs the domain names that point at this server, e.g. \"nexy.example.com\"")
		}
		if t.CAURL != "" {
			if u, err := url.Parse(t.CAURL); err != nil || u.Scheme != "https" || u.Host == "" {
				return keyErr("tls.ca_url", "%q is not an https:// ACME directory URL", t.CAURL)
			}
		}
	case "files":
		if t.CertFile == "" || t.KeyFile == "" {
			return keyErr("tls.cert_file", "tls.mode = \"files\" needs tls.cert_file and tls.key_file (PEM)")
		}
	}
	for _, d := range c.TLSDomains() {
		if strings.ContainsAny(d, " /:*") {
			return keyErr("tls.domains", "%q is not a domain name (wildcards need a DNS challenge, which this server does not do)", d)
		}
	}
	return nil
}

// checkPlainAddr allows plaintext only on loopback unless forced (SPEC §9).
func checkPlainAddr(addr string, force bool) error {
	return checkPlain(addr, force, "listen.allow_public_plain")
}

// checkPlain refuses plaintext on a non-loopback address unless forceKey is set.
func checkPlain(addr string, force bool, forceKey string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. \"127.0.0.1:50051\"): %v", addr, err)
	}
	if port == "" {
		return fmt.Errorf("%q has no port (e.g. \"127.0.0.1:50051\")", addr)
	}
	if force || host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address; plaintext is allowed only on loopback unless %s = true", addr, forceKey)
	}
	return nil
}

func (c *Config) validateLLM() error {
	l := c.LLM
	if err := validateModel("llm.", l.Provider, l.Model, l.BaseURL, l.APIKey); err != nil {
		return err
	}
	for i, f := range l.Fallbacks {
		p := fmt.Sprintf("llm.fallbacks[%d].", i)
		if err := validateModel(p, f.Provider, f.Model, f.BaseURL, f.APIKey); err != nil {
			return err
		}
		if f.Provider == "gemini" && f.APIKey == "" {
			// The main model may start without a key (the server says what to
			// set); a fallback that can never answer is a mistake to report.
			return keyErr(p+"api_key", "a Gemini fallback needs its key (api_key, or api_key_file)")
		}
		if f.Timeout.Duration != 0 {
			if err := durIn(p+"timeout", f.Timeout, time.Second, time.Hour); err != nil {
				return err
			}
		}
	}
	return firstErr([]error{
		durIn("llm.timeout", l.Timeout, time.Second, time.Hour),
		durIn("llm.first_token_timeout", l.FirstTokenTimeout, time.Second, time.Hour),
		floatIn("llm.temperature", l.Temperature, 0, 2),
		intIn("llm.max_output_tokens", l.MaxOutputTokens, 1, 1000000),
		intIn("llm.retries", l.Retries, 0, 5),
		durIn("llm.retry_backoff", l.RetryBackoff, 0, 10*time.Second),
		intIn("llm.thinking_budget", l.ThinkingBudget, -1, 32768),
		intIn("llm.breaker_failures", l.BreakerFailures, 0, 1000),
		durIn("llm.breaker_cooldown", l.BreakerCooldown, time.Second, time.Hour),
	})
}

// validateModel checks one model endpoint ([llm] or one [[llm.fallbacks]]);
// p is its key prefix.
func validateModel(p, provider, model, baseURL, apiKey string) error {
	if err := oneOf(p+"provider", provider, "gemini", "openai"); err != nil {
		return err
	}
	switch provider {
	case "gemini":
		// As llm.NewGemini: a leading "models/" is accepted; the rest is one URL path segment.
		m := strings.TrimPrefix(strings.TrimSpace(model), "models/")
		if m == "" {
			return keyErr(p+"model", "must not be empty (e.g. \"gemini-2.5-flash-lite\")")
		}
		if strings.ContainsFunc(m, func(r rune) bool { return !isAlnum(r) && !strings.ContainsRune(".-_", r) }) {
			return keyErr(p+"model", "%q: a Gemini model name has only letters, digits, '.', '-' and '_' (e.g. \"gemini-2.5-flash-lite\")", model)
		}
		if baseURL != "" {
			if err := checkAPIRoot(p+"base_url", baseURL, "https://generativelanguage.googleapis.com"); err != nil {
				return err
			}
		}
	case "openai":
		m := strings.TrimSpace(model)
		if m == "" {
			return keyErr(p+"model", "must not be empty for provider \"openai\" (the model name the server knows, e.g. \"llama3.2\")")
		}
		if strings.ContainsFunc(m, unicode.IsControl) {
			return keyErr(p+"model", "%q contains control characters", model)
		}
		if baseURL == "" {
			return keyErr(p+"base_url", "is required for provider \"openai\" (the /v1 root, e.g. \"http://localhost:11434/v1\")")
		}
		if err := checkAPIRoot(p+"base_url", baseURL, "http://localhost:11434/v1"); err != nil {
			return err
		}
	}
	if !keyChars(strings.TrimSpace(apiKey)) {
		return keyErr(p+"api_key", "contains spaces, line breaks or control characters; check the value (or the file %sapi_key_file names)", p)
	}
	return nil
}

func (c *Config) validateDevices() error {
	d, q := c.Devices, c.Quotas
	if err := oneOf("devices.pairing", d.Pairing, "open", "approve"); err != nil {
		return err
	}
	if err := oneOf("devices.refusal", d.Refusal, "spoken", "status"); err != nil {
		return err
	}
	if q.Timezone != "" {
		if _, err := time.LoadLocation(q.Timezone); err != nil {
			return keyErr("quotas.timezone", "%q is not a time zone this machine knows (an IANA name like \"Europe/Berlin\"; empty = the server's local time)", clip(q.Timezone))
		}
	}
	return firstErr([]error{
		durIn("devices.poll_interval", d.PollInterval, 100*time.Millisecond, time.Minute),
		intIn("quotas.daily_turns", q.DailyTurns, 0, 1000000),
		intIn("quotas.daily_tokens", q.DailyTokens, 0, 2000000000),
	})
}

func (c *Config) validatePreempt() error {
	p := c.Preempt
	if err := oneOf("preempt.enabled", p.Enabled, "auto", "on", "off"); err != nil {
		return err
	}
	return firstErr([]error{
		durIn("preempt.stable_after", p.StableAfter, 50*time.Millisecond, 10*time.Second),
		intIn("preempt.min_chars", p.MinChars, 1, 1000),
		intIn("preempt.max_speculations", p.MaxSpeculations, 1, 10000),
		durIn("preempt.hold", p.Hold, time.Second, 2*time.Minute),
	})
}

// checkAPIRoot accepts an absolute http(s) URL without credentials, query or fragment.
func checkAPIRoot(key, raw, example string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return keyErr(key, "%q is not an absolute http:// or https:// URL (e.g. %q)", clip(raw), example)
	case u.User != nil:
		return keyErr(key, "%q has credentials in it; put the key in the api_key setting instead", u.Redacted())
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.HasSuffix(raw, "#"):
		return keyErr(key, "%q must not have a query or fragment (e.g. %q)", clip(raw), example)
	}
	return nil
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// keyChars reports whether an API key can travel in an HTTP header as is.
func keyChars(k string) bool {
	return !strings.ContainsFunc(k, func(r rune) bool { return r <= ' ' || r == 0x7f || unicode.IsControl(r) })
}

// clip shortens a value quoted in a message.
func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

// ttsFormats lists the tts.format values each provider accepts ("" = its default).
var ttsFormats = map[string][]string{
	"openai":  {tts.OpenAIFormatWAV, tts.OpenAIFormatPCM},
	"command": {tts.CommandFormatWAV, tts.CommandFormatRaw},
}

// ttsReceives says what a provider without a format setting always receives.
var ttsReceives = map[string]string{
	"edge":    "it always receives MP3",
	"azure":   "it always receives 48 kHz PCM",
	"wyoming": "it always receives the PCM its audio events describe",
}

const minSampleRate, maxSampleRate = 8000, 192000

func (c *Config) validateTTS() error {
	t := c.TTS
	if err := validateSpeaker("tts.", t.Speaker); err != nil {
		return err
	}
	if t.Fallback.Provider != "" {
		same := t.Fallback
		if same.Timeout.Duration == 0 {
			same.Timeout = t.Timeout // 0 = tts.timeout
		}
		if same == t.Speaker {
			return keyErr("tts.fallback.provider", "[tts.fallback] is the same as [tts]; a fallback needs another provider, voice or endpoint")
		}
		if err := validateSpeaker("tts.fallback.", t.Fallback); err != nil {
			return err
		}
	}
	if strings.TrimSpace(t.WelcomeText) == "" {
		return keyErr("tts.welcome_text", "must not be empty (what GenerateWelcomeAudio says when the client sends no text)")
	}
	return firstErr([]error{
		intIn("tts.retries", t.Retries, 0, 5),
		durIn("tts.retry_backoff", t.RetryBackoff, 0, 10*time.Second),
		intIn("tts.lookahead", t.Lookahead, 1, 8),
		intIn("tts.max_welcome_seconds", t.MaxWelcomeSeconds, 1, 600),
	})
}

// validateSpeaker checks one speech provider's settings; p is the table's
// key prefix ("tts." or "tts.fallback.").
func validateSpeaker(p string, t Speaker) error {
	if err := oneOf(p+"provider", t.Provider, "edge", "azure", "openai", "wyoming", "command"); err != nil {
		return err
	}
	if t.Format != "" {
		if allowed, ok := ttsFormats[t.Provider]; ok {
			if !slices.Contains(allowed, t.Format) {
				return keyErr(p+"format", "%q is not one of %s for provider %q (empty = %q)", t.Format, quoteList(allowed), t.Provider, allowed[0])
			}
		} else {
			return keyErr(p+"format", "%q is not used by provider %q (%s); leave it empty", t.Format, t.Provider, ttsReceives[t.Provider])
		}
	}
	if t.SampleRate != 0 && (t.SampleRate < minSampleRate || t.SampleRate > maxSampleRate) {
		return keyErr(p+"sample_rate", "%d is outside %d..%d (0 = the provider's default)", t.SampleRate, minSampleRate, maxSampleRate)
	}
	if (t.Provider == "azure" || t.Provider == "openai") && !keyChars(t.APIKey) {
		return keyErr(p+"api_key", "contains spaces, line breaks or control characters; check the value (or the file %sapi_key_file names)", p)
	}
	var err error
	switch t.Provider {
	case "edge":
		err = validateEdge(p, t)
	case "azure":
		err = validateAzure(p, t)
	case "openai":
		err = validateOpenAITTS(p, t)
	case "wyoming":
		err = validateWyoming(p, t)
	case "command":
		err = validateCommand(p, t)
	}
	if err != nil {
		return err
	}
	if p != "tts." && t.Timeout.Duration == 0 {
		return nil // the fallback's 0 = tts.timeout
	}
	return durIn(p+"timeout", t.Timeout, time.Second, 10*time.Minute)
}

func validateWyoming(p string, t Speaker) error {
	if t.BaseURL == "" {
		return keyErr(p+"base_url", "is required for provider \"wyoming\" (the server's address, e.g. \"tcp://127.0.0.1:10200\" for wyoming-piper)")
	}
	if err := tts.CheckWyomingAddress(t.BaseURL); err != nil {
		return keyErr(p+"base_url", "%v", err)
	}
	if len(t.Voice) > openAIFieldMax {
		return keyErr(p+"voice", "is %d bytes long; at most %d", len(t.Voice), openAIFieldMax)
	}
	return nil
}

func validateEdge(p string, t Speaker) error {
	if t.BaseURL != "" {
		u, err := url.Parse(t.BaseURL)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			return keyErr(p+"base_url", "%q is not a ws:// or wss:// URL; for provider \"edge\" it overrides the read-aloud WebSocket endpoint (empty = %s)", clip(t.BaseURL), tts.EdgeURL)
		}
	}
	checks := []struct {
		key, v string
		check  func(string) error
	}{
		{p + "voice", t.Voice, tts.CheckEdgeVoice},
		{p + "rate", t.Rate, tts.CheckEdgePercent},
		{p + "volume", t.Volume, tts.CheckEdgePercent},
		{p + "pitch", t.Pitch, tts.CheckEdgePitch},
	}
	for _, ch := range checks {
		if ch.v == "" {
			continue // the provider's default
		}
		if err := ch.check(ch.v); err != nil {
			return keyErr(ch.key, "%v (provider \"edge\"; empty = the default)", err)
		}
	}
	return nil
}

func validateAzure(p string, t Speaker) error {
	if t.BaseURL != "" {
		if err := tts.CheckHTTPBaseURL(t.BaseURL); err != nil {
			return keyErr(p+"base_url", "%v (provider \"azure\": the host root, e.g. \"https://westeurope.tts.speech.microsoft.com\")", err)
		}
	} else {
		if t.Region == "" {
			return keyErr(p+"region", "is required for provider \"azure\" (e.g. \"westeurope\"), or set tts.base_url")
		}
		if err := tts.CheckAzureRegion(t.Region); err != nil {
			return keyErr(p+"region", "%v", err)
		}
	}
	if t.APIKey == "" {
		return keyErr(p+"api_key", "the Azure Speech key is required for provider \"azure\" (or set %sapi_key_file / %s)", p, EnvName(p+"api_key_file"))
	}
	if t.Voice != "" {
		if err := tts.CheckAzureVoice(t.Voice); err != nil {
			return keyErr(p+"voice", "%v (provider \"azure\"; empty = \"en-US-AriaNeural\")", err)
		}
	}
	if t.Rate != "" {
		if err := tts.CheckAzureRate(t.Rate); err != nil {
			return keyErr(p+"rate", "%v (provider \"azure\"; empty = the default)", err)
		}
	}
	return nil
}

// openAIFieldMax is the longest tts.model / tts.voice the openai provider sends.
const openAIFieldMax = 200

func validateOpenAITTS(p string, t Speaker) error {
	if t.BaseURL == "" {
		return keyErr(p+"base_url", "is required for provider \"openai\" (the /v1 root, e.g. \"http://localhost:8880/v1\")")
	}
	if err := tts.CheckHTTPBaseURL(t.BaseURL); err != nil {
		return keyErr(p+"base_url", "%v (provider \"openai\": the /v1 root, e.g. \"http://localhost:8880/v1\")", err)
	}
	if len(t.Model) > openAIFieldMax {
		return keyErr(p+"model", "is %d bytes long; at most %d", len(t.Model), openAIFieldMax)
	}
	if len(t.Voice) > openAIFieldMax {
		return keyErr(p+"voice", "is %d bytes long; at most %d", len(t.Voice), openAIFieldMax)
	}
	return nil
}

func validateCommand(p string, t Speaker) error {
	if strings.TrimSpace(t.Command) == "" {
		return keyErr(p+"command", "is required for provider \"command\" (e.g. \"espeak-ng --stdout\")")
	}
	argv, err := tts.SplitCommand(t.Command)
	if err != nil {
		return keyErr(p+"command", "%v", err)
	}
	if len(argv) == 0 || argv[0] == "" {
		return keyErr(p+"command", "%q names no program (e.g. \"espeak-ng --stdout\")", clip(t.Command))
	}
	if strings.Contains(argv[0], "{") {
		return keyErr(p+"command", "the program name %q may not contain a placeholder; {text} and {voice} go in the arguments", argv[0])
	}
	if _, err := exec.LookPath(argv[0]); err != nil {
		if strings.ContainsRune(argv[0], '/') || errors.Is(err, exec.ErrDot) {
			return keyErr(p+"command", "program %q cannot be run: %v", argv[0], err)
		}
		return keyErr(p+"command", "program %q is not installed or not in PATH (e.g. apt-get install espeak-ng)", argv[0])
	}
	if t.Format == tts.CommandFormatRaw && t.SampleRate == 0 {
		return keyErr(p+"sample_rate", "is required with tts.format = \"raw\": the program's output rate, %d..%d (e.g. 22050 for piper)", minSampleRate, maxSampleRate)
	}
	if tts.CommandUsesVoice(argv) {
		if t.Voice == "" {
			return keyErr(p+"voice", "is required: tts.command uses {voice} (e.g. \"en-us\" for espeak-ng)")
		}
		if err := tts.CheckCommandVoice(t.Voice); err != nil {
			return keyErr(p+"voice", "%v", err)
		}
	}
	return nil
}

func (c *Config) validateSpeech() error {
	s := c.Speech
	return firstErr([]error{
		intIn("speech.first_min_words", s.FirstMinWords, 1, 100),
		intIn("speech.min_words", s.MinWords, 1, 100),
		intIn("speech.max_chars", s.MaxChars, 40, 2000),
		intInRef("speech.min_chars", s.MinChars, 1, s.MaxChars, "speech.max_chars"),
	})
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

func (c *Config) validateStore() error {
	s := c.Store
	if _, err := ParsePrices(c.Usage.Prices); err != nil {
		return keyErr("usage.prices", "%v", err)
	}
	return firstErr([]error{
		durIn("store.commit_timeout", s.CommitTimeout, 0, time.Minute),
		intIn("store.queue", s.Queue, 16, 1000000),
		intIn("store.backup_keep", s.BackupKeep, 1, 10000),
		bytesIn("store.audio_cache_bytes", s.AudioCacheBytes, 0, "", 64<<30, ""),
	})
}

func (c *Config) validateMemory() error {
	m := c.Memory
	if err := oneOf("memory.analyzer", m.Analyzer, "llm", "heuristic", "off"); err != nil {
		return err
	}
	return firstErr([]error{
		durIn("memory.timeout", m.Timeout, time.Second, 5*time.Minute),
		durIn("memory.load_timeout", m.LoadTimeout, 10*time.Millisecond, 10*time.Second),
		intIn("memory.recent_turns", m.RecentTurns, 0, 50),
		durIn("memory.recent_window", m.RecentWindow, time.Minute, 365*24*time.Hour),
		intIn("memory.digest_days", m.DigestDays, 0, 3650),
		durIn("metrics.summary_interval", c.Metrics.SummaryInterval, 0, 24*time.Hour),
	})
}

func (c *Config) validateLog() error {
	if err := oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error"); err != nil {
		return err
	}
	return oneOf("log.format", c.Log.Format, "text", "json")
}
