package tts

// Stream plumbing shared by all providers in this package: the PCM stream
// every Synthesize returns, its producer bookkeeping, and small helpers.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nexy-server/nexy/internal/fault"
)

func randomHex(n int, upper bool) string {
	b := make([]byte, n)
	rand.Read(b)
	s := hex.EncodeToString(b)
	if upper {
		return strings.ToUpper(s)
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// producer tracks a goroutine that feeds encoded audio to a decoder.
type producer struct {
	done       chan struct{} // the goroutine has returned
	settled    chan struct{} // the outcome (err) is final
	settleOnce sync.Once
	mu         sync.Mutex
	err        error
}

func newProducer() *producer {
	return &producer{done: make(chan struct{}), settled: make(chan struct{})}
}

// fail records the producer's own failure before it closes its pipe, so the
// reader can report the cause rather than the decoder's view of it.
func (p *producer) fail(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
	p.settle()
}

func (p *producer) settle() { p.settleOnce.Do(func() { close(p.settled) }) }

func (p *producer) cause() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// wait blocks until the outcome is known (not until the socket is closed).
func (p *producer) wait() error {
	<-p.settled
	return p.cause()
}

// pcmStream is the io.ReadCloser every provider returns: decoded 48 kHz PCM
// plus the teardown of whatever produces the encoded bytes.
type pcmStream struct {
	name    string
	pcm     io.Reader          // audio.Decode output
	cancel  context.CancelFunc // cancels the per-call context
	release func()             // unblocks the source (closes pipe/body); may be nil
	finish  func() error       // waits for the source to end; reports its failure; may be nil
	cause   func() error       // a failure the source recorded on its own; may be nil
	gone    <-chan struct{}    // closed when the source's goroutine has returned; may be nil

	finishOnce sync.Once
	finishErr  error
	closeOnce  sync.Once
	mu         sync.Mutex
	err        error // sticky terminal error returned by Read
	total      int64 // PCM bytes returned so far
}

func newPCMStream(name string, pcm io.Reader, cancel context.CancelFunc, release func(), finish, cause func() error) *pcmStream {
	return &pcmStream{name: name, pcm: pcm, cancel: cancel, release: release, finish: finish, cause: cause}
}

// Read returns PCM; a provider failure at any point is returned as an error.
func (s *pcmStream) Read(p []byte) (int, error) {
	if err := s.sticky(); err != nil {
		return 0, err
	}
	n, err := s.pcm.Read(p)
	s.total += int64(n)
	if err == nil {
		return n, nil
	}
	if err == io.EOF {
		// The decoder drained its input; the source decides whether that
		// input was complete (exit status, turn.end, body length).
		if ferr := s.wait(); ferr != nil {
			err = ferr
		} else if s.total == 0 {
			err = errorf(s.name, "provider returned no audio")
		}
		s.cancel()
	} else {
		err = s.failure(err)
	}
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	err = s.err
	s.mu.Unlock()
	return n, err
}

// failure stops the source after a decoder error and picks the error that
// explains it best: the source's own failure if it had one first.
func (s *pcmStream) failure(err error) error {
	var cause error
	if s.cause != nil {
		cause = s.cause()
	}
	s.cancel()
	if s.release != nil {
		s.release()
	}
	s.wait()
	if cause != nil {
		return cause
	}
	return named(s.name, err)
}

func (s *pcmStream) sticky() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *pcmStream) wait() error {
	s.finishOnce.Do(func() {
		if s.finish != nil {
			s.finishErr = s.finish()
		}
	})
	return s.finishErr
}

// Close stops the provider (socket closed, request aborted, process killed)
// and waits until its goroutines and processes are gone.
func (s *pcmStream) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		if s.err == nil {
			s.err = errorf(s.name, "stream closed")
		}
		s.mu.Unlock()
		s.cancel()
		if s.release != nil {
			s.release()
		}
		s.wait()
		if s.gone != nil {
			<-s.gone
		}
	})
	return nil
}

