package server

import (
	"io"
	"log/slog"
	"testing"

	"github.com/nexy-server/nexy/config"
)

// benchSecrets stand for the configured secret values (provider keys, an
// admin token) that NewLogger masks wherever they appear.
var benchSecrets = []string{"sk-proj-4f7a9c2e1b8d6f3a0e5c7b9d2f4a6c8e", "nexy-admin-7Qm2xK9pL4vR8sT1"}

// benchLogValues are string values as the server logs them on a turn:
// messages, scopes, methods, decisions, ids, models, provider errors; a few
// carry something to mask, most do not.
var benchLogValues = []string{
	"Decision: turn_done", "grpc", "StreamAudio", "turn_done",
	"3f2c9a1e-5b7d-4e8f-a6c2-9d1b0e7f4a3c", "C02XG2J1~a3f9c1",
	"gpt-4o-mini-2024-07-18", "openai", "edge", "en-US-AriaNeural",
	`llm openai: unavailable: request failed: Post "https://api.openai.com/v1/chat/completions": dial tcp 162.159.140.245:443: i/o timeout`,
	"tts edge: websocket: close 1006 (abnormal closure): unexpected EOF",
	"Speech fails: the fallback speaks instead", "command_refused", "open_app",
	"unknown command \"format_disk\"",
	"Turn record not committed before end_message; it is still queued",
	"GET /status?token=abc123def456 from 10.0.0.7",
	"upstream said: Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig",
}

// BenchmarkMask masks the typical values one by one (the per-value cost of
// every log line).
func BenchmarkMask(b *testing.B) {
	m := &masker{secrets: benchSecrets}
	n := 0
	for _, v := range benchLogValues {
		n += len(v)
	}
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		for _, v := range benchLogValues {
			_ = m.mask(v)
		}
	}
	b.ReportMetric(float64(len(benchLogValues)), "values/op")
}

// BenchmarkLogDecision writes one decision line, as s.decision does for a
// finished turn, through the JSON handler NewLogger builds.
func BenchmarkLogDecision(b *testing.B) {
	log := NewLogger(io.Discard, config.Log{Level: "info", Format: "json"}, benchSecrets)
	b.ReportAllocs()
	for b.Loop() {
		log.Info("Decision: turn_done", "scope", "grpc", "method", "StreamAudio", "decision", "turn_done",
			slog.Group("ctx", slog.String("session_id", benchLogValues[4]), slog.String("hardware_id", benchLogValues[5]),
				slog.String("model", benchLogValues[6]), slog.String("voice", benchLogValues[9]), slog.Int("segments", 7)),
			"dur_ms", 1840)
	}
}
