package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/nexy-server/nexy/audio"
	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/llm"
	pb "github.com/nexy-server/nexy/proto"
	"github.com/nexy-server/nexy/store"
	"github.com/nexy-server/nexy/tts"
)

const (
	collectAccepted = "COLLECT_ACCEPTED"
	welcomeDone     = "Welcome audio generation completed"
)

// service implements the StreamingService RPCs.
type service struct {
	pb.UnimplementedStreamingServiceServer
	cfg     *config.Config
	log     *slog.Logger
	llm     llm.Provider // nil when not configured; llmMissing says why
	speech  speech
	store   Store // nil: nothing is recorded
	memory  *memoryService
	adm     *admission
	collect *collectBuffer
	budget  *requestBudget
	metrics *instruments
	devices *devices
	phrases *phrases
	preempt *preempter
	now     func() time.Time

	llmMissing string
}

func newService(cfg *config.Config, log *slog.Logger, deps Deps) *service {
	l := cfg.Limits
	s := &service{
		cfg: cfg, log: log, llm: deps.LLM, llmMissing: deps.LLMMissing, speech: newSpeech(cfg, deps),
		store: deps.Store, memory: newMemoryService(cfg, log, deps),
		adm: newAdmission(l.MaxConcurrentStreams, l.MaxTurnsPerDevice, l.MaxRatePerSecond),
		collect: newCollectBuffer(collectLimits{ttl: l.CollectTTL.Duration, maxEntries: l.CollectMaxSessions, maxBytes: l.CollectMaxBytes,
			perDevice: l.CollectPerDevice, perDeviceBytes: l.CollectPerDeviceBytes}),
		budget: newRequestBudget(l.RequestBytesInFlight, l.MaxMessageBytes, l.ReceiveTimeout.Duration),
		now:    time.Now,
	}
	s.metrics = newMetrics(s.adm.turns, s.adm.running, cfg.Secrets())
	s.memory.metrics = s.metrics
	s.devices = newDevices(cfg, deps.Store, log)
	s.preempt = newPreempter(s)
	s.metrics.reg.MustRegister(s.preempt)
	s.devices.stop = func(hw string, cause error) {
		s.adm.interrupt(hw, cause)
		s.preempt.dropDevice(hw, specRefused)
	}
	s.memory.usage = s.devices.addTokens
	s.phrases = newPhrases()
	if c, ok := deps.LLM.(llmChain); ok {
		s.metrics.watchChain(c)
	}
	return s
}

// StreamAudio answers COLLECT at once and runs the turn pipeline on COMMIT.
func (s *service) StreamAudio(req *pb.StreamRequest, stream grpc.ServerStreamingServer[pb.StreamResponse]) error {
	start := s.now()
	mime, verr := s.validateStream(req)
	if verr != nil {
		return s.refuse(stream.Send, "StreamAudio", req, start, verr)
	}
	switch req.GetPhase() {
	case pb.RequestPhase_REQUEST_PHASE_COLLECT:
		return s.collectPhase(req, mime, stream, start)
	case pb.RequestPhase_REQUEST_PHASE_COMMIT, pb.RequestPhase_REQUEST_PHASE_UNSPECIFIED:
		return s.commitPhase(req, mime, stream, start)
	default:
		return s.refuse(stream.Send, "StreamAudio", req, start,
			invalid("unsupported request phase %d (1 = COLLECT, 2 = COMMIT)", int32(req.GetPhase())))
	}
}

