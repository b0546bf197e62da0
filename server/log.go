package server

import (
	"context"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"time"

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

func (m *masker) replace(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		a.Key = "ts"
		return a
	}
	key := strings.ToLower(a.Key)
	for _, s := range secretAttrs {
		if strings.Contains(key, s) && a.Value.Kind() == slog.KindString && a.Value.String() != "" {
			return slog.String(a.Key, "****")
		}
	}
	if a.Value.Kind() == slog.KindString {
		if v := a.Value.String(); v != "" {
			if masked := m.mask(v); masked != v {
				return slog.String(a.Key, masked)
			}
		}
	}
	return a
}

func (m *masker) mask(v string) string {
	for _, s := range m.secrets {
		v = strings.ReplaceAll(v, s, "****")
	}
	v = bearerRE.ReplaceAllString(v, "${1}****")
	return keyParamRE.ReplaceAllString(v, "${1}****")
}

// decision writes one decision line.
func (s *service) decision(level slog.Level, method, decision string, start time.Time, attrs ...any) {
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

// shortID keeps enough of a hardware id to correlate log lines without
// writing the full device identifier into every line.
func shortID(id string) string { return truncate(id, 8) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
