package llm_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexy-server/nexy/llm"
	"github.com/nexy-server/nexy/llm/llmtest"
)

const cooldown = 30 * time.Second

// fakeClock is the breaker's clock in tests: time moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 3, 13, 5, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// breakerChain is primary (at url) then a fallback that always answers.
func breakerChain(t *testing.T, clock *fakeClock, failures int, url string, logs *logSink) (*llm.Chain, *llmtest.Server) {
	t.Helper()
	fb := llmtest.NewOpenAI(t, fallbackScript())
	c := newChain(t, llm.BreakerConfig{Failures: failures, Cooldown: cooldown, Now: clock.Now}, logs.logger(),
		entry(t, primaryLabel, url, 0), entry(t, fallbackLabel, fb.URL, 0))
	return c, fb
}

// wantPrimary checks the primary's state line.
func wantPrimary(t *testing.T, c *llm.Chain, state string, consecutive int, openUntil time.Time, calls, fallbacks uint64) {
	t.Helper()
	p := c.States()[0]
	if p.State != state || p.ConsecutiveFailures != consecutive || !p.OpenUntil.Equal(openUntil) ||
		p.Calls != calls || p.Fallbacks != fallbacks {
		t.Fatalf("primary state %+v; want %s, %d consecutive, open until %v, %d calls, %d fallbacks",
			p, state, consecutive, openUntil, calls, fallbacks)
	}
}

// count returns how often decision was logged.
func count(decisions []string, decision string) int {
	n := 0
	for _, d := range decisions {
		if d == decision {
			n++
		}
	}
	return n
}

func TestBreakerOpensAfterFailuresAndSkips(t *testing.T) {
	clock := newFakeClock()
	primary := llmtest.NewOpenAI(t, llmtest.Script{Status: 500})
	var logs logSink
	c, fb := breakerChain(t, clock, 3, primary.URL, &logs)
	for i := 1; i <= 3; i++ {
		mustAnswer(t, c, fallbackText)
		if n := len(primary.Requests()); n != i {
			t.Fatalf("after %d turns the primary saw %d requests", i, n)
		}
	}
	openUntil := clock.Now().Add(cooldown)
	wantPrimary(t, c, "open", 3, openUntil, 3, 3)

	// While open the primary is skipped: not called, one fallback per turn.
	clock.Advance(cooldown - time.Second)
	for i := 1; i <= 2; i++ {
		mustAnswer(t, c, fallbackText)
	}
	if n := len(primary.Requests()); n != 3 {
		t.Fatalf("an open breaker let %d requests through", n-3)
	}
	wantPrimary(t, c, "open", 3, openUntil, 3, 5)
	if f := c.States()[1]; f.Calls != 5 || len(fb.Requests()) != 5 {
		t.Fatalf("fallback state %+v", f)
	}
	recs := logs.records(t, "breaker_open")
	if len(recs) != 1 || recs[0]["label"] != primaryLabel || recs[0]["failures"] != 3.0 || recs[0]["cooldown"] != "30s" {
		t.Fatalf("breaker_open lines %v (want one, logged at the transition)", recs)
	}
	// Skipping an open provider is not a failure: no llm_fallback line for it.
	if d := logs.decisions(t); count(d, "llm_fallback") != 3 || len(d) != 4 {
		t.Fatalf("decisions %v", d)
	}
	logs.checkPrivate(t)
}

func TestBreakerHalfOpenSuccessCloses(t *testing.T) {
	clock := newFakeClock()
	primary := llmtest.NewOpenAI(t, llmtest.Script{Status: 503}, llmtest.Script{Status: 503},
		llmtest.Script{Deltas: []string{"Primary", " again."}})
	var logs logSink
	c, _ := breakerChain(t, clock, 2, primary.URL, &logs)
	mustAnswer(t, c, fallbackText)
	mustAnswer(t, c, fallbackText)
	wantPrimary(t, c, "open", 2, clock.Now().Add(cooldown), 2, 2)

	clock.Advance(cooldown)
	mustAnswer(t, c, "Primary again.")
	wantPrimary(t, c, "closed", 0, time.Time{}, 3, 2)
	if d := logs.decisions(t); strings.Join(d, ",") != "llm_fallback,breaker_open,llm_fallback,breaker_half_open,breaker_closed" {
		t.Fatalf("decisions %v", d)
	}
	mustAnswer(t, c, "Primary again.") // closed: called as usual
	wantPrimary(t, c, "closed", 0, time.Time{}, 4, 2)
}

