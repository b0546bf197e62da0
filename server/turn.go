package server

import (
	"context"
	"encoding/json"
	"errors"
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
// (768 × 4 KiB ≈ 33 s of audio, longer than any segment of speech.max_chars):
// a look-ahead synthesis can always finish reading its provider instead of
// stalling on a slow client while the provider's own timeout runs. Memory is
// only used for audio actually waiting.
const audioQueue = 768

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

// rebase moves the origin d later (a speculation's COMMIT): a stage reached
// before the new origin counts as reached at it (1 ns, since 0 means never).
func (tm *timings) rebase(d time.Duration) {
	for _, st := range []*atomic.Int64{&tm.admitted, &tm.llmFirstToken, &tm.firstSegment, &tm.ttsFirstByte, &tm.firstAudioSent, &tm.lastChunkSent} {
		if v := st.Load(); v != 0 {
			st.Store(max(1, v-int64(d)))
		}
	}
}

// speechJob is one segment on its way out: its display text and its audio,
// produced by a synthesis goroutine while earlier segments are being sent.
type speechJob struct {
	text  string
	audio *chunkQueue // closed when synthesis ends; err is set before
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
	out    *outbox[pb.StreamResponse] // the only way to the client: see outbox
	idle   *time.Timer
	tm     timings
	// speechFellBack: a segment was spoken by [tts.fallback]; the rest follow.
	speechFellBack atomic.Bool

	// Written by read before readDone is closed; read by run after.
	action *llm.Action
	usage  llm.Usage
	llmErr error

	// Sender side.
	textQueued bool            // the first segment's text is queued: later text goes out at once
	queuedText strings.Builder // every text chunk queued, in order
	segments   int
	chunks     int

	memory   string        // the memory block of the prompt ("" = none)
	loaded   loadedMemory  // what memory was read for it
	saved    bool          // the record was submitted before end_message
	saveWait time.Duration // how long end_message waited for the commit
}

func (t *turn) touch() { t.idle.Reset(t.svc.cfg.Limits.IdleTimeout.Duration) }

// send queues a message for the client; it fails only when the turn is over.
func (t *turn) send(m *pb.StreamResponse) error { return t.out.put(m) }

// run streams the answer. An error returned before anything was sent is
// reported by the caller as error_message + status; after, the stream just ends.
func (t *turn) run() error {
	defer t.cancel(errTurnDone)
	if err := t.produce(); err != nil {
		return err
	}
	return t.conclude()
}

// produce queues the whole answer but its end: segments, audio and the
// action. A speculative turn (preempt.go) runs only this before its COMMIT,
// into a held outbox; nothing it queued has left the server.
//
// Three goroutines and the caller: read drains the model as fast as it
// answers (never held back by speech, so llm.timeout only measures the model)
// and queues segments; dispatch starts their synthesis, at most tts.lookahead
// at a time, and hands them over in order; the caller sends each segment's
// text and audio while the next one is being synthesized.
func (t *turn) produce() (err error) {
	// Until the model's first token the watchdog waits llm.first_token_timeout;
	// every token or chunk after that re-arms it with limits.idle_timeout.
	t.idle = time.AfterFunc(t.svc.cfg.LLM.FirstTokenTimeout.Duration, func() {
		if t.tm.llmFirstToken.Load() == 0 {
			t.cancel(errFirstToken)
		} else {
			t.cancel(errIdle)
		}
	})
	defer t.idle.Stop()

	stream, err := t.svc.llmStream(t.ctx, llm.Request{System: t.svc.systemPrompt(t.memory), User: t.in.prompt, Image: t.in.image})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	// Deferred in reverse: on failure cancel the turn, then close the model
	// stream and wait for every goroutine: none outlives the turn. On
	// success every goroutine has already ended (jobs closed, read done).
	defer wg.Wait()
	defer stream.Close()
	defer func() {
		if err != nil {
			t.cancel(errTurnDone)
		}
	}()

	segments := newSegmentQueue()
	readDone := make(chan struct{})
	jobs := make(chan *speechJob, t.svc.cfg.TTS.Lookahead)
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(readDone)
		t.read(stream, segments)
	}()
	go func() {
		defer wg.Done()
		t.dispatch(segments, jobs, &wg)
	}()
	for job := range jobs {
		if err := t.stream(job); err != nil {
			return err
		}
	}
	<-readDone // the reader's results below are final
	if t.llmErr != nil {
		return t.llmErr
	}
	if err := t.ctx.Err(); err != nil {
		return err
	}
	return t.sendAction()
}

// conclude records the finished turn and queues its end_message.
func (t *turn) conclude() error {
	t.saveComplete()
	return t.send(&pb.StreamResponse{Content: &pb.StreamResponse_EndMessage{EndMessage: endMessage}})
}