func (s *service) collectPhase(req *pb.StreamRequest, mime string, stream grpc.ServerStreamingServer[pb.StreamResponse], start time.Time) error {
	if s.devices.refused(stream.Context(), req.GetHardwareId()) {
		// Acknowledged as the client expects, but a device that will be
		// refused at COMMIT holds no buffer here.
		s.decision(slog.LevelDebug, "StreamAudio", "collect_refused_device", start, idAttrs(req)...)
		return stream.Send(&pb.StreamResponse{Content: &pb.StreamResponse_EndMessage{EndMessage: collectAccepted}})
	}
	accepted, err := s.collect.put(req, mime)
	if err != nil {
		return s.refuse(stream.Send, "StreamAudio", req, start, err)
	}
	decision := "collect_ack"
	if !accepted {
		decision = "collect_stale" // older chunk_seq: acknowledged, ignored
	} else if s.preempt.on {
		key := collectKey{req.GetHardwareId(), req.GetSessionId()}
		if c, ok := s.collect.peek(key.hardwareID, key.sessionID); ok {
			s.preempt.collected(key, c.text, c.screenshot)
		}
	}
	s.decision(slog.LevelDebug, "StreamAudio", decision, start, idAttrs(req)...)
	return stream.Send(&pb.StreamResponse{Content: &pb.StreamResponse_EndMessage{EndMessage: collectAccepted}})
}

func (s *service) commitPhase(req *pb.StreamRequest, mime string, stream grpc.ServerStreamingServer[pb.StreamResponse], start time.Time) error {
	hw, sid := req.GetHardwareId(), req.GetSessionId()
	buffered, _ := s.collect.peek(hw, sid)
	// The final transcript is authoritative; the COLLECT snapshot only fills in.
	prompt := strings.TrimSpace(req.GetPrompt())
	if prompt == "" {
		prompt = strings.TrimSpace(buffered.text)
	}
	shot := req.GetScreenshot()
	if shot == "" {
		shot, mime = buffered.screenshot, buffered.mime
	}
	// Taken first, so that every refusal below also ends the utterance's
	// speculation (and its stability timer) at once.
	spec := s.preempt.claim(collectKey{hw, sid}, prompt, shot)
	if r := s.devices.admitDevice(stream.Context(), hw, prompt); r != nil {
		s.preempt.release(spec, specRefused)
		return s.refuseDevice(stream, req, start, r)
	}
	if prompt == "" {
		s.preempt.release(spec, specRefused)
		return s.refuse(stream.Send, "StreamAudio", req, start, invalid("Empty prompt: the request has no prompt and no collected transcript"))
	}
	if s.llm == nil {
		s.preempt.release(spec, specRefused)
		return s.refuse(stream.Send, "StreamAudio", req, start, &turnError{code: codes.Unavailable, kind: "unavailable", msg: s.llmMissing})
	}
	unreserve, r := s.devices.reserveTurn(stream.Context(), hw)
	if r != nil {
		s.preempt.release(spec, specRefused)
		return s.refuseDevice(stream, req, start, r)
	}
	var ctx context.Context
	var cancel context.CancelCauseFunc
	if spec != nil {
		// The speculation's pipeline becomes this turn: the client's cancel
		// (and InterruptSession, through admission) must reach its context.
		ctx, cancel = spec.t.ctx, spec.t.cancel
		stop := context.AfterFunc(stream.Context(), func() { cancel(context.Cause(stream.Context())) })
		defer stop()
	} else {
		ctx, cancel = context.WithCancelCause(stream.Context())
	}
	defer cancel(nil)
	release, aerr := s.adm.admit(hw, sid, cancel)
	if aerr != nil {
		unreserve()
		s.preempt.release(spec, specRefused)
		return s.refuse(stream.Send, "StreamAudio", req, start, aerr)
	}
	defer release()
	// A revoke read between the check above and admission found no turn
	// to stop: look again now that the turn can be stopped.
	if r := s.devices.cached(stream.Context(), hw); r != nil {
		unreserve()
		s.preempt.release(spec, specRefused)
		return s.refuseDevice(stream, req, start, r)
	}
	s.collect.drop(hw, sid)

	var sent sentLog
	send := func(m *pb.StreamResponse) error {
		err := stream.Send(m)
		if err == nil {
			sent.add(m)
		}
		return err
	}
	var t *turn
	var err error
	if spec != nil {
		s.preempt.counts[specUsed].Add(1)
		t = spec.t
		err = spec.adopt(send, start, prompt)
	} else {
		in := turnInput{hardwareID: hw, sessionID: sid, prompt: prompt, start: start}
		if shot != "" {
			in.image = &llm.Image{MIME: mime, Base64: shot}
		}
		t = &turn{svc: s, in: in, ctx: ctx, cancel: cancel, out: newOutbox(ctx, cancel, send, recycleStream, s.cfg.Limits.SendTimeout.Duration)}
		t.tm.mark(&t.tm.admitted, start)
		t.memory, t.loaded = s.memory.load(ctx, hw)
		err = t.run()
	}
	out := t.out
	ended, outErr := out.finish()
	if err == nil {
		err = outErr // something queued never left: the client stopped reading or went away
	}
	s.logTurn(t, out.sentAny(), err)
	s.metrics.turnEnded(&t.tm, t.chunks, turnOutcome(ctx, err))
	s.devices.addTokens(hw, t.usage.InputTokens+t.usage.OutputTokens)
	if err == nil {
		s.memory.after(hw, sid, prompt, t.queuedText.String(), start, t.loaded)
		return nil
	}
	te := classify(ctx, err)
	s.saveUnfinished(t, &sent, te)
	// What the user said still counts ("my name is…" then an interrupt).
	text, _ := sent.snapshot()
	s.memory.after(hw, sid, prompt, text, start, t.loaded)
	if ended && !out.sentAny() {
		if r := revokedRefusal(ctx); r != nil {
			// Revoked before anything was said: the same answer as at the
			// next request, spoken when refusals are.
			return s.refuseDevice(stream, req, start, r)
		}
		// The sender has ended, so this goroutine may send; nothing went
		// out before, so flow control cannot hold this one message.
		return s.sendError(stream.Send, te)
	}
	return te.status() // after data: no error_message, no end_message (SPEC §2)
}

