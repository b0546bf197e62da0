package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nexy-server/nexy/audio"
	"github.com/nexy-server/nexy/internal/fault"
	"github.com/nexy-server/nexy/llm"
	"github.com/nexy-server/nexy/tts"
)

// features maps the config flags onto the command allowlist.
func (s *service) features() llm.Features {
	f := s.cfg.Features
	return llm.Features{Messages: f.Messages, WhatsApp: f.WhatsApp, Browser: f.Browser, Subscription: f.Subscription}
}

// forwardActions: the kill switch wins over the feature flag.
func (s *service) forwardActions() bool {
	return s.cfg.Features.ForwardAssistantActions && !s.cfg.KillSwitches.DisableForwardAssistantActions
}

// systemPrompt assembles the prompt for a turn starting now, with the
// user's memory as its data block.
func (s *service) systemPrompt(memory string) string {
	now := s.now()
	return llm.SystemPrompt(llm.PromptContext{Features: s.features(), Now: now, TimeZone: now.Location().String(),
		NoActions: !s.forwardActions(), Memory: memory})
}

func (s *service) splitterConfig() tts.SplitterConfig {
	c := s.cfg.Speech
	return tts.SplitterConfig{FirstMinWords: c.FirstMinWords, MinWords: c.MinWords, MinChars: c.MinChars, MaxChars: c.MaxChars}
}

// checkAction validates the model's command against the allowlist of the
// enabled features; a refused command never reaches the client.
func (s *service) checkAction(reply llm.Reply, sessionID string) *llm.Action {
	if reply.Command == "" {
		return nil
	}
	a, err := llm.ValidateCommand(reply.Command, reply.Args, s.features())
	if err != nil {
		s.log.Info("command refused", "scope", "grpc", "method", "StreamAudio", "decision", "command_refused",
			"session_id", sessionID, "command", truncate(reply.Command, 64), "reason", err.Error())
		return nil
	}
	return &a
}

// fallbackText is spoken when the model said nothing: the command's own
// confirmation, a refusal, or a fixed sentence (never the user's prompt).
func (s *service) fallbackText(reply llm.Reply, action *llm.Action) string {
	switch {
	case action != nil && s.forwardActions():
		return llm.FallbackText(*action)
	case reply.Command != "":
		return cannotDoText
	default:
		return llm.NoAnswerText
	}
}

// llmStream starts the model's answer, retrying a call the provider refused
// before answering (unavailable, rate-limited, a gateway timeout) up to
// llm.retries times.
// No text has arrived at that point, so nothing can be said twice.
func (s *service) llmStream(ctx context.Context, req llm.Request) (llm.Stream, error) {
	for attempt := 0; ; attempt++ {
		stream, err := s.llm.Stream(ctx, req)
		if err == nil {
			return stream, nil
		}
		s.providerFailed(ctx, providerLLM, err)
		kind := llm.KindOf(err)
		// A timeout of our own (llm.timeout) already waited long: not again.
		// A gateway's 408/504 came back at once, like a 503.
		retryable := kind == llm.KindUnavailable || kind == llm.KindRateLimited || gatewayTimeout(err)
		if !retryable || attempt >= s.cfg.LLM.Retries || ctx.Err() != nil {
			return nil, err
		}
		s.metrics.providerRetried(providerLLM, kind.String())
		s.log.Info("AI provider call failed, retrying", "scope", "grpc", "decision", "llm_retry", "attempt", attempt+1, "error", err.Error())
		select {
		case <-time.After(time.Duration(attempt+1) * s.cfg.LLM.RetryBackoff.Duration):
		case <-ctx.Done():
			return nil, err
		}
	}
}

// gatewayTimeout reports an HTTP 408 or 504 from the provider (or a proxy in
// front of it), as opposed to llm.timeout running out here.
func gatewayTimeout(err error) bool {
	var le *llm.Error
	return errors.As(err, &le) && (le.Status == http.StatusRequestTimeout || le.Status == http.StatusGatewayTimeout)
}

// synthesize starts speech and returns it once its first audio is in hand:
// a provider that fails before any audio is retried (tts.retries; not a
// rejected key or a refused request, which fail the same way again), then
// [tts.fallback] speaks instead, so the user hears the answer in another
// voice rather than silence. Nothing has been heard yet at any of these
// points, so nothing can be spoken twice. The wait for the first audio costs
// nothing: the caller waits for it anyway.
func (s *service) synthesize(ctx context.Context, syn tts.Synthesizer, req tts.Request) (io.ReadCloser, error) {
	return s.speak(ctx, syn, req, nil)
}

// speak is synthesize for one of several segments: once one segment fell
// back, sticky makes the later ones of the same turn go straight to the
// fallback instead of each waiting for the failing provider again.
func (s *service) speak(ctx context.Context, syn tts.Synthesizer, req tts.Request, sticky *atomic.Bool) (io.ReadCloser, error) {
	if sticky != nil && sticky.Load() && s.speech.fallback != nil {
		return s.synthesizeWith(ctx, s.speech.fallback, providerTTSFallback, req)
	}
	pcm, err := s.synthesizeWith(ctx, syn, providerTTS, req)
	if err == nil || s.speech.fallback == nil || ctx.Err() != nil {
		return pcm, err
	}
	if sticky != nil {
		sticky.Store(true)
	}
	s.metrics.speechFellBack()
	s.log.Warn("Speech fails: the fallback speaks instead", "scope", "grpc", "decision", "tts_fallback",
		"provider", syn.Name(), "fallback", s.speech.fallback.Name(), "error", err.Error())
	pcm, ferr := s.synthesizeWith(ctx, s.speech.fallback, providerTTSFallback, req)
	if ferr != nil {
		return nil, err // the configured provider's failure is the one to fix first
	}
	return pcm, nil
}

