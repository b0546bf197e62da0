package llm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// ChainEntry is one provider of a Chain, in fallback order.
type ChainEntry struct {
	Provider Provider
	// Label names the config entry in logs and /status ("llm",
	// "llm.fallbacks[0]"); empty means the provider's Name().
	Label string
	// Model is the configured model, reported in /status and used for
	// Usage.Model when the provider left it empty.
	Model string
}

// ProviderState is a snapshot of one chain entry for /status.
type ProviderState struct {
	Label, Provider, Model string
	State                  string // "closed", "open", "half_open"
	ConsecutiveFailures    int
	OpenUntil              time.Time // zero unless open
	Calls                  uint64    // calls started
	Failures               uint64    // failures before text
	Fallbacks              uint64    // times the chain moved on from this provider (failure or open breaker)
	LastError              string    // the last failure's Error(); an *Error never carries the key
	LastKind               string    // fault kind of the last failure
}

// Chain is a Provider that tries its entries in order, each behind its own
// circuit breaker. It falls back only while no text has reached the caller,
// so an answer is never spoken twice.
type Chain struct {
	members []*member
	log     *slog.Logger
	cool    time.Duration
}

var _ Provider = (*Chain)(nil)

// member is a chain entry with its breaker.
type member struct {
	ChainEntry
	br *breaker
}

// NewChain builds a chain over entries (at least one) in fallback order; log
// may be nil.
func NewChain(entries []ChainEntry, bc BreakerConfig, log *slog.Logger) (*Chain, error) {
	if len(entries) == 0 {
		return nil, errors.New("llm chain: at least one provider is required")
	}
	if err := bc.check(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Chain{log: log, cool: bc.Cooldown}
	for i, e := range entries {
		if e.Provider == nil {
			return nil, fmt.Errorf("llm chain: entry %d has no provider", i)
		}
		if e.Label == "" {
			e.Label = e.Provider.Name()
		}
		c.members = append(c.members, &member{ChainEntry: e, br: newBreaker(bc)})
	}
	return c, nil
}

// Name is the first entry's provider name: the one that answers when all is well.
func (c *Chain) Name() string { return c.members[0].Provider.Name() }

// States returns a snapshot of every entry, in chain order.
func (c *Chain) States() []ProviderState {
	out := make([]ProviderState, len(c.members))
	for i, m := range c.members {
		out[i] = ProviderState{Label: m.Label, Provider: m.Provider.Name(), Model: m.Model}
		m.br.snapshot(&out[i])
	}
	return out
}

// Stream starts the first provider whose breaker allows a call. Failures
// before text are handled by the returned stream's first Recv, which moves
// on to the next provider transparently. When every provider fails, the
// last provider's error is returned unchanged, so KindOf still works.
func (c *Chain) Stream(ctx context.Context, req Request) (Stream, error) {
	// Our own cancel lets Close abort a fallback call that is still starting.
	cctx, cancel := context.WithCancel(ctx)
	s := &chainStream{chain: c, ctx: cctx, cancel: cancel, req: req}
	if err := s.startNext(); err != nil {
		cancel()
		return nil, err
	}
	return s, nil
}

// logTransition writes the one line a breaker state change gets.
func (c *Chain) logTransition(m *member, tr transition, failures int) {
	switch tr {
	case toOpen:
		c.log.Warn("LLM provider keeps failing: skipped until the cooldown ends", "scope", "llm",
			"decision", "breaker_open", "label", m.Label, "failures", failures, "cooldown", c.cool.String())
	case toHalfOpen:
		c.log.Info("LLM provider cooldown over: one trial call", "scope", "llm",
			"decision", "breaker_half_open", "label", m.Label)
	case toClosed:
		c.log.Info("LLM provider answers again", "scope", "llm",
			"decision", "breaker_closed", "label", m.Label)
	}
}

// logFallback records moving on from a failed provider. Never the request text.
func (c *Chain) logFallback(from, to *member, err error) {
	c.log.Warn("LLM provider failed before answering: trying the next", "scope", "llm",
		"decision", "llm_fallback", "from", from.Label, "to", to.Label,
		"kind", KindOf(err).String(), "error", err.Error())
}

// chainStream is the Stream a Chain returns. Recv runs on one goroutine;
// Close may run on another, so what Close touches is guarded by mu.
type chainStream struct {
	chain  *Chain
	ctx    context.Context // the caller's, plus our cancel for Close
	cancel context.CancelFunc
	req    Request

	// Owned by the goroutine that calls Stream and then Recv.
	next      int     // the next entry to consider
	forced    bool    // every breaker refused: this pass ignores them
	attempted bool    // some provider was called in the breaker-respecting pass
	failed    *member // failed before text; the chain has not moved on yet
	lastErr   error
	sawText   bool

	mu     sync.Mutex
	cur    Stream // the provider stream being read; nil between providers
	curM   *member
	curP   *permit
	err    error // sticky: every provider failed, or the call was cancelled
	closed bool
}

// startNext calls providers in order until one returns a stream.
func (s *chainStream) startNext() error {
	for {
		if err := s.ctx.Err(); err != nil {
			return s.cancelled(err)
		}
		m, p := s.pick()
		if m == nil {
			return s.lastErr
		}
		if s.failed != nil {
			s.chain.logFallback(s.failed, m, s.lastErr)
			s.failed.br.movedOn()
			s.failed = nil
		}
		st, err := m.Provider.Stream(s.ctx, s.req)
		if err == nil {
			return s.attach(m, p, st)
		}
		if s.ctx.Err() != nil {
			m.br.abandon(p) // a cancel, not the provider's fault
			if s.isClosed() {
				return s.closedErr()
			}
			return err
		}
		s.fail(m, p, err)
	}
}

// pick returns the next provider whose breaker lets a call through and its
// permit, or nil when the chain is exhausted. If every breaker refused, a
// second pass tries them all in order anyway: the chain never refuses a turn
// without trying.
func (s *chainStream) pick() (*member, *permit) {
	ms := s.chain.members
	for {
		if s.next == len(ms) {
			if s.attempted || s.forced {
				return nil, nil
			}
			s.forced, s.next = true, 0
		}
		m := ms[s.next]
		s.next++
		p, tr := m.br.acquire(s.forced)
		s.chain.logTransition(m, tr, 0)
		if p != nil {
			s.attempted = true
			return m, p
		}
	}
}

// fail records a provider's failure before text.
func (s *chainStream) fail(m *member, p *permit, err error) {
	tr, n := m.br.failure(p, err)
	s.chain.logTransition(m, tr, n)
	s.failed, s.lastErr = m, err
}

// cancelled is the error for a call whose context ended between providers.
func (s *chainStream) cancelled(err error) error {
	if s.isClosed() {
		return s.closedErr()
	}
	return classifyTransport(s.chain.Name(), s.ctx, s.ctx, 0, err)
}

// attach makes st the stream Recv reads, unless Close came first.
func (s *chainStream) attach(m *member, p *permit, st Stream) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		st.Close()
		m.br.abandon(p)
		return s.closedErr()
	}
	s.cur, s.curM, s.curP = st, m, p
	s.mu.Unlock()
	return nil
}

