package server

import (
	"context"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// admission decides whether a turn may start (SPEC §3 step 2) and tracks the
// running turns so InterruptSession and shutdown can cancel them.
type admission struct {
	slots     chan struct{} // one token per running turn; cap = max_concurrent_streams
	perDevice int           // concurrent turns one device may run
	rate      float64       // turns per second per device; 0 = unlimited
	burst     float64
	now       func() time.Time
	mu        sync.Mutex
	active    map[collectKey]*activeTurn // by (hardware_id, session_id): single-flight
	devices   map[string]int             // running turns by hardware_id
	buckets   map[string]*bucket         // by hardware_id
	draining  bool
}

type activeTurn struct {
	cancel  context.CancelCauseFunc
	release func()
}

// bucket is a token bucket limiting how fast one device starts turns.
type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the per-device limiter map; idle (full) buckets are pruned past it.
const maxBuckets = 4096

func newAdmission(maxStreams, perDevice int, ratePerSecond float64) *admission {
	return &admission{
		slots: make(chan struct{}, maxStreams), perDevice: perDevice, rate: ratePerSecond, burst: math.Max(1, math.Ceil(2*ratePerSecond)),
		now: time.Now, active: map[collectKey]*activeTurn{}, devices: map[string]int{}, buckets: map[string]*bucket{},
	}
}

// exhausted is an admission refusal. Its message starts with its kind: the
// client sees which limit it hit, and the metrics recover the kind from the
// status alone (errorKind), whichever layer refused.
func exhausted(kind, format string, args ...any) *turnError {
	return &turnError{code: codes.ResourceExhausted, kind: kind, msg: kind + ": " + fmt.Sprintf(format, args...)}
}

// admit reserves a slot for a turn of (hardwareID, sessionID). cancel is the
// turn's cancel function, used by interrupts and shutdown. The returned release
// must be called when the turn ends; an interrupt calls it earlier, so the
// session and the slot are free the moment InterruptSession answers, whatever
// the cancelled turn is still unwinding.
func (a *admission) admit(hardwareID, sessionID string, cancel context.CancelCauseFunc) (release func(), err *turnError) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.draining {
		return nil, &turnError{code: codes.Unavailable, kind: "unavailable", msg: "server is shutting down, please retry"}
	}
	key := collectKey{hardwareID, sessionID}
	if _, busy := a.active[key]; busy {
		// Not a taxonomy type of its own (SPEC §3 step 2): counted as a stream
		// limit, and the message says what happened.
		return nil, exhausted("stream_limit_exceeded", "a turn for session_id=%s is already in progress; one turn per session at a time", sessionID)
	}
	if a.devices[hardwareID] >= a.perDevice {
		return nil, exhausted("device_limit_exceeded", "this device already has %d answers in progress (limits.max_turns_per_device); wait for one to finish", a.perDevice)
	}
	// Take the slot before the rate token, so a refused turn costs no token.
	select {
	case a.slots <- struct{}{}:
	default:
		return nil, exhausted("stream_limit_exceeded", "maximum concurrent streams (%d) reached; retry in a minute", cap(a.slots))
	}
	if !a.takeTokenLocked(hardwareID) {
		<-a.slots
		return nil, exhausted("rate_limit_exceeded", "this device may start at most %g turns per second; slow down and retry", a.rate)
	}
	t := &activeTurn{cancel: cancel}
	var once sync.Once
	t.release = func() {
		once.Do(func() {
			a.mu.Lock()
			a.releaseLocked(key, t)
			a.mu.Unlock()
		})
	}
	a.active[key] = t
	a.devices[hardwareID]++
	return t.release, nil
}

// releaseLocked frees the slot and the session of t. It runs once per turn
// (through activeTurn.release), so the counts stay exact.
func (a *admission) releaseLocked(key collectKey, t *activeTurn) {
	if a.active[key] == t {
		delete(a.active, key)
	}
	if a.devices[key.hardwareID]--; a.devices[key.hardwareID] <= 0 {
		delete(a.devices, key.hardwareID)
	}
	<-a.slots
}

// busy reports whether more than half of the concurrency slots are taken:
// then extra work such as a speculation waits.
func (a *admission) busy() bool { return 2*len(a.slots) > cap(a.slots) }

// takeToken spends one of the device's rate tokens on something that is not
// a turn (a refusal, which also sends seconds of audio); false when the
// device is over limits.max_rate_per_second.
func (a *admission) takeToken(hardwareID string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.takeTokenLocked(hardwareID)
}

// acquireSlot takes a concurrency slot for work that is not a turn (welcome audio).
func (a *admission) acquireSlot() (release func(), err *turnError) {
	select {
	case a.slots <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-a.slots }) }, nil
	default:
		return nil, exhausted("stream_limit_exceeded", "maximum concurrent streams (%d) reached; retry in a minute", cap(a.slots))
	}
}

func (a *admission) takeTokenLocked(hardwareID string) bool {
	if a.rate <= 0 {
		return true
	}
	now := a.now()
	b := a.buckets[hardwareID]
	if b == nil {
		if len(a.buckets) >= maxBuckets {
			a.pruneBucketsLocked(now)
		}
		b = &bucket{tokens: a.burst, last: now}
		a.buckets[hardwareID] = b
	}
	b.tokens = math.Min(a.burst, b.tokens+now.Sub(b.last).Seconds()*a.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// pruneBucketsLocked forgets devices whose bucket has refilled: they are
// indistinguishable from devices never seen.
func (a *admission) pruneBucketsLocked(now time.Time) {
	for k, b := range a.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*a.rate >= a.burst {
			delete(a.buckets, k)
		}
	}
}

// interrupt cancels every running turn of a device with cause (an
// InterruptSession, a revocation), frees their sessions and slots at once,
// and returns their session ids.
func (a *admission) interrupt(hardwareID string, cause error) []string {
	a.mu.Lock()
	var ids []string
	var turns []*activeTurn
	for key, t := range a.active {
		if key.hardwareID == hardwareID {
			t.cancel(cause)
			turns = append(turns, t)
			ids = append(ids, key.sessionID)
		}
	}
	a.mu.Unlock()
	for _, t := range turns {
		t.release()
	}
	sort.Strings(ids)
	return ids
}

// drain refuses new turns from now on.
func (a *admission) drain() {
	a.mu.Lock()
	a.draining = true
	a.mu.Unlock()
}

// cancelAll cancels every running turn with cause.
func (a *admission) cancelAll(cause error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range a.active {
		t.cancel(cause)
	}
}

// running is the number of occupied slots.
func (a *admission) running() int { return len(a.slots) }

// turns is the number of turns running; an interrupted turn stops counting
// the moment InterruptSession frees its session.
func (a *admission) turns() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.active)
}
