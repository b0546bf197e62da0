package server

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/memory"
	"github.com/nexy-server/nexy/store"
)

const (
	// memoryPendingPerDevice bounds the analyses waiting for one device; a
	// device talking faster than its analyses run loses the oldest analysis
	// (its turns are still recorded), never another device's.
	memoryPendingPerDevice = 8
	// memoryWorkers bounds the analyses running at once, so memory never
	// competes with answers for the model or the CPU.
	memoryWorkers = 4
	// memoryWriteTimeout bounds the store write of one update; it does not
	// depend on the analysis deadline, so a slow model never loses a write.
	memoryWriteTimeout = 10 * time.Second
)

// memoryService loads a device's memory for the prompt and, after each turn,
// runs the analyzer off the answer path: serialized per device (two updates
// of one device never race), bounded in number, each under memory.timeout.
type memoryService struct {
	store    Store
	analyzer *memory.Analyzer // nil: the heuristic
	cfg      config.Memory
	log      *slog.Logger
	metrics  *instruments // set by newService
	// usage counts the analyzer's tokens against the device's daily quota;
	// set by newService.
	usage func(hardwareID string, tokens int)
	now   func() time.Time

	ctx    context.Context // cancelled by close: analyses switch to the heuristic
	cancel context.CancelFunc
	slots  chan struct{}
	wg     sync.WaitGroup

	mu         sync.Mutex
	pending    map[string][]memoryJob // per device, oldest first; a key exists while its worker runs
	forgetting map[string]int         // per device: forget requests not yet committed
	closed     bool
	// applied[d] is the sequence number of device d's last applied update;
	// a turn's memory, read before any later update of its device, can
	// serve that turn's own update (see loadedMemory). Cleared past
	// maxApplied entries, and epoch then tells older reads apart.
	applied  map[string]uint64
	applySeq uint64
	epoch    uint64
}

// maxApplied bounds the applied map (one entry per device updated since the
// last clearing).
const maxApplied = 4096

// loadedMemory is what a turn read for its prompt. With the heuristic
// analyzer (which uses facts and digests only) the turn's update reuses it
// instead of reading it again, when no update of the device was applied
// since: one store read per turn instead of two.
type loadedMemory struct {
	mem        store.Memory
	at         time.Time // when it was read: the update's basis
	epoch, seq uint64
	ok         bool
}

type memoryJob struct {
	hardwareID, sessionID string
	turn                  memory.Turn
	heuristic             memory.Update // what the patterns found, computed once when the job is queued
	forget                bool          // the user asked to forget something
	loaded                loadedMemory  // what the turn read, if anything
}

func newMemoryService(cfg *config.Config, log *slog.Logger, deps Deps) *memoryService {
	ctx, cancel := context.WithCancel(context.Background())
	m := &memoryService{store: deps.Store, cfg: cfg.Memory, log: log, now: time.Now, ctx: ctx, cancel: cancel,
		slots: make(chan struct{}, memoryWorkers), pending: map[string][]memoryJob{}, forgetting: map[string]int{}, applied: map[string]uint64{}}
	if cfg.Memory.Analyzer == "llm" && deps.LLM != nil {
		m.analyzer = memory.NewAnalyzer(deps.LLM)
		m.analyzer.Timeout = cfg.Memory.Timeout.Duration
	}
	return m
}

// load renders a device's memory for the prompt's data block. It waits at
// most memory.load_timeout: a slow store means a turn without memory, never
// a late answer.
func (m *memoryService) load(ctx context.Context, hardwareID string) (string, loadedMemory) {
	if m.store == nil {
		return "", loadedMemory{}
	}
	m.mu.Lock()
	forgetting := m.forgetting[hardwareID] > 0
	// Taken before the read: an update applied while it runs changes the
	// sequence afterwards, so this read is never taken for newer than it is.
	epoch, seq := m.epoch, m.applied[hardwareID]
	m.mu.Unlock()
	if forgetting {
		// Until the forget is committed the stored memory may still hold
		// what the user asked to forget: answer without memory.
		return "", loadedMemory{}
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.LoadTimeout.Duration)
	defer cancel()
	now := m.now()
	mem, err := m.store.Memory(ctx, hardwareID, m.query(now))
	if err != nil {
		m.log.Warn("Memory not loaded: answering without it", "scope", "memory", "decision", "load_failed",
			"hardware_id", shortID(hardwareID), "error", err.Error())
		return "", loadedMemory{}
	}
	return memory.Render(snapshot(mem), now), loadedMemory{mem: mem, at: now, epoch: epoch, seq: seq, ok: true}
}