func TestBreakerHalfOpenFailureReopens(t *testing.T) {
	clock := newFakeClock()
	primary := llmtest.NewOpenAI(t, llmtest.Script{Status: 500})
	var logs logSink
	c, _ := breakerChain(t, clock, 1, primary.URL, &logs)
	mustAnswer(t, c, fallbackText)
	wantPrimary(t, c, "open", 1, clock.Now().Add(cooldown), 1, 1)

	clock.Advance(cooldown)
	mustAnswer(t, c, fallbackText) // the trial fails; the fallback answers
	wantPrimary(t, c, "open", 2, clock.Now().Add(cooldown), 2, 2)
	mustAnswer(t, c, fallbackText) // open again: skipped
	if n := len(primary.Requests()); n != 2 {
		t.Fatalf("primary saw %d requests, want 2", n)
	}
	wantPrimary(t, c, "open", 2, clock.Now().Add(cooldown), 2, 3)
	d := logs.decisions(t)
	if count(d, "breaker_open") != 2 || count(d, "breaker_half_open") != 1 || count(d, "breaker_closed") != 0 {
		t.Fatalf("decisions %v", d)
	}
}

// When the cooldown ends with many turns in flight, exactly one of them is
// the trial; the others go to the fallback until the trial has answered.
func TestBreakerHalfOpenOneTrialUnderConcurrency(t *testing.T) {
	clock := newFakeClock()
	release := make(chan struct{})
	primary := newGate(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			refuse(w, http.StatusInternalServerError)
			return
		}
		select {
		case <-release:
			answer(w, "Primary is back.")
		case <-r.Context().Done():
		}
	})
	var logs logSink
	c, _ := breakerChain(t, clock, 1, primary.URL, &logs)
	mustAnswer(t, c, fallbackText)
	primary.waitArrival(t)
	clock.Advance(cooldown)

	const callers = 8
	start := make(chan struct{})
	results := make(chan string, callers)
	for range callers {
		go func() {
			<-start
			text, _, err := turn(t, context.Background(), c)
			if err != nil {
				text = "error: " + err.Error()
			}
			results <- text
		}()
	}
	close(start)
	if n := primary.waitArrival(t); n != 2 {
		t.Fatalf("trial is request %d", n)
	}
	for range callers - 1 {
		if got := waitResult(t, results); got != fallbackText {
			t.Fatalf("a non-trial caller got %q", got)
		}
	}
	if n := primary.hits.Load(); n != 2 {
		t.Fatalf("half-open breaker let %d trials through", n-1)
	}
	if p := c.States()[0]; p.State != "half_open" || !p.OpenUntil.IsZero() || p.Calls != 2 {
		t.Fatalf("primary state during the trial %+v", p)
	}
	close(release)
	if got := waitResult(t, results); got != "Primary is back." {
		t.Fatalf("the trial got %q", got)
	}
	wantPrimary(t, c, "closed", 0, time.Time{}, 2, 1+callers-1)
	d := logs.decisions(t)
	if count(d, "breaker_open") != 1 || count(d, "breaker_half_open") != 1 || count(d, "breaker_closed") != 1 {
		t.Fatalf("decisions %v", d)
	}
}

func waitResult(t *testing.T, results <-chan string) string {
	t.Helper()
	select {
	case r := <-results:
		return r
	case <-time.After(waitLimit):
		t.Fatal("a turn did not finish")
		return ""
	}
}