// synthesizeWith is one provider's attempts.
func (s *service) synthesizeWith(ctx context.Context, syn tts.Synthesizer, label string, req tts.Request) (io.ReadCloser, error) {
	for attempt := 0; ; attempt++ {
		pcm, err := syn.Synthesize(ctx, req)
		if err == nil {
			if pcm, err = primed(pcm); err == nil {
				return pcm, nil
			}
		}
		s.providerFailed(ctx, label, err)
		kind := tts.KindOf(err)
		if kind == fault.Auth {
			s.log.Error("The speech provider rejected the server's credentials: check "+speakerKey(label)+"api_key", "scope", "grpc",
				"decision", "tts_auth_failed", "provider", syn.Name(), "error", err.Error())
		}
		if !kind.Retryable() || attempt >= s.cfg.TTS.Retries || ctx.Err() != nil {
			return nil, &speechError{provider: syn.Name(), key: speakerKey(label), err: err}
		}
		s.metrics.providerRetried(label, kind.String())
		s.log.Info("speech synthesis failed, retrying", "scope", "grpc", "decision", "tts_retry", "attempt", attempt+1, "error", err.Error())
		select {
		case <-time.After(time.Duration(attempt+1) * s.cfg.TTS.RetryBackoff.Duration):
		case <-ctx.Done():
			return nil, &speechError{provider: syn.Name(), key: speakerKey(label), err: err}
		}
	}
}

// speakerKey is the config table of a speech provider label.
func speakerKey(label string) string {
	if label == providerTTSFallback {
		return "tts.fallback."
	}
	return "tts."
}

// primed reads a stream's first audio, so a provider that fails before
// producing any (a refused key, a dropped connection, no audio at all) fails
// here, where it may still be retried or replaced, and not in the middle of
// the answer.
func primed(pcm io.ReadCloser) (io.ReadCloser, error) {
	head := make([]byte, audio.MaxChunkBytes)
	for empty := 0; ; empty++ {
		n, err := pcm.Read(head)
		if n > 0 {
			return &primedStream{head: head[:n], headErr: err, ReadCloser: pcm}, nil
		}
		if err == nil && empty >= maxEmptyReads {
			err = io.ErrNoProgress // a broken reader, as io.Reader documents
		}
		if err != nil {
			pcm.Close()
			if err == io.EOF {
				err = errors.New("the provider returned no audio")
			}
			return nil, err
		}
	}
}

// maxEmptyReads is how many (0, nil) reads primed tolerates, as bufio does.
const maxEmptyReads = 100

// primedStream replays the first read, then reads on.
type primedStream struct {
	head    []byte
	headErr error // returned once head is drained
	io.ReadCloser
}

func (p *primedStream) Read(b []byte) (int, error) {
	if len(p.head) > 0 {
		n := copy(b, p.head)
		p.head = p.head[n:]
		return n, nil
	}
	if p.headErr != nil {
		return 0, p.headErr
	}
	return p.ReadCloser.Read(b)
}

// logTurn writes the turn's decision line with its per-stage timings.
func (s *service) logTurn(t *turn, sentAny bool, err error) {
	decision, level := "complete", slog.LevelInfo
	attrs := []slog.Attr{
		slog.String("session_id", t.in.sessionID), slog.String("hardware_id", shortID(t.in.hardwareID)),
		slog.Bool("screenshot", t.in.image != nil), slog.Int("segments", t.segments), slog.Int("audio_chunks", t.chunks),
		slog.Int("input_tokens", t.usage.InputTokens), slog.Int("output_tokens", t.usage.OutputTokens),
		slog.Group("timings_ms",
			ms("admitted", t.tm.admitted.Load()), ms("llm_first_token", t.tm.llmFirstToken.Load()),
			ms("first_segment", t.tm.firstSegment.Load()), ms("tts_first_byte", t.tm.ttsFirstByte.Load()),
			ms("first_audio_sent", t.tm.firstAudioSent.Load()), ms("last_chunk_sent", t.tm.lastChunkSent.Load()),
			ms("record_commit", int64(t.saveWait))),
	}
	if t.action != nil {
		attrs = append(attrs, slog.String("command", t.action.Command), slog.Bool("action_forwarded", s.forwardActions()))
	}
	if err != nil {
		te := classify(t.ctx, err)
		decision, level = "error", slog.LevelWarn
		if te.kind == "cancelled_by_user" {
			decision, level = "cancelled", slog.LevelInfo
		}
		attrs = append(attrs, slog.String("error_type", te.kind), slog.Bool("sent_any", sentAny), slog.String("error", te.Error()))
	}
	s.decision(level, "StreamAudio", decision, t.in.start, toAny(attrs)...)
}

func ms(key string, ns int64) slog.Attr {
	return slog.Float64(key, float64(time.Duration(ns).Microseconds())/1000)
}

func toAny(attrs []slog.Attr) []any {
	out := make([]any, len(attrs))
	for i, a := range attrs {
		out[i] = a
	}
	return out
}
