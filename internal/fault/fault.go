// Package fault holds the kinds of provider failure that LLM and speech
// providers share, so the server classifies both the same way (SPEC §6) and
// an operator reads the same words in the log, /status and /metrics.
package fault

import "net/http"

// Kind classifies a provider failure by what the operator or the server does
// about it: retry (Unavailable, RateLimited, Timeout), fix the key (Auth), or
// nothing, because the request itself was refused (BadRequest).
type Kind int

const (
	// Unavailable: network failure, 5xx, or the provider's stream broke.
	Unavailable Kind = iota
	// Auth: the key was rejected (401/403, an invalid-key answer).
	Auth
	// RateLimited: 429, or the provider's quota is used up.
	RateLimited
	// BadRequest: a 4xx other than auth (the text or image was refused).
	BadRequest
	// Timeout: the provider's configured timeout expired.
	Timeout
)

func (k Kind) String() string {
	switch k {
	case Auth:
		return "auth"
	case RateLimited:
		return "rate_limited"
	case BadRequest:
		return "bad_request"
	case Timeout:
		return "timeout"
	default:
		return "unavailable"
	}
}

// Retryable reports whether calling again may succeed without the operator
// changing anything.
func (k Kind) Retryable() bool { return k == Unavailable || k == RateLimited || k == Timeout }

// FromHTTPStatus classifies an HTTP error status. authInvalid is set when
// the provider said, in a 400's body, that the key is invalid (Gemini does).
func FromHTTPStatus(status int, authInvalid bool) Kind {
	switch {
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return Auth
	case status == http.StatusBadRequest && authInvalid:
		return Auth
	case status == http.StatusTooManyRequests:
		return RateLimited
	case status == http.StatusRequestTimeout, status == http.StatusGatewayTimeout:
		return Timeout
	case status >= 400 && status < 500:
		return BadRequest
	}
	return Unavailable
}