// reusable reports whether the memory a job's turn read is still current:
// no update of the device was applied since (the CLI's changes are caught
// by the update's basis, see store.MemoryChange).
func (m *memoryService) reusable(job memoryJob) bool {
	if !job.loaded.ok || m.analyzer != nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return job.loaded.epoch == m.epoch && job.loaded.seq == m.applied[job.hardwareID]
}

// appliedUpdate records that an update of the device was written.
func (m *memoryService) appliedUpdate(hardwareID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.applied) >= maxApplied {
		clear(m.applied)
		m.epoch++
	}
	m.applySeq++
	m.applied[hardwareID] = m.applySeq
}

func (m *memoryService) query(now time.Time) store.MemoryQuery {
	return store.MemoryQuery{RecentTurns: m.cfg.RecentTurns, RecentSince: now.Add(-m.cfg.RecentWindow.Duration),
		DigestSince: now.UTC().AddDate(0, 0, -m.cfg.DigestDays).Format(time.DateOnly)}
}

func snapshot(mem store.Memory) memory.Snapshot {
	var s memory.Snapshot
	for _, f := range mem.Facts {
		s.Facts = append(s.Facts, memory.Fact{ID: f.ID, Slot: f.Slot, Text: f.Text})
	}
	for _, d := range mem.Digests {
		s.Digests = append(s.Digests, memory.Digest{Day: d.Day, Text: d.Text})
	}
	for _, t := range mem.Recent {
		s.Recent = append(s.Recent, memory.Turn{At: t.At, User: t.User, Assistant: t.Assistant})
	}
	return s
}

// after schedules the analysis of a finished turn and returns at once.
func (m *memoryService) after(hardwareID, sessionID, prompt, answer string, at time.Time, loaded loadedMemory) {
	if m.store == nil {
		return
	}
	job := memoryJob{hardwareID: hardwareID, sessionID: sessionID, turn: memory.Turn{At: at, User: prompt, Assistant: answer}, loaded: loaded}
	job.heuristic = memory.Heuristic(job.turn)
	job.forget = job.heuristic.ForgetAll || len(job.heuristic.Forget) > 0
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	q, running := m.pending[hardwareID]
	if len(q) >= memoryPendingPerDevice {
		q = m.dropOldest(q)
	}
	if job.forget {
		m.forgetting[hardwareID]++
	}
	m.pending[hardwareID] = append(q, job)
	if !running {
		m.wg.Add(1)
		go m.drain(hardwareID)
	}
}

// dropOldest makes room in a full queue by skipping its oldest analysis
// that is not a request to forget: a forget is never skipped.
func (m *memoryService) dropOldest(q []memoryJob) []memoryJob {
	for i, j := range q {
		if !j.forget {
			m.log.Warn("Memory analysis skipped: the device has too many waiting", "scope", "memory", "decision", "skipped",
				"hardware_id", shortID(j.hardwareID), "pending", len(q))
			return append(q[:i:i], q[i+1:]...)
		}
	}
	return q
}

// drain runs one device's analyses in order, then ends. It takes a worker
// slot per analysis, so a chatty device cannot keep the others waiting.
func (m *memoryService) drain(hardwareID string) {
	defer m.wg.Done()
	for {
		m.mu.Lock()
		q := m.pending[hardwareID]
		if len(q) == 0 {
			delete(m.pending, hardwareID)
			m.mu.Unlock()
			return
		}
		job := q[0]
		m.pending[hardwareID] = q[1:]
		m.mu.Unlock()
		m.slots <- struct{}{}
		m.update(job)
		<-m.slots
		if job.forget {
			m.mu.Lock()
			if m.forgetting[hardwareID]--; m.forgetting[hardwareID] <= 0 {
				delete(m.forgetting, hardwareID)
			}
			m.mu.Unlock()
		}
	}
}

