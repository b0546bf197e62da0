package server

import (
	"context"
	"encoding"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/nexy-server/nexy/internal/buildinfo"
	"github.com/nexy-server/nexy/store"
)

// statusStore is what /status asks of a store beyond Store. It is checked
// with a type assertion, so Store stays the narrow interface a turn needs
// and a store without it simply shows no database block.
type statusStore interface {
	Status(ctx context.Context, backupDir string) (store.Status, error)
}

// statusStoreTimeout bounds the database part of /status: a busy store
// makes that block say so instead of holding the request.
const statusStoreTimeout = 2 * time.Second

// statusResponse is /status: what an operator checks first. It names no
// directory and no address, and provider messages are truncated with the
// configured secrets masked: the endpoint is public.
type statusResponse struct {
	Status        string    `json:"status"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds int64     `json:"uptime_s"`
	ActiveTurns   int       `json:"active_turns"`
	// ActiveStreams are the concurrency slots in use (turns and welcome
	// audio), out of limits.max_concurrent_streams.
	ActiveStreams int                       `json:"active_streams"`
	Versions      statusVersions            `json:"versions"`
	Providers     statusProviders           `json:"providers"`
	Limits        map[string]any            `json:"limits"`
	Turns         map[string]int64          `json:"turns"`
	Errors        map[string]int64          `json:"errors"`
	Refusals      map[string]int64          `json:"refusals"`
	Latency       map[string]latencySummary `json:"latency"`
	Database      *statusDatabase           `json:"database"`
	// Devices: pairing, refusal mode, how many devices are in each state,
	// the default daily limits. No ids: the endpoint is public.
	Devices map[string]any `json:"devices"`
	Updates any            `json:"updates,omitempty"`
}

type statusVersions struct {
	Server    string `json:"server"`
	Commit    string `json:"commit"`
	BuildTime string `json:"build_time"`
	Go        string `json:"go"`
}

type statusProviders struct {
	LLM         statusProvider  `json:"llm"`
	Chain       []statusBreaker `json:"llm_chain,omitempty"`
	TTS         statusProvider  `json:"tts"`
	TTSFallback *statusProvider `json:"tts_fallback,omitempty"`
}

// statusBreaker is one model of the LLM chain and its circuit breaker.
type statusBreaker struct {
	Entry     string     `json:"entry"` // llm, llm.fallbacks[N]
	Provider  string     `json:"provider"`
	Model     string     `json:"model"`
	State     string     `json:"breaker"` // closed, open, half_open
	OpenUntil *time.Time `json:"open_until,omitempty"`
	Calls     uint64     `json:"calls"`
	Failures  uint64     `json:"failures"`
	Fallbacks uint64     `json:"fallbacks"`
	LastError string     `json:"last_error,omitempty"`
	LastKind  string     `json:"last_kind,omitempty"`
}

type statusProvider struct {
	Provider string `json:"provider"`
	Model    string `json:"model,omitempty"`
	Voice    string `json:"voice,omitempty"`
	// Problem says why the provider cannot be used ("" = configured).
	Problem   string         `json:"problem,omitempty"`
	LastError *providerError `json:"last_error"`
}

type statusDatabase struct {
	store.Status
	Error string `json:"error,omitempty"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	m := s.svc.metrics
	t := m.tally()
	bi := buildinfo.Current()
	resp := statusResponse{
		Status: "OK", StartedAt: s.start.UTC(), UptimeSeconds: int64(time.Since(s.start).Seconds()),
		ActiveTurns: s.svc.adm.turns(), ActiveStreams: s.svc.adm.running(),
		Versions: statusVersions{Server: bi.Version, Commit: bi.Commit(), BuildTime: bi.Time, Go: bi.GoVersion},
		Providers: statusProviders{
			LLM: statusProvider{Provider: s.cfg.LLM.Provider, Model: s.cfg.LLM.Model, LastError: lastError(t, providerLLM)},
			TTS: statusProvider{Provider: s.cfg.TTS.Provider, Voice: s.cfg.TTS.Voice, LastError: lastError(t, providerTTS)},
		},
		Limits: tomlFields(s.cfg.Limits),
		Turns:  withZeros(t.turns, outcomeComplete, outcomeCancelled, outcomeFailed),
		Errors: t.errors, Refusals: t.refusals,
		Latency: map[string]latencySummary{},
	}
	if s.start.IsZero() {
		resp.UptimeSeconds = 0
	}
	if s.svc.llm == nil {
		resp.Providers.LLM.Problem = s.svc.llmMissing
	}
	resp.Providers.Chain = s.chainStatus()
	if f := s.cfg.TTS.Fallback; f.Provider != "" {
		resp.Providers.TTSFallback = &statusProvider{Provider: f.Provider, Voice: f.Voice, LastError: lastError(t, providerTTSFallback)}
	}
	resp.Devices = s.svc.devices.summary()
	var total int64
	for _, n := range resp.Turns {
		total += n
	}
	resp.Turns["total"] = total
	for _, stage := range stageNames {
		resp.Latency[stage] = m.stages[stage].summary()
	}
	if ss, ok := s.svc.store.(statusStore); ok {
		ctx, cancel := context.WithTimeout(r.Context(), statusStoreTimeout)
		st, err := ss.Status(ctx, s.cfg.BackupDirectory())
		cancel()
		resp.Database = &statusDatabase{Status: st}
		if err != nil {
			// The error may name directories: it goes to the log only.
			s.log.Warn("Database status not read", "scope", "http", "decision", "status_db_error", "error", err.Error())
			resp.Database.Error = "the database status could not be read; the server log says why"
		}
	}
	if s.feed != nil {
		resp.Updates = s.feed.Status()
	}
	writeJSON(w, http.StatusOK, cacheNoStore, resp)
}

// chainStatus is the LLM chain's breakers, messages masked and cut.
func (s *Server) chainStatus() []statusBreaker {
	m := s.svc.metrics
	if m.chain == nil {
		return nil
	}
	var out []statusBreaker
	for _, st := range m.chain.States() {
		b := statusBreaker{Entry: st.Label, Provider: st.Provider, Model: st.Model, State: st.State, Calls: st.Calls,
			Failures: st.Failures, Fallbacks: st.Fallbacks, LastKind: st.LastKind,
			LastError: truncate(m.mask(st.LastError), maxStatusMessage)}
		if !st.OpenUntil.IsZero() {
			u := st.OpenUntil.UTC()
			b.OpenUntil = &u
		}
		out = append(out, b)
	}
	return out
}

func lastError(t tally, provider string) *providerError {
	if e, ok := t.lastErr[provider]; ok {
		return &e
	}
	return nil
}

// withZeros is counts with every key in keys present.
func withZeros(counts map[string]int64, keys ...string) map[string]int64 {
	for _, k := range keys {
		if _, ok := counts[k]; !ok {
			counts[k] = 0
		}
	}
	return counts
}

// tomlFields is a config section as its keys and values, named as in
// nexy.toml (limits.max_concurrent_streams → "max_concurrent_streams"),
// durations in Go syntax, so /status reads like the config file.
func tomlFields(section any) map[string]any {
	v := reflect.ValueOf(section)
	out := map[string]any{}
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("toml"), ",")
		if name == "" || name == "-" || !v.Type().Field(i).IsExported() {
			continue
		}
		f := v.Field(i).Interface()
		if tm, ok := f.(encoding.TextMarshaler); ok {
			if b, err := tm.MarshalText(); err == nil {
				f = string(b)
			}
		}
		out[name] = f
	}
	return out
}
