package server

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nexy-server/nexy/internal/fault"
	"github.com/nexy-server/nexy/llm"
	"github.com/nexy-server/nexy/tts"
)

// turnError is an error classified into the taxonomy of SPEC §6: the gRPC
// code, the error type (for logs and metrics) and the message the user sees.
type turnError struct {
	code codes.Code
	kind string
	msg  string
	err  error // cause, for the log only
}

func (e *turnError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *turnError) Unwrap() error { return e.err }

// status is the gRPC status sent to the client: the user-facing message only.
func (e *turnError) status() error { return &statusError{kind: e.kind, st: status.New(e.code, e.msg)} }

// statusError is a turnError as an RPC's final status. grpc-go sends its
// GRPCStatus and hands the error itself to stats handlers, so the metrics
// read the kind from here instead of parsing the message.
type statusError struct {
	kind string
	st   *status.Status
}

func (e *statusError) Error() string { return e.st.Err().Error() }

// GRPCStatus is what grpc-go sends to the client.
func (e *statusError) GRPCStatus() *status.Status { return e.st }

func invalid(format string, args ...any) *turnError {
	return &turnError{code: codes.InvalidArgument, kind: "validation_failed", msg: fmt.Sprintf(format, args...)}
}

// Causes for cancelling a turn's context; they decide how the turn is reported.
var (
	errInterrupted = errors.New("interrupted by InterruptSession")
	errIdle        = errors.New("no progress within limits.idle_timeout")
	errFirstToken  = errors.New("no answer within llm.first_token_timeout")
	errShutdown    = errors.New("server is shutting down")
	// errClientGone: a Send failed, the client has left.
	errClientGone = errors.New("the client went away")
	// errSendStalled: one Send made no progress for limits.send_timeout.
	errSendStalled = errors.New("the client stopped reading within limits.send_timeout")
	// errTurnDone is how a turn cancels its own context when it ends, so
	// cleanup is never mistaken for a client cancel.
	errTurnDone = errors.New("turn finished")
)

// classify maps any failure of a turn to the taxonomy. ctx is the turn's
// context: its cause tells a client cancel from an interrupt or a timeout.
func classify(ctx context.Context, err error) *turnError {
	var te *turnError
	if errors.As(err, &te) {
		return te
	}
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errInterrupted):
		return &turnError{code: codes.Canceled, kind: "cancelled_by_user", msg: "turn interrupted", err: err}
	case errors.Is(cause, errFirstToken):
		return &turnError{code: codes.DeadlineExceeded, kind: "timeout", msg: "the AI provider did not answer in time (llm.first_token_timeout)", err: err}
	case errors.Is(cause, errIdle):
		return &turnError{code: codes.DeadlineExceeded, kind: "timeout", msg: "the answer stalled and was stopped (limits.idle_timeout)", err: err}
	case errors.Is(cause, errSendStalled), errors.Is(err, errSendStalled):
		return &turnError{code: codes.DeadlineExceeded, kind: "timeout", msg: "the client stopped reading the answer (limits.send_timeout)", err: err}
	case errors.Is(cause, errClientGone), errors.Is(err, errClientGone):
		return &turnError{code: codes.Canceled, kind: "cancelled_by_user", msg: "request cancelled", err: err}
	case errors.Is(cause, errRevoked):
		return &turnError{code: codes.Unauthenticated, kind: "unauthenticated", msg: "this device was revoked on this server", err: err}
	case errors.Is(cause, errTokenChanged):
		return &turnError{code: codes.Unauthenticated, kind: "unauthenticated", msg: "this device's bearer token was changed on this server", err: err}
	case errors.Is(cause, errShutdown):
		return &turnError{code: codes.Unavailable, kind: "unavailable", msg: "server is shutting down, please retry", err: err}
	case ctx.Err() != nil && !errors.Is(cause, errTurnDone):
		return &turnError{code: codes.Canceled, kind: "cancelled_by_user", msg: "request cancelled", err: err}
	}
	var le *llm.Error
	if errors.As(err, &le) {
		return classifyLLM(le)
	}
	var se *speechError
	if errors.As(err, &se) {
		return classifySpeech(se, err)
	}
	return &turnError{code: codes.Internal, kind: "internal", msg: "internal error", err: err}
}

// speechError is a failure of the speech provider; it names the provider
// and its config table, so the log and the client's message say which
// setting to look at.
type speechError struct {
	provider string
	key      string // "tts." or "tts.fallback."
	err      error
}

func (e *speechError) Error() string { return e.key + "provider " + e.provider + ": " + e.err.Error() }

func (e *speechError) Unwrap() error { return e.err }

// speechErr marks err as the speech provider's.
func (s *service) speechErr(err error) error {
	return &speechError{provider: s.speech.turn.Name(), key: "tts.", err: err}
}

// classifySpeech maps a speech failure by its kind (tts.KindOf), never by
// its text.
func classifySpeech(se *speechError, err error) *turnError {
	switch tts.KindOf(se.err) {
	case fault.Auth:
		if se.provider == "edge" {
			return &turnError{code: codes.Unavailable, kind: "unavailable", msg: "the Edge speech service refused the connection; see the server log", err: err}
		}
		return &turnError{code: codes.Unavailable, kind: "unavailable",
			msg: fmt.Sprintf("the speech provider rejected the server's key (check %sapi_key)", se.key), err: err}
	case fault.Timeout:
		return &turnError{code: codes.DeadlineExceeded, kind: "timeout",
			msg: fmt.Sprintf("speech synthesis did not answer in time (%stimeout)", se.key), err: err}
	}
	return &turnError{code: codes.Unavailable, kind: "unavailable",
		msg: fmt.Sprintf("speech synthesis is unavailable (%sprovider = %q), please try again", se.key, se.provider), err: err}
}

func classifyLLM(e *llm.Error) *turnError {
	switch e.Kind {
	case llm.KindTimeout:
		if e.Status != 0 { // the provider's (or its proxy's) 408/504, not llm.timeout here
			return &turnError{code: codes.DeadlineExceeded, kind: "timeout", msg: "the AI provider's gateway timed out, please try again", err: e}
		}
		return &turnError{code: codes.DeadlineExceeded, kind: "timeout", msg: "the AI provider did not answer in time (llm.timeout)", err: e}
	case llm.KindAuth:
		return &turnError{code: codes.Unavailable, kind: "unavailable", msg: "the AI provider rejected the server's API key (check llm.api_key)", err: e}
	case llm.KindRateLimited:
		return &turnError{code: codes.Unavailable, kind: "unavailable", msg: "the AI provider is rate-limiting this server, please try again in a minute", err: e}
	case llm.KindBadRequest:
		return &turnError{code: codes.Internal, kind: "internal", msg: "the AI provider refused the request", err: e}
	default:
		return &turnError{code: codes.Unavailable, kind: "unavailable", msg: "the AI provider is unavailable, please try again in a minute", err: e}
	}
}

// providerFailed classifies a failed provider call and records it, unless
// the turn's own cancellation caused it (the client left, an interrupt,
// shutdown): that is not the provider's fault. A first-token timeout is: the
// model did not answer in time.
func (s *service) providerFailed(ctx context.Context, provider string, err error) {
	var kind string
	switch {
	case ctx.Err() != nil:
		if provider != providerLLM || !errors.Is(context.Cause(ctx), errFirstToken) {
			return
		}
		kind = "timeout"
	case provider == providerLLM:
		kind = llm.KindOf(err).String()
	default:
		kind = tts.KindOf(err).String()
	}
	s.metrics.providerFailed(provider, kind, err)
}
