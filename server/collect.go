package server

import (
	"context"
	"slices"
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

// collectLimits bound the COLLECT buffer as a whole and per device.
type collectLimits struct {
	ttl            time.Duration
	maxEntries     int // utterances buffered at once, all devices
	maxBytes       int
	perDevice      int // utterances one device may have buffered
	perDeviceBytes int
}

// collectBuffer holds COLLECT data until its COMMIT arrives. It is bounded in
// entries and bytes, overall and per device, and entries expire after ttl
// (upstream kept them forever). A device over its own bounds makes room by
// dropping its own oldest utterances (a press it abandoned), so one device can
// never fill the buffer for the others, and a person who presses and cancels
// often is never refused.
type collectBuffer struct {
	collectLimits
	now func() time.Time

	mu        sync.Mutex
	entries   map[collectKey]*collected
	devices   map[string]*deviceUse
	bytes     int
	lastSweep time.Time
}

// deviceUse is what one device holds in the buffer.
type deviceUse struct{ entries, bytes int }

func newCollectBuffer(l collectLimits) *collectBuffer {
	return &collectBuffer{collectLimits: l, now: time.Now, entries: map[collectKey]*collected{}, devices: map[string]*deviceUse{}}
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
	if next.size() > b.perDeviceBytes {
		return false, exhausted("collect_limit_exceeded", "this utterance is larger than one device may buffer (limits.collect_per_device_bytes = %d)", b.perDeviceBytes)
	}
	// Plan which of the device's own oldest utterances must make room, check
	// the whole buffer with that room counted, and only then evict: a
	// refused COLLECT costs the device nothing.
	evict, ok := b.planLocked(key, old, next.size())
	if !ok {
		b.sweepLocked(now, true)
		if evict, ok = b.planLocked(key, old, next.size()); !ok {
			return false, exhausted("collect_limit_exceeded", "the server is holding too many spoken requests right now "+
				"(limits.collect_max_sessions, limits.collect_max_bytes); please retry")
		}
	}
	for _, k := range evict {
		b.removeLocked(k)
	}
	b.removeLocked(key)
	b.addLocked(key, &next)
	return true, nil
}

// planLocked returns the device's own oldest utterances (never key) whose
// removal lets key's entry, new or grown to size, fit the device's bounds,
// and whether it then also fits the whole buffer's.
func (b *collectBuffer) planLocked(key collectKey, old *collected, size int) (evict []collectKey, fits bool) {
	entries, bytes := len(b.entries), b.bytes-b.sizeOf(old)+size
	devEntries, devBytes := 0, -b.sizeOf(old)+size
	if d := b.devices[key.hardwareID]; d != nil {
		devEntries, devBytes = d.entries, d.bytes-b.sizeOf(old)+size
	}
	if old == nil {
		entries++
		devEntries++
	}
	if devEntries > b.perDevice || devBytes > b.perDeviceBytes {
		var own []collectKey
		for k := range b.entries {
			if k.hardwareID == key.hardwareID && k != key {
				own = append(own, k)
			}
		}
		slices.SortFunc(own, func(x, y collectKey) int { return b.entries[x].updated.Compare(b.entries[y].updated) })
		for _, k := range own {
			if devEntries <= b.perDevice && devBytes <= b.perDeviceBytes {
				break
			}
			size := b.entries[k].size()
			evict = append(evict, k)
			devEntries, devBytes, entries, bytes = devEntries-1, devBytes-size, entries-1, bytes-size
		}
	}
	return evict, entries <= b.maxEntries && bytes <= b.maxBytes
}

func (b *collectBuffer) sizeOf(c *collected) int {
	if c == nil {
		return 0
	}
	return c.size()
}

func (b *collectBuffer) addLocked(key collectKey, c *collected) {
	b.entries[key] = c
	b.bytes += c.size()
	d := b.devices[key.hardwareID]
	if d == nil {
		d = &deviceUse{}
		b.devices[key.hardwareID] = d
	}
	d.entries++
	d.bytes += c.size()
}

// removeLocked forgets key's entry, if any, and its accounting.
func (b *collectBuffer) removeLocked(key collectKey) {
	c, ok := b.entries[key]
	if !ok {
		return
	}
	delete(b.entries, key)
	b.bytes -= c.size()
	if d := b.devices[key.hardwareID]; d != nil {
		d.entries--
		d.bytes -= c.size()
		if d.entries <= 0 {
			delete(b.devices, key.hardwareID)
		}
	}
}

// liveLocked returns the entry of key, forgetting it first if it expired: stale
// data is never merged into a new utterance.
func (b *collectBuffer) liveLocked(key collectKey, now time.Time) *collected {
	c, ok := b.entries[key]
	if ok && now.Sub(c.updated) > b.ttl {
		b.removeLocked(key)
		return nil
	}
	return c
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
	b.removeLocked(collectKey{hardwareID, sessionID})
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
			b.removeLocked(k)
		}
	}
}

// sweep removes expired entries now.
func (b *collectBuffer) sweep() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sweepLocked(b.now(), true)
}

// sweepEvery removes expired entries on a timer until ctx is done, so memory
// held by abandoned utterances (a screenshot is megabytes) is returned after
// ttl even when no COLLECT arrives to trigger a sweep.
func (b *collectBuffer) sweepEvery(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			b.sweep()
		case <-ctx.Done():
			return
		}
	}
}

// stats reports the number of buffered sessions and their bytes.
func (b *collectBuffer) stats() (entries, bytes int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.entries), b.bytes
}