// current is the stream to read, or the sticky error.
func (s *chainStream) current() (Stream, *member, *permit, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.err != nil:
		return nil, nil, nil, s.err
	case s.cur == nil:
		return nil, nil, nil, s.closedErr() // only after Close between providers
	}
	return s.cur, s.curM, s.curP, nil
}

// Recv returns the next delta. Before the first delta, a provider failure
// moves the chain to the next provider; after it, errors come back as they are.
func (s *chainStream) Recv() (string, error) {
	for {
		cur, m, p, err := s.current()
		if err != nil {
			return "", err
		}
		d, err := cur.Recv()
		if s.sawText {
			return d, err
		}
		switch {
		case err == nil:
			s.sawText = true
			s.chain.logTransition(m, m.br.success(p), 0)
			return d, nil
		case err == io.EOF:
			// An empty answer is still an answer; the server handles it.
			s.chain.logTransition(m, m.br.success(p), 0)
			return "", io.EOF
		case s.ctx.Err() != nil:
			m.br.abandon(p) // cancelled or closed: not the provider's fault
			return "", err
		}
		s.detach(cur)
		s.fail(m, p, err)
		if err := s.startNext(); err != nil {
			s.setErr(err)
			return "", err
		}
	}
}

// detach closes a provider stream that failed before text.
func (s *chainStream) detach(cur Stream) {
	s.mu.Lock()
	s.cur = nil
	s.mu.Unlock()
	cur.Close()
}

// setErr makes err the chain stream's result from now on.
func (s *chainStream) setErr(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	s.cancel() // nothing is in flight any more
}

// Usage is the answering provider's usage, with the entry's model when the
// provider reported none.
func (s *chainStream) Usage() Usage {
	s.mu.Lock()
	cur, m := s.cur, s.curM
	s.mu.Unlock()
	if cur == nil {
		return Usage{}
	}
	u := cur.Usage()
	if u.Model == "" {
		u.Model = m.Model
	}
	return u
}

// Close aborts whatever is in flight, including a fallback still starting.
// Idempotent; safe while Recv runs on another goroutine.
func (s *chainStream) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	cur, m, p := s.cur, s.curM, s.curP
	s.mu.Unlock()
	s.cancel()
	if cur != nil {
		cur.Close()
		m.br.abandon(p)
	}
	return nil
}

func (s *chainStream) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *chainStream) closedErr() error {
	return fmt.Errorf("llm %s: %w", s.chain.Name(), errStreamClosed)
}
