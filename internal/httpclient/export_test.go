package httpclient

import "net/http"

// Wrap counts requests, reuses and dials on base (its DialContext must be
// set, as http.DefaultTransport's is) the way NewTransport's transport does,
// so a benchmark can measure http.DefaultTransport's pool with the same probes.
func Wrap(base *http.Transport) *Transport {
	t := &Transport{base: base}
	base.DialContext = t.countDials(base.DialContext)
	t.trace = newTrace(t)
	return t
}

// Base is the underlying transport (tests set TLS roots on it).
func (t *Transport) Base() *http.Transport { return t.base }