// refuse reports a request refused before any data: one error_message, then
// the matching status.
func (s *service) refuse(send func(*pb.StreamResponse) error, method string, req interface {
	GetHardwareId() string
	GetSessionId() string
}, start time.Time, te *turnError) error {
	s.decision(slog.LevelInfo, method, "reject", start, append(idAttrs(req), slog.String("error_type", te.kind), slog.String("reason", te.msg))...)
	return s.sendError(send, te)
}

func (s *service) sendError(send func(*pb.StreamResponse) error, te *turnError) error {
	_ = send(&pb.StreamResponse{Content: &pb.StreamResponse_ErrorMessage{ErrorMessage: te.msg}})
	return te.status()
}

// InterruptSession cancels every running turn of a device.
func (s *service) InterruptSession(ctx context.Context, req *pb.InterruptRequest) (*pb.InterruptResponse, error) {
	start := s.now()
	if err := validateHardwareID(req.GetHardwareId(), s.cfg.Limits.MaxIDLength); err != nil {
		return nil, err.status()
	}
	if r := s.devices.check(ctx, req.GetHardwareId()); r != nil {
		// Nobody outside may stop a device's answers: pairing and tokens hold here too.
		s.metrics.deviceRefused(r.reason)
		s.decision(slog.LevelInfo, "InterruptSession", "device_refused", start, slog.String("hardware_id", shortID(req.GetHardwareId())), slog.String("reason", r.reason))
		return nil, r.turnError().status()
	}
	ids := s.adm.interrupt(req.GetHardwareId(), errInterrupted)
	s.preempt.dropDevice(req.GetHardwareId(), specInterrupted) // an answer held for it is stopped too
	s.decision(slog.LevelInfo, "InterruptSession", "interrupt", start, slog.String("hardware_id", shortID(req.GetHardwareId())), slog.Int("cancelled", len(ids)))
	return &pb.InterruptResponse{Success: true, InterruptedSessions: ids, Message: fmt.Sprintf("interrupted %d session(s)", len(ids))}, nil
}

