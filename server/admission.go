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
	slots    chan struct{} // one token per running turn; cap = max_concurrent_streams
	rate     float64       // turns per second per device; 0 = unlimited
	burst    float64
	now      func() time.Time
	mu       sync.Mutex
	active   map[collectKey]*activeTurn // by (hardware_id, session_id): single-flight
	buckets  map[string]*bucket         // by hardware_id
	draining bool
}

type activeTurn struct {
	cancel context.CancelCauseFunc
}

// bucket is a token bucket limiting how fast one device starts turns.
type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the per-device limiter map; idle (full) buckets are pruned past it.
const maxBuckets = 4096

func newAdmission(maxStreams int, ratePerSecond float64) *admission {
	return &admission{
		slots: make(chan struct{}, maxStreams), rate: ratePerSecond, burst: math.Max(1, math.Ceil(2*ratePerSecond)),
		now: time.Now, active: map[collectKey]*activeTurn{}, buckets: map[string]*bucket{},
	}
}

func exhausted(kind, format string, args ...any) *turnError {
	return &turnError{code: codes.ResourceExhausted, kind: kind, msg: kind + ": " + fmt.Sprintf(format, args...)}
}

// admit reserves a slot for a turn of (hardwareID, sessionID). cancel is the
// turn's cancel function, used by interrupts and shutdown. The returned release
// must be called when the turn ends.
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
	a.active[key] = &activeTurn{cancel: cancel}
	var once sync.Once
	return func() {
		once.Do(func() {
			a.mu.Lock()
			delete(a.active, key)
			a.mu.Unlock()
			<-a.slots
		})
	}, nil
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

// interrupt cancels every running turn of a device and returns their session ids.
func (a *admission) interrupt(hardwareID string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ids []string
	for key, t := range a.active {
		if key.hardwareID == hardwareID {
			t.cancel(errInterrupted)
			ids = append(ids, key.sessionID)
		}
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
