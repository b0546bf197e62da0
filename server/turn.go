package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/nexy-server/nexy/audio"
	"github.com/nexy-server/nexy/llm"
	pb "github.com/nexy-server/nexy/proto"
	"github.com/nexy-server/nexy/tts"
)

// endMessage closes every successful COMMIT. The client accepts any text;
// this is upstream's, kept for scripts that match on it.
const endMessage = "Обработка завершена"

// cannotDoText is spoken when the model asked for an action this server will
// not forward and said nothing itself.
const cannotDoText = "Sorry, I can't do that here."

// audioQueue bounds the chunks one segment may hold ahead of the sender
// (64 × 4 KiB ≈ 2.7 s of audio).
const audioQueue = 64

// turnInput is an admitted COMMIT.
type turnInput struct {
	hardwareID string
	sessionID  string
	prompt     string
	image      *llm.Image
	start      time.Time
}

// stage timings of a turn, in nanoseconds since its start; 0 = not reached.
// Set once by whichever goroutine reaches the stage first.
type timings struct {
	admitted, llmFirstToken, firstSegment, ttsFirstByte, firstAudioSent, lastChunkSent atomic.Int64
}

func (tm *timings) mark(stage *atomic.Int64, start time.Time) {
	stage.CompareAndSwap(0, int64(time.Since(start)))
}

// speechJob is one segment on its way out: its display text and its audio,
// produced by a synthesis goroutine while earlier segments are being sent.
type speechJob struct {
	text  string
	audio chan []byte // closed when synthesis ends; err is set before
	err   error
}

// turn runs one COMMIT: LLM → reply parser → splitter → TTS workers → sender.
// Everything it starts obeys ctx, and run does not return before every
// goroutine it started has ended.
type turn struct {
	svc    *service
	in     turnInput
	ctx    context.Context
	cancel context.CancelCauseFunc
	send   func(*pb.StreamResponse) error
	idle   *time.Timer
	tm     timings

	// Written by the producer before it closes jobs; read by the sender after.
	reply  llm.Reply
	action *llm.Action
	usage  llm.Usage
	llmErr error

	// Sender side.
	sentAny  bool
	segments int
	chunks   int
}

func (t *turn) touch() { t.idle.Reset(t.svc.cfg.Limits.IdleTimeout.Duration) }

// run streams the answer. An error returned before anything was sent is
// reported by the caller as error_message + status; after, the stream just ends.
func (t *turn) run() error {
	t.idle = time.AfterFunc(t.svc.cfg.Limits.IdleTimeout.Duration, func() { t.cancel(errIdle) })
	defer t.idle.Stop()

	stream, err := t.svc.llm.Stream(t.ctx, llm.Request{System: t.svc.systemPrompt(), User: t.in.prompt, Image: t.in.image})
	if err != nil {
		return err
	}
	defer stream.Close()

	var wg sync.WaitGroup
	defer wg.Wait() // runs after cancel below: no goroutine outlives the turn
	defer t.cancel(errTurnDone)
	jobs := make(chan *speechJob, t.svc.cfg.TTS.Lookahead)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t.produce(stream, jobs, &wg)
	}()
	for job := range jobs {
		if err := t.stream(job); err != nil {
			return err
		}
	}
	if t.llmErr != nil {
		return t.llmErr
	}
	if err := t.ctx.Err(); err != nil {
		return err
	}
	if err := t.sendAction(); err != nil {
		return err
	}
	return t.send(&pb.StreamResponse{Content: &pb.StreamResponse_EndMessage{EndMessage: endMessage}})
}