// ReportUsage records client-reported token usage (source
// "client:<source>"). It answers success=true only once the row is
// committed; a store failure answers success=false with the reason, and the
// server stays up.
func (s *service) ReportUsage(ctx context.Context, req *pb.UsageRequest) (*pb.UsageResponse, error) {
	start := s.now()
	if err := validateHardwareID(req.GetHardwareId(), s.cfg.Limits.MaxIDLength); err != nil {
		return nil, err.status()
	}
	if r := s.devices.check(ctx, req.GetHardwareId()); r != nil {
		s.metrics.deviceRefused(r.reason)
		s.decision(slog.LevelInfo, "ReportUsage", "device_refused", start, slog.String("hardware_id", shortID(req.GetHardwareId())), slog.String("reason", r.reason))
		return nil, r.turnError().status()
	}
	if err := s.validateUsage(req); err != nil {
		s.decision(slog.LevelInfo, "ReportUsage", "reject", start, slog.String("hardware_id", shortID(req.GetHardwareId())),
			slog.String("error_type", err.kind), slog.String("reason", err.msg))
		return nil, err.status()
	}
	source := req.GetSource()
	if source == "" {
		source = "unspecified"
	}
	u := store.Usage{HardwareID: req.GetHardwareId(), SessionID: req.GetSessionId(), Source: store.SourceClientPrefix + source,
		Model: req.GetModel(), InputTokens: int(req.GetInputTokens()), OutputTokens: int(req.GetOutputTokens()), At: start}
	ok, msg := s.recordClientUsage(ctx, u)
	if ok {
		s.devices.addTokens(u.HardwareID, u.InputTokens+u.OutputTokens)
	}
	decision := "recorded"
	if !ok {
		decision = "not_recorded"
	}
	s.decision(slog.LevelInfo, "ReportUsage", decision, start, slog.String("hardware_id", shortID(u.HardwareID)),
		slog.String("source", u.Source), slog.String("model", u.Model),
		slog.Int("input_tokens", u.InputTokens), slog.Int("output_tokens", u.OutputTokens))
	return &pb.UsageResponse{Success: ok, Message: msg}, nil
}

// GenerateWelcomeAudio speaks text for the client: metadata, audio, end_message.
// The client uses it for every server-side speech (welcome, fallbacks, limit
// messages), so audio streams as it is synthesized. Metadata waits for the
// first audio, so a provider failure is still one clean error; its
// duration_sec is an estimate from the text, as the field is documented.
func (s *service) GenerateWelcomeAudio(req *pb.WelcomeRequest, stream grpc.ServerStreamingServer[pb.WelcomeResponse]) error {
	start := s.now()
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	w, err := s.startWelcome(ctx, req)
	if err != nil {
		te := classify(ctx, err)
		decision := "reject"
		if welcomeLevel(te) == slog.LevelWarn {
			decision = "error"
		}
		s.decision(welcomeLevel(te), "GenerateWelcomeAudio", decision, start, welcomeAttrs(req, te)...)
		_ = stream.Send(&pb.WelcomeResponse{Content: &pb.WelcomeResponse_ErrorMessage{ErrorMessage: te.msg}})
		return te.status()
	}
	defer w.release()
	defer w.pcm.Close()
	out := newOutbox(ctx, cancel, stream.Send, recycleWelcome, s.cfg.Limits.SendTimeout.Duration)
	err = w.stream(out)
	if err == nil {
		err = out.put(&pb.WelcomeResponse{Content: &pb.WelcomeResponse_EndMessage{EndMessage: welcomeDone}})
	}
	ended, outErr := out.finish()
	if err == nil {
		err = outErr
	}
	if err != nil {
		te := classify(ctx, err)
		s.decision(welcomeLevel(te), "GenerateWelcomeAudio", "error", start, welcomeAttrs(req, te)...)
		if ended && !out.sentAny() {
			_ = stream.Send(&pb.WelcomeResponse{Content: &pb.WelcomeResponse_ErrorMessage{ErrorMessage: te.msg}})
		}
		return te.status()
	}
	s.decision(slog.LevelInfo, "GenerateWelcomeAudio", "complete", start, slog.String("session_id", truncate(req.GetSessionId(), 64)),
		slog.Int("chunks", w.chunks), slog.Float64("audio_sec", audio.Duration(w.bytes).Seconds()))
	return nil
}

