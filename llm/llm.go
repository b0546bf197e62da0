// Package llm holds the language-model side of a turn: providers that stream an
// answer (Gemini, OpenAI-compatible), the system prompt, the command allowlist
// and the incremental parser that turns the model's reply into spoken text and
// one optional command.
package llm

import (
	"context"
	"errors"
	"fmt"

	"github.com/nexy-server/nexy/internal/fault"
)

// Image is a screenshot attached to a request, still base64-encoded: both
// provider APIs want base64, so it is never decoded and re-encoded on the way.
type Image struct {
	MIME   string // e.g. "image/webp"
	Base64 string // standard base64, no data: prefix
}

// Request is one LLM call.
type Request struct {
	System string // system instruction (the assembled prompt)
	User   string // the user's words, never mixed with system data
	Image  *Image // nil when the turn has no screenshot
}

// Usage is what the provider reported for one call.
type Usage struct {
	InputTokens  int
	OutputTokens int
	Model        string
}

// Provider streams an answer for a request.
type Provider interface {
	// Name is a short label for logs and metrics ("gemini", "openai").
	Name() string
	// Stream starts the call. The HTTP request is bound to ctx: cancelling ctx
	// (client gone, interrupt, shutdown) aborts it at once.
	Stream(ctx context.Context, req Request) (Stream, error)
}

// Stream yields the answer's text deltas in order, exactly as the provider sent them.
type Stream interface {
	// Recv returns the next non-empty text delta, or io.EOF after the last one.
	Recv() (string, error)
	// Usage is valid after Recv has returned io.EOF.
	Usage() Usage
	// Close releases the connection; safe to call more than once.
	Close() error
}

// ErrorKind classifies provider failures so the server can map them to the
// error taxonomy (SPEC §6) without knowing provider details. The kinds are
// shared with the speech providers (package fault).
type ErrorKind = fault.Kind

const (
	// KindUnavailable: network failure, 5xx, or the provider's stream broke.
	KindUnavailable = fault.Unavailable
	// KindAuth: the key was rejected (401/403, API_KEY_INVALID).
	KindAuth = fault.Auth
	// KindRateLimited: 429 / quota exhausted at the provider.
	KindRateLimited = fault.RateLimited
	// KindBadRequest: 400 other than auth (e.g. the image was refused).
	KindBadRequest = fault.BadRequest
	// KindTimeout: the per-call timeout (llm.timeout) expired.
	KindTimeout = fault.Timeout
)

// Error is a provider failure. Message is the provider's own text, for the log;
// it never carries the API key.
type Error struct {
	Provider string
	Kind     ErrorKind
	Status   int // HTTP status when there was one
	Message  string
	Err      error // underlying cause, if any
}

func (e *Error) Error() string {
	s := fmt.Sprintf("llm %s: %s", e.Provider, e.Kind)
	if e.Status != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of err, KindUnavailable for errors that are not *Error.
func KindOf(err error) ErrorKind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindUnavailable
}
