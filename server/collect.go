package server

import (
	"google.golang.org/grpc/codes"

	"sync"
	"time"

	pb "github.com/nexy-server/nexy/proto"
)

// collectKey identifies one push-to-talk utterance.
type collectKey struct{ hardwareID, sessionID string }

// collected is what COLLECT requests buffered for a session: the latest full
// interim transcript (a snapshot, last-wins by chunk_seq) and the last screenshot.
type collected struct {
	seq        int32
	text       string
	screenshot string
	mime       string // of screenshot
	updated    time.Time
}

func (c *collected) size() int { return len(c.text) + len(c.screenshot) }

// collectBuffer holds COLLECT data until its COMMIT arrives. It is bounded in
// entries and bytes, and entries expire after ttl (upstream kept them forever).
type collectBuffer struct {
	ttl        time.Duration
	maxEntries int
	maxBytes   int
	now        func() time.Time

	mu        sync.Mutex
	entries   map[collectKey]*collected
	bytes     int
	lastSweep time.Time
}

func newCollectBuffer(ttl time.Duration, maxEntries, maxBytes int) *collectBuffer {
	return &collectBuffer{ttl: ttl, maxEntries: maxEntries, maxBytes: maxBytes, now: time.Now, entries: map[collectKey]*collected{}}
}

// put stores a COLLECT request. It reports whether the request was newer than
// what is buffered (an older chunk_seq is acknowledged and ignored), and
// refuses new data when the buffer is full.
func (b *collectBuffer) put(req *pb.StreamRequest, mime string) (accepted bool, err *turnError) {
	key := collectKey{req.GetHardwareId(), req.GetSessionId()}
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sweepLocked(now, false)
	old := b.entries[key]
	if old != nil && req.GetChunkSeq() <= old.seq {
		return false, nil
	}
	next := &collected{seq: req.GetChunkSeq(), updated: now}
	if old != nil {
		*next = collected{seq: req.GetChunkSeq(), text: old.text, screenshot: old.screenshot, mime: old.mime, updated: now}
	}
	// Present-but-empty optional strings mean "nothing new" (SPEC §2).
	if t := req.GetChunkText(); t != "" {
		next.text = t
	}
	if s := req.GetScreenshot(); s != "" {
		next.screenshot, next.mime = s, mime
	}
	grow := next.size()
	if old != nil {
		grow -= old.size()
	}
	if old == nil && len(b.entries) >= b.maxEntries || b.bytes+grow > b.maxBytes {
		b.sweepLocked(now, true)
		if old == nil && len(b.entries) >= b.maxEntries || b.bytes+grow > b.maxBytes {
			return false, &turnError{code: codes.ResourceExhausted, kind: "stream_limit_exceeded",
				msg: "stream_limit_exceeded: too many utterances are being collected right now, please retry"}
		}
	}
	b.entries[key] = next
	b.bytes += grow
	return true, nil
}

// peek returns the buffered data of a session without consuming it, so a
// COMMIT refused at admission does not lose the transcript (upstream bug).
func (b *collectBuffer) peek(hardwareID, sessionID string) (collected, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.entries[collectKey{hardwareID, sessionID}]
	if !ok || b.now().Sub(c.updated) > b.ttl {
		return collected{}, false
	}
	return *c, true
}

// drop forgets a session's data once its COMMIT has been admitted.
func (b *collectBuffer) drop(hardwareID, sessionID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	key := collectKey{hardwareID, sessionID}
	if c, ok := b.entries[key]; ok {
		b.bytes -= c.size()
		delete(b.entries, key)
	}
}

// sweepLocked removes expired entries; without force it runs at most every ttl/4
// so a busy COLLECT path does not scan the map on every request.
func (b *collectBuffer) sweepLocked(now time.Time, force bool) {
	if !force && now.Sub(b.lastSweep) < b.ttl/4 {
		return
	}
	b.lastSweep = now
	for k, c := range b.entries {
		if now.Sub(c.updated) > b.ttl {
			b.bytes -= c.size()
			delete(b.entries, k)
		}
	}
}

// stats reports the number of buffered sessions and their bytes.
func (b *collectBuffer) stats() (entries, bytes int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.entries), b.bytes
}