// update analyzes one turn and writes what it changes.
func (m *memoryService) update(job memoryJob) {
	start := m.now()
	mem, basis, err := job.loaded.mem, job.loaded.at, error(nil)
	if !m.reusable(job) {
		// The store is read and written under their own deadlines: at
		// shutdown the analysis is cut short (m.ctx), but what it found is
		// still saved.
		rctx, rcancel := context.WithTimeout(context.Background(), memoryWriteTimeout)
		mem, err = m.store.Memory(rctx, job.hardwareID, m.query(start))
		rcancel()
		basis = start
	}
	if err != nil {
		// Without the current facts an update could duplicate or fail to
		// retire them; the turn itself is recorded, so skip.
		m.log.Warn("Memory update skipped: memory not loaded", "scope", "memory", "decision", "update_failed",
			"hardware_id", shortID(job.hardwareID), "error", err.Error())
		return
	}
	snap := snapshot(mem)
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.Timeout.Duration)
	upd := m.analyze(ctx, snap, job)
	cancel()
	change := m.change(job, mem, upd, basis)
	wctx, wcancel := context.WithTimeout(context.Background(), memoryWriteTimeout)
	defer wcancel()
	err = m.store.ApplyMemory(wctx, change)
	m.appliedUpdate(job.hardwareID) // even a failed write may have been committed: assume it changed
	m.metrics.memoryAnalyzed(upd.Method, err == nil)
	if u := change.Usage; err == nil && u != nil && m.usage != nil {
		m.usage(u.HardwareID, u.InputTokens+u.OutputTokens)
	}
	if err != nil {
		m.log.Error("Memory update not saved", "scope", "memory", "decision", "update_failed",
			"hardware_id", shortID(job.hardwareID), "error", err.Error())
		return
	}
	m.log.Debug("Memory updated", "scope", "memory", "decision", "updated", "hardware_id", shortID(job.hardwareID),
		"method", upd.Method, "added", len(change.Add), "retired", len(change.Retire), "forget_all", upd.ForgetAll,
		"input_tokens", upd.Usage.InputTokens, "output_tokens", upd.Usage.OutputTokens, "dur_ms", time.Since(start).Milliseconds())
}

// analyze runs the configured analyzer. "off" still honours a request to
// forget: a user who asks must be forgotten whatever the operator chose.
func (m *memoryService) analyze(ctx context.Context, snap memory.Snapshot, job memoryJob) memory.Update {
	switch {
	case m.cfg.Analyzer == "off":
		h := job.heuristic
		return memory.Update{Forget: h.Forget, ForgetAll: h.ForgetAll, Method: h.Method}
	case m.analyzer == nil || m.ctx.Err() != nil:
		return job.heuristic
	}
	upd, err := m.analyzer.Analyze(ctx, snap, job.turn, m.now())
	if err != nil {
		// Analyze has already fallen back to the heuristic.
		m.log.Info("Memory analyzer failed: used the heuristic", "scope", "memory", "decision", "analyzer_fallback",
			"hardware_id", shortID(job.hardwareID), "error", err.Error())
	}
	return upd
}

// change turns an update into one store write.
func (m *memoryService) change(job memoryJob, mem store.Memory, upd memory.Update, now time.Time) store.MemoryChange {
	snap := snapshot(mem)
	retire, add := memory.Plan(snap.Facts, upd)
	forgot := upd.ForgetAll || len(upd.Forget) > 0
	c := store.MemoryChange{HardwareID: job.hardwareID, At: m.now(), Basis: now, Retire: retire, Reason: "replaced by a newer statement",
		ClearShortTerm: forgot, RetireDigests: upd.ForgetAll}
	if forgot {
		c.Reason = "forgotten at the user's request"
		c.Retire = append(c.Retire, digestsMentioning(mem, retire, upd.Forget)...)
	}
	for _, f := range add {
		c.Add = append(c.Add, store.Fact{Slot: f.Slot, Text: f.Text})
	}
	// A forgetting turn adds no digest: merging it into the day's text would
	// write back what was just retired.
	if upd.Digest != "" && !forgot {
		day := job.turn.At.UTC().Format(time.DateOnly)
		old := ""
		for _, d := range mem.Digests {
			if d.Day == day {
				old = d.Text
			}
		}
		c.Digest = &store.Digest{Day: day, Text: memory.MergeDigest(old, upd.Digest)}
	}
	if u := upd.Usage; u.InputTokens > 0 || u.OutputTokens > 0 {
		c.Usage = &store.Usage{HardwareID: job.hardwareID, SessionID: job.sessionID, Source: store.SourceMemory,
			Model: u.Model, InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, At: now}
	}
	return c
}

// digestsMentioning finds the digests that quote what is being forgotten
// (a retired fact's text or a forget term): a day's summary must not keep
// what the user asked to forget.
func digestsMentioning(mem store.Memory, retired []int64, terms []string) []int64 {
	needles := slices.Clone(terms)
	for _, f := range mem.Facts {
		if slices.Contains(retired, f.ID) {
			needles = append(needles, f.Text)
		}
	}
	var ids []int64
	for _, d := range mem.Digests {
		text := strings.ToLower(d.Text)
		for _, n := range needles {
			if n = strings.ToLower(strings.TrimSpace(n)); n != "" && strings.Contains(text, n) {
				ids = append(ids, d.ID)
				break
			}
		}
	}
	return ids
}

// close stops taking turns, switches running and waiting analyses to the
// heuristic (no model call outlives the server), and waits for their writes.
func (m *memoryService) close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
}
