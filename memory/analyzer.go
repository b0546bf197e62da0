package memory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nexy-server/nexy/llm"
)

// DefaultTimeout bounds one analysis when the caller's context has no
// earlier deadline: long enough for a real model (upstream C4 cancelled
// every update after one second), short enough that a per-device queue of
// updates keeps moving.
const DefaultTimeout = 15 * time.Second

// maxOutputBytes bounds what Analyze reads from the model. A real answer
// (≤ MaxFactsPerUpdate facts and a digest) is a few KiB; more is a model that
// does not stop.
const maxOutputBytes = 16 << 10

// Analyzer turns a finished turn into an Update with one LLM call.
type Analyzer struct {
	provider llm.Provider
	// Timeout bounds one Analyze call; NewAnalyzer sets DefaultTimeout, and
	// zero means no bound beyond the caller's context.
	Timeout time.Duration
}

// NewAnalyzer returns an Analyzer that asks p. With a nil p every Analyze is
// the Heuristic, without error: a server with no model still remembers.
func NewAnalyzer(p llm.Provider) *Analyzer {
	return &Analyzer{provider: p, Timeout: DefaultTimeout}
}

// Analyze reads one finished turn and returns what it changes in memory. It
// makes one Provider.Stream call: the system part is a fixed instruction
// with the output contract (no user text in it), the user part a data block
// with the date, the existing facts, today's digest and the turn (each side
// cut to MaxTurnRunes). The model's answer goes through ParseAnalysis.
//
// The heuristic's forget detection also runs on the user's words and is
// merged in, so "forget everything about me" works even when the model
// misses it.
//
// On failure (the call fails, times out, or the answer cannot be parsed) it
// returns the Heuristic update together with the error: the caller logs the
// error and still applies the update. Usage is filled from the failed call
// when the provider reported any. A turn with no user words is not sent to
// the model (there is nothing to learn); the heuristic digest covers it.
func (a *Analyzer) Analyze(ctx context.Context, snap Snapshot, t Turn, now time.Time) (Update, error) {
	fallback := Heuristic(t)
	if a == nil || a.provider == nil || strings.TrimSpace(t.User) == "" {
		return fallback, nil
	}
	if a.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.Timeout)
		defer cancel()
	}
	out, usage, err := a.call(ctx, llm.Request{System: analyzerInstruction, User: analyzerInput(snap, t, now)})
	if err == nil {
		var u Update
		if u, err = ParseAnalysis(out); err == nil {
			u.Usage = usage
			mergeForget(&u, fallback)
			return u, nil
		}
	}
	fallback.Usage = usage
	return fallback, err
}

// call streams the answer to the end and returns it with the usage.
func (a *Analyzer) call(ctx context.Context, req llm.Request) (string, llm.Usage, error) {
	stream, err := a.provider.Stream(ctx, req)
	if err != nil {
		return "", llm.Usage{}, fmt.Errorf("memory analyzer: %w", err)
	}
	defer stream.Close()
	var b strings.Builder
	for {
		delta, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return b.String(), stream.Usage(), nil
		}
		if err != nil {
			return "", stream.Usage(), fmt.Errorf("memory analyzer: %w", err)
		}
		if b.Len()+len(delta) > maxOutputBytes {
			return "", stream.Usage(), &ParseError{Reason: ReasonTooLong}
		}
		b.WriteString(delta)
	}
}

// mergeForget adds the heuristic's forget requests to the model's update.
func mergeForget(u *Update, h Update) {
	u.ForgetAll = u.ForgetAll || h.ForgetAll
	for _, term := range h.Forget {
		if !containsFold(u.Forget, term) && len(u.Forget) < MaxFactsPerUpdate {
			u.Forget = append(u.Forget, term)
		}
	}
}