// Error is a failure of a speech provider. Its text starts with
// "tts <provider>: ", so every message says which provider failed.
type Error struct {
	Provider string
	Err      error
	// Kind says what the server does about the failure (retry, or tell the
	// operator to fix a setting). The zero value is fault.Unavailable; read
	// it with KindOf, which also recognises timeouts deeper in the chain.
	Kind fault.Kind
	// Status is the HTTP status the provider answered with (the WebSocket
	// handshake's for edge), or 0 when the failure had none.
	Status int
}

func (e *Error) Error() string { return "tts " + e.Provider + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// KindOf classifies a speech failure for retries, logs and metrics. It is
// the Kind of the first *Error in err's chain; an *Error left at the zero
// value (Unavailable) defers to what it wraps, so a provider error that was
// wrapped again on its way out (a decoder, named) keeps its kind. With no
// more specific kind, a timeout anywhere in the chain (the provider's
// configured timeout, context.DeadlineExceeded, os.ErrDeadlineExceeded, a
// net.Error whose Timeout() is true) is fault.Timeout; anything else,
// including nil, is fault.Unavailable.
func KindOf(err error) fault.Kind {
	for next := err; next != nil; {
		var e *Error
		if !errors.As(next, &e) {
			break
		}
		if e.Kind != fault.Unavailable {
			return e.Kind
		}
		next = e.Err
	}
	if isTimeout(err) {
		return fault.Timeout
	}
	return fault.Unavailable
}

func isTimeout(err error) bool {
	if err == nil {
		return false
	}
	var te *timeoutError
	var ne net.Error
	return errors.As(err, &te) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func errorf(provider, format string, args ...any) error {
	return &Error{Provider: provider, Err: fmt.Errorf(format, args...)}
}

// kindErrorf is errorf with a kind other than Unavailable.
func kindErrorf(provider string, kind fault.Kind, format string, args ...any) error {
	return &Error{Provider: provider, Kind: kind, Err: fmt.Errorf(format, args...)}
}

// badRequestf is a request the provider cannot serve as given (empty text,
// an invalid voice or language): retrying it cannot help.
func badRequestf(provider, format string, args ...any) error {
	return kindErrorf(provider, fault.BadRequest, format, args...)
}

// httpError is a failure the provider answered with an HTTP status. Every
// HTTP provider builds it here, so a status is classified the same way
// everywhere (fault.FromHTTPStatus): 401/403 Auth, 429 RateLimited, 408/504
// Timeout, other 4xx BadRequest, anything else Unavailable.
func httpError(provider string, status int, format string, args ...any) error {
	return &Error{Provider: provider, Kind: fault.FromHTTPStatus(status, false), Status: status, Err: fmt.Errorf(format, args...)}
}

// named makes err a provider's *Error unless it already is one (itself, not
// deeper: an error wrapping a provider's error still gets the prefix).
func named(provider string, err error) error {
	if _, ok := err.(*Error); ok {
		return err
	}
	return &Error{Provider: provider, Err: err}
}

// timeoutError says which configured timeout ended a call.
type timeoutError struct {
	after time.Duration
	err   error
}

func (e *timeoutError) Error() string { return fmt.Sprintf("timed out after %v: %v", e.after, e.err) }

func (e *timeoutError) Unwrap() error { return e.err }

// timeoutErr names the configured timeout when ctx's deadline caused err.
func timeoutErr(name string, ctx context.Context, timeout time.Duration, err error) error {
	var te *timeoutError
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && !errors.As(err, &te) {
		return &Error{Provider: name, Kind: fault.Timeout, Err: &timeoutError{after: timeout, err: err}}
	}
	return named(name, err)
}

// capReader passes through at most max bytes and fails beyond that; it also
// fails a stream that ends without a single byte, so "no audio" is never
// mistaken for silence.
type capReader struct {
	r    io.Reader
	name string
	max  int64
	n    int64
}

func (c *capReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return 0, errorf(c.name, "audio exceeds %d bytes", c.max)
	}
	if err == io.EOF && c.n == 0 {
		return 0, errorf(c.name, "provider returned no audio")
	}
	return n, err
}