// read parses the model's reply as it streams and queues its spoken text as
// segments; at the end it settles the action and the fallback text.
func (t *turn) read(stream llm.Stream, segments *segmentQueue) {
	defer segments.close()
	parser := llm.NewReplyParser()
	split := tts.NewSplitter(t.svc.splitterConfig())
	spoken := false
	emit := func(text string) {
		spoken = spoken || strings.IndexFunc(text, isWordRune) >= 0
		for _, seg := range split.Push(text) {
			t.tm.mark(&t.tm.firstSegment, t.in.start)
			segments.push(seg)
		}
	}
	for {
		delta, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.svc.providerFailed(t.ctx, providerLLM, err)
			t.llmErr = err
			t.usage = stream.Usage() // what was spent before it broke
			return
		}
		t.tm.mark(&t.tm.llmFirstToken, t.in.start)
		t.touch()
		emit(parser.Feed(delta))
	}
	t.usage = stream.Usage()
	rest, reply := parser.Finish()
	emit(rest)
	t.action = t.svc.checkAction(reply, t.in.sessionID)
	if !spoken {
		emit(t.svc.fallbackText(reply, t.action))
	}
	for _, seg := range split.Flush() {
		t.tm.mark(&t.tm.firstSegment, t.in.start)
		segments.push(seg)
	}
}

// dispatch starts the synthesis of each queued segment, at most tts.lookahead
// at a time, and hands the segments to the sender in order.
func (t *turn) dispatch(segments *segmentQueue, jobs chan<- *speechJob, wg *sync.WaitGroup) {
	defer close(jobs)
	slots := make(chan struct{}, t.svc.cfg.TTS.Lookahead)
	for {
		seg, ok := segments.pop(t.ctx)
		if !ok || !t.start(seg, jobs, slots, wg) {
			return
		}
	}
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

// start launches the synthesis of one segment and queues it for the sender.
func (t *turn) start(seg string, jobs chan<- *speechJob, slots chan struct{}, wg *sync.WaitGroup) bool {
	job := &speechJob{text: seg, audio: newChunkQueue()}
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
	defer job.audio.close()
	text := tts.Speakable(job.text)
	if text == "" {
		return // nothing speakable (e.g. only emoji): the text still goes out
	}
	pcm, err := t.svc.speak(t.ctx, t.svc.speech.turn, tts.Request{Text: text}, &t.speechFellBack)
	if err != nil {
		job.err = err
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
			t.svc.providerFailed(t.ctx, providerTTS, err)
			job.err = t.svc.speechErr(err)
			return
		}
		t.tm.mark(&t.tm.ttsFirstByte, t.in.start)
		if err := job.audio.push(t.ctx, chunk); err != nil {
			job.err = err
			return
		}
	}
}

// stream sends one segment: its text, then its audio as it arrives. The first
// segment's text waits for its first audio (or its end): if speech fails
// before anything was sent, the client gets one clean error instead of text
// followed by a broken stream, and hears nothing later than it would anyway.
func (t *turn) stream(job *speechJob) error {
	textSent := false
	sendText := func() error {
		textSent = true
		t.segments++
		t.textQueued = true
		text := displayText(job.text)
		t.queuedText.WriteString(text)
		return t.send(&pb.StreamResponse{Content: &pb.StreamResponse_TextChunk{TextChunk: text}})
	}
	if t.textQueued {
		if err := sendText(); err != nil {
			return err
		}
	}
	for {
		chunk, ok := job.audio.pop()
		if !ok {
			break
		}
		if !textSent {
			if err := sendText(); err != nil {
				return err
			}
		}
		if audio.IsSilent(chunk) {
			audio.Recycle(chunk)
			continue // the client drops all-zero chunks; do not spend bandwidth on them
		}
		// The buffer now belongs to the message (see outbox.run).
		if err := t.send(audioResponse(chunk)); err != nil {
			return err
		}
		t.chunks++
		t.tm.mark(&t.tm.firstAudioSent, t.in.start)
		t.tm.lastChunkSent.Store(int64(time.Since(t.in.start)))
		t.touch()
	}
	if job.err != nil {
		return job.err
	}
	if !textSent { // nothing speakable in it: the text still goes out
		return sendText()
	}
	return nil
}

// displayText keeps a segment from being taken for an action by the shipped
// client, which executes any text_chunk that is (after an optional __MCP__
// prefix and code fence) a whole JSON object: an action must only ever come
// from the validated action_message (prompt-injection guard, SPEC §4).
func displayText(seg string) string {
	s := strings.TrimSpace(seg)
	s = strings.TrimSpace(strings.TrimPrefix(s, "__MCP__"))
	s = strings.TrimSpace(strings.Trim(s, "`"))
	s = strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(s, "json"), "JSON"))
	if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") && json.Valid([]byte(s)) {
		return "(" + seg + ")"
	}
	return seg
}

func (t *turn) sendAction() error {
	if t.action == nil || !t.svc.forwardActions() {
		return nil
	}
	js, err := t.action.WireJSON(t.in.sessionID)
	if err != nil {
		return err
	}
	t.textQueued = true
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
