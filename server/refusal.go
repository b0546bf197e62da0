package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/nexy-server/nexy/audio"
	pb "github.com/nexy-server/nexy/proto"
	"github.com/nexy-server/nexy/tts"
)

// refuseDevice answers a refused device (not approved, revoked, a wrong
// token, over its daily quota). Spoken (the default): one text_chunk saying
// what happened and what to do, its audio, end_message: a normal answer the
// shipped client reads out. Status: error_message and UNAUTHENTICATED or
// PERMISSION_DENIED ("daily limit exceeded"). Either way it is a logged
// decision and counted in nexy_device_refusals_total.
func (s *service) refuseDevice(stream grpc.ServerStreamingServer[pb.StreamResponse], req *pb.StreamRequest, start time.Time, r *refusal) error {
	// A refusal costs no provider call but sends seconds of audio: a device
	// asking again and again is held to limits.max_rate_per_second too.
	if !s.adm.takeToken(req.GetHardwareId()) {
		return s.refuse(stream.Send, "StreamAudio", req, start,
			exhausted("rate_limit_exceeded", "this device may start at most %g turns per second; slow down and retry", s.adm.rate))
	}
	s.metrics.deviceRefused(r.reason)
	attrs := append(idAttrs(req), slog.String("reason", r.reason), slog.String("refusal", s.cfg.Devices.Refusal))
	if s.cfg.Devices.Refusal == "status" {
		s.decision(slog.LevelInfo, "StreamAudio", "device_refused", start, append(attrs, slog.String("error_type", r.kind))...)
		return s.sendError(stream.Send, r.turnError())
	}
	err := s.speakRefusal(stream, r.text)
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	s.decision(slog.LevelInfo, "StreamAudio", "device_refused", start, attrs...)
	return err
}

// speakRefusal sends text, its audio and end_message through an outbox, so
// a client that stops reading is cut off after limits.send_timeout like any
// answer. Speech that cannot be had (the provider is down) leaves the text
// alone: the answer is still a complete one the client shows.
func (s *service) speakRefusal(stream grpc.ServerStreamingServer[pb.StreamResponse], text string) error {
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	pcm, err := s.phrases.get(ctx, text, func(ctx context.Context) ([]byte, error) { return s.speakAll(ctx, text) })
	if err != nil && ctx.Err() == nil {
		s.log.Warn("Refusal sentence not spoken: speech failed; the text is sent alone", "scope", "grpc", "decision", "refusal_unspoken", "error", err.Error())
	}
	// The memo is shared: chunks are slices of it, never recycled.
	out := newOutbox(ctx, cancel, stream.Send, func(*pb.StreamResponse) {}, s.cfg.Limits.SendTimeout.Duration)
	err = out.put(&pb.StreamResponse{Content: &pb.StreamResponse_TextChunk{TextChunk: text}})
	for off := 0; err == nil && off < len(pcm); off += audio.MaxChunkBytes {
		err = out.put(audioResponse(pcm[off:min(off+audio.MaxChunkBytes, len(pcm))]))
	}
	if err == nil {
		err = out.put(&pb.StreamResponse{Content: &pb.StreamResponse_EndMessage{EndMessage: endMessage}})
	}
	if _, ferr := out.finish(); err == nil {
		err = ferr
	}
	return err
}

// speakAll synthesizes a fixed sentence whole, bounded like welcome audio.
func (s *service) speakAll(ctx context.Context, text string) ([]byte, error) {
	pcm, err := s.synthesize(ctx, s.speech.turn, tts.Request{Text: tts.Speakable(text)})
	if err != nil {
		return nil, err
	}
	defer pcm.Close()
	limit := int64(s.cfg.TTS.MaxWelcomeSeconds) * audio.SampleRate * 2
	b, err := io.ReadAll(io.LimitReader(pcm, limit+1))
	switch {
	case err != nil:
		return nil, err
	case int64(len(b)) > limit:
		return nil, fmt.Errorf("the sentence is longer than tts.max_welcome_seconds")
	}
	return b[:len(b)&^1], nil
}

// maxPhrases bounds the refusal sentences kept in memory (a few, each a few
// seconds of audio: one per reason and per distinct daily limit).
const maxPhrases = 32

// phrases keeps the audio of the server's refusal sentences in memory, made
// once however many requests ask at the same moment: refusing a flood costs
// one synthesis, then none.
type phrases struct {
	mu sync.Mutex
	m  map[string]*phrase
	wg sync.WaitGroup // syntheses in progress
}

// wait lets syntheses in progress end (each is bounded by phraseTimeout).
func (p *phrases) wait() { p.wg.Wait() }

type phrase struct {
	done   chan struct{}
	pcm    []byte
	err    error
	failed time.Time // when err was set; the failure is kept for phraseRetry
}

// phraseRetry is how long a failed synthesis is remembered: while speech is
// down, refusals go out as text alone instead of each waiting for a
// provider that fails.
const phraseRetry = 30 * time.Second

func newPhrases() *phrases { return &phrases{m: map[string]*phrase{}} }

// get returns the audio of text, making it with synth the first time. The
// synthesis runs on its own deadline, so the first caller leaving does not
// fail the others; a failure is kept for phraseRetry, then tried again.
func (p *phrases) get(ctx context.Context, text string, synth func(context.Context) ([]byte, error)) ([]byte, error) {
	p.mu.Lock()
	ph, ok := p.m[text]
	if ok && !ph.failed.IsZero() && time.Since(ph.failed) > phraseRetry {
		ok = false // try again
	}
	if !ok {
		ph = &phrase{done: make(chan struct{})}
		if _, replaces := p.m[text]; replaces || len(p.m) < maxPhrases {
			p.m[text] = ph
		}
		p.wg.Add(1)
		go p.fill(text, ph, synth)
	}
	p.mu.Unlock()
	select {
	case <-ph.done:
		return ph.pcm, ph.err
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func (p *phrases) fill(text string, ph *phrase, synth func(context.Context) ([]byte, error)) {
	defer p.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), phraseTimeout)
	defer cancel()
	pcm, err := synth(ctx)
	p.mu.Lock()
	ph.pcm, ph.err = pcm, err
	if err != nil {
		ph.failed = time.Now()
	}
	p.mu.Unlock()
	close(ph.done)
}

// phraseTimeout bounds one refusal sentence's synthesis, retries included.
const phraseTimeout = 30 * time.Second