// produce reads the model, cuts its spoken text into segments and starts a
// synthesis for each, at most tts.lookahead at a time, handing them to the
// sender in order.
func (t *turn) produce(stream llm.Stream, jobs chan<- *speechJob, wg *sync.WaitGroup) {
	defer close(jobs)
	parser := llm.NewReplyParser()
	split := tts.NewSplitter(t.svc.splitterConfig())
	synthSlots := make(chan struct{}, t.svc.cfg.TTS.Lookahead)
	spoken := false
	emit := func(text string) bool {
		spoken = spoken || strings.IndexFunc(text, isWordRune) >= 0
		for _, seg := range split.Push(text) {
			if !t.start(seg, jobs, synthSlots, wg) {
				return false
			}
		}
		return true
	}
	for {
		delta, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.llmErr = err
			return
		}
		t.tm.mark(&t.tm.llmFirstToken, t.in.start)
		t.touch()
		if !emit(parser.Feed(delta)) {
			return
		}
	}
	t.usage = stream.Usage()
	rest, reply := parser.Finish()
	t.reply = reply
	if !emit(rest) {
		return
	}
	t.action = t.svc.checkAction(reply, t.in.sessionID)
	if !spoken && !emit(t.svc.fallbackText(reply, t.action)) {
		return
	}
	for _, seg := range split.Flush() {
		if !t.start(seg, jobs, synthSlots, wg) {
			return
		}
	}
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

// start launches the synthesis of one segment and queues it for the sender.
func (t *turn) start(seg string, jobs chan<- *speechJob, slots chan struct{}, wg *sync.WaitGroup) bool {
	t.tm.mark(&t.tm.firstSegment, t.in.start)
	job := &speechJob{text: seg, audio: make(chan []byte, audioQueue)}
	select {
	case slots <- struct{}{}:
	case <-t.ctx.Done():
		return false
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() { <-slots }()
		t.synthesize(job)
	}()
	select {
	case jobs <- job:
		return true
	case <-t.ctx.Done():
		return false
	}
}

// synthesize speaks one segment into job.audio, in wire-sized chunks, as the
// provider produces them.
func (t *turn) synthesize(job *speechJob) {
	defer close(job.audio)
	text := tts.Speakable(job.text)
	if text == "" {
		return // nothing speakable (e.g. only emoji): the text still goes out
	}
	pcm, err := t.svc.tts.Synthesize(t.ctx, tts.Request{Text: text})
	if err != nil {
		job.err = fmt.Errorf("%w: %w", errTTS, err)
		return
	}
	defer pcm.Close()
	chunker := audio.NewChunker(pcm)
	for {
		chunk, err := chunker.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			job.err = fmt.Errorf("%w: %w", errTTS, err)
			return
		}
		t.tm.mark(&t.tm.ttsFirstByte, t.in.start)
		select {
		case job.audio <- chunk:
		case <-t.ctx.Done():
			job.err = context.Cause(t.ctx)
			return
		}
	}
}

// stream sends one segment: its text, then its audio as it arrives.
func (t *turn) stream(job *speechJob) error {
	if err := t.send(&pb.StreamResponse{Content: &pb.StreamResponse_TextChunk{TextChunk: job.text}}); err != nil {
		return err
	}
	t.sentAny = true
	t.segments++
	for chunk := range job.audio {
		if audio.IsSilent(chunk) {
			audio.Recycle(chunk)
			continue // the client drops all-zero chunks; do not spend bandwidth on them
		}
		err := t.send(audioResponse(chunk))
		audio.Recycle(chunk) // Send has serialized it
		if err != nil {
			return err
		}
		t.chunks++
		t.tm.mark(&t.tm.firstAudioSent, t.in.start)
		t.tm.lastChunkSent.Store(int64(time.Since(t.in.start)))
		t.touch()
	}
	return job.err
}

func (t *turn) sendAction() error {
	if t.action == nil || !t.svc.forwardActions() {
		return nil
	}
	js, err := t.action.WireJSON(t.in.sessionID)
	if err != nil {
		return err
	}
	t.sentAny = true
	return t.send(&pb.StreamResponse{Content: &pb.StreamResponse_ActionMessage{ActionMessage: &pb.ActionMessage{
		ActionJson: js, SessionId: t.in.sessionID,
	}}})
}

// audioChunk builds the wire chunk: every field set on every chunk (SPEC §2).
func audioChunk(pcm []byte) *pb.AudioChunk {
	return &pb.AudioChunk{AudioData: pcm, Dtype: audio.DType, SampleRate: audio.SampleRate, Channels: audio.Channels}
}

func audioResponse(pcm []byte) *pb.StreamResponse {
	return &pb.StreamResponse{Content: &pb.StreamResponse_AudioChunk{AudioChunk: audioChunk(pcm)}}
}
