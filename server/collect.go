package server

import (
	"sync"
	"time"

	pb "github.com/nexy-server/nexy/proto"
)

// collectKey identifies one push-to-talk utterance.
type collectKey struct{ hardwareID, sessionID string }

// collected is what COLLECT requests buffered for a session: the latest full
// interim transcript (a snapshot, last-wins by chunk_seq) and the latest
// screenshot. The client numbers text and screenshot COLLECTs with one
// counter but sends them as separate RPCs that may overtake each other, so
// each field keeps the sequence number it was last set with.
type collected struct {
	textSeq    int32
	shotSeq    int32
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

// put stores a COLLECT request. It reports whether the request brought
// anything newer than what is buffered (an older chunk_seq is acknowledged
// and ignored), and refuses new data when the buffer is full.
func (b *collectBuffer) put(req *pb.StreamRequest, mime string) (accepted bool, err *turnError) {
	key := collectKey{req.GetHardwareId(), req.GetSessionId()}
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sweepLocked(now, false)
	old := b.liveLocked(key, now)
	next := collected{textSeq: -1, shotSeq: -1}
	if old != nil {
		next = *old
	}
	seq := req.GetChunkSeq()
	// Present-but-empty optional strings mean "nothing new" (SPEC §2).
	if t := req.GetChunkText(); t != "" && seq > next.textSeq {
		next.text, next.textSeq, accepted = t, seq, true
	}
	if s := req.GetScreenshot(); s != "" && seq > next.shotSeq {
		next.screenshot, next.mime, next.shotSeq, accepted = s, mime, seq, true
	}
	if !accepted {
		return false, nil
	}
	next.updated = now
	grow := next.size()
	if old != nil {
		grow -= old.size()
	}
	if !b.roomLocked(old == nil, grow, now) {
		return false, exhausted("stream_limit_exceeded", "too many utterances are being collected right now, please retry")
	}
	b.entries[key] = &next
	b.bytes += grow
	return true, nil
}

// liveLocked returns the entry of key, forgetting it first if it expired: stale
// data is never merged into a new utterance.
func (b *collectBuffer) liveLocked(key collectKey, now time.Time) *collected {
	c, ok := b.entries[key]
	if ok && now.Sub(c.updated) > b.ttl {
		b.bytes -= c.size()
		delete(b.entries, key)
		return nil
	}
	return c
}

// roomLocked reports whether an entry (new or not) may grow by grow bytes,
// sweeping expired entries once if it is tight. The sweep cannot remove the
// entry being updated: liveLocked just confirmed it is not expired.
func (b *collectBuffer) roomLocked(isNew bool, grow int, now time.Time) bool {
	fits := func() bool { return (!isNew || len(b.entries) < b.maxEntries) && b.bytes+grow <= b.maxBytes }
	if fits() {
		return true
	}
	b.sweepLocked(now, true)
	return fits()
}

// peek returns the buffered data of a session without consuming it, so a
// COMMIT refused at admission does not lose the transcript (upstream bug).
func (b *collectBuffer) peek(hardwareID, sessionID string) (collected, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.entries[collectKey{hardwareID, sessionID}]
	if !ok || b.now().Sub(c.updated) > b.ttl || c.text == "" && c.screenshot == "" {
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
