// Package httpclient holds the HTTP client policy shared by the provider
// packages (llm, tts), which must not import each other.
package httpclient

import "net/http"

// NoRedirects returns a copy of c (or a fresh client) that refuses redirects:
// net/http forwards custom headers such as x-goog-api-key or
// Ocp-Apim-Subscription-Key to whatever host a redirect names, so a provider
// key must never follow one. A redirect then surfaces as its 3xx status.
func NoRedirects(c *http.Client) *http.Client {
	var cl http.Client
	if c != nil {
		cl = *c
	}
	if cl.CheckRedirect == nil {
		cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return &cl
}
