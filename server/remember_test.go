package server

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nexy-server/nexy/llm/llmtest"
	"github.com/nexy-server/nexy/store"
)

// activeFacts reads the device's facts that are not retired.
func activeFacts(t *testing.T, h *harness) []store.Fact {
	t.Helper()
	m, err := h.db.Memory(context.Background(), testHW, store.MemoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	return m.Facts
}

func hasFact(facts []store.Fact, slot, text string) bool {
	for _, f := range facts {
		if f.Slot == slot && strings.Contains(f.Text, text) {
			return true
		}
	}
	return false
}

// memoryBlock is the memory data block of a system prompt ("" = none).
func memoryBlock(system string) string {
	_, after, ok := strings.Cut(system, "[[BEGIN USER MEMORY]]")
	if !ok {
		return ""
	}
	block, _, _ := strings.Cut(after, "[[END USER MEMORY]]")
	return block
}

func answerTurn(t *testing.T, h *harness, prompt string) {
	t.Helper()
	msgs, err := h.call(t, commitReq(newSession(), prompt))
	if err != nil {
		t.Fatalf("%q: %v", prompt, err)
	}
	checkAnswer(t, msgs)
}

// A name stated in one turn reaches the memory block of a later turn's
// request; "forget" removes it from later prompts while its row remains.
func TestMemoryEndToEndHeuristic(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Nice to meet you."}`}})
	h := startServer(t, testConfig(t, "openai", fake.URL, newSpeechFake(t).URL))

	answerTurn(t, h, "My name is Anna.")
	waitFor(t, "the name to be remembered", func() bool { return hasFact(activeFacts(t, h), "name", "Anna") })

	answerTurn(t, h, "What is the weather like?")
	reqs := fake.Requests()
	block := memoryBlock(reqs[len(reqs)-1].System)
	if !strings.Contains(block, "Anna") {
		t.Fatalf("the second turn's memory block does not hold the name:\n%s", block)
	}
	if strings.Contains(reqs[len(reqs)-1].User, "Anna") {
		t.Error("memory leaked into the user's text")
	}

	answerTurn(t, h, "Forget my name.")
	waitFor(t, "the name to be forgotten", func() bool { return !hasFact(activeFacts(t, h), "name", "Anna") })

	answerTurn(t, h, "What is my name?")
	reqs = fake.Requests()
	if system := reqs[len(reqs)-1].System; strings.Contains(system, "Anna") {
		t.Fatalf("a forgotten name is still in the prompt:\n%s", memoryBlock(system))
	}
	all, err := h.db.ExportMemory(context.Background(), testHW)
	if err != nil {
		t.Fatal(err)
	}
	if !hasFact(all.Facts, "name", "Anna") || all.Facts[0].RetiredAt.IsZero() {
		t.Errorf("the forgotten fact's row should remain, retired: %+v", all.Facts)
	}
}

// With memory.analyzer = "llm" the model extracts the facts (one call after
// the turn, with its tokens recorded as source memory); "forget everything
// about me" retires them all.
func TestMemoryEndToEndLLMAnalyzer(t *testing.T) {
	answer := llmtest.Script{Deltas: []string{`{"text": "Got it."}`}, Usage: llmtest.Usage{InputTokens: 100, OutputTokens: 4}}
	analysis := llmtest.Script{Deltas: []string{"FACT name: Sergey\nFACT pref", "erence: jazz music\nDIGEST: user introduced himself\n"},
		Usage: llmtest.Usage{InputTokens: 70, OutputTokens: 20}}
	nothing := llmtest.Script{Deltas: []string{"NONE\n"}, Usage: llmtest.Usage{InputTokens: 60, OutputTokens: 1}}
	fake := llmtest.NewOpenAI(t, answer, analysis, answer, nothing, answer, nothing, answer, nothing)
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.Memory.Analyzer = "llm"
	h := startServer(t, cfg)

	answerTurn(t, h, "I'm Sergey, and I love jazz music.")
	waitFor(t, "the analyzer's facts", func() bool {
		f := activeFacts(t, h)
		return hasFact(f, "name", "Sergey") && hasFact(f, "preference", "jazz")
	})
	waitFor(t, "the analysis to finish", func() bool { return len(fake.Requests()) == 2 })
	if sys := fake.Requests()[1].System; strings.Contains(sys, "Sergey") {
		t.Error("the analyzer's instruction contains user text; it must only be in the data part")
	}

	answerTurn(t, h, "What music do I like?")
	if block := memoryBlock(fake.Requests()[2].System); !strings.Contains(block, "jazz") || !strings.Contains(block, "Sergey") {
		t.Fatalf("memory block of the next turn:\n%s", block)
	}
	waitFor(t, "the second analysis", func() bool { return len(fake.Requests()) == 4 })

	answerTurn(t, h, "Forget everything about me.")
	waitFor(t, "everything to be forgotten", func() bool { return len(activeFacts(t, h)) == 0 })
	waitFor(t, "the third analysis", func() bool { return len(fake.Requests()) == 6 })
	answerTurn(t, h, "Who am I?")
	if block := memoryBlock(fake.Requests()[6].System); strings.Contains(block, "Sergey") || strings.Contains(block, "jazz") {
		t.Fatalf("forgotten facts still in the prompt:\n%s", block)
	}
	// The last turn's analysis, then its usage row.
	waitFor(t, "the fourth analysis", func() bool { return len(fake.Requests()) == 8 })
	db := readDB(t, h)
	waitFor(t, "the fourth analysis's usage", func() bool {
		n := 0
		for _, u := range storedUsage(t, db) {
			if u.source == store.SourceMemory {
				n++
			}
		}
		return n == 4
	})
	usage := storedUsage(t, db)
	var memIn int
	for _, u := range usage {
		if u.source == store.SourceMemory && u.hardwareID == testHW {
			memIn += u.input
		}
	}
	if memIn != 70+60+60+60 {
		t.Errorf("memory analyzer input tokens recorded: %d, want %d (%+v)", memIn, 250, usage)
	}
}

// TestMemoryReadOncePerTurn: with the heuristic analyzer a turn's update
// reuses the memory the turn read, but never across another update of the
// device: a name replaced right after it was given ends up as exactly one
// fact, the new one.
func TestMemoryReadOncePerTurn(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Nice to meet you."}`}})
	h := startServer(t, testConfig(t, "openai", fake.URL, newSpeechFake(t).URL))
	m := h.srv.svc.memory

	_, first := m.load(context.Background(), testHW)
	if !m.reusable(memoryJob{hardwareID: testHW, loaded: first}) {
		t.Fatal("a read with no update since should serve the turn's update")
	}
	m.appliedUpdate(testHW)
	if m.reusable(memoryJob{hardwareID: testHW, loaded: first}) {
		t.Fatal("a read older than an applied update must not be reused")
	}
	_, second := m.load(context.Background(), testHW)
	m.appliedUpdate("0A1B2C3D-0B4D-4E5F-8A9B-0C1D2E3F4A5B") // another device's update does not matter
	if !m.reusable(memoryJob{hardwareID: testHW, loaded: second}) {
		t.Fatal("another device's update made the read stale")
	}

	answerTurn(t, h, "My name is Anna.")
	answerTurn(t, h, "My name is Maria.")
	waitFor(t, "one name, the second", func() bool {
		facts := activeFacts(t, h)
		return len(facts) == 1 && hasFact(facts, "name", "Maria")
	})

	// Turns far enough apart that each update is applied before the next
	// turn reads: one store read per turn, the turn's own.
	counted := &countingStore{}
	fake2 := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Noted."}`}})
	h2 := startServer(t, testConfig(t, "openai", fake2.URL, newSpeechFake(t).URL), func(d *Deps) {
		counted.Store = d.Store
		d.Store = counted
	})
	for i, prompt := range []string{"My name is Olga.", "What time is it?", "I live in Riga."} {
		answerTurn(t, h2, prompt)
		waitFor(t, "the turn's memory update", func() bool { return counted.applies.Load() == int64(i+1) })
	}
	if reads := counted.reads.Load(); reads != 3 {
		t.Fatalf("%d memory reads for 3 turns; each update should reuse its turn's read", reads)
	}
}

// countingStore counts memory reads and memory writes.
type countingStore struct {
	Store
	reads, applies atomic.Int64
}

func (c *countingStore) Memory(ctx context.Context, hw string, q store.MemoryQuery) (store.Memory, error) {
	c.reads.Add(1)
	return c.Store.Memory(ctx, hw, q)
}

func (c *countingStore) ApplyMemory(ctx context.Context, ch store.MemoryChange) error {
	defer c.applies.Add(1)
	return c.Store.ApplyMemory(ctx, ch)
}
