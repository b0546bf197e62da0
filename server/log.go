package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nexy-server/nexy/config"
)

// NewLogger builds the structured log: one line per decision with ts, level,
// scope, method, decision, context and dur_ms (SPEC §10). Secret values from
// the config, bearer tokens and key-like attributes are masked wherever they appear.
func NewLogger(w io.Writer, c config.Log, secrets []string) *slog.Logger {
	level := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[c.Level]
	m := &masker{secrets: secrets}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: m.replace}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// masker redacts secrets in log attributes.
type masker struct{ secrets []string }

var (
	bearerRE    = regexp.MustCompile(`(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}`)
	keyParamRE  = regexp.MustCompile(`(?i)((?:api[_-]?key|key|token|password|secret)=)[^&\s"]+`)
	secretAttrs = []string{"api_key", "apikey", "token", "password", "secret", "authorization"}
)

// maxLogValue caps every string the log prints: values that come from a
// client (ids, sources, model names, provider error bodies) can be megabytes,
// and one request must never write a megabyte line.
const maxLogValue = 1024

func (m *masker) replace(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		a.Key = "ts"
		return a
	}
	if a.Value.Kind() != slog.KindString || a.Value.String() == "" {
		return a
	}
	key := strings.ToLower(a.Key)
	for _, s := range secretAttrs {
		if strings.Contains(key, s) {
			return slog.String(a.Key, "****")
		}
	}
	// Masked before it is cut: a secret across the cut would leave its
	// first bytes unmasked.
	v := m.mask(a.Value.String())
	if len(v) > maxLogValue {
		v = fmt.Sprintf("%s(%d bytes)", truncate(v, maxLogValue), len(v))
	}
	if v != a.Value.String() {
		return slog.String(a.Key, v)
	}
	return a
}

func (m *masker) mask(v string) string {
	for _, s := range m.secrets {
		v = strings.ReplaceAll(v, s, "****")
	}
	// The regexes cost microseconds per value and almost no value can match:
	// each runs only when the cheap check for what it needs passes.
	if mayHaveBearer(v) {
		v = bearerRE.ReplaceAllString(v, "${1}****")
	}
	if mayHaveKeyParam(v) {
		v = keyParamRE.ReplaceAllString(v, "${1}****")
	}
	return v
}

// mayHaveBearer reports whether v contains "bearer" in any case, which every
// bearerRE match does. None of its letters has a case folding outside ASCII.
func mayHaveBearer(v string) bool {
	const word = "bearer"
	for i := 0; i+len(word) <= len(v); i++ {
		if v[i]|0x20 != 'b' {
			continue
		}
		j := 1
		for j < len(word) && v[i+j]|0x20 == word[j] {
			j++
		}
		if j == len(word) {
			return true
		}
	}
	return false
}

// mayHaveKeyParam reports whether some '=' in v follows one of the names
// keyParamRE ends in (key, token, password, secret), in any case.
func mayHaveKeyParam(v string) bool {
	for i := strings.IndexByte(v, '='); i >= 0; {
		before := v[:i]
		if foldSuffix(before, "key") || foldSuffix(before, "token") ||
			foldSuffix(before, "password") || foldSuffix(before, "secret") {
			return true
		}
		next := strings.IndexByte(v[i+1:], '=')
		if next < 0 {
			break
		}
		i += 1 + next
	}
	return false
}

// foldSuffix reports whether s ends with word (lower-case ASCII letters) as
// the (?i) of Go's regexp matches it: ASCII letters in either case, plus the
// two non-ASCII simple case foldings of letters, K (U+212A KELVIN SIGN) for
// k and ſ (U+017F LONG S) for s.
func foldSuffix(s, word string) bool {
	for j := len(word) - 1; j >= 0; j-- {
		c := word[j]
		if len(s) == 0 {
			return false
		}
		if b := s[len(s)-1]; b < utf8.RuneSelf {
			if b|0x20 != c {
				return false
			}
			s = s[:len(s)-1]
			continue
		}
		r, size := utf8.DecodeLastRuneInString(s)
		if !(c == 'k' && r == '\u212A' || c == 's' && r == '\u017F') {
			return false
		}
		s = s[:len(s)-size]
	}
	return true
}

// decision writes one decision line.
func (s *service) decision(level slog.Level, method, decision string, start time.Time, attrs ...any) {
	// Counted whatever the log level: method and decision come from fixed sets in code.
	s.metrics.decisions.WithLabelValues(method, decision).Inc()
	if !s.log.Enabled(context.Background(), level) {
		return
	}
	args := append([]any{"scope", "grpc", "method", method, "decision", decision}, slog.Group("ctx", attrs...))
	args = append(args, "dur_ms", time.Since(start).Milliseconds())
	s.log.Log(context.Background(), level, "Decision: "+decision, args...)
}

// idAttrs are the request identifiers worth logging.
func idAttrs(req interface {
	GetHardwareId() string
	GetSessionId() string
}) []any {
	return []any{slog.String("session_id", truncate(req.GetSessionId(), 64)), slog.String("hardware_id", shortID(req.GetHardwareId()))}
}

// shortID keeps a hardware id recognisable and distinct without writing the
// full device identifier into every line: its first 8 characters (what the
// owner sees in the app) and a short hash of the whole id, so two devices
// whose ids share a prefix still look different.
func shortID(id string) string {
	if len(id) <= 16 {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return id[:8] + "~" + hex.EncodeToString(sum[:3])
}

// truncate cuts s to at most n bytes, on a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