// A trial the caller cancels proves nothing: the next turn is the trial.
func TestBreakerCancelledTrialFreesTheSlot(t *testing.T) {
	clock := newFakeClock()
	primary := newGate(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch n {
		case 1:
			refuse(w, http.StatusBadGateway)
		case 2:
			<-r.Context().Done()
		default:
			answer(w, "Primary is back.")
		}
	})
	c, fb := breakerChain(t, clock, 1, primary.URL, &logSink{})
	mustAnswer(t, c, fallbackText)
	primary.waitArrival(t)
	clock.Advance(cooldown)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-primary.arrived:
		case <-time.After(waitLimit):
		}
		cancel()
	}()
	if _, err := c.Stream(ctx, question); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled trial: %v", err)
	}
	wantPrimary(t, c, "half_open", 1, time.Time{}, 2, 1)
	mustAnswer(t, c, "Primary is back.")
	wantPrimary(t, c, "closed", 0, time.Time{}, 3, 1)
	if n := len(fb.Requests()); n != 1 {
		t.Fatalf("fallback saw %d requests, want 1", n)
	}
}

// With every breaker open the chain still calls them, in order, rather than
// refusing the turn; a provider that answers then closes its breaker.
func TestBreakerAllOpenStillTries(t *testing.T) {
	clock := newFakeClock()
	primary := llmtest.NewOpenAI(t, llmtest.Script{Status: 500})
	second := llmtest.NewOpenAI(t, llmtest.Script{Status: 500}, fallbackScript())
	var logs logSink
	c := newChain(t, llm.BreakerConfig{Failures: 1, Cooldown: cooldown, Now: clock.Now}, logs.logger(),
		entry(t, primaryLabel, primary.URL, 0), entry(t, fallbackLabel, second.URL, 0))
	_, _, err := turn(t, context.Background(), c)
	asError(t, err, llm.KindUnavailable)
	st := c.States()
	if st[0].State != "open" || st[1].State != "open" {
		t.Fatalf("states %+v", st)
	}

	clock.Advance(time.Second)
	if u := mustAnswer(t, c, fallbackText); u != fallbackUsage {
		t.Fatalf("usage %+v", u)
	}
	if len(primary.Requests()) != 2 || len(second.Requests()) != 2 {
		t.Fatalf("requests %d, %d; want both tried again", len(primary.Requests()), len(second.Requests()))
	}
	st = c.States()
	// The primary's forced call failed: its cooldown starts again.
	if st[0].State != "open" || !st[0].OpenUntil.Equal(clock.Now().Add(cooldown)) || st[0].ConsecutiveFailures != 2 {
		t.Fatalf("primary %+v", st[0])
	}
	if st[1].State != "closed" || st[1].ConsecutiveFailures != 0 || st[1].Calls != 2 {
		t.Fatalf("second %+v", st[1])
	}
	if d := logs.decisions(t); count(d, "breaker_closed") != 1 || count(d, "breaker_open") != 2 {
		t.Fatalf("decisions %v", d)
	}
}

// A single provider with an open breaker is still called on every turn.
func TestBreakerSingleProviderNeverRefuses(t *testing.T) {
	clock := newFakeClock()
	srv := llmtest.NewOpenAI(t, llmtest.Script{Status: 429}, llmtest.Script{Status: 429}, fallbackScript())
	c := newChain(t, llm.BreakerConfig{Failures: 1, Cooldown: cooldown, Now: clock.Now}, nil,
		entry(t, primaryLabel, srv.URL, 0))
	for range 2 {
		_, _, err := turn(t, context.Background(), c)
		asError(t, err, llm.KindRateLimited)
	}
	mustAnswer(t, c, fallbackText)
	if n := len(srv.Requests()); n != 3 {
		t.Fatalf("%d requests, want 3", n)
	}
	if p := c.States()[0]; p.State != "closed" || p.Failures != 2 {
		t.Fatalf("state %+v", p)
	}
}

// Failures 0 disables the breaker: failures are counted, never skipped.
func TestBreakerDisabled(t *testing.T) {
	primary := llmtest.NewOpenAI(t, llmtest.Script{Status: 500})
	var logs logSink
	c, _ := breakerChain(t, newFakeClock(), 0, primary.URL, &logs)
	for range 5 {
		mustAnswer(t, c, fallbackText)
	}
	if n := len(primary.Requests()); n != 5 {
		t.Fatalf("primary saw %d requests, want 5", n)
	}
	wantPrimary(t, c, "closed", 5, time.Time{}, 5, 5)
	if d := logs.decisions(t); count(d, "breaker_open") != 0 {
		t.Fatalf("decisions %v", d)
	}
}
