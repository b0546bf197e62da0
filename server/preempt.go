package server

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/llm"
	pb "github.com/nexy-server/nexy/proto"
	"github.com/nexy-server/nexy/store"
)

// The preemptive answer (SPEC §2, preempt.*). While the key is held the app
// sends COLLECTs with the full interim transcript. Once it has not changed
// for preempt.stable_after, a speculation runs the turn's pipeline (model,
// reply parser, splitter, speech) into a held outbox: nothing leaves the
// server, no action runs and nothing is recorded as a turn. At COMMIT a
// speculation of the same session whose prompt matches (normalized) is
// adopted: the outbox is attached to the COMMIT's stream and what is ready
// goes out at once. Anything else cancels it.

// Speculation outcomes, the label of nexy_speculations_total.
const (
	specStarted     = "started"
	specUsed        = "used"        // adopted by its COMMIT
	specMismatch    = "mismatch"    // the COMMIT's prompt or screenshot differed
	specChanged     = "changed"     // the transcript changed while the key was held
	specExpired     = "expired"     // no COMMIT within preempt.hold
	specFailed      = "failed"      // the pipeline failed before its COMMIT: the COMMIT starts fresh
	specRefused     = "refused"     // the COMMIT was refused (device, quota, admission)
	specShutdown    = "shutdown"    // the server stopped
	specInterrupted = "interrupted" // InterruptSession for its device
)

var specOutcomes = []string{specStarted, specUsed, specMismatch, specChanged, specExpired, specFailed, specRefused, specInterrupted, specShutdown}

var errSpeculationDropped = errors.New("speculation dropped")

// speculation is one turn started ahead of its COMMIT.
type speculation struct {
	key    collectKey
	norm   string // normalized prompt
	shot   string // the screenshot it was started with ("" = none)
	t      *turn
	done   chan struct{} // closed when produce has returned
	err    error         // produce's result; read after done
	expire *time.Timer
}

// preempter starts, holds, hands over and drops speculations. Bounded: at
// most one per device, preempt.max_speculations in all, and none while
// admission is over half full (a speculation is extra load, only worth it
// when there is room).
type preempter struct {
	svc *service
	cfg config.Preempt
	on  bool

	mu       sync.Mutex
	byDevice map[string]*speculation
	timers   map[string]*stableTimer // per device: waiting for the transcript to settle
	running  int
	closed   bool
	settling sync.WaitGroup // dropped speculations still unwinding
	gen      uint64         // numbers every stability timer, so a stale one is told apart
	// committed are utterances whose COMMIT has come: a COLLECT of theirs
	// handled after it (the two are separate requests) starts nothing.
	committed map[collectKey]time.Time

	counts map[string]*atomic.Int64 // by outcome
}

// stableTimer fires when a device's transcript has stood still long enough;
// gen tells a stale firing from the current one.
type stableTimer struct {
	timer *time.Timer
	gen   uint64
}

func newPreempter(s *service) *preempter {
	p := &preempter{svc: s, cfg: s.cfg.Preempt, on: s.cfg.PreemptOn(), byDevice: map[string]*speculation{},
		timers: map[string]*stableTimer{}, counts: map[string]*atomic.Int64{}, committed: map[collectKey]time.Time{}}
	for _, o := range specOutcomes {
		p.counts[o] = &atomic.Int64{}
	}
	return p
}

// normalizePrompt is what must match between a speculation and its COMMIT:
// case, runs of spaces and trailing punctuation do not count (recognizers
// often add a final period or capitalize at the end of an utterance).
func normalizePrompt(s string) string {
	s = strings.TrimRightFunc(s, func(r rune) bool { return unicode.IsPunct(r) || unicode.IsSpace(r) })
	return strings.ToLower(strings.Join(strings.Fields(s), " "))
}

// collected is called for every accepted COLLECT: a transcript that differs
// from the running speculation cancels it, and the stability timer starts over.
func (p *preempter) collected(key collectKey, text, shot string) {
	if !p.on || text == "" {
		return
	}
	norm := normalizePrompt(text)
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, done := p.committed[key]; p.closed || done {
		return
	}
	if sp := p.byDevice[key.hardwareID]; sp != nil {
		if sp.key == key && sp.norm == norm && shot == sp.shot {
			return // the same words again: the speculation stands
		}
		p.dropLocked(sp, specChanged)
	}
	st := p.timers[key.hardwareID]
	if st == nil {
		st = &stableTimer{}
		p.timers[key.hardwareID] = st
	} else {
		st.timer.Stop()
	}
	p.gen++
	st.gen = p.gen
	gen := st.gen
	st.timer = time.AfterFunc(p.cfg.StableAfter.Duration, func() { p.stable(key, gen) })
}

