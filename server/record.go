package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"image"
	_ "image/jpeg" // DecodeConfig for screenshot dimensions
	_ "image/png"
	"io"
	"strings"
	"sync"
	"time"

	_ "golang.org/x/image/webp"

	"github.com/nexy-server/nexy/llm"
	pb "github.com/nexy-server/nexy/proto"
	"github.com/nexy-server/nexy/store"
)

// Store is what the server keeps. store.DB implements it; tests may pass a
// temp-file store, and another backend needs only these methods.
type Store interface {
	// SaveTurn records a turn and returns once it is committed.
	SaveTurn(ctx context.Context, t store.Turn) error
	// QueueTurn records a turn without waiting for the commit.
	QueueTurn(ctx context.Context, t store.Turn) error
	// AmendTurn corrects a turn recorded as complete that did not end.
	AmendTurn(ctx context.Context, t store.Turn) error
	// RecordUsage records token usage and returns once it is committed.
	RecordUsage(ctx context.Context, u store.Usage) error
	// Memory loads what is known about a device.
	Memory(ctx context.Context, hardwareID string, q store.MemoryQuery) (store.Memory, error)
	// ApplyMemory writes one memory update and returns once it is committed.
	ApplyMemory(ctx context.Context, c store.MemoryChange) error

	// Devices lists every device (pairing, tokens, limits).
	Devices(ctx context.Context) ([]store.Device, error)
	// DevicesChangedSince lists the devices changed after a change number.
	DevicesChangedSince(ctx context.Context, version int64) ([]store.Device, error)
	// DevicesVersion changes whenever any device is added or changed.
	DevicesVersion(ctx context.Context) (int64, error)
	// SeeDevice records a device the first time it asks, without waiting.
	SeeDevice(ctx context.Context, hardwareID, prompt string, at time.Time) error
	// UseSince is a device's turns and tokens since a time (for quotas).
	UseSince(ctx context.Context, hardwareID string, since time.Time) (store.DayUse, error)
}

// sentLog collects the text and action that Send actually accepted, for the
// record of a turn that did not finish. The sender goroutine writes it; a
// Send blocked on a client that stopped reading can still succeed after the
// outbox has given up on it, so reads take the lock too.
type sentLog struct {
	mu     sync.Mutex
	text   strings.Builder
	action string
}

func (l *sentLog) add(m *pb.StreamResponse) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := m.GetTextChunk(); s != "" {
		l.text.WriteString(s)
	}
	if a := m.GetActionMessage(); a != nil {
		l.action = a.GetActionJson()
	}
}

// snapshot is what has been sent so far.
func (l *sentLog) snapshot() (text, action string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.text.String(), l.action
}

// record is the turn as it will be stored.
func (t *turn) record(status, errorKind, response, action string) store.Turn {
	tm := &t.tm
	model := t.usage.Model
	if model == "" {
		model = t.svc.cfg.LLM.Model
	}
	return store.Turn{
		HardwareID: t.in.hardwareID, SessionID: t.in.sessionID, At: t.in.start,
		Prompt: t.in.prompt, Screenshot: screenshotMeta(t.in.image),
		Response: response, Action: action, Model: model, Status: status, ErrorKind: errorKind,
		Timings: store.Timings{
			Admitted: dur(tm.admitted.Load()), LLMFirstToken: dur(tm.llmFirstToken.Load()), FirstSegment: dur(tm.firstSegment.Load()),
			TTSFirstByte: dur(tm.ttsFirstByte.Load()), FirstAudioSent: dur(tm.firstAudioSent.Load()), LastChunkSent: dur(tm.lastChunkSent.Load()),
			Total: time.Since(t.in.start),
		},
		Segments: t.segments, AudioChunks: t.chunks,
		InputTokens: t.usage.InputTokens, OutputTokens: t.usage.OutputTokens,
	}
}

func dur(ns int64) time.Duration { return time.Duration(ns) }