// welcomeLevel logs failures the operator can act on (a provider down) as
// warnings, and what the client did (cancel, bad input) as info, like the
// turns of StreamAudio.
func welcomeLevel(te *turnError) slog.Level {
	switch te.kind {
	case "cancelled_by_user", "validation_failed", "stream_limit_exceeded":
		return slog.LevelInfo
	}
	return slog.LevelWarn
}

func welcomeAttrs(req *pb.WelcomeRequest, te *turnError) []any {
	return []any{slog.String("session_id", truncate(req.GetSessionId(), 64)), slog.String("error_type", te.kind), slog.String("error", te.Error())}
}

// welcome is one GenerateWelcomeAudio in progress.
type welcome struct {
	pcm       io.ReadCloser
	release   func()
	speechErr func(error) error
	method    string
	estimate  float64 // seconds
	limit     int     // bytes of audio at most
	chunks    int
	bytes     int
}

func (s *service) startWelcome(ctx context.Context, req *pb.WelcomeRequest) (*welcome, error) {
	text := strings.TrimSpace(req.GetText())
	if text == "" {
		text = s.cfg.TTS.WelcomeText
	}
	n := utf8.RuneCountInString(text)
	if n > s.cfg.Limits.MaxPromptChars {
		return nil, invalid("text is %d characters; the limit is %d (limits.max_prompt_chars)", n, s.cfg.Limits.MaxPromptChars)
	}
	if len(req.GetSessionId()) > 4*s.cfg.Limits.MaxIDLength || len(req.GetVoice()) > 256 || len(req.GetLanguage()) > 64 {
		return nil, invalid("session_id, voice or language is too long")
	}
	speakable := tts.Speakable(text)
	if speakable == "" {
		return nil, invalid("text has nothing speakable in it")
	}
	release, aerr := s.adm.acquireSlot()
	if aerr != nil {
		return nil, aerr
	}
	r := tts.Request{Text: speakable, Language: req.GetLanguage()}
	if s.cfg.TTS.HonorClientVoice {
		r.Voice = req.GetVoice()
	}
	pcm, err := s.synthesize(ctx, s.speech.welcome, r)
	if err != nil {
		release()
		return nil, err
	}
	speechErr := func(err error) error {
		s.providerFailed(ctx, providerTTS, err)
		return s.speechErr(err)
	}
	return &welcome{pcm: pcm, release: release, speechErr: speechErr, method: s.speech.welcome.Name(),
		estimate: float64(utf8.RuneCountInString(speakable)) / charsPerSecond,
		limit:    s.cfg.TTS.MaxWelcomeSeconds * audio.SampleRate * 2}, nil
}

// charsPerSecond is a typical speaking rate, for the duration estimate.
const charsPerSecond = 15

// stream queues metadata with the first chunk, then the rest as produced.
func (w *welcome) stream(out *outbox[pb.WelcomeResponse]) error {
	chunker := audio.NewChunker(w.pcm)
	for {
		c, err := chunker.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return w.speechErr(err)
		}
		if w.bytes += len(c); w.bytes > w.limit {
			audio.Recycle(c)
			return invalid("the text is too long to speak at once (over tts.max_welcome_seconds)")
		}
		if w.chunks == 0 {
			meta := &pb.WelcomeMetadata{Method: w.method, DurationSec: w.estimate,
				SampleRate: audio.SampleRate, Channels: audio.Channels, Dtype: audio.DType}
			if err := out.put(&pb.WelcomeResponse{Content: &pb.WelcomeResponse_Metadata{Metadata: meta}}); err != nil {
				audio.Recycle(c)
				return err
			}
		}
		w.chunks++
		if err := out.put(&pb.WelcomeResponse{Content: &pb.WelcomeResponse_AudioChunk{AudioChunk: audioChunk(c)}}); err != nil {
			return err
		}
	}
	if w.chunks == 0 {
		return w.speechErr(errors.New("the provider returned no audio"))
	}
	return nil
}