// stable starts a speculation when the device's transcript has not changed
// since gen and every bound allows it.
func (p *preempter) stable(key collectKey, gen uint64) {
	buffered, ok := p.svc.collect.peek(key.hardwareID, key.sessionID)
	if !ok || len([]rune(normalizePrompt(buffered.text))) < p.cfg.MinChars {
		p.forgetTimer(key.hardwareID, gen)
		return
	}
	if !p.svc.devices.quotaLeft(key.hardwareID) {
		p.forgetTimer(key.hardwareID, gen)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.timers[key.hardwareID]
	if st == nil || st.gen != gen || p.closed {
		return // a later COLLECT or the COMMIT came first
	}
	delete(p.timers, key.hardwareID)
	if p.byDevice[key.hardwareID] != nil || p.running >= p.cfg.MaxSpeculations || p.svc.adm.busy() {
		return
	}
	p.startLocked(key, buffered)
}

func (p *preempter) forgetTimer(hardwareID string, gen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.timers[hardwareID]; st != nil && st.gen == gen {
		delete(p.timers, hardwareID)
	}
}

// startLocked runs the turn's pipeline into a held outbox.
func (p *preempter) startLocked(key collectKey, c collected) {
	s := p.svc
	ctx, cancel := context.WithCancelCause(context.Background())
	in := turnInput{hardwareID: key.hardwareID, sessionID: key.sessionID, prompt: strings.TrimSpace(c.text), start: s.now()}
	if c.screenshot != "" {
		in.image = &llm.Image{MIME: c.mime, Base64: c.screenshot}
	}
	out := newHeldOutbox(ctx, cancel, recycleStream, s.cfg.Limits.SendTimeout.Duration)
	t := &turn{svc: s, in: in, ctx: ctx, cancel: cancel, out: out}
	t.tm.mark(&t.tm.admitted, in.start)
	sp := &speculation{key: key, norm: normalizePrompt(c.text), shot: c.screenshot, t: t, done: make(chan struct{})}
	sp.expire = time.AfterFunc(p.cfg.Hold.Duration, func() { p.drop(sp, specExpired) })
	p.byDevice[key.hardwareID] = sp
	p.running++
	p.counts[specStarted].Add(1)
	s.log.Debug("Speculative answer started", "scope", "grpc", "method", "StreamAudio", "decision", "speculation_started",
		"session_id", key.sessionID, "hardware_id", shortID(key.hardwareID))
	go func() {
		defer close(sp.done)
		t.memory, t.loaded = s.memory.load(ctx, key.hardwareID)
		sp.err = t.produce()
	}()
}

// claim hands the COMMIT of key its speculation when the prompt and the
// screenshot match and it has not failed; any other speculation of the
// device is dropped. Either way no speculation starts for this utterance
// any more.
func (p *preempter) claim(key collectKey, prompt, shot string) *speculation {
	if !p.on {
		return nil
	}
	p.mu.Lock()
	p.markCommittedLocked(key)
	if st := p.timers[key.hardwareID]; st != nil {
		st.timer.Stop()
		delete(p.timers, key.hardwareID)
	}
	sp := p.byDevice[key.hardwareID]
	if sp == nil {
		p.mu.Unlock()
		return nil
	}
	if sp.key != key || sp.norm != normalizePrompt(prompt) || sp.shot != shot {
		p.dropLocked(sp, specMismatch)
		p.mu.Unlock()
		return nil
	}
	// A failed pipeline, or one already cancelled (a timeout) that has not
	// returned yet, is no answer to adopt: the COMMIT starts fresh.
	if context.Cause(sp.t.ctx) != nil {
		p.dropLocked(sp, specFailed)
		p.mu.Unlock()
		return nil
	}
	delete(p.byDevice, key.hardwareID)
	p.running--
	p.mu.Unlock()
	sp.expire.Stop()
	return sp
}

// markCommittedLocked remembers key's COMMIT for a while (longer than a
// late COLLECT can take), bounded: past 4096 keys the older half goes.
func (p *preempter) markCommittedLocked(key collectKey) {
	now := time.Now()
	if len(p.committed) >= 4096 {
		for k, at := range p.committed {
			if now.Sub(at) > 30*time.Second || len(p.committed) > 2048 {
				delete(p.committed, k)
			}
		}
	}
	p.committed[key] = now
}

// release drops a claimed speculation whose COMMIT was refused (nil: none).
// It runs in the COMMIT's handler, which waits for it: a refusal is rare,
// and the speculation is then gone before the handler returns (shutdown
// waits for handlers, so nothing outlives the server).
func (p *preempter) release(sp *speculation, outcome string) {
	if sp == nil {
		return
	}
	p.counts[outcome].Add(1)
	p.abandon(sp, outcome)
}

// drop cancels sp unless it was claimed or dropped already.
func (p *preempter) drop(sp *speculation, outcome string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byDevice[sp.key.hardwareID] == sp {
		p.dropLocked(sp, outcome)
	}
}

// dropDevice cancels the device's speculation (revoked, new token,
// interrupted) and its pending stability timer.
func (p *preempter) dropDevice(hardwareID, outcome string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.timers[hardwareID]; st != nil {
		st.timer.Stop()
		delete(p.timers, hardwareID)
	}
	if sp := p.byDevice[hardwareID]; sp != nil {
		p.dropLocked(sp, outcome)
	}
}

// dropLocked cancels sp; it unwinds in the background, and close waits
// for it. Only called under mu, and never once close has emptied byDevice,
// so no Add races close's Wait.
func (p *preempter) dropLocked(sp *speculation, outcome string) {
	delete(p.byDevice, sp.key.hardwareID)
	p.running--
	p.counts[outcome].Add(1)
	p.settling.Add(1)
	go func() {
		defer p.settling.Done()
		p.abandon(sp, outcome)
	}()
}

// abandon cancels a speculation nobody will use: its held output is
// dropped unsent, and what the model already spent is recorded as source
// "speculative" and counted against the device's daily tokens.
func (p *preempter) abandon(sp *speculation, outcome string) {
	s := p.svc
	sp.expire.Stop()
	sp.t.cancel(errSpeculationDropped)
	<-sp.done
	_, _ = sp.t.out.finish()
	u := sp.t.usage
	s.log.Debug("Speculative answer dropped", "scope", "grpc", "method", "StreamAudio", "decision", "speculation_dropped",
		"session_id", sp.key.sessionID, "hardware_id", shortID(sp.key.hardwareID), "reason", outcome,
		slog.Int("input_tokens", u.InputTokens), slog.Int("output_tokens", u.OutputTokens))
	if u.InputTokens+u.OutputTokens == 0 {
		return
	}
	s.devices.addTokens(sp.key.hardwareID, u.InputTokens+u.OutputTokens)
	if s.store == nil {
		return
	}
	model := u.Model
	if model == "" {
		model = s.cfg.LLM.Model
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Store.CommitTimeout.Duration+time.Second)
	defer cancel()
	err := s.store.RecordUsage(ctx, store.Usage{HardwareID: sp.key.hardwareID, SessionID: sp.key.sessionID, Source: store.SourceSpeculative,
		Model: model, InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, At: sp.t.in.start})
	if err != nil {
		s.log.Error("Speculative usage not recorded", "scope", "store", "decision", "save_failed",
			"hardware_id", shortID(sp.key.hardwareID), "error", err.Error())
	}
}

// close drops every speculation and waits until they have unwound; no new
// one starts after it.
func (p *preempter) close() {
	p.mu.Lock()
	p.closed = true
	for _, st := range p.timers {
		st.timer.Stop()
	}
	clear(p.timers)
	for _, sp := range p.byDevice {
		p.dropLocked(sp, specShutdown)
	}
	p.mu.Unlock()
	p.settling.Wait()
}

// adopt attaches a claimed speculation to its COMMIT's stream and finishes
// the turn there: what was held goes out first, then the rest as it comes.
// Stage timings are re-based on the COMMIT, since that is when the user
// started waiting.
func (sp *speculation) adopt(send func(*pb.StreamResponse) error, commit time.Time, prompt string) error {
	t := sp.t
	admitted := time.Since(commit)
	t.out.attachSend(send)
	<-sp.done
	// Every goroutine of produce has ended: the start may move, and the
	// record holds what the COMMIT said (the same words, maybe cased and
	// punctuated differently).
	t.tm.rebase(commit.Sub(t.in.start))
	t.tm.admitted.Store(max(1, int64(admitted)))
	t.in.start, t.in.prompt = commit, prompt
	if sp.err != nil {
		return sp.err
	}
	defer t.cancel(errTurnDone)
	return t.conclude()
}

var speculationsDesc = prometheus.NewDesc("nexy_speculations_total",
	"Preemptive answers by outcome: started, then used by their COMMIT or dropped (mismatch, changed, expired, failed, refused, interrupted, shutdown).",
	[]string{"outcome"}, nil)

// Describe and Collect export the outcome counts at each scrape.
func (p *preempter) Describe(ch chan<- *prometheus.Desc) { ch <- speculationsDesc }

func (p *preempter) Collect(ch chan<- prometheus.Metric) {
	for _, o := range specOutcomes {
		ch <- prometheus.MustNewConstMetric(speculationsDesc, prometheus.CounterValue, float64(p.counts[o].Load()), o)
	}
}