// saveComplete records a finished turn before its end_message: a turn the
// client saw end is on disk. It waits at most store.commit_timeout (after
// the last audio, so the user hears nothing later); past that the record is
// still written, and the answer is not held longer. A commit_timeout of 0
// only queues the record: end_message never waits, and a crash can lose the
// last turns.
func (t *turn) saveComplete() {
	s := t.svc
	if s.store == nil {
		return
	}
	action := ""
	if t.action != nil && s.forwardActions() {
		action, _ = t.action.WireJSON(t.in.sessionID)
	}
	rec := t.record(store.StatusComplete, "", t.queuedText.String(), action)
	wait := s.cfg.Store.CommitTimeout.Duration
	save := s.store.SaveTurn
	if wait == 0 { // the operator chose not to wait: queued only
		wait, save = time.Second, s.store.QueueTurn
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	start := time.Now()
	err := save(ctx, rec)
	t.saveWait = time.Since(start)
	switch {
	case err == nil:
		t.saved = true
	case errors.Is(err, store.ErrNotConfirmed):
		t.saved = true // queued: it will be written
		s.log.Warn("Turn record not committed before end_message; it is still queued", "scope", "store", "method", "StreamAudio",
			"decision", "save_slow", "session_id", t.in.sessionID, "hardware_id", shortID(t.in.hardwareID), "error", err.Error())
	default:
		s.log.Error("Turn record lost: the store did not take it", "scope", "store", "method", "StreamAudio", "decision", "save_failed",
			"session_id", t.in.sessionID, "hardware_id", shortID(t.in.hardwareID), "error", err.Error())
	}
}

// saveUnfinished queues the record of an interrupted or failed turn, with
// what was actually sent; a turn already recorded as complete (its end was
// cancelled or failed after the commit) is amended. Nobody waits for this
// commit.
func (s *service) saveUnfinished(t *turn, sent *sentLog, te *turnError) {
	if s.store == nil {
		return
	}
	status := store.StatusFailed
	if te.kind == "cancelled_by_user" {
		status = store.StatusInterrupted
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Store.CommitTimeout.Duration)
	defer cancel()
	text, action := sent.snapshot()
	save := s.store.QueueTurn
	if t.saved {
		save = s.store.AmendTurn
	}
	if err := save(ctx, t.record(status, te.kind, text, action)); err != nil {
		s.log.Error("Turn record lost: the store did not take it", "scope", "store", "method", "StreamAudio", "decision", "save_failed",
			"session_id", t.in.sessionID, "hardware_id", shortID(t.in.hardwareID), "error", err.Error())
	}
}

// screenshotMeta describes a screenshot without keeping it: format, decoded
// size and, when its header says, dimensions.
func screenshotMeta(img *llm.Image) *store.Screenshot {
	if img == nil {
		return nil
	}
	b64 := img.Base64
	meta := &store.Screenshot{Format: strings.TrimPrefix(img.MIME, "image/"), SizeBytes: base64.StdEncoding.DecodedLen(len(b64)) - strings.Count(b64[max(0, len(b64)-2):], "=")}
	// The header is near the start; 64 KiB of base64 covers a JPEG's EXIF.
	head := b64[:min(len(b64), 64<<10)&^3]
	raw, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, strings.NewReader(head)))
	if err == nil || len(raw) > 0 {
		if c, _, err := image.DecodeConfig(bytes.NewReader(raw)); err == nil {
			meta.Width, meta.Height = c.Width, c.Height
		}
	}
	return meta
}

// recordClientUsage stores what ReportUsage was told; ok only once the row
// is committed, else the reason for the client.
func (s *service) recordClientUsage(ctx context.Context, u store.Usage) (bool, string) {
	if s.store == nil {
		return false, "usage recording is off: this server has no store"
	}
	if err := s.store.RecordUsage(ctx, u); err != nil {
		s.log.Error("Client usage not recorded", "scope", "store", "method", "ReportUsage", "decision", "save_failed",
			"hardware_id", shortID(u.HardwareID), "error", err.Error())
		return false, "usage not recorded: the server could not save it; the reason is in the server log"
	}
	return true, "Usage recorded"
}
