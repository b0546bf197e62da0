package llm

import (
	"errors"
	"sync"
	"time"
)

// BreakerConfig sets the circuit breaker each provider of a Chain has.
// Failures consecutive failures open a provider's breaker for Cooldown; then
// one trial call is let through (half-open): success closes it, failure opens
// it again for Cooldown. Failures 0 disables the breaker (the chain still
// falls back on every failure, it just never skips a provider).
type BreakerConfig struct {
	Failures int
	Cooldown time.Duration
	Now      func() time.Time // nil = time.Now; tests pass a fake clock
}

// check rejects settings that would make a breaker meaningless.
func (bc BreakerConfig) check() error {
	switch {
	case bc.Failures < 0:
		return errors.New("llm chain: breaker failures must not be negative")
	case bc.Failures > 0 && bc.Cooldown <= 0:
		return errors.New("llm chain: breaker cooldown must be positive when failures is set")
	}
	return nil
}

// breakerState is where a breaker stands.
type breakerState int

const (
	stateClosed   breakerState = iota // calls go through
	stateOpen                         // calls are skipped until openUntil
	stateHalfOpen                     // the cooldown is over: one trial call at a time
)

func (s breakerState) String() string {
	switch s {
	case stateOpen:
		return "open"
	case stateHalfOpen:
		return "half_open"
	default:
		return "closed"
	}
}

// transition is a state change the chain logs, once, when it happens.
type transition int

const (
	noTransition transition = iota
	toOpen
	toHalfOpen
	toClosed
)

// permit is one call's right to go through a breaker. Its outcome is recorded
// exactly once (success, failure or abandon), whichever comes first: the
// stream's Recv and a Close on another goroutine may both try.
type permit struct {
	trial   uint64 // the half-open trial this call is; 0 when it is not one
	settled bool   // guarded by the breaker's mu
}

// breaker is one provider's circuit breaker plus the counters /status shows.
type breaker struct {
	cfg BreakerConfig

	mu          sync.Mutex
	state       breakerState
	consecutive int       // counted failures since the last success
	openUntil   time.Time // while open
	trial       uint64    // id of the half-open trial in flight; 0: none
	lastTrial   uint64    // ids make a stale trial's outcome unable to free a newer one
	calls       uint64
	failures    uint64
	fallbacks   uint64
	lastErr     string
	lastKind    string
}

func newBreaker(cfg BreakerConfig) *breaker {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &breaker{cfg: cfg}
}

// acquire asks to call the provider. A nil permit means the breaker refused
// (open, or a half-open trial is already running); forced overrides that,
// for when every breaker of the chain refused.
func (b *breaker) acquire(forced bool) (*permit, transition) {
	b.mu.Lock()
	defer b.mu.Unlock()
	tr := noTransition
	if b.state == stateOpen && !b.cfg.Now().Before(b.openUntil) {
		b.state, b.openUntil, tr = stateHalfOpen, time.Time{}, toHalfOpen
	}
	var p *permit
	switch {
	case b.state == stateHalfOpen && b.trial == 0:
		b.lastTrial++
		b.trial = b.lastTrial
		p = &permit{trial: b.trial}
	case b.state == stateClosed || forced:
		p = &permit{}
	default:
		b.fallbacks++ // skipped: the chain moves on from this provider
		return nil, tr
	}
	b.calls++
	return p, tr
}

// success records that the provider answered (text, or a clean empty end).
func (b *breaker) success(p *permit) transition {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.settle(p) {
		return noTransition
	}
	b.consecutive = 0
	if b.state == stateClosed {
		return noTransition
	}
	b.state, b.openUntil, b.trial = stateClosed, time.Time{}, 0
	return toClosed
}

// failure records a failure before any text. A BadRequest is the request's
// fault (e.g. a refused image), so it says nothing about the provider's
// health and does not move the breaker. It returns the consecutive count
// for the log.
func (b *breaker) failure(p *permit, err error) (transition, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.settle(p) {
		return noTransition, b.consecutive
	}
	kind := KindOf(err)
	b.failures++
	b.lastErr, b.lastKind = err.Error(), kind.String()
	if kind == KindBadRequest {
		return noTransition, b.consecutive
	}
	b.consecutive++
	if b.cfg.Failures == 0 {
		return noTransition, b.consecutive
	}
	switch {
	case b.state == stateOpen:
		// A forced call failed: fresh evidence, so the cooldown starts again.
		b.openUntil = b.cfg.Now().Add(b.cfg.Cooldown)
		return noTransition, b.consecutive
	case b.state == stateHalfOpen || b.consecutive >= b.cfg.Failures:
		b.state, b.openUntil, b.trial = stateOpen, b.cfg.Now().Add(b.cfg.Cooldown), 0
		return toOpen, b.consecutive
	}
	return noTransition, b.consecutive
}

// abandon ends a call that proved nothing (the caller cancelled or closed
// the stream), freeing the half-open trial it may hold.
func (b *breaker) abandon(p *permit) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.settle(p)
}

// settle marks p's outcome as recorded and frees its trial; false if it
// already was. Called with mu held.
func (b *breaker) settle(p *permit) bool {
	if p.settled {
		return false
	}
	p.settled = true
	if p.trial != 0 && p.trial == b.trial {
		b.trial = 0
	}
	return true
}

// movedOn counts a fallback after this provider failed.
func (b *breaker) movedOn() {
	b.mu.Lock()
	b.fallbacks++
	b.mu.Unlock()
}

// snapshot fills the breaker's part of a ProviderState.
func (b *breaker) snapshot(ps *ProviderState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ps.State = b.state.String()
	ps.ConsecutiveFailures = b.consecutive
	ps.OpenUntil = b.openUntil
	ps.Calls, ps.Failures, ps.Fallbacks = b.calls, b.failures, b.fallbacks
	ps.LastError, ps.LastKind = b.lastErr, b.lastKind
}
